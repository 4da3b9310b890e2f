import pytest

from vllm_forge.cuda_arch import (
    Arch,
    format_arch_list,
    nvcc_gencode_flags,
    parse_arch_list,
    sass_targets,
)
from vllm_forge.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12.0", [Arch(12, 0)]),
        ("12.0a", [Arch(12, 0, "a")]),
        ("8.9+PTX", [Arch(8, 9, "", True)]),
        ("8.9 9.0a;12.0", [Arch(8, 9), Arch(9, 0, "a"), Arch(12, 0)]),
        ("  12.0 ;  10.0f ", [Arch(12, 0), Arch(10, 0, "f")]),
    ],
)
def test_accepted_forms(text, expected):
    assert list(parse_arch_list(text)) == expected


@pytest.mark.parametrize("text", ["12", "sm_120", "12,0", "120", "12.0b", "12.0+ptx", ""])
def test_rejected_forms_name_the_accepted_ones(text):
    with pytest.raises(ConfigError, match="accepted forms"):
        parse_arch_list(text)


def test_an_arch_listed_twice_is_named():
    with pytest.raises(ConfigError, match="twice"):
        parse_arch_list("12.0 12.0")


def test_gencode_puts_sass_for_each_arch_and_ptx_where_asked():
    archs = parse_arch_list("8.9+PTX 12.0a")
    assert nvcc_gencode_flags(archs) == [
        "-gencode=arch=compute_89,code=sm_89",
        "-gencode=arch=compute_89,code=compute_89",
        "-gencode=arch=compute_120a,code=sm_120a",
    ]
    assert sass_targets(archs) == {"sm_89", "sm_120a"}
    assert format_arch_list(archs) == "8.9+PTX;12.0a"

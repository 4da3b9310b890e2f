import pytest

from vllm_forge.cuda_arch import (
    Arch,
    check_nvcc_can_build,
    covers,
    format_arch_list,
    nvcc_accepts,
    nvcc_gencode_flags,
    parse_arch_list,
    sass_targets,
    served_gpu_warning,
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
    with pytest.raises(ConfigError, match="names 12.0 more than once \\(12.0 twice\\)"):
        parse_arch_list("12.0 12.0")


def test_the_same_target_with_and_without_ptx_is_refused_not_emitted_twice():
    with pytest.raises(ConfigError, match=r"names 12.0 more than once \(12.0\+PTX and 12.0\)"):
        parse_arch_list("12.0+PTX 12.0")
    flags = nvcc_gencode_flags(parse_arch_list("12.0+PTX 12.0a"))
    assert len(flags) == len(set(flags)) == 3  # sm_120 and sm_120a are two targets


# What NVIDIA's own tools accept (`ptxas --help` of 12.8.93, 12.9.86, 13.0.88; see cuda_arch.py).
@pytest.mark.parametrize(
    ("cuda", "accepted", "refused"),
    [
        ("12.8", "5.0 7.0 8.9 9.0a 10.0a 10.1a 12.0 12.0a", "12.0f 10.0f 10.3 12.1 11.0 99.0"),
        ("12.9", "5.0 7.0 10.0f 10.3a 12.0f 12.1a", "11.0 8.8 99.0"),
        ("13.0", "7.5 8.8 10.0f 11.0a 12.0 12.0a 12.0f 12.1f", "5.0 6.1 7.0 7.2 10.1 10.7 99.0"),
        ("13.2", "7.5 12.0f", "7.0"),  # between two known nvcc: 13.0's list
        ("13.5", "10.7 10.7f 12.0f", "7.0 10.1"),
    ],
)
def test_each_nvcc_builds_what_nvidia_says_and_nothing_else(cuda, accepted, refused):
    check_nvcc_can_build(parse_arch_list(accepted), cuda, what="x", nvcc="test")
    for arch in refused.split():
        with pytest.raises(ConfigError, match=f"x: {arch} cannot be built by CUDA {cuda}'s nvcc"):
            check_nvcc_can_build(parse_arch_list(arch), cuda, what="x", nvcc="test")


def test_a_refusal_lists_what_that_nvcc_builds_in_order():
    with pytest.raises(ConfigError) as info:
        check_nvcc_can_build(parse_arch_list("7.0"), "13.0", what="--arch-list", nvcc="index")
    assert str(info.value) == (
        "--arch-list: 7.0 cannot be built by CUDA 13.0's nvcc (index); it builds 7.5 8.0 8.6 8.7"
        " 8.8 8.9 9.0 9.0a 10.0 10.0a 10.0f 10.3 10.3a 10.3f 11.0 11.0a 11.0f 12.0 12.0a 12.0f"
        " 12.1 12.1a 12.1f"
    )


@pytest.mark.parametrize("cuda", ["11.8", "14.0", "12.7"])
def test_an_nvcc_whose_list_is_unknown_is_refused_not_guessed(cuda):
    with pytest.raises(ConfigError, match=f"which architectures CUDA {cuda}'s nvcc builds"):
        nvcc_accepts(cuda)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12.0", "sass"),
        ("12.0a", "sass"),
        ("12.0f", "sass"),
        ("8.9 12.0a", "sass"),
        ("8.9+PTX", "ptx"),
        ("9.0a+PTX", "none"),  # arch-specific PTX runs on 9.0 only
        ("8.9", "none"),
        ("12.1", "none"),
        ("10.0f", "none"),
    ],
)
def test_what_runs_on_the_rtx_5090(text, expected):
    assert covers(parse_arch_list(text), (12, 0)) == expected


def test_only_a_list_without_12_0_sass_is_warned_about():
    assert served_gpu_warning(parse_arch_list("12.0 8.9"), what="w") is None
    assert "builds nothing that runs on the RTX 5090" in served_gpu_warning(
        parse_arch_list("8.9"), what="w"
    )
    assert "only as PTX" in served_gpu_warning(parse_arch_list("8.9+PTX"), what="w")


def test_gencode_puts_sass_for_each_arch_and_ptx_where_asked():
    archs = parse_arch_list("8.9+PTX 12.0a")
    assert nvcc_gencode_flags(archs) == [
        "-gencode=arch=compute_89,code=sm_89",
        "-gencode=arch=compute_89,code=compute_89",
        "-gencode=arch=compute_120a,code=sm_120a",
    ]
    assert sass_targets(archs) == {"sm_89", "sm_120a"}
    assert format_arch_list(archs) == "8.9+PTX;12.0a"

"""Run the checks module with pytest (and testinfra) in-process and collect one Report."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ..errors import ConfigError, VerifyError
from . import checks
from .config import VerifyConfig
from .report import FAIL, PASS, SKIP, CheckResult, Report

CHECKS = Path(checks.__file__)


def check_ids() -> list[str]:
    """Every check, in report order (the module's test functions)."""
    present = {name.removeprefix("test_") for name in dir(checks) if name.startswith("test_")}
    return [n for n in checks.ORDER if n in present] + sorted(present - set(checks.ORDER))


class Collector:
    """A pytest plugin object: hands the config over and turns test reports into CheckResults."""

    def __init__(self, cfg: VerifyConfig, echo=print) -> None:
        self.cfg = cfg
        self.echo = echo
        self.results: dict[str, CheckResult] = {}
        self.interrupted: BaseException | None = None

    def pytest_configure(self, config: pytest.Config) -> None:
        config.stash[checks.CONFIG_KEY] = self.cfg

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo) -> None:
        """pytest swallows Ctrl-C (and errors.Stopped: SIGTERM, SIGHUP); keep it to re-raise."""
        self.interrupted = excinfo.value

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        name = report.nodeid.rpartition("::")[2].removeprefix("test_")
        result = self.results.setdefault(name, CheckResult(name, checks.group_of(name), PASS))
        result.seconds += report.duration
        # every phase's report carries all properties so far: read them once, at teardown
        for key, value in report.user_properties if report.when == "teardown" else ():
            if key == "warning":
                result.warnings.append(value)
            else:
                result.numbers[key] = value
        if report.when == "call" or not report.passed:
            outcome = {"passed": PASS, "failed": FAIL, "skipped": SKIP}[report.outcome]
            if result.outcome != FAIL:  # a teardown error does not undo a failure
                result.outcome = outcome
                result.message = _message(report)
        if report.when == "teardown":
            mark = {PASS: "ok  ", FAIL: "FAIL", SKIP: "skip"}[result.outcome]
            first = result.message.splitlines()[0] if result.message else ""
            self.echo(f"  {mark} {result.group:<10} {name} ({result.seconds:.1f}s) {first}"[:160])


def _message(report: pytest.TestReport) -> str:
    if report.passed:
        return ""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # a skip: (path, line, "Skipped: reason")
        return longrepr[2].removeprefix("Skipped: ")
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:  # pytest.fail(...) gives "Failed: <message>"; an exception its line
        return crash.message.removeprefix("Failed: ")
    return str(longrepr).strip()


def run(cfg: VerifyConfig, only: list[str] | None = None, echo=print) -> Report:
    known = check_ids()
    for name in only or []:
        if name not in known:
            raise ConfigError(f"unknown check {name!r}; known checks: {', '.join(known)}")
    targets = [f"{CHECKS}::test_{n}" for n in only] if only else [str(CHECKS)]
    collector = Collector(cfg, echo)
    start = time.monotonic()
    args = [*targets, "-p", "no:cacheprovider", "-p", "no:terminal"]
    code = pytest.main(args, plugins=[collector])
    if collector.interrupted is not None:  # the one wrapper says so and exits 128 + signal
        raise collector.interrupted
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) or not collector.results:
        raise VerifyError(f"the checks did not run (pytest exit {int(code)}): see output above")
    order = {n: i for i, n in enumerate(checks.ORDER)}
    return Report(
        image=cfg.image,
        engine=f"{cfg.engine.name} {cfg.engine.version}",
        profile=cfg.pins.profile,
        checks=sorted(collector.results.values(), key=lambda c: order.get(c.id, 99)),
        seconds=time.monotonic() - start,
    )

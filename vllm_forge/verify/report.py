"""Verification results: one row per check, as a readable table, JSON and text."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..redact import write_text

PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass
class CheckResult:
    id: str  # the check's function name without `test_`
    group: str  # "1 pins", "2 arch", ...
    outcome: str  # pass | fail | skip
    message: str = ""
    seconds: float = 0.0
    numbers: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Report:
    image: str
    engine: str
    profile: str
    checks: list[CheckResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.outcome != FAIL for c in self.checks)

    def counts(self) -> dict[str, int]:
        return {o: sum(c.outcome == o for c in self.checks) for o in (PASS, FAIL, SKIP)}

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok, "counts": self.counts()}


def _cell(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def table(report: Report, width: int = 100) -> str:
    """The summary: one line per check; failures and warnings in full below it."""
    rows = [("group", "check", "result", "time", "detail")]
    for c in report.checks:
        detail = c.message.splitlines()[0] if c.message else ""
        if c.outcome == PASS and c.warnings:
            detail = f"warning: {c.warnings[0]}"
        rows.append((c.group, c.id, c.outcome.upper(), f"{c.seconds:.1f}s", detail))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r[:4], widths, strict=True))
        + "  "
        + _cell(r[4], max(20, width - sum(widths) - 8))
        for r in rows
    ]
    counts = report.counts()
    lines.append(
        f"{counts[PASS]} passed, {counts[FAIL]} failed, {counts[SKIP]} skipped in "
        f"{report.seconds:.0f}s: {report.image} ({report.engine}, profile {report.profile})"
    )
    return "\n".join(line.rstrip() for line in lines)


def details(report: Report) -> str:
    """Every failure's and warning's full message, and the tables checks recorded."""
    out = []
    for c in report.checks:
        if c.outcome == FAIL:
            out.append(f"FAIL {c.id}:\n  " + c.message.replace("\n", "\n  "))
        for w in c.warnings:
            out.append(f"warning {c.id}: {w}")
        if isinstance(c.numbers.get("table"), str):
            out.append(f"{c.id}:\n" + c.numbers["table"])
    return "\n".join(out)


def write(report: Report, directory: Path, slug: str) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    as_json = directory / f"verify-{slug}.json"
    as_text = directory / f"verify-{slug}.txt"
    # Messages quote what checks saw (commands, files, URLs): redacted like every file under build/
    write_text(as_json, json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    write_text(as_text, table(report) + "\n\n" + details(report) + "\n")
    return as_json, as_text

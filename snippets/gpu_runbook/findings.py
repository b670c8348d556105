"""Finding and Status: what a check concludes, in the form every renderer shows."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional


class Status(str, enum.Enum):
    """Outcome of one check, worst last so that `max()` over severities picks the headline."""

    OK = "ok"
    SKIP = "skip"  # not applicable here (no container toolkit, not in a container, ...)
    WARN = "warn"  # works now, but a known trap or a degraded state
    UNKNOWN = "unknown"  # could not judge: a fact was unreadable, timed out or malformed
    FAIL = "fail"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def is_problem(self) -> bool:
        """True when this status alone should make `gpu-runbook check` exit 1."""
        return self is Status.FAIL


_RANK = {Status.OK: 0, Status.SKIP: 1, Status.WARN: 2, Status.UNKNOWN: 3, Status.FAIL: 4}


@dataclass(frozen=True)
class Verdict:
    """What a check function returns; the engine adds the check's identity and page."""

    status: Status
    summary: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    fix: str = ""
    # A check may send the reader to a more specific page than its default one
    # (nvml-init points "Driver Not Loaded" at kernel-modules, say).
    page: Optional[str] = None
    anchor: str = ""


def ok(summary: str, evidence: Optional[Mapping[str, Any]] = None) -> Verdict:
    return Verdict(Status.OK, summary, dict(evidence or {}))


def warn(summary: str, fix: str, evidence: Optional[Mapping[str, Any]] = None,
         page: Optional[str] = None, anchor: str = "") -> Verdict:
    return Verdict(Status.WARN, summary, dict(evidence or {}), fix, page, anchor)


def fail(summary: str, fix: str, evidence: Optional[Mapping[str, Any]] = None,
         page: Optional[str] = None, anchor: str = "") -> Verdict:
    return Verdict(Status.FAIL, summary, dict(evidence or {}), fix, page, anchor)


def skip(reason: str, evidence: Optional[Mapping[str, Any]] = None) -> Verdict:
    return Verdict(Status.SKIP, reason, dict(evidence or {}))


def unknown(reason: str, evidence: Optional[Mapping[str, Any]] = None, fix: str = "") -> Verdict:
    return Verdict(Status.UNKNOWN, reason, dict(evidence or {}), fix)


@dataclass(frozen=True)
class Finding:
    """One check's result on one snapshot, with the runbook page that explains it."""

    check: str
    status: Status
    summary: str
    page: str
    url: str
    evidence: dict[str, Any] = field(default_factory=dict)
    fix: str = ""
    title: str = ""

    @property
    def message(self) -> str:
        """The one-line form, led by the check id (as NHC and NPD messages are)."""
        return f"{self.check}: {self.summary}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "status": self.status.value,
            "summary": self.summary,
            "evidence": self.evidence,
            "page": self.page,
            "url": self.url,
            "fix": self.fix,
            "title": self.title,
        }


def worst(findings: list[Finding]) -> Status:
    """The most severe status among findings (OK for none)."""
    return max((f.status for f in findings), key=lambda s: s.rank, default=Status.OK)

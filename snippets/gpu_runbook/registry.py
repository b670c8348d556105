"""The check registry: the @check decorator, the @fact decorator, version boundaries, and the engine that runs checks.

A check is a small pure function. Its decorator says which facts it needs; the engine derives those
facts from the snapshot and passes them in the declared order. When a needed fact is missing the
engine writes the skip/unknown finding itself, naming what was missing, so check bodies only judge.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional

from gpu_runbook.findings import Finding, Status, Verdict
from gpu_runbook.pages import PAGES, page_url
from gpu_runbook.snapshot import Missing, Snapshot

FactFunc = Callable[[Snapshot], Any]
FACTS: dict[str, FactFunc] = {}


def fact(name: str) -> Callable[[FactFunc], FactFunc]:
    """Register a derived fact: a pure function Snapshot -> value that may raise Missing."""

    def register(func: FactFunc) -> FactFunc:
        if name in FACTS:
            raise ValueError(f"fact {name!r} registered twice")
        FACTS[name] = func
        return func

    return register


@dataclass(frozen=True)
class CheckSpec:
    """A registered check: identity, catalogue data and the function that judges."""

    id: str
    title: str
    page: str
    facts: tuple[str, ...]
    optional: tuple[str, ...]
    func: Callable[..., Verdict]

    @property
    def section(self) -> str:
        return PAGES[self.page].section

    @property
    def doc(self) -> str:
        return inspect.cleandoc(self.func.__doc__ or "")

    @property
    def detects(self) -> str:
        """First line of the docstring: the failure the check detects."""
        return self.doc.splitlines()[0] if self.doc else ""

    @property
    def url(self) -> str:
        return page_url(self.page)


CHECKS: dict[str, CheckSpec] = {}


# Components a version boundary may belong to (the names the pages' `versions:` front matter uses too).
COMPONENTS = ("driver", "cuda", "toolkit", "device-plugin", "gfd", "gpu-operator", "mig-parted", "dcgm-exporter",
              "kubernetes", "containerd", "docker", "cri-o", "podman", "runc", "systemd", "kernel", "nccl",
              "container-selinux")


@dataclass(frozen=True)
class Boundary:
    """A version at which upstream behaviour changes and a check relies on it.

    `fact` is the id of the ledger entry (tests/data/facts/<page>.yaml) that holds the primary source; a test
    fails when the ledger lacks it, gives another version, or the page does not state it.
    """

    fact: str
    component: str
    version: str

    @property
    def parts(self) -> tuple[int, ...]:
        """The version as a tuple of ints, for comparisons.

        >>> Boundary("toolkit-jit-cdi-default", "toolkit", "1.18.0").parts
        (1, 18, 0)
        """
        return tuple(int(p) for p in self.version.split("."))


BOUNDARIES: dict[str, Boundary] = {}


def boundary(fact_id: str, component: str, version: str) -> tuple[int, ...]:
    """Declare a version boundary a check compares against; returns it as a tuple of ints."""
    if component not in COMPONENTS:
        raise ValueError(f"boundary {fact_id!r}: unknown component {component!r}")
    entry = Boundary(fact_id, component, version)
    if BOUNDARIES.setdefault(fact_id, entry) != entry:
        raise ValueError(f"boundary {fact_id!r} declared twice with different values")
    return entry.parts


def check(check_id: str, *, title: str, page: str, facts: Sequence[str] = (),
          optional: Sequence[str] = ()) -> Callable[[Callable[..., Verdict]], Callable[..., Verdict]]:
    """Register a check. Its parameters receive `facts` then `optional` (None when missing)."""

    def register(func: Callable[..., Verdict]) -> Callable[..., Verdict]:
        if check_id in CHECKS:
            raise ValueError(f"check {check_id!r} registered twice")
        if page not in PAGES:
            raise ValueError(f"check {check_id!r} names unknown page {page!r}")
        if not (func.__doc__ or "").strip():
            raise ValueError(f"check {check_id!r} needs a docstring: its first line is the catalogue entry")
        CHECKS[check_id] = CheckSpec(check_id, title, page, tuple(facts), tuple(optional), func)
        return func

    return register


def load_checks() -> dict[str, CheckSpec]:
    """Import every check module once, filling the registry; returns it."""
    import gpu_runbook.checks  # noqa: F401  (the import registers the checks)

    return CHECKS


class _FactCache:
    def __init__(self, snapshot: Snapshot, strict: bool = False) -> None:
        self.snapshot = snapshot
        self.strict = strict
        self.values: dict[str, Any] = {}
        self.missing: dict[str, Missing] = {}

    def get(self, name: str) -> Any:
        if name in self.values:
            return self.values[name]
        if name in self.missing:
            raise self.missing[name]
        try:
            value = FACTS[name](self.snapshot)
        except Missing as exc:
            self.missing[name] = exc
            raise
        except Exception as exc:  # a bug in a fact: the checks that need it say so, the others still run
            if self.strict:
                raise
            self.missing[name] = Missing(f"fact {name!r} failed internally: {type(exc).__name__}: {exc}")
            raise self.missing[name] from None
        self.values[name] = value
        return value


def _finding(spec: CheckSpec, verdict: Verdict) -> Finding:
    page = verdict.page if verdict.page in PAGES else spec.page
    return Finding(
        check=spec.id,
        status=verdict.status,
        summary=verdict.summary,
        page=page,
        url=page_url(page, verdict.anchor),
        evidence=dict(verdict.evidence),
        fix=verdict.fix,
        title=spec.title,
    )


def run_check(spec: CheckSpec, cache: _FactCache, strict: bool = False) -> Finding:
    args: list[Any] = []
    try:
        for name in spec.facts:
            args.append(cache.get(name))
    except Missing as exc:
        status = Status.SKIP if exc.status == "skip" else Status.UNKNOWN
        return _finding(spec, Verdict(status, exc.reason, {"missing_fact": name}))
    for name in spec.optional:
        try:
            args.append(cache.get(name))
        except Missing:
            args.append(None)
    try:
        verdict = spec.func(*args)
    except Missing as exc:  # a check may discover mid-way that a fact is unusable
        status = Status.SKIP if exc.status == "skip" else Status.UNKNOWN
        verdict = Verdict(status, exc.reason)
    except Exception as exc:  # a bug in one check must not hide the others' findings at 3 a.m.
        if strict:
            raise
        verdict = Verdict(Status.UNKNOWN, f"check failed internally: {type(exc).__name__}: {exc}",
                          {"internal_error": True})
    return _finding(spec, verdict)


def run_checks(snapshot: Snapshot, only: Optional[Iterable[str]] = None, strict: bool = False) -> list[Finding]:
    """Run the registered checks (or `only` those ids) against a snapshot, in catalogue order."""
    specs = load_checks()
    wanted = list(only) if only else None
    if wanted is not None:
        unknown_ids = [w for w in wanted if w not in specs]
        if unknown_ids:
            raise KeyError(", ".join(unknown_ids))
    cache = _FactCache(snapshot, strict)
    order = list(PAGES)
    selected = [s for s in specs.values() if wanted is None or s.id in wanted]
    selected.sort(key=lambda s: order.index(s.page))
    return [run_check(spec, cache, strict) for spec in selected]

"""The fleet report: judge many nodes' snapshots one at a time and say, per finding, how many nodes and which.

`gpu-runbook report PATH...` takes snapshot files (`.json` or `.json.gz`) and directories of them, as a
DaemonSet running `gpu-runbook collect --redact -o /var/lib/gpu-runbook/$(NODE_NAME).json` leaves them.
Snapshots are streamed: each is read, judged and dropped, so memory holds the tallies (a few strings
per node and finding), never the snapshots. With several CPUs, worker processes judge in parallel.

A node is named after its file: `node-a.json.gz` is node `node-a`; in a directory the name is the path
below that directory (`rack1/node-a`), so nodes with redacted host names stay apart.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Optional

from gpu_runbook.findings import Status
from gpu_runbook.snapshot import MAX_SNAPSHOT_BYTES, SnapshotError, parse_snapshot

SUFFIXES = (".json.gz", ".json")
# Below this many files the workers cost more to start than they save.
PARALLEL_FROM = 64
PROBLEMS = (Status.FAIL, Status.UNKNOWN, Status.WARN)


class ReportInputError(ValueError):
    """A PATH argument that names nothing to judge; the message is one line."""


@dataclass
class NodeResult:
    """What the report keeps of one judged snapshot: its name, when it was collected, its problems."""

    node: str
    path: str
    collected_at: Optional[str] = None
    problems: list[tuple[str, str]] = field(default_factory=list)  # (check id, status value)
    error: Optional[str] = None  # the one-line reason the snapshot could not be judged

    def count(self, status: Status) -> int:
        return sum(1 for _, s in self.problems if s == status.value)


def _node_name(path: str, base: Optional[str]) -> str:
    name = os.path.relpath(path, base) if base else os.path.basename(path)
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def snapshot_paths(arguments: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(path, node name) for every snapshot file named or found below the directories, in sorted order;
    raises ReportInputError for an argument that does not exist."""
    for argument in arguments:
        if os.path.isdir(argument):
            for directory, subdirs, files in os.walk(argument):
                subdirs.sort()
                for name in sorted(files):
                    if name.endswith(SUFFIXES) and not name.startswith("."):
                        path = os.path.join(directory, name)
                        yield path, _node_name(path, argument)
        elif os.path.exists(argument) or os.path.islink(argument):
            yield argument, _node_name(argument, None)
        else:
            raise ReportInputError(f"{argument}: no such file or directory")


def _read(path: str) -> str:
    """The snapshot text of a .json or .json.gz file, or SnapshotError with a one-line reason."""
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                raw = handle.read(MAX_SNAPSHOT_BYTES + 1)
        else:
            with open(path, "rb") as handle:
                raw = handle.read(MAX_SNAPSHOT_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise SnapshotError(f"{path}: cannot read: {reason}") from None
    if len(raw) > MAX_SNAPSHOT_BYTES:
        raise SnapshotError(f"{path}: larger than {MAX_SNAPSHOT_BYTES} bytes; not a snapshot")
    return raw.decode("utf-8", errors="replace")


def judge_file(item: tuple[str, str]) -> NodeResult:
    """Read, parse and judge one snapshot file; never raises for what the file holds."""
    from gpu_runbook.registry import run_checks

    path, node = item
    try:
        snapshot = parse_snapshot(_read(path), path)
        findings = run_checks(snapshot)
    except SnapshotError as exc:
        return NodeResult(node, path, error=str(exc))
    except (RecursionError, MemoryError) as exc:
        return NodeResult(node, path, error=f"{path}: {type(exc).__name__}")
    collected = snapshot.data.get("collected_at")
    return NodeResult(node, path, collected if isinstance(collected, str) else None,
                      [(f.check, f.status.value) for f in findings if f.status in PROBLEMS])


def _workers(jobs: Optional[int]) -> int:
    if jobs:
        return max(1, jobs)
    try:
        return max(1, min(len(os.sched_getaffinity(0)), 8))
    except AttributeError:  # not Linux
        return max(1, min(os.cpu_count() or 1, 8))


def judge_all(items: Iterable[tuple[str, str]], jobs: Optional[int] = None) -> Iterator[NodeResult]:
    """Each snapshot's result, in input order; in worker processes when there are several CPUs and files."""
    from gpu_runbook.registry import load_checks

    load_checks()  # imported once before the workers fork, so each starts with the checks in memory
    iterator = iter(items)
    head = []
    for item in iterator:
        head.append(item)
        if len(head) >= PARALLEL_FROM:
            break
    workers = _workers(jobs)
    if workers == 1 or len(head) < PARALLEL_FROM:
        for item in head:
            yield judge_file(item)
        for item in iterator:
            yield judge_file(item)
        return
    import itertools
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with context.Pool(workers) as pool:
        # imap keeps input order; chunks amortise the pipe round trips. Only the small NodeResults
        # travel back, so the parent's memory does not grow with the snapshots' size.
        yield from pool.imap(judge_file, itertools.chain(head, iterator), chunksize=8)


def _rank(result: NodeResult) -> tuple[int, int, int]:
    return (result.count(Status.FAIL), result.count(Status.UNKNOWN), result.count(Status.WARN))


@dataclass
class FleetReport:
    """The tallies: per (check, status) the nodes it was seen on; per node its counts; the unreadable files."""

    judged: int = 0
    nodes: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    seen: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    oldest: Optional[str] = None
    newest: Optional[str] = None

    def add(self, result: NodeResult) -> None:
        if result.error is not None:
            self.unreadable.append((result.path, result.error))
            return
        self.judged += 1
        name = result.node
        if name in self.nodes:  # the same node name twice (two directories): keep both apart
            name = result.path
        self.nodes[name] = _rank(result)
        for check, status in result.problems:
            self.seen.setdefault((check, status), []).append(name)
        if result.collected_at:
            self.oldest = min(self.oldest or result.collected_at, result.collected_at)
            self.newest = max(self.newest or result.collected_at, result.collected_at)

    def worst_first(self, names: Iterable[str]) -> list[str]:
        return sorted(names, key=lambda n: (tuple(-c for c in self.nodes[n]), n))

    def rows(self) -> list[dict[str, Any]]:
        """One row per (check, status) seen, worst status first, then by how many nodes."""
        from gpu_runbook.registry import load_checks

        specs = load_checks()
        order = {s.value: s.rank for s in Status}
        rows = []
        for (check, status), names in self.seen.items():
            spec = specs.get(check)
            rows.append({"check": check, "status": status, "count": len(names),
                         "title": spec.title if spec else "", "url": spec.url if spec else "",
                         "nodes": self.worst_first(names)})
        rows.sort(key=lambda r: (-order[r["status"]], -r["count"], r["check"]))
        return rows

    def worst_nodes(self, limit: int) -> list[dict[str, Any]]:
        problem = [n for n, counts in self.nodes.items() if any(counts)]
        return [{"node": n, "fail": self.nodes[n][0], "unknown": self.nodes[n][1], "warn": self.nodes[n][2]}
                for n in self.worst_first(problem)[:limit]]

    def healthy(self) -> int:
        return sum(1 for counts in self.nodes.values() if not counts[0] and not counts[1])

    def exit_code(self) -> int:
        """As `check`: 1 when a check failed on some node, 2 when one could not judge, a file could not
        be read or nothing was judged, else 0."""
        statuses = {status for _, status in self.seen}
        if Status.FAIL.value in statuses:
            return 1
        if Status.UNKNOWN.value in statuses or self.unreadable or not self.judged:
            return 2
        return 0


def build_report(arguments: Iterable[str], jobs: Optional[int] = None) -> FleetReport:
    """Judge every snapshot under the arguments; raises ReportInputError for a missing argument (before
    any work, so a typo costs nothing)."""
    arguments = list(arguments)
    for argument in arguments:
        if not (os.path.exists(argument) or os.path.islink(argument)):
            raise ReportInputError(f"{argument}: no such file or directory")
    report = FleetReport()
    for result in judge_all(snapshot_paths(arguments), jobs):
        report.add(result)
    return report

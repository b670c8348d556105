"""The doctor's one entry point, shared by the CLI and the notebooks: snapshot or host in, findings out."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Callable, Optional

from gpu_runbook.findings import Finding
from gpu_runbook.probes.plan import DEFAULT_DEADLINE_S
from gpu_runbook.registry import load_checks, run_checks
from gpu_runbook.snapshot import Snapshot, SnapshotError, load_snapshot


class DoctorError(ValueError):
    """Input the doctor cannot use (bad snapshot, unknown check id); the message is one line."""


def parse_only(only: Optional[object]) -> Optional[list[str]]:
    """Accept "a,b", ["a", "b"] or None; reject ids that are not in the catalogue."""
    if only is None or only in ("", []):
        return None
    items = only.split(",") if isinstance(only, str) else list(only)  # type: ignore[call-overload]
    ids = [str(i).strip() for i in items if str(i).strip()]
    unknown_ids = [i for i in ids if i not in load_checks()]
    if unknown_ids:
        raise DoctorError(f"unknown check id(s): {', '.join(unknown_ids)} (see gpu-runbook list)")
    return ids or None


def obtain_snapshot(snapshot_path: Optional[str] = None, root: str = "/", live: Optional[bool] = None,
                    deadline: float = DEFAULT_DEADLINE_S) -> tuple[Snapshot, str]:
    """Load a recorded snapshot, or collect one from the host (under root); returns it and its source."""
    if snapshot_path:
        try:
            return load_snapshot(snapshot_path), snapshot_path
        except SnapshotError as exc:
            raise DoctorError(str(exc)) from None
    from gpu_runbook.probes.collect import collect

    source = "live host" if root in ("", "/") else f"root {root}"
    return Snapshot(collect(root=root, deadline=deadline, live=live)), source


def judge(snapshot_path: Optional[str] = None, root: str = "/", only: Optional[object] = None,
          live: Optional[bool] = None, deadline: float = DEFAULT_DEADLINE_S, *,
          redact: Optional[Callable[[dict[str, Any]], dict[str, Any]]] = None,
          details: Optional[dict[str, Any]] = None) -> tuple[list[Finding], str]:
    """Findings for a snapshot file or the host, and a description of where the facts came from.

    `redact` rewrites the snapshot before the checks see it, so evidence and summaries carry only
    its placeholders. `details`, when given, receives what a report's header shows: the snapshot's
    host name, collection time and the version of the tool that collected it.
    """
    ids: Optional[Sequence[str]] = parse_only(only)
    preload = None
    if not snapshot_path:
        import gpu_runbook.probes.collect  # noqa: F401  (imported first: the two threads import disjoint modules)

        # The checks' modules are imported while the probes wait on their children and commands: on a
        # live host that wait is most of the run, and the import is CPU work that fits into it.
        preload = threading.Thread(target=load_checks, name="gpu-runbook-load-checks", daemon=True)
        preload.start()
    snapshot, source = obtain_snapshot(snapshot_path, root, live, deadline)
    if preload is not None:
        preload.join()
    if redact is not None:
        snapshot = Snapshot(redact(snapshot.data))
    if details is not None:
        details.update(snapshot_details(snapshot.data))
    return run_checks(snapshot, ids), source


def snapshot_details(data: dict[str, Any]) -> dict[str, str]:
    """Host name, collection time and collecting tool of a snapshot (empty strings where absent)."""
    host = data.get("host") if isinstance(data.get("host"), dict) else {}
    tool = data.get("tool") if isinstance(data.get("tool"), dict) else {}
    from gpu_runbook.engines import engine_line, engines_summary

    # One line per container engine (kind, user, runtimes, runtime mode, config), as collect recorded them
    # or, for a snapshot without the section, as the same discovery finds them now.
    engines = data.get("engines") if isinstance(data.get("engines"), dict) else {}
    if not any(not k.startswith("!") for k in engines):
        engines = engines_summary(data)
    lines = [engine_line(k, v) for k, v in sorted(engines.items()) if not k.startswith("!") and isinstance(v, dict)]
    return {"host": str(host.get("hostname") or ""), "collected_at": str(data.get("collected_at") or ""),
            "collected_by": f"{tool.get('name', '')} {tool.get('version', '')}".strip(),
            "engines": "\n".join(lines)}

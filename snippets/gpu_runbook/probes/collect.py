"""Fill one snapshot from the host: files, paths, directories, commands and NVML, within one deadline."""

from __future__ import annotations

import datetime
import os
import platform
import time
from typing import Any, Optional

from gpu_runbook import __version__
from gpu_runbook.probes import plan
from gpu_runbook.probes.commands import run_command
from gpu_runbook.probes.devopen import probe_open_tests
from gpu_runbook.probes.host import expand, list_dir, read_file, stat_path
from gpu_runbook.probes.nvml import probe_nvml_finish, probe_nvml_start
from gpu_runbook.snapshot import SCHEMA_VERSION

# At most this much of the deadline is kept back for killing hung probes and printing the report.
KILL_RESERVE_S = 1.0


def _env_facts(environ: dict[str, str]) -> dict[str, str]:
    wanted: dict[str, str] = {}
    for name, value in environ.items():
        for allowed in plan.ENV_NAMES:
            if name == allowed or (allowed.endswith("_") and name.startswith(allowed)):
                wanted[name] = value
    return dict(sorted(wanted.items()))


def _record_unlistable(root: str, pattern: str, facts: dict[str, Any]) -> None:
    """A glob that matched nothing because its directory cannot be listed (EACCES as non-root) is a
    fact too: record it under the pattern, so the report says what it could not see instead of
    silently seeing nothing."""
    if not any(ch in pattern for ch in "*?["):
        return
    fixed = []
    for part in pattern.split("/"):
        if any(ch in part for ch in "*?["):
            break
        fixed.append(part)
    directory = "/".join(fixed) or "/"
    listing = list_dir(root, directory, max_entries=1)
    if listing.get("error") not in (None, "ENOENT", "ENOTDIR"):
        facts[pattern] = {"error": listing["error"],
                          "detail": f"cannot list {directory}: {listing.get('detail', '')}".rstrip(": ")}


def _host_facts(root: str) -> dict[str, Any]:
    uname = os.uname()
    facts: dict[str, Any] = {
        "root": root,
        "machine": uname.machine,
        "python": platform.python_version(),
        "euid": os.geteuid(),
        "egid": os.getegid(),
        "groups": sorted(os.getgroups()),
    }
    if root in ("", "/"):
        facts["hostname"] = uname.nodename
        facts["kernel_release"] = uname.release
    return facts


def collect(root: str = "/", deadline: float = plan.DEFAULT_DEADLINE_S,
            live: Optional[bool] = None, environ: Optional[dict[str, str]] = None) -> dict[str, Any]:
    """Collect a snapshot dict. Never raises for anything the host does.

    `live` runs commands and NVML; by default only when root is "/", since under another root
    they would describe this machine, not the mounted one.
    """
    started = time.monotonic()
    # Keep part of the budget back for killing what hangs and writing the report, so that the whole
    # `gpu-runbook check` ends within `deadline` even when every command and NVML hang.
    stop_at = started + deadline - min(KILL_RESERVE_S, deadline / 10)
    env = dict(os.environ if environ is None else environ)
    root = os.path.abspath(root) if root not in ("", "/") else "/"
    if live is None:
        live = root == "/"
    notes = []

    nvml_proc = None
    if live:
        try:
            nvml_proc = probe_nvml_start(env)
        except OSError as exc:
            notes.append(f"NVML probe could not start: {exc}")

    files: dict[str, Any] = {}
    for pattern in plan.FILES:
        matched = expand(root, pattern)
        for path in matched:
            files[path] = read_file(root, path, plan.MAX_FILE_BYTES)
        if not matched:
            _record_unlistable(root, pattern, files)
    paths: dict[str, Any] = {}
    for pattern in plan.PATHS:
        matched = expand(root, pattern)
        for path in matched:
            paths[path] = stat_path(root, path)
        if not matched:
            _record_unlistable(root, pattern, paths)
    dirs = {path: list_dir(root, path) for path in plan.DIRS}

    commands: dict[str, Any] = {}
    nvml: dict[str, Any]
    opens: dict[str, Any]
    if live:
        hung: set[str] = set()
        for name, command in plan.COMMANDS.items():
            if command.argv[0] in hung:
                # A tool that hung once hangs again (and one stuck in the kernel cannot be killed):
                # starting another copy would only add to the pile on a sick host.
                commands[name] = {"argv": list(command.argv), "error": "skipped",
                                  "detail": f"{command.argv[0]} already hung in this run; not started again"}
                continue
            remaining = stop_at - time.monotonic()
            commands[name] = run_command(command.argv, min(command.timeout, remaining), env)
            if commands[name].get("error") == "timeout":
                hung.add(command.argv[0])
        # Only at root "/": under --root the nodes opened would be this machine's, not the host's.
        opens = (probe_open_tests(min(plan.OPEN_TEST_TIMEOUT_S, stop_at - time.monotonic()), env)
                 if root == "/" else {"skipped": f"root is {root}"})
        if nvml_proc is not None:
            remaining = min(plan.NVML_TIMEOUT_S, stop_at - time.monotonic())
            nvml = probe_nvml_finish(nvml_proc, remaining, started)
        else:
            nvml = {"error": {"name": "not-started", "message": "; ".join(notes)}}
    else:
        reason = f"root is {root}: commands and NVML would describe this machine, not the one under the root"
        nvml = {"skipped": reason}
        opens = {"skipped": reason}
        notes.append(reason)

    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "gpu-runbook", "version": __version__},
        "collected_at": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "host": _host_facts(root),
        "files": files,
        "paths": paths,
        "dirs": dirs,
        "commands": commands,
        "nvml": nvml,
        "opens": opens,
        "env": _env_facts(env),
        "probe": {
            "deadline_seconds": deadline,
            "elapsed_seconds": round(time.monotonic() - started, 3),
            "live": live,
            "notes": notes,
        },
    }

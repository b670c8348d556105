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
from gpu_runbook.probes.host import expand, list_dir, read_file, stat_path
from gpu_runbook.probes.nvml import probe_nvml_finish, probe_nvml_start
from gpu_runbook.snapshot import SCHEMA_VERSION


def _env_facts(environ: dict[str, str]) -> dict[str, str]:
    wanted: dict[str, str] = {}
    for name, value in environ.items():
        for allowed in plan.ENV_NAMES:
            if name == allowed or (allowed.endswith("_") and name.startswith(allowed)):
                wanted[name] = value
    return dict(sorted(wanted.items()))


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
    stop_at = started + deadline
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
        for path in expand(root, pattern):
            files[path] = read_file(root, path, plan.MAX_FILE_BYTES)
    paths: dict[str, Any] = {}
    for pattern in plan.PATHS:
        for path in expand(root, pattern):
            paths[path] = stat_path(root, path)
    dirs = {path: list_dir(root, path) for path in plan.DIRS}

    commands: dict[str, Any] = {}
    nvml: dict[str, Any]
    if live:
        for name, command in plan.COMMANDS.items():
            remaining = stop_at - time.monotonic()
            commands[name] = run_command(command.argv, min(command.timeout, remaining), env)
        if nvml_proc is not None:
            remaining = min(plan.NVML_TIMEOUT_S, stop_at - time.monotonic())
            nvml = probe_nvml_finish(nvml_proc, remaining)
        else:
            nvml = {"error": {"name": "not-started", "message": "; ".join(notes)}}
    else:
        reason = f"root is {root}: commands and NVML would describe this machine, not the one under the root"
        nvml = {"skipped": reason}
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
        "env": _env_facts(env),
        "probe": {
            "deadline_seconds": deadline,
            "elapsed_seconds": round(time.monotonic() - started, 3),
            "live": live,
            "notes": notes,
        },
    }

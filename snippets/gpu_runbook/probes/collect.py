"""Fill one snapshot from the host: files, paths, directories, commands and NVML, within one deadline."""

from __future__ import annotations

import datetime
import glob
import os
import platform
import shutil
import threading
import time
from typing import Any, Optional

from gpu_runbook import __version__
from gpu_runbook.engines import engines_summary
from gpu_runbook.probes import plan
from gpu_runbook.probes.commands import KILL_GRACE_S, run_command
from gpu_runbook.probes.devopen import finish_open_tests, start_open_tests
from gpu_runbook.probes.engines import probe_users
from gpu_runbook.probes.host import expand, list_dir, read_file, read_kernel_config, stat_path
from gpu_runbook.probes.nvml import probe_nvml_finish, probe_nvml_start
from gpu_runbook.probes.pci import probe_pci
from gpu_runbook.snapshot import SCHEMA_VERSION

# At most this much of the deadline is kept back for killing hung probes and printing the report.
KILL_RESERVE_S = 1.5
# Time the engines summary needs (importing the checks' runtime-mode rules); skipped when less is left.
ENGINES_SUMMARY_S = 2.0
# How long the live probes wait for /dev to be recorded first (it takes milliseconds).
DEV_WAIT_S = 1.0


def _env_facts(environ: dict[str, str]) -> dict[str, str]:
    wanted: dict[str, str] = {}
    for name, value in environ.items():
        for allowed in plan.ENV_NAMES:
            if name == allowed or (allowed.endswith("_") and name.startswith(allowed)):
                wanted[name] = value
    return dict(sorted(wanted.items()))


def _unlistable(root: str, pattern: str) -> Optional[dict[str, Any]]:
    """A glob that matched nothing because its directory cannot be listed (EACCES as non-root) is a
    fact too: recorded under the pattern, so the report says what it could not see instead of
    silently seeing nothing."""
    if not any(ch in pattern for ch in "*?["):
        return None
    fixed = []
    for part in pattern.split("/"):
        if any(ch in part for ch in "*?["):
            break
        fixed.append(part)
    directory = "/".join(fixed) or "/"
    listing = list_dir(root, directory, max_entries=1)
    if listing.get("error") not in (None, "ENOENT", "ENOTDIR"):
        return {"error": listing["error"],
                "detail": f"cannot list {directory}: {listing.get('detail', '')}".rstrip(": ")}
    return None


class HostReader(threading.Thread):
    """Reads the plan's files, paths and directories in a daemon thread.

    On a hung GPU, reading one of the driver's /proc files can block inside the kernel, and Python
    cannot interrupt a read. The collection waits for this thread only until the deadline: what was
    read by then is kept, the path it is stuck on is recorded as a timeout (itself a sign of a hung
    driver), and the rest is simply not in the snapshot. Commands and NVML run meanwhile.
    """

    def __init__(self, root: str, extra_paths: tuple[str, ...] = (), hold_after_dev: bool = False) -> None:
        super().__init__(name="gpu-runbook-host-reader", daemon=True)
        self.root = root
        self.extra_paths = extra_paths
        # Set once /dev is recorded: the live probes wait for it (see collect()).
        self.dev_recorded = threading.Event()
        # With hold_after_dev, the reader waits after /dev (at most DEV_WAIT_S) until this is set: the
        # parent starts its child processes meanwhile, which takes tens of milliseconds instead of one
        # when this thread competes for the interpreter lock.
        self.go_on = threading.Event()
        if not hold_after_dev:
            self.go_on.set()
        self.tables: dict[str, dict[str, Any]] = {"files": {}, "paths": {}, "dirs": {}, "pci": {}, "users": {}}
        self.current: Optional[tuple[str, str]] = None
        self._lock = threading.Lock()
        self._abandoned = False

    def _record(self, table: str, key: str, fact: Any) -> None:
        with self._lock:
            if not self._abandoned:
                self.tables[table][key] = fact

    def _each(self, table: str, patterns: tuple[str, ...], probe: Any) -> None:
        for pattern in patterns:
            self.current = (table, pattern)
            matched = expand(self.root, pattern)
            for path in matched:
                self.current = (table, path)
                self._record(table, path, probe(path))
            if not matched:
                missing = _unlistable(self.root, pattern)
                if missing is not None:
                    self._record(table, pattern, missing)

    def run(self) -> None:
        try:
            self._each("paths", plan.DEV_PATHS, lambda p: stat_path(self.root, p))
            self._list(plan.DEV_DIRS)
        finally:
            self.dev_recorded.set()
        self.go_on.wait(DEV_WAIT_S)
        self._each("files", plan.FILES, lambda p: read_file(self.root, p, plan.MAX_FILE_BYTES))
        self._each("files", plan.KERNEL_CONFIG_FILES,
                   lambda p: read_kernel_config(self.root, p, plan.KERNEL_CONFIG_OPTIONS, plan.KERNEL_CONFIG_MAX_BYTES))
        rest = tuple(p for p in plan.PATHS + self.extra_paths if p not in plan.DEV_PATHS)
        self._each("paths", rest, lambda p: stat_path(self.root, p))
        self._list(tuple(p for p in plan.DIRS if p not in plan.DEV_DIRS))
        # Each user's own engine configuration (rootless Docker, Podman, user units), bounded by the plan.
        probe_users(self.root, self._record, lambda path: setattr(self, "current", ("paths", path)))
        # Last: config-space reads of a bridge behind a sick device are the likeliest to be slow.
        probe_pci(self.root, lambda key, value: self._record("pci", key, value),
                  lambda path: setattr(self, "current", ("pci", path)))
        self.current = None

    def _list(self, directories: tuple[str, ...]) -> None:
        for path in directories:
            self.current = ("dirs", path)
            self._record("dirs", path, list_dir(self.root, path))

    def finish(self, timeout: float) -> tuple[dict[str, dict[str, Any]], Optional[str]]:
        """The tables read so far and, if the thread is stuck, the path it is stuck on."""
        self.join(max(timeout, 0.0))
        with self._lock:
            self._abandoned = self.is_alive()
            tables = {name: dict(table) for name, table in self.tables.items()}
            stuck = self.current if self._abandoned else None
        if stuck is None:
            return tables, None
        table, path = stuck
        tables[table][path] = {"error": "timeout",
                               "detail": "the read did not return before the collection deadline; abandoned"}
        return tables, path


def _dev_changes(root: str, before: dict[str, Any]) -> dict[str, list[str]]:
    """NVIDIA device nodes that appeared or vanished since /dev was first recorded (lstat on devtmpfs or
    a container's tmpfs /dev does not block, so this runs without the reader's deadline guard)."""
    after = {path: stat_path(root, path) for pattern in plan.DEV_PATHS for path in expand(root, pattern)}

    def present(fact: Any) -> bool:
        return isinstance(fact, dict) and fact.get("kind") is not None
    appeared = sorted(p for p, f in after.items() if present(f) and not present(before.get(p)))
    vanished = sorted(p for p, f in before.items()
                      if p.startswith("/dev/") and present(f) and not present(after.get(p)))
    return {"appeared": appeared, "vanished": vanished}


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


def driver_root_env(env: dict[str, str], roots: tuple[str, ...] = plan.DRIVER_ROOTS
                    ) -> tuple[dict[str, str], Optional[str]]:
    """The environment for live probes, extended with a containerised driver's root when the host
    has no nvidia-smi of its own (GPU Operator nodes); returns it and the root used, if any."""
    if shutil.which("nvidia-smi", path=env.get("PATH", os.defpath)):
        return env, None
    for driver_root in roots:
        bins = [os.path.join(driver_root, d) for d in plan.DRIVER_ROOT_BIN]
        if not any(os.path.isfile(os.path.join(b, "nvidia-smi")) for b in bins):
            continue
        libs = [os.path.join(driver_root, d) for d in plan.DRIVER_ROOT_LIBS
                if os.path.isdir(os.path.join(driver_root, d))]
        extended = dict(env)
        extended["PATH"] = os.pathsep.join([env.get("PATH", os.defpath), *bins])
        extended["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (env.get("LD_LIBRARY_PATH"), *libs) if p)
        return extended, driver_root
    return env, None


def _run_tool(names: list[str], stop_at: float, env: dict[str, str], out: dict[str, Any]) -> None:
    """One tool's commands in plan order. A tool that hung once hangs again (and one stuck in the kernel
    cannot be killed): starting another copy would only add to the pile on a sick host."""
    hung = False
    for name in names:
        command = plan.COMMANDS[name]
        if hung:
            out[name] = {"argv": list(command.argv), "error": "skipped",
                         "detail": f"{command.argv[0]} already hung in this run; not started again"}
            continue
        if command.only_where and not any(glob.glob(pattern) for pattern in command.only_where):
            out[name] = {"argv": list(command.argv), "error": "not-applicable",
                         "detail": f"not run: none of {', '.join(command.only_where)} exists here"}
            continue
        out[name] = run_command(command.argv, min(command.timeout, stop_at - time.monotonic()), env)
        hung = out[name].get("error") == "timeout"


def toolkit_root_env(env: dict[str, str], roots: tuple[str, ...] = plan.TOOLKIT_ROOTS
                     ) -> tuple[dict[str, str], Optional[str]]:
    """The environment for the TOOLKIT_ROOT_PROGRAMS: PATH extended with the GPU Operator's toolkit directory
    when the host has no nvidia-ctk of its own; returns it and the directory used, if any."""
    if shutil.which("nvidia-ctk", path=env.get("PATH", os.defpath)):
        return env, None
    for toolkit_root in roots:
        if os.path.isfile(os.path.join(toolkit_root, "nvidia-ctk")):
            return dict(env, PATH=os.pathsep.join([env.get("PATH", os.defpath), toolkit_root])), toolkit_root
    return env, None


def run_commands(stop_at: float, env: dict[str, str],
                 tool_envs: Optional[dict[str, dict[str, str]]] = None) -> dict[str, Any]:
    """Run the plan's commands, one thread per tool: different tools at once, one tool's commands one
    after another (so a hung tool is never started twice). Returns the facts in plan order.

    Each command carries its own timeout and is killed with its group, so every thread ends by
    `stop_at` plus the kill grace; a thread that still has not (its Popen stuck) leaves "deadline" facts.
    """
    by_tool: dict[str, list[str]] = {}
    for name, command in plan.COMMANDS.items():
        by_tool.setdefault(command.argv[0], []).append(name)
    out: dict[str, Any] = {}
    threads = [threading.Thread(target=_run_tool, args=(names, stop_at, (tool_envs or {}).get(tool, env), out),
                                daemon=True,
                                name=f"gpu-runbook-{tool}") for tool, names in by_tool.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(stop_at - time.monotonic(), 0.0) + 2 * KILL_GRACE_S)
    facts: dict[str, Any] = {}
    for name, command in plan.COMMANDS.items():
        # dict.get is atomic under the GIL: a late thread's write is simply not seen.
        facts[name] = out.get(name) or {"argv": list(command.argv), "error": "deadline",
                                        "detail": "did not finish before the collection deadline"}
    return facts


def collect(root: str = "/", deadline: float = plan.DEFAULT_DEADLINE_S,
            live: Optional[bool] = None, environ: Optional[dict[str, str]] = None,
            driver_roots: tuple[str, ...] = plan.DRIVER_ROOTS) -> dict[str, Any]:
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
    # The environment recorded in the snapshot is the caller's; probes may get a driver root added.
    probe_env, driver_root = driver_root_env(env, driver_roots) if live and root == "/" else (env, None)
    if driver_root:
        notes.append(f"no nvidia-smi on PATH: using the containerised driver at {driver_root} for tools and NVML")
    toolkit_env, toolkit_root = toolkit_root_env(probe_env) if live and root == "/" else (probe_env, None)
    if toolkit_root:
        notes.append(f"no nvidia-ctk on PATH: running the GPU Operator's at {toolkit_root}")

    # Paths named by this process's environment describe this machine only: not under another root.
    reader = HostReader(root, plan.env_paths(env) if root == "/" else (), hold_after_dev=live)
    reader.start()
    nvml_proc = None
    opens_proc = None
    opens_started = time.monotonic()
    if live:
        # /dev first, as found: running as root, NVML and nvidia-smi create missing /dev/nvidia* nodes
        # themselves (the driver's ModifyDeviceFiles behaviour), which would hide the very fault.
        reader.dev_recorded.wait(min(DEV_WAIT_S, max(stop_at - time.monotonic(), 0.0)))
        try:
            nvml_proc = probe_nvml_start(probe_env)
        except OSError as exc:
            notes.append(f"NVML probe could not start: {exc}")
        # Only at root "/": under --root the nodes opened would be this machine's, not the host's.
        # Started beside the NVML child, so that the two Python start-ups overlap the commands.
        opens_started = time.monotonic()
        opens_proc = start_open_tests(probe_env) if root == "/" else None
    reader.go_on.set()

    commands: dict[str, Any] = {}
    nvml: dict[str, Any]
    opens: dict[str, Any]
    if live:
        commands = run_commands(stop_at, probe_env, {p: toolkit_env for p in plan.TOOLKIT_ROOT_PROGRAMS})
        if root != "/":
            opens = {"skipped": f"root is {root}"}
        else:
            opens_left = min(opens_started + plan.OPEN_TEST_TIMEOUT_S, stop_at) - time.monotonic()
            opens = finish_open_tests(opens_proc, opens_left)
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
    # The reader normally finished long ago; a second of grace even past the deadline's reserve.
    tables, blocked_on = reader.finish(max(stop_at - time.monotonic(), 0.5))
    if blocked_on is not None:
        notes.append(f"reading {blocked_on} did not return before the deadline; abandoned")
    dev_changes = None
    if live and root == "/" and reader.dev_recorded.is_set():
        dev_changes = _dev_changes(root, tables["paths"])
        if dev_changes["appeared"] or dev_changes["vanished"]:
            notes.append("/dev/nvidia* changed while the probes ran (as root, NVML and nvidia-smi create "
                         f"missing nodes): appeared {dev_changes['appeared']}, vanished {dev_changes['vanished']}")

    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "gpu-runbook", "version": __version__},
        "collected_at": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "host": _host_facts(root),
        "files": tables["files"],
        "paths": tables["paths"],
        "dirs": tables["dirs"],
        "pci": tables["pci"],
        "users": tables["users"],
        # The engine summary loads the checks' mode rules (about a second): only while the deadline allows.
        "engines": engines_summary(dict(tables, commands=commands)) if stop_at - time.monotonic() > ENGINES_SUMMARY_S
        else {"!skipped": {"detail": "no time left before the deadline; check derives the engines itself"}},
        "commands": commands,
        "nvml": nvml,
        "opens": opens,
        "env": _env_facts(env),
        "probe": {
            "deadline_seconds": deadline,
            "elapsed_seconds": round(time.monotonic() - started, 3),
            "live": live,
            "blocked_on": blocked_on,
            "driver_root": driver_root,
            "toolkit_root": toolkit_root,
            "dev_changes": dev_changes,
            "notes": notes,
        },
    }

"""Checks that judge each container engine as the user it runs as: rootless and rootful engines side by side."""

from __future__ import annotations

from typing import Any, Optional

from gpu_runbook.checks.containers import (
    DEBUG_LOG_NONFATAL,
    _legacy_scope,
    _unaliased,
    effective_cdi_devices,
    runtime_mode,
    toolkit_version,
)
from gpu_runbook.engines import TOOLKIT_CONFIG, discover, is_tegra, toolkit_doc
from gpu_runbook.facts import OPERATOR_TOOLKIT_CONFIG
from gpu_runbook.findings import Verdict, fail, ok, skip, unknown, warn
from gpu_runbook.registry import boundary, check, fact
from gpu_runbook.snapshot import Snapshot

# Before 1.18.0 the hook read only its -config flag, /run/nvidia/driver/etc/... and /etc; since 1.18.0 it
# resolves NVIDIA_CTK_CONFIG_FILE_PATH and XDG_CONFIG_HOME like the runtime, in the environment runc passes on.
HOOK_CONFIG_FROM_ENV = boundary("rdl.hook-config-from-env", "toolkit", "1.18.0")


def resolved_mode(snapshot: Snapshot, engine: dict[str, Any]) -> tuple[Optional[str], bool, str]:
    """(mode, set explicitly, why) from the config.toml the engine's runtime resolves, the toolkit version,
    and Tegra: `auto` resolves to csv on a Tegra host without NVML (go-nvlib ResolvePlatform, used by
    internal/info/auto.go)."""
    from gpu_runbook.checks.containers import toolkit_versions_fact

    doc = toolkit_doc(snapshot, engine.get("toolkit_config"))
    mode, explicit, why = runtime_mode({"doc": doc or {}}, toolkit_versions_fact(snapshot))
    nvml_libs = any("libnvidia-ml.so" in p and f.get("kind") for p, f in snapshot.paths_matching("/").items())
    if not explicit and is_tegra(snapshot) and not nvml_libs:
        return "csv", False, 'mode "auto" on a Tegra host without NVML resolves to csv'
    return mode, explicit, why


# --8<-- [start:engine-user-access]
def _can(stat: dict[str, Any], uid: int, gids: set[int], bits: int) -> Optional[bool]:
    """Whether permission bits (4 read, 2 write, 1 search) let this user in; None when the lstat is missing.

    >>> _can({"kind": "file", "mode": "0600", "uid": 0, "gid": 0}, 1000, {1000}, 4)
    False
    >>> _can({"kind": "char", "mode": "0660", "uid": 0, "gid": 44}, 1000, {1000, 44}, 6)
    True
    """
    if not stat.get("kind") or stat.get("kind") == "symlink":
        return None
    try:
        mode = int(str(stat.get("mode")), 8)
    except ValueError:
        return None
    if uid == 0:
        return True
    shift = 6 if stat.get("uid") == uid else 3 if stat.get("gid") in gids else 0
    return (mode >> shift) & bits == bits


def _shut_out(stats: dict[str, Any], path: str, uid: int, gids: set[int]) -> bool:
    """Whether the lstat facts show this user unable to read a CDI spec (the file, or its directory)."""
    stat = stats.get(path) or stats.get(_unaliased(path)) or {}
    directory = stats.get(_unaliased(path).rsplit("/", 1)[0]) or {}
    return _can(stat, uid, gids, 4) is False or (bool(directory) and _can(directory, uid, gids, 1) is False)


@fact("engines")
def engines_fact(snapshot: Snapshot) -> dict[str, dict[str, Any]]:
    """Every container engine found (units, sockets, configuration files), with its user, the config.toml
    and runtime mode its nvidia runtime resolves, the file the legacy hook reads, and the lstat facts
    (CDI specs, debug logs) its user's access is judged on."""
    from gpu_runbook.checks.containers import toolkit_versions_fact

    engines = discover(snapshot)
    hook_doc = toolkit_doc(snapshot, TOOLKIT_CONFIG)
    version = toolkit_version(toolkit_versions_fact(snapshot))
    hook_follows_env = version is not None and version >= HOOK_CONFIG_FROM_ENV
    cdi = {p: f for prefix in ("/etc/cdi", "/var/run/cdi", "/run/cdi")
           for p, f in snapshot.paths_matching(prefix).items()}
    for engine in engines.values():
        engine["mode"], engine["mode_explicit"], engine["mode_reason"] = resolved_mode(snapshot, engine)
        # The operator's wrappers point the runtime and its hook at the operator's config.toml (facts.py,
        # toolkit_config_path). Otherwise the hook inherits the engine's environment through runc (a hook
        # entry without env gets runc's; Docker's --gpus hook carries dockerd's): since 1.18.0 it then reads
        # the runtime's file; before (or with the version unknown) /etc only (NVIDIA/nvidia-container-toolkit#56).
        operator = engine["toolkit_config"] == OPERATOR_TOOLKIT_CONFIG
        same = operator or hook_follows_env
        engine["hook_config"] = engine["toolkit_config"] if same else TOOLKIT_CONFIG
        engine["hook_doc"] = toolkit_doc(snapshot, engine["toolkit_config"]) if same else hook_doc
        engine["runtime_doc"] = toolkit_doc(snapshot, engine["toolkit_config"])
        stats = dict(cdi)
        section = (engine["runtime_doc"] or {}).get("nvidia-container-runtime")
        debug = section.get("debug") if isinstance(section, dict) else None
        if isinstance(debug, str) and debug.startswith("/"):
            for path in (debug, debug.rsplit("/", 1)[0] or "/"):
                stats[path] = snapshot.path(path)
        engine["stats"] = stats
    return engines


def _who(engine_id: str, engine: dict[str, Any]) -> str:
    return f"{engine_id} ({'rootless, ' if engine['rootless'] else ''}user {engine['user']})"


@check("engine-user-access", title="Each engine's user can use the GPU", page="runtime-debug-logging",
       facts=("engines",), optional=("cdi_specs", "nvidia_nodes", "toolkit_versions"))
def engine_user_cannot_use_gpu(engines: dict[str, dict[str, Any]], specs: Optional[dict[str, dict[str, Any]]],
                               nodes: Optional[dict[str, dict[str, Any]]],
                               versions: Optional[dict[str, Optional[str]]]) -> Verdict:
    """An engine cannot give its containers the GPU as the user it runs as: `no-cgroups` wrong for it
    (true under a rootful engine, false under a rootless one, or one file serving both), a CDI spec its
    user cannot read, a debug log its user cannot create, or device nodes its user cannot open.

    ## Why it matters
    The doctor usually runs as root; a rootless Docker or Podman runs as a user. Before toolkit 1.18.0
    the legacy hook reads its -config file, else /run/nvidia/driver/etc/nvidia-container-runtime/config.toml
    or /etc/nvidia-container-runtime/config.toml, whatever XDG_CONFIG_HOME says, so a per-user config.toml
    reaches the runtime but not the hook; since 1.18.0 the hook resolves the file like the runtime, in the
    environment it inherits from the engine. A rootless engine reads CDI specs
    and opens /dev/nvidia* with its user's rights (`unresolvable CDI devices`, `Insufficient Permissions`).

    ## Evidence
    Engines found by unit, socket or configuration file, their users (uid, groups), the config.toml
    each resolves and its runtime mode, lstat of the CDI spec files, the debug log's directory and
    /dev/nvidia*.

    ## References
    NVIDIA/nvidia-container-toolkit internal/config/config.go (v1.18.0), api/config/v1/config.go (v1.20.0) and
    cmd/nvidia-container-runtime-hook/hook_config.go (v1.17.8, v1.18.0, v1.20.0); NVIDIA/nvidia-container-runtime#85;
    NVIDIA/nvidia-container-toolkit#56, #210; moby/moby#47676; containers/podman#17539.
    """
    if not engines:
        return skip("no container engine found (no unit, socket or configuration file)")
    evidence: dict[str, Any] = {eid: {"user": e["user"], "uid": e["uid"], "rootless": e["rootless"],
                                      "found_by": e["found_by"][:4], "toolkit_config": e["toolkit_config"],
                                      "mode": e.get("mode"), "mode_reason": e.get("mode_reason"),
                                      "runtimes": {n: r.get("file") for n, r in e["runtimes"].items()}}
                                for eid, e in sorted(engines.items())}
    problems: list[tuple[int, str, str, str, str]] = []  # (rank, summary, fix, page, anchor)
    unread_stats: list[str] = []  # CDI spec files whose owner and mode could not be examined
    notes: dict[str, list[str]] = {}  # per engine: what does not apply in its runtime mode, and why
    strong = {eid: e for eid, e in engines.items() if not e.get("weak")}
    rootless = sorted(eid for eid, e in strong.items() if e["rootless"])
    rootful = sorted(eid for eid, e in strong.items() if not e["rootless"])
    version = toolkit_version(versions)
    for eid, engine in sorted(strong.items()):
        hook = engine.get("hook_doc") or {}
        hook_path = engine.get("hook_config") or TOOLKIT_CONFIG
        cli = hook.get("nvidia-container-cli") if isinstance(hook.get("nvidia-container-cli"), dict) else {}
        no_cgroups = cli.get("no-cgroups") is True
        scope, scope_words = _legacy_scope(engine.get("mode"), engine.get("mode_explicit", False))
        if scope == "gpus-flag" and engine["kind"] != "docker":
            scope = "none"  # only Docker's --gpus still reaches the legacy hook when the runtime is in jit-cdi
        if scope == "none":
            notes.setdefault(eid, []).append(f"no-cgroups not read ({engine.get('mode')} mode)")
        own = engine.get("user_toolkit_config")
        if engine["rootless"] and not no_cgroups and scope != "none":
            note = ""
            if own and own != hook_path and own == engine.get("toolkit_config"):
                note = (f"; the runtime reads {own}, but the legacy hook of toolkit releases before 1.18.0 "
                        f"reads {hook_path} (NVIDIA/nvidia-container-toolkit#56)")
            elif own and own != hook_path:
                note = f"; {own} is unused: no XDG_CONFIG_HOME in the engine's units points at it"
            problems.append((3, f"{_who(eid, engine)}: no-cgroups is not true in {hook_path}, so "
                             "nvidia-container-cli tries to set device cgroup rules, which a rootless engine may not "
                             "(mount error: ... permission denied, or on cgroup v2 ... operation not permitted); "
                             f"{scope_words}{note}",
                             "Run the rootless engine's GPU containers through CDI (--device nvidia.com/gpu=all), "
                             "which never runs nvidia-container-cli; or, on a host with no rootful engine, set "
                             "no-cgroups = true in /etc/nvidia-container-runtime/config.toml.",
                             "runtime-debug-logging", "engine-users"))
        sharing = [r for r in rootless if (strong[r].get("hook_config") or TOOLKIT_CONFIG) == hook_path]
        if not engine["rootless"] and no_cgroups and scope != "none" and sharing:
            problems.append((2, f"{_who(eid, engine)} shares {hook_path} (no-cgroups = true, set for "
                             f"{', '.join(sharing)}): its GPU containers start without device cgroup rules and "
                             "lose the GPU (Failed to initialize NVML: Unknown Error); one file cannot serve both",
                             "Keep no-cgroups = false for the rootful engine and give the rootless one the GPU "
                             "through CDI (--device nvidia.com/gpu=all).", "nvml-unknown-error", "no-cgroups"))
        if not engine["rootless"]:
            continue
        gids = {engine.get("gid"), *(engine.get("groups") or [])} - {None}
        uid = engine["uid"]
        # CDI specs: the engine's own CDI support reads them as its user (moby#47676, podman#17539).
        stats = engine.get("stats", {})
        winners, _ = effective_cdi_devices(specs or {})
        # The CDI cache skips a spec it cannot read: the user resolves the name from the files it can read.
        readable_specs = {p: s for p, s in (specs or {}).items() if not _shut_out(stats, p, uid, gids)}
        own_winners, _ = effective_cdi_devices(readable_specs)
        for name, path in sorted(winners.items()):
            if not name.endswith("=all"):
                continue
            stat = stats.get(path) or {}
            if _can(stat, uid, gids, 4) is None and \
                    stat.get("error") not in (None, "ENOENT", "ENOTDIR", "not-collected"):
                unread_stats.append(path)
            if not _shut_out(stats, path, uid, gids):
                continue
            denied = (f"{_who(eid, engine)} cannot read {path} (mode {stat.get('mode')}, uid {stat.get('uid')}, "
                      f"gid {stat.get('gid')})")
            fix = (f"Make the spec world-readable (chmod 644 {path}), or give the engine a spec directory its user "
                   "can read.")
            if name in own_winners:
                problems.append((1, f"{denied}: --device {name} resolves from {own_winners[name]} instead (for "
                                 f"root {path} shadows it; it may be out of date)", fix, "cdi", "unresolvable"))
            else:
                problems.append((3, f"{denied}: --device {name} fails with unresolvable CDI devices {name}", fix,
                                 "cdi", "unresolvable"))
        # The runtime's debug log, as this user.
        runtime_doc = engine.get("runtime_doc") or {}
        section = runtime_doc.get("nvidia-container-runtime")
        debug = section.get("debug") if isinstance(section, dict) else None
        if isinstance(debug, str) and debug.startswith("/"):
            log, parent = engine.get("stats", {}).get(debug) or {}, engine.get("stats", {}).get(
                debug.rsplit("/", 1)[0] or "/") or {}
            creatable = _can(log, uid, gids, 2) if log.get("kind") else _can(parent, uid, gids, 3)
            if creatable is False:
                where = f"{engine['toolkit_config']} sets nvidia-container-runtime.debug = \"{debug}\""
                if version is not None and version < DEBUG_LOG_NONFATAL:
                    problems.append((3, f"{_who(eid, engine)}: {where}, which its user cannot create; toolkit "
                                     f"{'.'.join(map(str, version))} (before 1.13.2) fails every container start "
                                     "with \"error opening debug log file\"", "Point debug at a path the user owns "
                                     "or comment it out; upgrade the toolkit.", "runtime-debug-logging",
                                     "rootless-log"))
                else:
                    problems.append((1, f"{_who(eid, engine)}: {where}, which its user cannot create: no log is "
                                     "written (since toolkit 1.13.2 the runtime warns \"Failed to open log file\" "
                                     "and the container starts)", "Use a path the user can write (under $HOME or "
                                     "/tmp) or comment the line out.", "runtime-debug-logging", "rootless-log"))
        # Device nodes, opened by the container's processes as this user.
        shut = sorted(p for p, n in (nodes or {}).items() if n.get("kind") == "char"
                      and _can(n, uid, gids, 6) is False)
        if shut:
            problems.append((3, f"{_who(eid, engine)} cannot open {', '.join(shut[:3])} (mode "
                             f"{(nodes or {})[shut[0]].get('mode')}, gid {(nodes or {})[shut[0]].get('gid')}): "
                             "its containers get Failed to initialize NVML: Insufficient Permissions",
                             "Add the user to the nodes' group (and keep it in the container: --group-add keep-groups "
                             "with Podman), or use the driver's default 0666 modes.", "device-nodes", "permissions"))
    if rootless and rootful:
        evidence["mixed"] = {"rootful": rootful, "rootless": rootless}
    if problems:
        rank, summary, fix, page, anchor = max(problems, key=lambda p: p[0])
        more = f" (and {len(problems) - 1} more problem(s), see evidence)" if len(problems) > 1 else ""
        evidence["problems"] = [p[1] for p in problems]
        verdict = fail if rank >= 3 else warn
        return verdict(summary + more, fix, evidence, page=page, anchor=anchor)
    unread = sorted({p for p, spec in (specs or {}).items() if "error" in spec} | set(unread_stats))
    if rootless and unread:  # a spec that could not be read here may be the one a rootless user cannot read
        return unknown(f"the CDI specs {', '.join(unread[:3])} could not be read, so what "
                       f"{', '.join(rootless)} resolves cannot be judged", dict(evidence, unreadable=unread))
    shown = "; ".join(f"{_who(eid, e)}: mode {e.get('mode') or 'unknown'}"
                      + "".join(f", {n}" for n in notes.get(eid, [])) for eid, e in sorted(strong.items()))
    return ok(f"every engine's user can reach the GPU: {shown or 'only weak evidence of engines'}", evidence)
# --8<-- [end:engine-user-access]

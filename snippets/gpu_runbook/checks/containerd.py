"""Check of containerd's NVIDIA runtime entry: the plugin section it sits in and its runtime type.

`runtime-configured` (checks/containers.py) asks whether an engine registers the NVIDIA runtime at all. This
module looks inside containerd's entry: a runtime written under the version 2 key of a version 3 config, or an
entry without a runtime type, is present in the file and still unusable.
"""

from __future__ import annotations

from typing import Any, Optional

from gpu_runbook.engines import discover, strip_template
from gpu_runbook.findings import Verdict, fail, ok, skip, unknown, warn
from gpu_runbook.parsers.containerd import (
    CRI_PLUGIN_BY_VERSION,
    MISSING,
    config_version,
    misplaced,
    parse_containerd_version,
    reads_runtimes_from_new_key,
    runtime_entries,
)
from gpu_runbook.parsers.toolkit import parse_toml, version_tuple
from gpu_runbook.registry import boundary, check, fact
from gpu_runbook.snapshot import Missing, Snapshot

ROOT_CONFIG = "/etc/containerd/config.toml"
DROP_IN_DIRS = ("/etc/containerd/conf.d/", "/etc/containerd/config.d/")
# nvidia-ctk reads and writes version 3 configs from 1.17.4 (CHANGELOG "Add support for containerd version 3
# config"); 1.17.3 and earlier stop with "unsupported config version: 3".
CTK_READS_V3 = boundary("toolkit-containerd-v3-since", "toolkit", "1.17.4")
# From 1.20.0 nvidia-ctk sets runtime_type = "io.containerd.runc.v2" when the runc entry it copies has none
# (commit fcc99fd4, NVIDIA/nvidia-container-toolkit#1956).
CTK_FILLS_RUNTIME_TYPE = boundary("toolkit-runtime-type-default-since", "toolkit", "1.20.0")
# containerd 2.3.0 stops loading when an imported file declares a higher version than the root config (commit
# 21248d0); version 4 is new in 2.3, and earlier releases refuse any file above version 3.
DROP_IN_VERSION_CHECK = boundary("containerd-drop-in-version-check-since", "containerd", "2.3.0")
NEWEST_BEFORE_2_3 = 3
# containerd 2.3.0 migrates each version 3 file to version 4 as it loads it, and the CRI runtime plugin's
# migration copies that file's plugins."io.containerd.grpc.v1.cri".containerd keys (runtimes included) to the new
# key where the file has none of its own there (plugins/cri/runtime/plugin.go, configMigration); 2.0 to 2.2
# migrate once, on the merged configuration, and only below version 3.
MIGRATES_V3_FILES = boundary("containerd-migrates-v3-files-since", "containerd", "2.3.0")


def _is_nvidia(entry: dict[str, Any]) -> bool:
    return "nvidia" in entry["name"] or "nvidia" in str(entry.get("binary") or "")


@fact("containerd_version")
def containerd_version_fact(snapshot: Snapshot) -> tuple[int, ...]:
    """The release of the containerd on PATH (`containerd --version`): the host's own, not RKE2's or k3s's."""
    command = snapshot.command("containerd-version")
    version = parse_containerd_version(command.output) if command.ran and command.exit == 0 else None
    if version is None:
        raise Missing("containerd --version did not name a release", "skip")
    return version


def _engine_release(engine_id: str, config: dict[str, Any],
                    release: Optional[tuple[int, ...]]) -> Optional[tuple[int, ...]]:
    """The release known for one containerd: `containerd --version` names the one on PATH, which reads
    /etc/containerd; a root config of version 4 is itself proof of 2.3 or later, which alone reads it."""
    own = release if engine_id == "containerd" else None
    return own or (MIGRATES_V3_FILES if config.get("main_version") == 4 else None)


def _migrated_on_load(file_: dict[str, Any], release: Optional[tuple[int, ...]]) -> bool:
    """Whether containerd 2.3 or later reads this file's old-key runtimes anyway: the file declares version 3 or
    none (a drop-in), so it is migrated as it loads, and has no runtimes under the new key for the copy to skip."""
    declared = file_.get("declared")
    return (release is not None and release >= MIGRATES_V3_FILES and (declared is None or declared <= 3)
            and not any(e["plugin"] == CRI_PLUGIN_BY_VERSION[3] for e in file_["entries"]))


@fact("containerd_entries")
def containerd_entries_fact(snapshot: Snapshot) -> dict[str, Any]:
    """Each containerd the host runs (engines.discover: /etc/containerd, RKE2's and k3s's own), with its config
    files in the order it reads them, each file's version and runtime entries."""
    found: dict[str, Any] = {}
    for engine_id, engine in sorted(discover(snapshot).items()):
        if engine.get("kind") != "containerd":
            continue
        main_version: Optional[int] = None
        main_declared: Optional[int] = None
        parsed, unreadable = [], []
        for path in engine.get("configs") or []:
            file_ = snapshot.file(path)
            if file_.text is None:
                if not file_.absent:
                    unreadable.append(f"{path} ({file_.why})")
                continue
            text = file_.text
            doc, error = parse_toml(strip_template(text) if path.endswith(".tmpl") else text)
            if error or not isinstance(doc, dict):
                continue  # runtime-configured reports files that do not parse
            is_main = not any(path.startswith(d) for d in DROP_IN_DIRS)
            # containerd 2.3 compares the versions files write out; a root file without one sets no bar.
            declared = config_version(doc) if "version" in doc else None
            own = config_version(doc) if is_main else declared
            if is_main:
                main_version, main_declared = own, declared
            parsed.append({"path": path, "version": own if own is not None else main_version,
                           "declared": declared, "drop_in": not is_main, "entries": runtime_entries(doc)})
        if main_version is None and any(f["drop_in"] for f in parsed):
            # Engine discovery lists only the files it could read: a drop-in found without its root file
            # may stand beside an unreadable config.toml, whose version and entries are then unknown.
            root = snapshot.file(ROOT_CONFIG)
            if root.text is None and not root.absent:
                unreadable.append(f"{ROOT_CONFIG} ({root.why})")
        found[engine_id] = {"main_version": main_version, "main_declared": main_declared, "files": parsed,
                            "unreadable": unreadable}
    return found


# --8<-- [start:containerd-runtime-entry]
def _drop_in_ahead(engines: dict[str, Any]) -> list[tuple[str, int, str, int]]:
    """(drop-in path, its version, root path, root version) for each imported file that declares a higher
    version than its containerd's root config (which must declare one: containerd 2.3 then sets no bar)."""
    found = []
    for config in engines.values():
        root = config.get("main_declared")
        if not isinstance(root, int):
            continue
        files = config.get("files") or []
        root_path = next((f["path"] for f in files if not f.get("drop_in")), "config.toml")
        for f in files:
            declared = f.get("declared")
            if f.get("drop_in") and isinstance(declared, int) and declared > root:
                found.append((f["path"], declared, root_path, root))
    return found


@check("containerd-runtime-entry", title="containerd's NVIDIA runtime entry is usable", page="gpu-not-visible",
       facts=("containerd_entries",), optional=("toolkit_versions", "containerd_version"))
def containerd_runtime_entry_unusable(engines: dict[str, Any],
                                      versions: Optional[dict[str, Optional[str]]],
                                      release: Optional[tuple[int, ...]] = None) -> Verdict:
    """containerd's NVIDIA runtime entry sits under the version 2 plugin key of a version 3 config (containerd
    2.x ignores it) or has no runtime type ("container.Runtime.Name must be set: invalid argument"), or the
    installed nvidia-ctk is too old to edit the version 3 config ("unsupported config version: 3"), or a drop-in
    declares a higher version than the root config, which containerd 2.3 refuses to start with.

    ## Why it matters
    containerd 2.0 introduced version 3 configs, whose CRI runtimes live under
    plugins."io.containerd.cri.v1.runtime"; a runtime pasted there under plugins."io.containerd.grpc.v1.cri"
    registers nothing; version 4 (containerd 2.3) keeps that key and is judged the same. containerd 2.3 and
    later migrate each version 3 or versionless file as they load it and copy its old-key runtimes when that
    file has none under the new key, so such an entry fails only below 2.3 (`containerd --version`; a version 4
    root config is itself proof of 2.3). An entry whose
    runtime_type is absent or empty makes containerd refuse every sandbox started with it: nvidia-ctk before
    1.20.0 copied the runc entry's empty runtime_type into its drop-in. nvidia-ctk before 1.17.4 cannot read a
    version 3 (or 4) file at all. The GPU Operator's toolkit container writes its drop-in at the version of
    `containerd config dump`, the newest the binary knows (3 on containerd 2.0-2.2, 4 on 2.3), whatever the
    root file says; containerd 2.3 stops at start-up when a drop-in is above the root file.

    ## Evidence
    /etc/containerd/config.toml and its conf.d/config.d drop-ins: version, plugin key and runtime_type of each
    runtime entry; `nvidia-ctk --version`; `containerd --version`.

    ## References
    NVIDIA/nvidia-container-toolkit pkg/config/engine/containerd/containerd.go (criRuntimePluginName) at
    v1.20.0 and v1.17.3 ("unsupported config version"), CHANGELOG v1.17.4 (version 3 support), #1956 and commit
    fcc99fd4 (runtime_type default, 1.20.0); containerd docs/PLUGINS.md at v2.0.0; containerd v2.3.0
    cmd/containerd/server/config/config.go (drop-in version check, commit 21248d0; per-file migration) and
    command/config.go; plugins/cri/runtime/plugin.go configMigration at v2.3.0.
    """
    ctk = (versions or {}).get("nvidia-ctk")
    ctk_parts = version_tuple(ctk or "")
    nvidia = [(engine_id, f["path"], f["version"], e) for engine_id, config in engines.items()
              for f in config["files"] for e in f["entries"] if _is_nvidia(e)]
    evidence: dict[str, Any] = {
        "main_version": {i: c["main_version"] for i, c in engines.items()}, "nvidia-ctk": ctk,
        "containerd": ".".join(map(str, release)) if release else None,
        "entries": [{"file": p, "version": v, "name": e["name"], "plugin": e["plugin"],
                     "runtime_type": e["runtime_type"]} for _, p, v, e in nvidia]}
    unreadable = [u for c in engines.values() for u in c.get("unreadable", [])]
    evidence["unreadable"] = unreadable
    if not any(c["files"] for c in engines.values()):
        if unreadable:
            return unknown(f"containerd configuration could not be read: {', '.join(unreadable)}", evidence,
                           fix="Run the doctor as root.")
        return skip("no readable containerd configuration on this host", evidence)
    ahead = _drop_in_ahead(engines)
    if ahead:
        path, declared, root_path, root = ahead[0]
        evidence["drop_in_versions"] = [{"file": p, "version": d, "root": r} for p, d, _, r in ahead]
        refused = (f"containerd {'.'.join(map(str, DROP_IN_VERSION_CHECK))} and later refuse to start "
                   f"(\"drop-in config version {declared} higher than root config version {root}\")")
        fix = ("Make the drop-in's version match the root file's: GPU Operator, toolkit.env RUNTIME_CONFIG_SOURCE=file "
               "(the toolkit container then writes it from the file, not from containerd config dump); by hand, "
               "nvidia-ctk runtime configure --runtime=containerd --config-source=file. Or migrate the root file "
               "(move the drop-in aside first: containerd config migrate reads it too). Then restart containerd.")
        if declared > NEWEST_BEFORE_2_3:
            return fail(f"{path} declares version {declared}, above {root_path}'s version {root}: {refused}, and "
                        f"releases before 2.3 do not read version {declared} at all", fix, evidence,
                        anchor="containerd-v3")
        return warn(f"{path} declares version {declared}, above {root_path}'s version {root}: {refused}; 2.0 to "
                    "2.2 start with it, so the node breaks when containerd is upgraded", fix, evidence,
                    anchor="containerd-v3")
    wrong = []
    for engine_id, config in engines.items():
        own = _engine_release(engine_id, config, release)
        wrong += [(f, e, own) for f in config["files"] if not _migrated_on_load(f, own)
                  for e in f["entries"] if _is_nvidia(e) and misplaced(e, f["version"])]
    if wrong:
        file_, entry, own = wrong[0]
        path, number = file_["path"], file_["version"]
        which = "containerd 2.x does not register it"
        if own:
            which = f"containerd {'.'.join(map(str, own))} does not register it"
        elif _migrated_on_load(file_, MIGRATES_V3_FILES):
            which = ("containerd 2.0 to 2.2 do not register it (2.3 and later copy it to the new key, since this file "
                     "has no runtimes there)")
        return fail(f"{path}: runtime \"{entry['name']}\" is under plugins.\"{entry['plugin']}\" in a version {number} "
                    f"config (expected plugins.\"{CRI_PLUGIN_BY_VERSION[3]}\"): {which}",
                    f"Move the entry to [plugins.\"{CRI_PLUGIN_BY_VERSION[3]}\".containerd.runtimes.{entry['name']}] "
                    "(or rerun nvidia-ctk runtime configure --runtime=containerd, 1.17.4 or later), then restart "
                    "containerd.", evidence, anchor="containerd-v3")
    by_name: dict[tuple[str, str], list[tuple[str, Any]]] = {}
    for engine_id, path, _, entry in nvidia:
        by_name.setdefault((engine_id, entry["name"]), []).append((path, entry["runtime_type"]))
    for (_, name), defined in sorted(by_name.items()):
        last_path, last_type = defined[-1]
        typed = [t for _, t in defined if isinstance(t, str) and t and t != MISSING]
        # An explicit "" in the file read last wins over any earlier value; a key that is only absent may be filled
        # from an earlier file, so that case fails only when no file names a type.
        if last_type == "" or not typed:
            how = "runtime_type = \"\"" if last_type == "" else "no runtime_type"
            upgrade = (f" nvidia-ctk {ctk} copies the runc entry's empty runtime_type; 1.20.0 and later fill it in."
                       if ctk_parts and ctk_parts < CTK_FILLS_RUNTIME_TYPE else "")
            return fail(f"{last_path}: runtime \"{name}\" has {how} (expected \"io.containerd.runc.v2\"): containerd "
                        "refuses to start pods with it: container.Runtime.Name must be set: invalid argument",
                        f"Set runtime_type = \"io.containerd.runc.v2\" in that entry and restart containerd.{upgrade}",
                        evidence, anchor="containerd-v3")
    new_layout = sorted((c["files"][0]["path"], c["main_version"]) for c in engines.values()
                        if reads_runtimes_from_new_key(c["main_version"]) and c["files"])
    if new_layout and ctk_parts and ctk_parts < CTK_READS_V3:
        number = new_layout[0][1]
        return warn(f"{', '.join(p for p, _ in new_layout)}: version {number} config, and nvidia-ctk is {ctk}: "
                    f"nvidia-ctk runtime configure stops with \"unsupported config version: {number}\" (versions 3 "
                    "and later are read from 1.17.4 on)",
                    "Upgrade the NVIDIA Container Toolkit (1.17.8 or later, for the security fixes too).",
                    evidence, anchor="containerd-v3")
    if not nvidia and unreadable:
        return unknown(f"no NVIDIA runtime entry in the readable containerd files, and {', '.join(unreadable)} could "
                       "not be read", evidence, fix="Run the doctor as root.")
    if not nvidia:
        return skip("no NVIDIA runtime entry in the containerd configuration (runtime-configured says whether one "
                    "is expected)", evidence)
    names = sorted({f"{e['name']} ({e['plugin']}, {e['runtime_type']})" for _, _, _, e in nvidia})
    if unreadable:  # an unread root file or drop-in may hold a misplaced entry or a version above the root's
        return unknown(f"the readable containerd files look right ({', '.join(names)}), but "
                       f"{', '.join(unreadable)} could not be read", evidence, fix="Run the doctor as root.")
    return ok(f"containerd NVIDIA runtime entries are in the right section with a runtime type: {', '.join(names)}",
              evidence)
# --8<-- [end:containerd-runtime-entry]


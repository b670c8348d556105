"""Where a containerd config file puts its runtime entries, and what each entry says about its runtime type.

containerd's CRI runtime settings live under a plugin key that depends on the config version: `cri` (version 1),
`io.containerd.grpc.v1.cri` (version 2, containerd 1.x and 2.x) and `io.containerd.cri.v1.runtime` (version 3,
containerd 2.0 and later; 2.3 adds a version 4, not described here). `nvidia-ctk runtime configure` picks the
key from the `version` of the file it edits (pkg/config/engine/containerd/containerd.go, criRuntimePluginName,
toolkit 1.17.4 and later). The engine discovery (gpu_runbook.engines, parsers/toolkit.containerd_runtimes)
reads the runtimes of both layouts; the functions here keep, for each entry, which key it sits under and
whether it names a runtime type, so that a check can tell a working entry from one containerd ignores or
refuses.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from gpu_runbook.parsers.toolkit import version_tuple

# The CRI runtime plugin key per config version (containerd docs/PLUGINS.md at v2.0.0; toolkit criRuntimePluginName).
CRI_PLUGIN_BY_VERSION = {1: "cri", 2: "io.containerd.grpc.v1.cri", 3: "io.containerd.cri.v1.runtime"}
MISSING = "<missing>"  # runtime_type absent from the entry, as opposed to set to ""


def config_version(doc: Any) -> Optional[int]:
    """The `version` of a parsed containerd config; a file without one is version 1 to containerd.

    >>> config_version({"version": 3}), config_version({"plugins": {}}), config_version(None)
    (3, 1, None)
    """
    if not isinstance(doc, dict):
        return None
    version = doc.get("version", 1)
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def runtime_entries(doc: Any) -> list[dict[str, Any]]:
    """Every runtime entry of a parsed containerd config, under whichever CRI plugin key it sits.

    Each entry: {"name", "plugin", "runtime_type" (the value, or MISSING), "binary" (options.BinaryName or None)}.

    Sample Content (the shape of the drop-in in NVIDIA/nvidia-container-toolkit#1956: nvidia-ctk 1.19.1 copied a
    runc entry without a runtime type, so the nvidia entry has no runtime_type either)::

        version = 3
        [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.nvidia]
        [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.nvidia.options]
          BinaryName = "/usr/local/nvidia/toolkit/nvidia-container-runtime"

    >>> [(e["plugin"], e["runtime_type"], e["binary"]) for e in runtime_entries({"version": 3, "plugins": {
    ...     "io.containerd.cri.v1.runtime": {"containerd": {"runtimes": {"nvidia": {
    ...         "runtime_type": "", "options": {"BinaryName": "/usr/bin/nvidia-container-runtime"}}}}}}})]
    [('io.containerd.cri.v1.runtime', '', '/usr/bin/nvidia-container-runtime')]
    >>> runtime_entries({"plugins": {"io.containerd.grpc.v1.cri": {"containerd": {"runtimes": {"nvidia": {}}}}}})
    [{'name': 'nvidia', 'plugin': 'io.containerd.grpc.v1.cri', 'runtime_type': '<missing>', 'binary': None}]
    """
    plugins = doc.get("plugins") if isinstance(doc, dict) else None
    entries: list[dict[str, Any]] = []
    if not isinstance(plugins, dict):
        return entries
    for plugin in CRI_PLUGIN_BY_VERSION.values():
        section = plugins.get(plugin)
        containerd = section.get("containerd") if isinstance(section, dict) else None
        runtimes = containerd.get("runtimes") if isinstance(containerd, dict) else None
        if not isinstance(runtimes, dict):
            continue
        for name, entry in runtimes.items():
            if not isinstance(entry, dict):
                continue
            options = entry.get("options")
            binary = options.get("BinaryName") if isinstance(options, dict) else None
            entries.append({"name": str(name), "plugin": plugin,
                            "runtime_type": entry.get("runtime_type", MISSING),
                            "binary": binary if isinstance(binary, str) else None})
    return entries


def reads_runtimes_from_new_key(version: Optional[int]) -> bool:
    """Whether containerd reads a config of this version's runtimes only from "io.containerd.cri.v1.runtime":
    version 3 (containerd 2.0) and version 4 (containerd 2.3, which moved only server settings); containerd
    2.x migrates version 1 and 2 files to the new keys itself.

    >>> [reads_runtimes_from_new_key(v) for v in (None, 1, 2, 3, 4)]
    [False, False, False, True, True]
    """
    return version is not None and version >= 3


_CONTAINERD_VERSION = re.compile(r"^containerd\s+\S+\s+v?(\d+\.\d+(?:\.\d+)?)", re.MULTILINE)


def parse_containerd_version(text: str) -> Optional[tuple[int, ...]]:
    """The release in `containerd --version` output, as a tuple; None when the output names none.

    >>> parse_containerd_version("containerd github.com/containerd/containerd/v2 v2.3.0 0a1b2c3\\n")
    (2, 3, 0)
    >>> parse_containerd_version("containerd containerd.io 1.7.27 05044ec0a9a7"), parse_containerd_version("")
    ((1, 7, 27), None)
    """
    match = _CONTAINERD_VERSION.search(text or "")
    return version_tuple(match.group(1)) if match else None


def misplaced(entry: dict[str, Any], version: Optional[int]) -> bool:
    """Whether an entry sits under a plugin key that a config of this version does not use for runtimes.

    Only versions whose runtimes containerd reads from the new key alone are judged (reads_runtimes_from_new_key).

    >>> misplaced({"plugin": "io.containerd.grpc.v1.cri"}, 3), misplaced({"plugin": "io.containerd.grpc.v1.cri"}, 2)
    (True, False)
    >>> misplaced({"plugin": "io.containerd.grpc.v1.cri"}, 4), misplaced({"plugin": "io.containerd.cri.v1.runtime"}, 4)
    (True, False)
    """
    return reads_runtimes_from_new_key(version) and entry.get("plugin") != CRI_PLUGIN_BY_VERSION[3]

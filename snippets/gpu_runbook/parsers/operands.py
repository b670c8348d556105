"""NVIDIA's node components (GPU Operator operands) as they show on a node: the operator's toolkit install,
their pods seen from inside, and GPU feature discovery's product names.

Pure functions of text: runtime entries, a pod's host name and environment, NVML device names.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any, Optional

# --8<-- [start:operator-toolkit]
# The GPU Operator's toolkit container installs the toolkit into <installDir>/toolkit on the node, not /usr/bin:
# installDir is ClusterPolicy toolkit.installDir (default /usr/local/nvidia, the container's ROOT), and
# nvidia-ctk-installer adds "toolkit". Each program there is a shell wrapper around <name>.real; the runtime's
# and the hook's wrappers point them at the config.toml below it (NVIDIA_CTK_CONFIG_FILE_PATH since toolkit
# 1.18.0; before, XDG_CONFIG_HOME=<dir>/.config and the hook's -config), so /etc's config.toml does not apply.
OPERATOR_TOOLKIT_DIR = "/usr/local/nvidia/toolkit"
OPERATOR_TOOLKIT_CONFIG = OPERATOR_TOOLKIT_DIR + "/.config/nvidia-container-runtime/config.toml"


def operator_runtime_config(runtimes: dict[str, dict[str, Any]]) -> Optional[tuple[str, str]]:
    """The config.toml an engine's nvidia runtime reads when that runtime is the GPU Operator's wrapper, and
    why; None for any other runtime (its engine's environment decides).

    >>> operator_runtime_config({"nvidia": {"binary": "/usr/local/nvidia/toolkit/nvidia-container-runtime"}})[0]
    '/usr/local/nvidia/toolkit/.config/nvidia-container-runtime/config.toml'
    >>> operator_runtime_config({"nvidia": {"binary": "/usr/bin/nvidia-container-runtime"}}) is None
    True
    """
    for runtime in runtimes.values():
        binary = runtime.get("binary") if isinstance(runtime, dict) else None
        if isinstance(binary, str) and binary.startswith(OPERATOR_TOOLKIT_DIR + "/nvidia-container-runtime"):
            return OPERATOR_TOOLKIT_CONFIG, f"the GPU Operator's runtime wrapper {binary} names it"
    return None
# --8<-- [end:operator-toolkit]

# A pod's host name is its name unless it runs with hostNetwork (then it is the node's). DaemonSet pods are named
# <daemonset>-<5 characters>. The names are the GPU Operator's (assets/state-*/…daemonset.yaml, v26.7.0) and the
# Helm charts' (<release>-nvidia-device-plugin, <release>-gpu-feature-discovery, <release>-dcgm-exporter).
COMPONENT_POD_NAMES: tuple[tuple[str, str], ...] = (
    ("device plugin MPS control daemon", r"nvidia-device-plugin-mps-control-daemon"),
    ("device plugin", r"nvidia-device-plugin(?:-daemonset)?"),
    ("GPU feature discovery", r"gpu-feature-discovery"),
    ("DCGM exporter", r"(?:nvidia-)?dcgm-exporter"),
    ("DCGM host engine", r"nvidia-dcgm"),
    ("MIG manager", r"nvidia-mig-manager"),
    ("operator validator", r"nvidia-operator-validator"),
    ("container toolkit", r"nvidia-container-toolkit-daemonset"),
)
_POD_SUFFIX = r"-[a-z0-9]{5}$"

# Environment variables only these components' containers carry (their images or the manifests that run them).
COMPONENT_ENV: tuple[tuple[str, str], ...] = (
    ("MIG manager", "NVIDIA_MIG_CONFIG_DEVICES"),  # mig-parted deployments/container/Dockerfile
    ("device plugin", "DEVICE_LIST_STRATEGY"),  # read by nvidia-device-plugin (cmd/nvidia-device-plugin/main.go)
    ("GPU feature discovery", "GFD_"),  # GFD_SLEEP_INTERVAL etc. (cmd/gpu-feature-discovery/main.go)
    ("DCGM exporter", "DCGM_EXPORTER_"),  # DCGM_EXPORTER_KUBERNETES etc. (dcgm-exporter's manifests)
    ("device plugin or GPU feature discovery", "NVIDIA_MIG_MONITOR_DEVICES"),  # the plugin's Helm chart
)


def nvidia_component(hostname: Optional[str], env: dict[str, str]) -> Optional[tuple[str, str]]:
    """Which NVIDIA node component's pod this is, and how that was seen: (component, evidence), or None.

    >>> nvidia_component("nvidia-dcgm-exporter-7xk2p", {})
    ('DCGM exporter', 'pod name nvidia-dcgm-exporter-7xk2p')
    >>> nvidia_component("gpu-node-3", {"DEVICE_LIST_STRATEGY": "envvar"})
    ('device plugin', 'environment DEVICE_LIST_STRATEGY')
    >>> nvidia_component("train-job-0-abcde", {"NVIDIA_VISIBLE_DEVICES": "all"}) is None
    True
    """
    name = (hostname or "").strip().lower()
    for component, pattern in COMPONENT_POD_NAMES:
        if re.search(rf"(?:^|-){pattern}{_POD_SUFFIX}", name):
            return component, f"pod name {name}"
    for component, marker in COMPONENT_ENV:
        if any(key == marker or (marker.endswith("_") and key.startswith(marker)) for key in env):
            return component, f"environment {marker}{'*' if marker.endswith('_') else ''}"
    return None


def gfd_product(name: str) -> str:
    """An NVML device name as GFD writes it into nvidia.com/gpu.product (internal/lm/resource.go sanitise:
    characters other than letters, digits, "-", "_", "." and blanks dropped, blank runs joined by "-").

    >>> gfd_product("NVIDIA H100 80GB HBM3"), gfd_product("NVIDIA GeForce RTX 4090")
    ('NVIDIA-H100-80GB-HBM3', 'NVIDIA-GeForce-RTX-4090')
    """
    return "-".join(re.sub(r"[^A-Za-z0-9\-_. ]", "", name).split())


def gfd_model_counts(names: Iterable[str]) -> dict[str, int]:
    """GPUs per product label value, as GFD counts them for nvidia.com/gpu.count (one count per model).

    >>> gfd_model_counts(["NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 4090"])
    {'NVIDIA-GeForce-RTX-3090': 1, 'NVIDIA-GeForce-RTX-4090': 2}
    """
    return dict(sorted(Counter(gfd_product(n) for n in names).items()))


def gfd_label_model(product: str, models: Iterable[str]) -> Optional[str]:
    """The model a gpu.product label names, ignoring the suffixes GFD may append ("-SHARED" for a time-sliced
    resource that is not renamed; "-MIG-…" for MIG): the longest model name the label starts with.

    >>> gfd_label_model("NVIDIA-A100-SXM4-80GB-SHARED", ["NVIDIA-A100-SXM4-80GB", "NVIDIA-DGX-Display"])
    'NVIDIA-A100-SXM4-80GB'
    >>> gfd_label_model("Tesla-T4", ["NVIDIA-L4"]) is None
    True
    """
    matches = [m for m in models if product == m or product.startswith(m + "-")]
    return max(matches, key=len) if matches else None

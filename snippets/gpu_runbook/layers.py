"""The container stack as ordered layers of checks, and the walk that finds the lowest broken layer.

A GPU reaches a container through these layers, bottom up; a failure in one shows up in every layer
above it, so the lowest broken layer is the one to fix first. docs/containers/container-stack.md
explains each layer; notebooks/container-stack.ipynb walks them with this code.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple, Optional

from gpu_runbook.findings import Finding, Status, worst


class Layer(NamedTuple):
    name: str
    anchor: str  # heading on the container-stack page
    checks: tuple[str, ...]
    paths: tuple[str, ...] = ()  # the ways this layer can work, with the releases each applies to


# --8<-- [start:layers]
LAYERS: tuple[Layer, ...] = (
    Layer("1. Kernel driver and device nodes", "layer-driver",
          ("kernel-modules-loaded", "nouveau-conflict", "gsp-firmware", "secure-boot-unsigned", "gpu-init-failed",
           "device-nodes", "device-node-modes")),
    Layer("2. NVML on the host", "layer-nvml",
          ("nvml-init", "driver-library-mismatch", "gpu-tools-hung", "gpu-lost", "gpus-missing-from-driver")),
    Layer("3. Container toolkit and engine", "layer-runtime",
          ("toolkit-installed", "runtime-configured", "toolkit-config", "container-cli-info", "cdi-specs",
           "selinux-devices"),
          # How the GPU is injected (nvidia-container-toolkit internal/info/auto.go): on hosts with NVML the
          # nvidia runtime's default mode "auto" resolves to legacy before toolkit 1.18.0 and to jit-cdi from
          # 1.18.0 on (csv on Tegra iGPU hosts).
          ("legacy hook: nvidia-container-cli at container creation (the runtime's auto mode before toolkit "
           "1.18.0; docker run --gpus on runc before Docker 29.2.0, and from 29.2.0 when CDI cannot serve it)",
           "CDI spec file in /etc/cdi or /var/run/cdi: the engine's own CDI support (docker run --gpus tries it "
           "first from Docker 29.2.0) or mode = \"cdi\"",
           "jit-cdi: the nvidia runtime writes the spec in memory per container (auto mode since toolkit 1.18.0)")),
    Layer("4. What the container was given", "layer-container",
          ("container-visible-devices", "container-driver-capabilities", "cgroup-device-access",
           "dev-char-symlinks")),
    Layer("5. CUDA versions", "layer-cuda",
          ("require-cuda", "container-driver-libs", "cuda-forward-compat")),
)
# --8<-- [end:layers]


class LayerResult(NamedTuple):
    layer: Layer
    status: Optional[Status]  # None: not judged, because a lower layer is broken
    findings: tuple[Finding, ...]


def layer_checks() -> list[str]:
    """Every check id the layers use, bottom up."""
    return [check for layer in LAYERS for check in layer.checks]


def walk_layers(findings: Iterable[Finding]) -> tuple[list[LayerResult], Optional[Layer]]:
    """Judge the layers bottom up and return them with the lowest broken (failing) layer.

    Layers above a failing one are reported as not judged: their findings follow from the failure
    below and would send the reader to the wrong page. Warnings and unknowns do not stop the walk.
    """
    by_check = {f.check: f for f in findings}
    results: list[LayerResult] = []
    broken: Optional[Layer] = None
    for layer in LAYERS:
        mine = tuple(by_check[c] for c in layer.checks if c in by_check)
        if broken is not None:
            results.append(LayerResult(layer, None, mine))
            continue
        status = worst(list(mine))
        results.append(LayerResult(layer, status, mine))
        if status is Status.FAIL:
            broken = layer
    return results, broken

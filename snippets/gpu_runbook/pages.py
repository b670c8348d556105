"""The runbook's page catalogue (stable ids) and the one function that turns a page id into a URL."""

from __future__ import annotations

import os
from typing import NamedTuple


class Page(NamedTuple):
    section: str
    title: str


# Stable ids: findings, tests and links use them. The Markdown file for page `p` in section `s`
# is docs/<s>/<p>.md; tests check that each exists and carries `id: p` in its front matter.
PAGES: dict[str, Page] = {
    "container-stack": Page("containers", "How a GPU reaches a container"),
    "nvml-unknown-error": Page("containers", "Failed to initialize NVML: Unknown Error"),
    "container-cli-init-error": Page("containers", "nvidia-container-cli: initialization error"),
    "gpu-not-visible": Page("containers", "No GPU inside the container"),
    "driver-compat": Page("containers", "Driver and CUDA compatibility"),
    "selinux": Page("containers", "SELinux denials"),
    "runtime-debug-logging": Page("containers", "Debug logs of the container toolkit"),
    "cdi": Page("containers", "CDI versus the legacy --gpus path"),
    "device-nodes": Page("devices", "Device nodes: /dev/nvidia*"),
    "cgroup-device-access": Page("devices", "cgroup device access"),
    "dev-char-symlinks": Page("devices", "Missing /dev/char symlinks"),
    "kernel-modules": Page("devices", "Kernel modules and nouveau"),
    "driver-mismatch": Page("devices", "Driver/library version mismatch"),
    "gpu-init-failure": Page("devices", "GPU fails to initialise: RmInitAdapter and GSP"),
    "mps": Page("sharing", "MPS: one daemon per GPU"),
    "mps-multi-gpu": Page("sharing", "MPS does not spread work across GPUs"),
    "mig": Page("sharing", "MIG: instances, profiles, containers"),
    "mig-vs-mps": Page("sharing", "Choosing MIG, MPS or time-slicing"),
    "device-plugin": Page("kubernetes", "NVIDIA device plugin"),
    "gpu-requests": Page("kubernetes", "nvidia.com/gpu in pod specs"),
    "time-slicing": Page("kubernetes", "Time-slicing"),
    "feature-discovery": Page("kubernetes", "GPU feature discovery labels"),
    "health-monitoring": Page("kubernetes", "Health monitoring and Xid errors"),
    "recovery": Page("kubernetes", "Recovery: drain, reset, reload"),
    "gpu-operator": Page("kubernetes", "GPU Operator: components and their state"),
    "dcgm-exporter": Page("kubernetes", "DCGM exporter does not start"),
    "fabric-manager": Page("fabric", "Fabric Manager and NVSwitch"),
    "p2p-topology": Page("fabric", "PCIe peer-to-peer: ACS, IOMMU and topology"),
    "gpudirect-rdma": Page("fabric", "GPUDirect RDMA and nvidia_peermem"),
}

# Where `make serve` puts the site; a fleet that publishes the site sets GPU_RUNBOOK_DOCS_URL.
DEFAULT_DOCS_URL = "http://127.0.0.1:8000/"


def docs_path(page_id: str) -> str:
    """The Markdown source of a page, relative to docs/."""
    page = PAGES[page_id]
    return f"{page.section}/{page_id}.md"


def page_url(page_id: str, anchor: str = "", base: str = "") -> str:
    """URL of a runbook page (and anchor) on the published site.

    The site is built with the offline plugin (it opens from file:// too), so pages are .html files.

    >>> page_url("device-nodes", "missing-nodes", base="https://runbook.example/")
    'https://runbook.example/devices/device-nodes.html#missing-nodes'
    """
    page = PAGES[page_id]
    root = base or os.environ.get("GPU_RUNBOOK_DOCS_URL") or DEFAULT_DOCS_URL
    if not root.endswith("/"):
        root += "/"
    url = f"{root}{page.section}/{page_id}.html"
    return f"{url}#{anchor}" if anchor else url

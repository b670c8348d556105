"""The PCI walk (probes/pci.py) over a fixture sysfs tree, the ACS and peermem checks, and the parsers' doctests."""

from __future__ import annotations

import doctest
import os
from pathlib import Path
from typing import Optional

import pytest
from conftest import limit_s
from gpu_runbook.checks import pcie
from gpu_runbook.parsers import pci as pci_parsers
from gpu_runbook.probes import pci as pci_probe
from gpu_runbook.probes import plan
from gpu_runbook.probes.pci import probe_pci
from gpu_runbook.registry import run_checks
from gpu_runbook.snapshot import Snapshot


def _config(acs_control: Optional[int], size: int = 4096) -> bytes:
    """A bridge's config space: AER at 0x100, then ACS at 0x148 (when acs_control is not None)."""
    cfg = bytearray(4096)
    cfg[0:4] = (0x10B5 | 0xC010 << 16).to_bytes(4, "little")
    if acs_control is None:
        cfg[0x100:0x104] = (0x0001 | 1 << 16).to_bytes(4, "little")
    else:
        cfg[0x100:0x104] = (0x0001 | 1 << 16 | 0x148 << 20).to_bytes(4, "little")
        cfg[0x148:0x14C] = (0x000D | 1 << 16).to_bytes(4, "little")
        cfg[0x14C:0x150] = (0x005F | acs_control << 16).to_bytes(4, "little")
    return bytes(cfg[:size])


# Two GPUs and a ConnectX NIC behind one PLX switch (upstream port 3b:00.0, downstream ports 3c:08/10/18),
# below root port 3a:00.0; a third GPU on another root port.
TOPOLOGY = {
    "0000:3a:00.0": ("pci0000:3a/0000:3a:00.0", "0x8086", "0x347a", "0x060400", "pcieport"),
    "0000:3b:00.0": ("pci0000:3a/0000:3a:00.0/0000:3b:00.0", "0x10b5", "0xc010", "0x060400", "pcieport"),
    "0000:3c:08.0": ("pci0000:3a/0000:3a:00.0/0000:3b:00.0/0000:3c:08.0", "0x10b5", "0xc010", "0x060400", "pcieport"),
    "0000:3c:10.0": ("pci0000:3a/0000:3a:00.0/0000:3b:00.0/0000:3c:10.0", "0x10b5", "0xc010", "0x060400", "pcieport"),
    "0000:3c:18.0": ("pci0000:3a/0000:3a:00.0/0000:3b:00.0/0000:3c:18.0", "0x10b5", "0xc010", "0x060400", "pcieport"),
    "0000:3d:00.0": ("pci0000:3a/0000:3a:00.0/0000:3b:00.0/0000:3c:08.0/0000:3d:00.0", "0x10de", "0x2330", "0x030200",
                     "nvidia"),
    "0000:3e:00.0": ("pci0000:3a/0000:3a:00.0/0000:3b:00.0/0000:3c:10.0/0000:3e:00.0", "0x10de", "0x2330", "0x030200",
                     "nvidia"),
    "0000:3f:00.0": ("pci0000:3a/0000:3a:00.0/0000:3b:00.0/0000:3c:18.0/0000:3f:00.0", "0x15b3", "0x1021", "0x020700",
                     "mlx5_core"),
    "0000:5d:00.0": ("pci0000:5c/0000:5c:01.0/0000:5d:00.0", "0x10de", "0x2330", "0x030200", "nvidia"),
    "0000:5c:01.0": ("pci0000:5c/0000:5c:01.0", "0x8086", "0x347a", "0x060400", "pcieport"),
    "0000:00:1f.0": ("pci0000:00/0000:00:1f.0", "0x8086", "0x1b81", "0x060100", None),
}


def build_sysfs(root: Path, acs_control: Optional[int] = 0x001D, config_size: int = 4096) -> Path:
    devices = root / "sys" / "devices"
    bus = root / "sys" / "bus" / "pci" / "devices"
    bus.mkdir(parents=True)
    (root / "sys" / "bus" / "pci" / "drivers").mkdir()
    for group, (bdf, (rel, vendor, device, klass, driver)) in enumerate(sorted(TOPOLOGY.items())):
        node = devices / rel
        node.mkdir(parents=True, exist_ok=True)
        for name, value in (("vendor", vendor), ("device", device), ("class", klass), ("numa_node", "0"),
                            ("current_link_width", "16"), ("max_link_width", "16")):
            (node / name).write_text(value + "\n")
        (node / "config").write_bytes(_config(acs_control if klass == "0x060400" else None, config_size))
        if driver:
            (root / "sys" / "bus" / "pci" / "drivers" / driver).mkdir(exist_ok=True)
            (node / "driver").symlink_to(os.path.relpath(root / "sys" / "bus" / "pci" / "drivers" / driver, node))
        groups = root / "sys" / "kernel" / "iommu_groups" / str(group)
        groups.mkdir(parents=True)
        (groups / "type").write_text("DMA-FQ\n")
        (node / "iommu_group").symlink_to(os.path.relpath(groups, node))
        (bus / bdf).symlink_to(f"../../../devices/{rel}")
    return root


def _snapshot(tmp_path: Path, **kwargs: object) -> Snapshot:
    root = build_sysfs(tmp_path / "host", **kwargs)  # type: ignore[arg-type]
    table: dict[str, object] = {}
    probe_pci(str(root), table.__setitem__)
    files = {"/proc/modules": {"text": "mlx5_ib 1 0 - Live 0x0\nib_core 1 1 mlx5_ib, Live 0x0\n"},
             "/proc/driver/nvidia/version": {"text": "NVRM version: NVIDIA UNIX x86_64 Kernel Module  570.133.20  x\n"},
             "/proc/sys/kernel/osrelease": {"text": "5.15.0-134-generic\n"},
             "/sys/class/dmi/id/sys_vendor": {"text": "Supermicro\n"}}
    return Snapshot({"schema_version": 1, "host": {"root": str(root)}, "files": files, "pci": table})


def _finding(snapshot: Snapshot, check_id: str):
    return {f.check: f for f in run_checks(snapshot, only=[check_id], strict=True)}[check_id]


def test_probe_keeps_nvidia_mellanox_and_their_bridges(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path)
    kept = {p.rsplit("/", 1)[1] for p in snap.pci if p != plan.PCI_DEVICES}
    assert kept == set(TOPOLOGY) - {"0000:00:1f.0"}
    assert snap.pci[plan.PCI_DEVICES] == {"count": len(TOPOLOGY), "truncated": False}
    gpu = snap.pci["/sys/bus/pci/devices/0000:3d:00.0"]
    assert gpu["driver"] == "nvidia" and gpu["iommu_group_type"] == "DMA-FQ" and "acs" not in gpu
    port = snap.pci["/sys/bus/pci/devices/0000:3c:08.0"]
    assert port["config_bytes"] == 4096 and port["acs"] == {"offset": 0x148, "capability": 0x5F, "control": 0x1D}
    assert 13 in port["ext_caps"]


def test_pci_functions_fact_shape(tmp_path: Path) -> None:
    functions = pcie.pci_functions_fact(_snapshot(tmp_path))
    by_bdf = {f["bdf"]: f for f in functions}
    gpu = by_bdf["0000:3d:00.0"]
    assert gpu["kind"] == "gpu" and gpu["upstream"] == ["0000:3a:00.0", "0000:3b:00.0", "0000:3c:08.0"]
    assert gpu["host_bridge"] == "pci0000:3a" and gpu["iommu_group"] is not None
    assert by_bdf["0000:3f:00.0"]["kind"] == "network"
    assert [f["bdf"] for f in functions] == sorted(by_bdf)


def test_acs_redirect_fails_on_bare_metal(tmp_path: Path) -> None:
    finding = _finding(_snapshot(tmp_path, acs_control=0x001D), "pcie-acs-p2p-redirect")
    assert finding.status.value == "fail"
    assert "0000:3c:08.0" in finding.summary and "ReqRedir+ CmpltRedir+" in str(finding.evidence)
    # the GPU on its own root port meets the others in the root complex
    assert finding.evidence["pairs"]["0000:3d:00.0<->0000:5d:00.0"]["meet"] == "root complex"
    assert finding.evidence["pairs"]["0000:3d:00.0<->0000:3e:00.0"]["meet"] == "switch 0000:3b:00.0"


def test_acs_on_root_ports_only_warns(tmp_path: Path) -> None:
    # NVIDIA/nccl#2079: two GPUs on different root ports, ACSCtl 0x001d on the root ports
    snap = _snapshot(tmp_path, acs_control=0x001D)
    for bdf in ("0000:3b:00.0", "0000:3c:08.0", "0000:3c:10.0", "0000:3c:18.0"):
        snap.pci[f"/sys/bus/pci/devices/{bdf}"]["acs"]["control"] = 0
    finding = _finding(snap, "pcie-acs-p2p-redirect")
    assert finding.status.value == "warn" and "root ports" in finding.summary


def test_acs_cleared_passes(tmp_path: Path) -> None:
    assert _finding(_snapshot(tmp_path, acs_control=0x0000), "pcie-acs-p2p-redirect").status.value == "ok"


def test_acs_source_validation_alone_passes(tmp_path: Path) -> None:
    # SrcValid+ with redirects off: NCCL's grep hint "might be enabled", but peer traffic is not redirected
    assert _finding(_snapshot(tmp_path, acs_control=0x0001), "pcie-acs-p2p-redirect").status.value == "ok"


def test_acs_as_non_root_is_unknown_not_ok(tmp_path: Path) -> None:
    finding = _finding(_snapshot(tmp_path, config_size=64), "pcie-acs-p2p-redirect")
    assert finding.status.value == "unknown" and "needs root" in finding.summary


def test_peermem_missing_with_proprietary_module(tmp_path: Path) -> None:
    finding = _finding(_snapshot(tmp_path), "nvidia-peermem-missing")
    assert finding.status.value == "warn" and "Invalid argument" in finding.fix


def test_no_bus_is_a_skip(tmp_path: Path) -> None:
    table: dict[str, object] = {}
    probe_pci(str(tmp_path), table.__setitem__)
    assert table[plan.PCI_DEVICES]["error"] == "ENOENT"  # type: ignore[index]
    snap = Snapshot({"schema_version": 1, "pci": table})
    assert _finding(snap, "pcie-acs-p2p-redirect").status.value == "skip"


def test_walk_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan, "PCI_MAX_KEPT", 3)
    root = build_sysfs(tmp_path / "host")
    table: dict[str, object] = {}
    probe_pci(str(root), table.__setitem__)
    assert len([k for k in table if k != plan.PCI_DEVICES]) == 3
    assert table[plan.PCI_DEVICES]["truncated"] is True  # type: ignore[index]


@pytest.mark.parametrize("module", [pci_parsers, pcie, pci_probe])
def test_doctests(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.failed == 0


def test_collect_under_root_walks_the_bus(tmp_path: Path) -> None:
    from gpu_runbook.probes.collect import collect

    root = build_sysfs(tmp_path / "host")
    data = collect(root=str(root), deadline=5.0)
    assert data["pci"][plan.PCI_DEVICES]["count"] == len(TOPOLOGY)
    assert "/sys/bus/pci/devices/0000:3d:00.0" in data["pci"]


def test_a_stuck_config_read_cannot_stall_collect(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    from gpu_runbook.probes.collect import collect

    root = build_sysfs(tmp_path / "host")
    release = threading.Event()
    real = pci_probe._read_config

    def stuck(root_: str, path: str):  # a bridge behind a sick device: the config read never returns
        if "0000:3c:08.0" in path:
            release.wait()
        return real(root_, path)

    monkeypatch.setattr(pci_probe, "_read_config", stuck)
    try:
        started = time.monotonic()
        data = collect(root=str(root), deadline=2.0)
        assert time.monotonic() - started < limit_s(2.0, 0.5)
        assert data["probe"]["blocked_on"] == "/sys/bus/pci/devices/0000:3c:08.0"
        assert data["pci"]["/sys/bus/pci/devices/0000:3c:08.0"]["error"] == "timeout"
    finally:
        release.set()


def test_acs_redirect_in_a_vm_only_warns(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path, acs_control=0x001D)
    snap.data["files"]["/sys/class/dmi/id/sys_vendor"] = {"text": "QEMU\n"}
    snap.data["files"]["/sys/class/dmi/id/product_name"] = {"text": "Standard PC (Q35 + ICH9, 2009)\n"}
    finding = _finding(snap, "pcie-acs-p2p-redirect")
    assert finding.status.value == "warn" and "VM" in finding.summary
    assert finding.evidence["virtual_machine"] is True


def test_virtual_machine_from_emulated_bridges(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path)
    del snap.data["files"]["/sys/class/dmi/id/sys_vendor"]
    assert pcie.virtual_machine_fact(snap) is False
    snap.pci["/sys/bus/pci/devices/0000:3a:00.0"]["vendor"] = "0x1b36"
    assert pcie.virtual_machine_fact(snap) is True


def test_iommu_state(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path)
    snap.data["files"]["/proc/cmdline"] = {"text": "BOOT_IMAGE=/vmlinuz ro intel_iommu=on iommu=pt quiet\n"}
    snap.data["dirs"] = {"/sys/class/iommu": {"entries": {"dmar0": None}}}
    state = pcie.iommu_state_fact(snap)
    assert state["units"] == ["dmar0"] and state["cmdline"] == ["intel_iommu=on", "iommu=pt"]
    assert state["group_types"]["0000:3d:00.0"] == "DMA-FQ"


def test_peermem_refused_in_kernel_log_fails_even_with_dmabuf(tmp_path: Path) -> None:
    snap = _snapshot(tmp_path)
    snap.data["files"]["/proc/driver/nvidia/version"] = {
        "text": "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.95.05  Release Build  (x)\n"}
    snap.data["commands"] = {"dmesg": {"argv": ["dmesg"], "exit": 0, "stderr": "", "stdout":
                             "[ 9.1] nvidia_peermem: Unknown symbol ib_register_peer_memory_client (err -22)\n"
                             "[ 9.2] nvidia-peermem nv_get_p2p_free_callback:127 ERROR detected invalid context\n"}}
    finding = _finding(snap, "nvidia-peermem-missing")
    assert finding.status.value == "fail" and "Unknown symbol" in finding.summary
    assert finding.url.endswith("#inbox-rdma")
    snap.data["commands"]["dmesg"]["stdout"] = "[ 9.2] nvidia-peermem nv_get_p2p_free_callback:127 ERROR detected " \
                                               "invalid context, skipping further processing\n"
    assert _finding(snap, "nvidia-peermem-missing").status.value == "ok"


def test_peermem_error_lines_of_drivers_without_the_error_marker_count(tmp_path: Path) -> None:
    # 535.113.01 and the 545 branch print peer_err() lines without "ERROR"; their TRACE lines are debug output.
    snap = _snapshot(tmp_path)
    snap.data["files"]["/proc/driver/nvidia/version"] = {
        "text": "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  545.29.06  Release Build  (x)\n"}
    line = "nvidia-peermem nv_mem_client_init:491 nv_mem_client_init -- error while registering traditional client"
    snap.data["commands"] = {"dmesg": {"argv": ["dmesg"], "exit": 0, "stderr": "", "stdout": f"[ 9.1] {line}\n"}}
    finding = _finding(snap, "nvidia-peermem-missing")
    assert finding.status.value == "fail" and "registering traditional client" in finding.summary
    snap.data["commands"]["dmesg"]["stdout"] = "[ 9.1] nvidia-peermem nv_mem_get_pages:300 TRACE get pages\n"
    assert _finding(snap, "nvidia-peermem-missing").status.value != "fail"


def test_a_bridge_without_extended_config_space_has_no_acs(tmp_path: Path) -> None:
    # As root the kernel returns 256 bytes for a function without extended config space: read in full, no ACS.
    snap = _snapshot(tmp_path, config_size=256)
    assert snap.pci["/sys/bus/pci/devices/0000:3c:08.0"]["acs"] is None
    assert _finding(snap, "pcie-acs-p2p-redirect").status.value == "ok"

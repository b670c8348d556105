"""Checks of the PCIe paths between GPUs and NICs: ACS redirection on shared switches, and the GPUDirect RDMA module."""

from __future__ import annotations

import re
from itertools import combinations
from typing import Any, Optional

from gpu_runbook.findings import Verdict, fail, ok, skip, unknown, warn
from gpu_runbook.parsers.fabric import FABRIC_NOT_SUPPORTED
from gpu_runbook.parsers.pci import (
    MELLANOX_VENDOR,
    NVIDIA_VENDOR,
    VIRTUAL_BRIDGE_VENDORS,
    class_kind,
    host_bridge,
    is_function,
    lspci_acsctl,
    normalize_bdf,
    parse_hex,
    redirecting,
    sysfs_chain,
)
from gpu_runbook.parsers.proc import DriverVersion
from gpu_runbook.parsers.toolkit import version_tuple
from gpu_runbook.probes import plan
from gpu_runbook.registry import boundary, check, fact
from gpu_runbook.snapshot import CommandFact, Missing, Snapshot, nvml_answered, nvml_devices

DEVICE_PREFIX = plan.PCI_DEVICES + "/"

VM_DMI = re.compile(r"KVM|QEMU|VMware|Virtual Machine|VirtualBox|HVM domU|Google Compute Engine|OpenStack|"
                    r"Standard PC \(|Bochs|Xen", re.IGNORECASE)


# --8<-- [start:pci-functions]
@fact("pci_functions")
def pci_functions_fact(snapshot: Snapshot) -> list[dict[str, Any]]:
    """The NVIDIA and Mellanox PCI functions on the bus, in address order (see probes/pci.py for the shape).

    Each: {"bdf", "vendor", "device", "class", "kind", "driver", "iommu_group", "iommu_group_type",
    "physfn" (on an SR-IOV virtual function: its physical function's address; else None), "numa_node",
    "host_bridge", "upstream": [bridge addresses, root port first], "link": {speeds, widths}}.
    kind is "gpu" (3D or VGA controller), "nvswitch", "audio" (a GPU's HDMI function), "network",
    "pci-bridge", "bridge", "other" or "unknown" (class unreadable). Missing when the walk was not made or the
    bus could not be listed; an empty list when the bus holds none.
    """
    pci = snapshot.pci
    listing = pci.get(plan.PCI_DEVICES)
    if not isinstance(listing, dict):
        raise Missing("the PCI bus was not walked in this snapshot (taken by an older gpu-runbook)", "skip")
    if "error" in listing:
        status = "skip" if listing["error"] in ("ENOENT", "ENOTDIR") else "unknown"
        raise Missing(f"{plan.PCI_DEVICES} could not be listed ({listing['error']})", status)
    functions = []
    for path in sorted(p for p in pci if isinstance(p, str) and p.startswith(DEVICE_PREFIX)):
        raw = pci[path]
        vendor = parse_hex(raw.get("vendor")) if isinstance(raw, dict) else None
        if vendor not in (NVIDIA_VENDOR, MELLANOX_VENDOR):
            continue
        link = raw.get("link") if isinstance(raw.get("link"), str) else ""
        chain = sysfs_chain(link)
        bdf = path[len(DEVICE_PREFIX):]
        functions.append({
            "bdf": bdf, "vendor": raw.get("vendor"), "device": raw.get("device"), "class": raw.get("class"),
            "kind": class_kind(parse_hex(raw.get("class"))), "driver": raw.get("driver"),
            "iommu_group": raw.get("iommu_group"), "iommu_group_type": raw.get("iommu_group_type"),
            "physfn": raw.get("physfn"), "numa_node": raw.get("numa_node"), "host_bridge": host_bridge(link),
            "upstream": chain[:-1] if chain and chain[-1] == bdf else chain,
            "link": {k: raw[k] for k in ("current_link_speed", "current_link_width", "max_link_speed",
                                         "max_link_width") if isinstance(raw.get(k), str)},
        })
    return functions
# --8<-- [end:pci-functions]


@fact("pci_bridges")
def pci_bridges_fact(snapshot: Snapshot) -> dict[str, dict[str, Any]]:
    """Every recorded function by address, as the probe saw it (bridges carry config_bytes, ext_caps, acs)."""
    return {p[len(DEVICE_PREFIX):]: f for p, f in snapshot.pci.items()
            if isinstance(p, str) and p.startswith(DEVICE_PREFIX) and isinstance(f, dict)}


@fact("nvlink_peers")
def nvlink_peers_fact(snapshot: Snapshot) -> dict[str, list[str]]:
    """Per GPU (its PCI address), the PCI addresses NVML reports at the far end of its active NVLinks: a bridged
    peer GPU or an NVSwitch (inside a VM the far end may read as no address at all, and is left out). Missing
    when NVML did not answer or the snapshot predates the NVLink probe; a GPU with no such address has no
    entry."""
    nvml = snapshot.nvml
    if not nvml_answered(nvml):
        raise Missing("NVML did not answer: NVLink state unknown", "skip")
    devices = nvml_devices(nvml)
    if not any("nvlink" in d for d in devices):
        raise Missing("the snapshot has no NVLink state (taken by an older gpu-runbook)", "skip")
    peers: dict[str, list[str]] = {}
    for device in devices:
        own = normalize_bdf(device.get("pci_bus_id"))
        links = device.get("nvlink") if isinstance(device.get("nvlink"), dict) else {}
        remote = sorted({b for b in (normalize_bdf(entry[1]) for entry in links.get("active") or []
                                     if isinstance(entry, list) and len(entry) == 2) if b})
        if own and remote:
            peers[own] = remote
    return peers


def _takes_nvlink(a: str, b: str, nvswitch: bool, peers: dict[str, list[str]]) -> bool:
    """Whether GPU-GPU traffic between a and b goes over NVLink: the host has NVSwitches, or a bridge joins
    them (NVML names one at the far end of the other's link). A GPU on an NVSwitch host whose links are all
    down still counts as joined: judging it would need NVML, and a check may not turn ok when NVML is
    unreadable while it warns with NVML's answer (tests/test_nonroot.py)."""
    return nvswitch or b in peers.get(a, ()) or a in peers.get(b, ())


@fact("virtual_machine")
def virtual_machine_fact(snapshot: Snapshot) -> bool:
    """Whether the snapshot comes from a virtual machine: DMI names a hypervisor, or a GPU hangs below an
    emulated bridge. Bare metal when DMI names a physical vendor (AWS *.metal included)."""
    vendor = snapshot.file("/sys/class/dmi/id/sys_vendor").text or ""
    product = snapshot.file("/sys/class/dmi/id/product_name").text or ""
    hypervisor = snapshot.file("/sys/hypervisor/type").text or ""
    if hypervisor.strip():
        return True
    if vendor.strip() == "Amazon EC2":
        return not product.strip().endswith(".metal")
    if VM_DMI.search(vendor + " " + product):
        return True
    for info in pci_bridges_fact(snapshot).values():
        if parse_hex(info.get("vendor")) in VIRTUAL_BRIDGE_VENDORS and class_kind(parse_hex(info.get("class"))) \
                == "pci-bridge":
            return True
    if not vendor and not product and not snapshot.pci:
        raise Missing("cannot tell a VM from bare metal: no DMI strings and no PCI walk in this snapshot")
    return False


IOMMU_ARGS = re.compile(r"(?:^|\s)((?:iommu|intel_iommu|amd_iommu|iommu\.passthrough|pci)=\S+)")


@fact("iommu_state")
def iommu_state_fact(snapshot: Snapshot) -> dict[str, Any]:
    """The IOMMU as the kernel set it up: units in /sys/class/iommu, IOMMU options on the kernel command line,
    and the IOMMU group type of each NVIDIA/Mellanox function ("identity" = passthrough, "DMA"/"DMA-FQ" =
    translated). Missing when neither the listing nor the command line was read."""
    listing = snapshot.dir("/sys/class/iommu")
    cmdline = snapshot.file("/proc/cmdline").text
    if "entries" not in listing and cmdline is None:
        raise Missing("neither /sys/class/iommu nor /proc/cmdline was read", "skip")
    groups = {p[len(DEVICE_PREFIX):]: f.get("iommu_group_type") for p, f in snapshot.pci.items()
              if isinstance(p, str) and p.startswith(DEVICE_PREFIX) and isinstance(f, dict)
              and parse_hex(f.get("vendor")) in (NVIDIA_VENDOR, MELLANOX_VENDOR) and f.get("iommu_group") is not None}
    return {"units": sorted(listing.get("entries") or {}) if "entries" in listing else None,
            "cmdline": IOMMU_ARGS.findall(cmdline or ""),
            "group_types": groups}


def _endpoints(functions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """GPUs and Mellanox NICs: the functions whose peer traffic (GPU-GPU, GPU-NIC) crosses switches."""
    return [f for f in functions if is_function(f, "gpu") or is_function(f, "network", MELLANOX_VENDOR)]


def shared_path(a: list[str], b: list[str]) -> tuple[list[str], list[str]]:
    """The bridges two functions share (from the root port down) and the two ports where their paths part.

    Peer traffic between them turns at the last shared bridge (or in the root complex when they share none)
    and enters it through the first port below it on each side; ACS P2P Request/Completion Redirect there
    sends the traffic up to the root complex instead. Ports further down forward it upstream in any case.

    >>> shared_path(["0000:3a:00.0", "0000:3b:00.0", "0000:3c:08.0"], ["0000:3a:00.0", "0000:3b:00.0", "0000:3c:10.0"])
    (['0000:3a:00.0', '0000:3b:00.0'], ['0000:3c:08.0', '0000:3c:10.0'])
    >>> shared_path(["0000:17:01.0"], ["0000:5d:01.0"])
    ([], ['0000:17:01.0', '0000:5d:01.0'])
    >>> shared_path(["0000:16:02.0", "0000:17:00.0", "0000:18:04.0"], ["0000:5d:02.0", "0000:5e:00.0", "0000:5f:04.0"])
    ([], ['0000:16:02.0', '0000:5d:02.0'])
    """
    common: list[str] = []
    for x, y in zip(a, b):
        if x != y:
            break
        common.append(x)
    n = len(common)
    return common, a[n:n + 1] + b[n:n + 1]


# --8<-- [start:pcie-acs-p2p-redirect]
def _port_acs(info: dict[str, Any]) -> tuple[Optional[str], Optional[str]]:
    """(lspci-style ACSCtl when a redirect bit is set, why ACS could not be read) for one bridge."""
    acs = info.get("acs")
    if isinstance(acs, dict):
        control = acs.get("control")
        if not isinstance(control, int) or isinstance(control, bool):
            return None, "malformed ACS record"
        return ("ACSCtl: " + lspci_acsctl(control) if redirecting(control) else None), None
    if "acs" in info:
        return None, None  # read in full: the port has no ACS capability, so it cannot redirect
    errors = info.get("errors") if isinstance(info.get("errors"), dict) else {}
    size = info.get("config_bytes")
    if errors.get("config"):
        return None, f"config space {errors['config']}"
    if size is not None:
        return None, f"only {size} bytes of config space readable: needs root"
    return None, "not recorded"


def _nvswitch_host(functions: list[dict[str, Any]], fabric: Optional[dict[str, Any]]) -> bool:
    """Whether the GPUs sit on an NVSwitch fabric (NVSwitch PCI functions, NVSwitches the driver manages, or a
    GPU in an NVLink fabric per NVML): their GPU-GPU traffic then goes over NVLink, not PCIe."""
    if any(f["kind"] == "nvswitch" for f in functions):
        return True
    fabric = fabric or {}
    states = fabric.get("gpu_fabric") if isinstance(fabric.get("gpu_fabric"), dict) else {}
    return bool(fabric.get("nvswitches") or fabric.get("nodes")) or any(
        isinstance(f, dict) and f.get("state") not in (None, FABRIC_NOT_SUPPORTED) for f in states.values())


@check("pcie-acs-p2p-redirect", title="ACS redirects peer-to-peer traffic between GPUs",
       page="p2p-topology", facts=("pci_functions", "pci_bridges"),
       optional=("virtual_machine", "iommu_state", "nvlink_fabric", "nvlink_peers"))
def check_acs_redirect(  # noqa: PLR0917 (the registry passes each declared fact positionally)
        functions: list[dict[str, Any]], bridges: dict[str, dict[str, Any]], vm: Optional[bool],
        iommu: Optional[dict[str, Any]], fabric: Optional[dict[str, Any]],
        nvlink_peers: Optional[dict[str, list[str]]]) -> Verdict:
    """A PCIe port on the path between two GPUs (or a GPU and a NIC) has ACS P2P redirect enabled.

    Why it matters: with ACS P2P Request/Completion Redirect set on a switch's downstream ports or on the
    root ports, peer reads and writes that would turn there are sent up to the root complex (and its
    IOMMU). CUDA can still report the GPUs as peers, so NCCL all-reduce runs slowly or hangs, and works once
    P2P is off (NCCL_P2P_DISABLE=1). Linux sets these bits itself when an IOMMU is on (VT-d, AMD-Vi); firmware
    may too. A pair behind one shared switch fails; a pair that meets in the root complex warns: redirect on the
    root ports sends their traffic through the IOMMU too, but whether root ports forward peer traffic at all
    depends on the platform.

    Not judged: GPU pairs on an NVSwitch host and GPU pairs joined by an NVLink bridge (NVML reports one GPU
    at the far end of the other's active link): their traffic takes NVLink. Nor GPU-NIC pairs that meet only
    in the root complex (on PCIe paths NCCL uses GPUDirect RDMA up to PXB by default).

    Evidence: each judged pair with the ports where their paths part, and each redirecting port's ACS
    control register as `lspci -vvv` prints it (ACSCtl). Reading ACS needs root (config space beyond 64
    bytes needs CAP_SYS_ADMIN).

    References: NCCL troubleshooting, "PCI Access Control Services (ACS)"; PCIe Base Specification, ACS
    Extended Capability; Linux include/uapi/linux/pci_regs.h (PCI_ACS_CTRL bits).
    """
    endpoints = _endpoints(functions)
    if not any(f["kind"] == "gpu" for f in endpoints) or len(endpoints) < 2:
        return skip(f"{sum(f['kind'] == 'gpu' for f in endpoints)} NVIDIA GPU(s) and "
                    f"{sum(f['kind'] == 'network' for f in endpoints)} Mellanox NIC function(s) on the bus: "
                    "no peer pair to judge")
    redirected: dict[str, str] = {}
    unreadable: dict[str, str] = {}
    pairs: dict[str, dict[str, Any]] = {}
    not_judged: list[str] = []
    nvswitch = _nvswitch_host(functions, fabric)
    peers = nvlink_peers or {}
    for a, b in combinations(endpoints, 2):
        if a["kind"] != "gpu" and b["kind"] != "gpu":
            continue
        common, ports = shared_path(a["upstream"], b["upstream"])
        gpu_pair = a["kind"] == b["kind"] == "gpu"
        if (gpu_pair and _takes_nvlink(a["bdf"], b["bdf"], nvswitch, peers)) or \
                (a["kind"] != b["kind"] and not common):
            not_judged.append(f"{a['bdf']}<->{b['bdf']}")
            continue
        pair_redirects = []
        for port in ports:
            shown, why = _port_acs(bridges.get(port, {}))
            if shown:
                redirected[port] = shown
                pair_redirects.append(port)
            elif why:
                unreadable[port] = why
        pairs[f"{a['bdf']}<->{b['bdf']}"] = {"meet": "switch " + common[-1] if common else "root complex",
                                              "ports": ports, "redirecting": pair_redirects}
    evidence: dict[str, Any] = {"pairs": pairs, "virtual_machine": vm, "iommu": iommu}
    if peers:
        evidence["nvlink_peers"] = peers
    if not_judged:
        evidence["not_judged"] = {"pairs": not_judged, "why": "GPU pairs on an NVSwitch host or joined by an NVLink "
                                  "bridge use NVLink; GPU-NIC pairs that meet in the root complex are beyond "
                                  "NCCL's default GDR level on PCIe paths (PXB)"}
    if not pairs:
        return skip(f"no GPU/NIC pair crosses PCIe ports this check judges ({len(not_judged)} pair(s) set aside: "
                    "NVLink between the GPUs, or GPU and NIC meet only in the root complex)", evidence)
    if redirected:
        evidence["redirecting_ports"] = redirected
    bad_switch = sorted(p for p, v in pairs.items() if v["redirecting"] and v["meet"] != "root complex")
    bad_rc = sorted(p for p, v in pairs.items() if v["redirecting"] and v["meet"] == "root complex")
    if bad_switch or bad_rc:
        bad = bad_switch or bad_rc
        where = "behind a shared PCIe switch" if bad_switch else "on their root ports"
        summary = (f"pcie-acs-p2p-redirect: ACS P2P redirect is on at {', '.join(sorted(redirected))}, "
                   f"{where}, between {', '.join(bad[:4])}{' ...' if len(bad) > 4 else ''}: peer traffic is sent "
                   "up to the root complex (expected ReqRedir- CmpltRedir-)")
        if vm:
            return warn(summary + "; this is a VM: these bridges are emulated and the host's ACS decides",
                        "In a VM ACS must stay on: ask the hypervisor for P2P (vSphere pciPassthru.allowP2P and "
                        "RelaxACSforP2P) and enable ATS on the NICs; do not clear ACS inside the guest.", evidence)
        fix = ("Disable IO virtualization (VT-d/IOMMU) or ACS in the BIOS, or clear ACS on these ports after each "
               "boot: setpci -s <port> ECAP_ACS+0x6.w=0000; then re-run the P2P test. GPUs joined by NVLink "
               "(NV# in nvidia-smi topo -m) do not use this path for GPU-GPU traffic.")
        return (fail if bad_switch else warn)(summary, fix, evidence)
    if unreadable:
        evidence["unreadable_ports"] = unreadable
        return unknown(f"pcie-acs-p2p-redirect: cannot read ACS on {len(unreadable)} port(s) between "
                       f"{len(pairs)} peer pair(s): {next(iter(unreadable.values()))}", evidence,
                       "Run gpu-runbook check as root (sudo) to read the ACS registers.")
    return ok(f"no ACS redirect on the ports between {len(pairs)} GPU/NIC peer pair(s)", evidence)
# --8<-- [end:pcie-acs-p2p-redirect]


# -- GPUDirect RDMA -----------------------------------------------------------------------------------

# NVIDIA's GPU Operator RDMA guide: the DMA-BUF path needs Linux 5.12 or later (and the open kernel module).
DMABUF_KERNEL = boundary("gpudirect-rdma.dmabuf-kernel", "kernel", "5.12")
# The kernel's refusals (module symbol checks) and nvidia-peermem's own peer_err() lines: "nvidia-peermem
# <function>:<line> ERROR ..." in the 535 branch from 535.129.03 (535.43.24 in the 535.43 releases) and from
# 550, the same without "ERROR" in 535.113.01, 535.43.23 and earlier and in 545 (where peer_err was the only
# macro with that prefix); TRACE lines are debug.
PEERMEM_LOG = re.compile(r"[^\n]*(?:nvidia_peermem: (?:disagrees about version|Unknown symbol)"
                         r"|nvidia-peermem \S+:\d+ (?!TRACE ))[^\n]*")
# Logged by the free callback when a context fails its magic-value check and is skipped (nvidia-peermem.c, in
# 535 from 535.129.03 and 535.43.24, and from 550; not in 545): not a failure of GPUDirect RDMA.
PEERMEM_HARMLESS = "detected invalid context"
ETHERNET_CLASS = 0x0200  # PCI class 02 (network) sub-class 00 (Ethernet); ConnectX in InfiniBand mode is 0x0207


@fact("peer_memory")
def peer_memory_fact(snapshot: Snapshot) -> dict[str, Any]:
    """What NCCL itself looks at for the legacy GDR path (src/transport/net_ib/gdr.cc): the nvidia_peermem module's
    sysfs version and the peer-memory clients registered under /sys/kernel/mm/memory_peers (nv_mem, nv_mem_nc)."""
    version = snapshot.file("/sys/module/nvidia_peermem/version")
    clients = sorted(p.split("/")[-2] for p, f in snapshot.files_matching("/sys/kernel/mm/memory_peers/").items()
                     if f.exists)
    if version.error == "not-collected" and not clients:
        raise Missing("the peer-memory sysfs files were not read in this snapshot", "skip")
    return {"nvidia_peermem_version": (version.text or "").strip() or None, "memory_peers": clients}


# --8<-- [start:nvidia-peermem-missing]
@check("nvidia-peermem-missing", title="No GPUDirect RDMA kernel path for the NIC",
       page="gpudirect-rdma", facts=("pci_functions", "proc_modules"),
       optional=("kernel_driver", "kernel_release", "kernel_log", "peer_memory", "virtual_machine"))
def check_peermem(  # noqa: PLR0917 (the registry passes each declared fact positionally)
        functions: list[dict[str, Any]], modules: dict[str, dict[str, object]], driver: Optional[DriverVersion],
        release: Optional[str], log: Optional[CommandFact], peer_memory: Optional[dict[str, Any]],
        vm: Optional[bool]) -> Verdict:
    """nvidia_peermem failed to load, or a GPU + Mellanox NIC host has neither it nor a DMA-BUF path.

    Why it matters: GPUDirect RDMA (NCCL's GDR over InfiniBand/RoCE) needs a kernel path that lets the NIC
    reach GPU memory: DMA-BUF (open GPU kernel module, Linux 5.12 or later; NVIDIA's recommendation), or
    the legacy nvidia_peermem module, which works only against MLNX_OFED/DOCA-OFED's ib_core (built
    against the inbox RDMA stack its init returns -EINVAL: "could not insert 'nvidia_peermem': Invalid
    argument"). Without either, NCCL falls back to staging through host memory.

    A refusal in the kernel log (symbol version mismatch, unknown symbol, a peermem ERROR line) fails: something
    meant to load it. The "detected invalid context" line is not counted: a loaded module's free callback logs
    it when it skips a context it does not recognise, not a load refusal. A VM whose
    Mellanox functions are all Ethernet VFs (cloud accelerated networking) skips unless the log shows a refusal.

    Evidence: the NICs and GPUs on the bus, whether nvidia_peermem and mlx_compat (MLNX_OFED's
    compatibility module) are loaded, the module flavour, the kernel release, peermem lines in dmesg.

    References: NVIDIA GPU Operator, "GPUDirect RDMA and GPUDirect Storage" (DMA-BUF vs nvidia-peermem
    prerequisites); open-gpu-kernel-modules kernel-open/nvidia-peermem/nvidia-peermem.c; NCCL troubleshooting,
    "GPU-to-NIC communication".
    """
    gpus = [f["bdf"] for f in functions if is_function(f, "gpu")]
    nics = [f["bdf"] for f in functions if is_function(f, "network", MELLANOX_VENDOR)]
    evidence: dict[str, Any] = {"gpus": gpus, "mellanox_functions": nics,
                                "nvidia_peermem_loaded": "nvidia_peermem" in modules,
                                "mlx_compat_loaded": "mlx_compat" in modules,
                                "ib_core_loaded": "ib_core" in modules}
    if not gpus or not nics:
        return skip(f"{len(gpus)} NVIDIA GPU(s) and {len(nics)} Mellanox function(s): GPUDirect RDMA does not apply",
                    evidence)
    errors = [line.strip() for line in PEERMEM_LOG.findall(log.output) if PEERMEM_HARMLESS not in line] \
        if log is not None else []
    if errors:
        evidence["kernel_log"] = errors[-3:]
    ethernet_only = all((parse_hex(f["class"]) or 0) >> 8 == ETHERNET_CLASS for f in functions
                        if f["kind"] == "network" and parse_hex(f["vendor"]) == MELLANOX_VENDOR)
    if vm and ethernet_only and not errors and "nvidia_peermem" not in modules:
        # Cloud VMs get Mellanox Ethernet VFs for accelerated networking, not for RDMA (Azure's NC/ND VMs among them).
        return skip(f"a VM whose {len(nics)} Mellanox function(s) are Ethernet controllers (accelerated networking "
                    "VFs): no InfiniBand function to use GPUDirect RDMA with", evidence)
    if peer_memory:
        evidence["peer_memory"] = peer_memory
    legacy = [m for m in ("nvidia_peermem", "nv_peer_mem") if m in modules]
    if legacy or (peer_memory or {}).get("memory_peers"):
        return ok(f"{(legacy or ['a peer-memory client'])[0]} is loaded: the legacy GPUDirect RDMA path is available",
                  evidence)
    if errors:
        # Someone (the GPU Operator's peermem container, a boot script) tried to load it and the kernel refused.
        mismatch = any("disagrees about version" in line for line in errors)
        fix = ("Rebuild nvidia_peermem against the running MLNX_OFED/DOCA-OFED (GPU Operator: recreate the node's "
               "driver pod; from 26.3.0 only with FORCE_REINSTALL=true, else it reuses the loaded driver), or drop it "
               "and use DMA-BUF." if mismatch else
               "Read the kernel log lines; nvidia_peermem needs MLNX_OFED/DOCA-OFED's ib_core, or use DMA-BUF.")
        return fail(f"nvidia-peermem-missing: nvidia_peermem failed to load: {errors[-1][:200]}", fix, evidence,
                    anchor="abi-mismatch" if mismatch else "inbox-rdma")
    flavour = driver.flavour if driver is not None else None
    kernel = version_tuple(release) if release else None
    evidence.update({"kernel_module_flavour": flavour, "kernel_release": release})
    if flavour == "open" and kernel is not None and kernel[:2] >= DMABUF_KERNEL:
        if log is None:
            # Without the kernel log a refused nvidia_peermem (the GPU Operator's crash-looping sidecar) is invisible.
            return unknown("nvidia-peermem-missing: the DMA-BUF path is available (open module, Linux "
                           f"{release}), but ruling out a refused nvidia_peermem load needs the kernel log (root)",
                           evidence, "Run gpu-runbook check as root to read dmesg.")
        return ok(f"DMA-BUF path available (open kernel module, Linux {release}): nvidia_peermem is not needed; "
                  "NCCL uses DMA-BUF by itself", evidence)
    if flavour is None or kernel is None:
        raise Missing("nvidia_peermem is not loaded, and the module flavour or kernel release needed to judge the "
                      "DMA-BUF path is not in the snapshot")
    why = ("the proprietary kernel module has no DMA-BUF export for the NIC" if flavour != "open"
           else f"Linux {release} is older than 5.12, the first with the DMA-BUF RDMA path")
    if "mlx_compat" not in modules:
        fix = ("With the inbox RDMA stack nvidia_peermem cannot load (Invalid argument): install the open GPU kernel "
               "module (DMA-BUF), or MLNX_OFED/DOCA-OFED before the GPU driver and then modprobe nvidia-peermem.")
    else:
        fix = "Load it after MLNX_OFED/DOCA-OFED: modprobe nvidia-peermem (GPU Operator: driver.rdma.enabled=true)."
    return warn(f"nvidia-peermem-missing: {len(nics)} Mellanox function(s) and {len(gpus)} GPU(s), nvidia_peermem not "
                f"loaded and no DMA-BUF path ({why}): GPUDirect RDMA is off", fix, evidence)
# --8<-- [end:nvidia-peermem-missing]


# -- GPUDirect Storage --------------------------------------------------------------------------------
NVIDIA_FS_MODULES = "/proc/driver/nvidia-fs/modules"
# Local storage modules whose registration nvidia-fs lists under the module's own name (gds-nvidia-fs
# src/nvfs-dma.h, NVFS_PROC_MOD_NVME_KEY and NVFS_PROC_MOD_NVME_RDMA_KEY).
NVFS_STORAGE_MODULES = ("nvme", "nvme_rdma")


@fact("nvidia_fs_registered")
def nvidia_fs_registered_fact(snapshot: Snapshot) -> list[str]:
    """The storage drivers registered with nvidia-fs, from /proc/driver/nvidia-fs/modules ("nvme: <version>" lines).

    nvidia-fs registers them when a process opens it (cuFile) and drops them when the last one closes
    (gds-nvidia-fs src/nvfs-core.c, nvfs_open/nvfs_close), so an empty list on an idle host means nothing.
    """
    file_ = snapshot.file(NVIDIA_FS_MODULES)
    if file_.text is None:
        if file_.absent or file_.error == "not-collected":
            raise Missing(f"{NVIDIA_FS_MODULES} is not there (nvidia-fs not loaded, or not collected)", "skip")
        raise Missing(f"{NVIDIA_FS_MODULES} could not be read ({file_.why})", "unknown")
    return [line.split(":", 1)[0].strip() for line in file_.text.splitlines() if ":" in line]


# --8<-- [start:gds-nvme-registered]
@check("gds-nvme-registered", title="The NVMe driver registered with nvidia-fs (GPUDirect Storage)",
       page="gpudirect-rdma", facts=("proc_modules", "nvidia_fs_registered"))
def check_gds_nvme(modules: dict[str, dict[str, object]], registered: list[str]) -> Verdict:
    """nvidia-fs is in use, but the NVMe driver did not register with it, so cuFile reads from local NVMe (or
    NVMe-oF) fall back to compatibility mode ("NVMe Driver not registered with nvidia-fs!!!").

    Why it matters: nvidia-fs finds each storage driver by looking up that driver's registration symbol when a
    process opens it. An NVMe driver without the hook (the distribution's, where only a patched or
    MLNX_OFED/DOCA build has it), or one exporting a symbol version this nvidia-fs does not look for (v1 vs v2
    from nvidia-fs 2.28.2), never registers: reads still work, through host memory.

    The list is filled only while a process holds nvidia-fs open and emptied when the last one closes, so the
    check judges only a list that names some other driver (proof that registration ran): an empty list is not
    a failure.

    Evidence: /proc/driver/nvidia-fs/modules, and the nvme/nvme_rdma modules in /proc/modules.

    References: NVIDIA/gds-nvidia-fs src/nvfs-mod.c (probe_module_list), src/nvfs-core.c (nvfs_open,
    nvfs_close), src/nvfs-proc.c (nvfs_modules_show); NVIDIA/gds-nvidia-fs#87.
    """
    loaded = [name for name in NVFS_STORAGE_MODULES if name in modules]
    evidence: dict[str, Any] = {"registered": registered, "storage_modules": loaded,
                                "nvidia_fs_loaded": "nvidia_fs" in modules}
    if not loaded:
        return skip("no nvme or nvme_rdma module loaded: nothing local for nvidia-fs to register", evidence)
    if not registered:
        return skip(f"{NVIDIA_FS_MODULES} lists no driver: no process has nvidia-fs open now (drivers register "
                    "when cuFile opens it); run the check while a GDS job or gdscheck runs", evidence)
    missing = [name for name in loaded if name not in registered]
    if missing:
        return warn(f"nvidia-fs is in use ({', '.join(registered)} registered) but {', '.join(missing)} did not "
                    "register: cuFile reads from those devices run in compatibility mode through host memory",
                    "Use an NVMe driver that carries nvidia-fs's registration hook (MLNX_OFED/DOCA-OFED's, with "
                    "an nvidia-fs that looks for the same symbol version), or the CUDA 12.8+ P2PDMA mode; "
                    "confirm with gdscheck -p.", evidence, anchor="gds")
    return ok(f"{', '.join(loaded)} registered with nvidia-fs", evidence)
# --8<-- [end:gds-nvme-registered]

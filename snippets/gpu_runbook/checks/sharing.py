"""Checks of GPU sharing: MIG mode and MIG devices, the MPS control daemon and its client settings."""

from __future__ import annotations

import re
from typing import Any, Optional

from gpu_runbook.findings import Verdict, fail, ok, skip, unknown, warn
from gpu_runbook.parsers.sharing import parse_capability_minor, parse_thread_percentage, parse_visible_devices
from gpu_runbook.registry import check, fact
from gpu_runbook.snapshot import ABSENT, Missing, Snapshot

# -- facts of this section ------------------------------------------------------------------------

MPS_DEFAULT_PIPE_DIR = "/tmp/nvidia-mps"  # noqa: S108  (a path on the judged host, not a temp file)
# The v3 reference of NVIDIA's R615/R620 MPS guides gives this as the pipe directory of a control daemon started
# as root without CUDA_MPS_PIPE_DIRECTORY, while the same guides' environment-variable appendix still names
# /tmp/nvidia-mps (ledger: mps-v3-pipe-dir-default-conflict). A socket here is reported, never taken as the clients'.
MPS_V3_ROOT_PIPE_DIR = "/run/nvidia-mps"
# What a listening control daemon leaves at <pipe dir>/control.
LISTENING_KINDS = ("socket", "fifo")
CAPS_DIR = "/proc/driver/nvidia/capabilities/"
# A literal file of the plan: recorded (text or ENOENT) whenever the probes ran the file plan.
MIG_CONFIG_CAP = "/proc/driver/nvidia/capabilities/mig/config"
MIG_ACCESS = re.compile(r"^/proc/driver/nvidia/capabilities/gpu(\d+)/mig/gi(\d+)(?:/ci(\d+))?/access$")
# nvmlComputeMode_t
COMPUTE_MODES = {0: "Default", 1: "Exclusive_Thread", 2: "Prohibited", 3: "Exclusive_Process"}
EXCLUSIVE_PROCESS = 3
# From Hopper (compute capability 9.0) on, a MIG mode change takes effect when it is set, without a GPU reset,
# and the mode lasts only while the driver is loaded; Ampere (8.x) needs the reset and keeps the mode across
# reboots. Ledger facts mig-hopper-no-reset and mig-ampere-reset (tests/data/facts/mig.yaml). An architecture,
# not a component version: a named constant, not a registry.boundary.
MIG_NO_RESET_CC = (9, 0)
# nvmlDeviceArchitecture_t NVML_DEVICE_ARCH_HOPPER, for devices whose compute capability NVML did not give.
NVML_ARCH_HOPPER = 9
NVML_ARCH_UNKNOWN = 0xFFFFFFFF


def _int(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@fact("gpus")
def gpus_fact(snapshot: Snapshot) -> list[dict[str, Any]]:
    """The devices NVML reported, as dicts (those NVML could not open keep their "error")."""
    nvml = snapshot.nvml
    if not nvml or "skipped" in nvml:
        raise Missing("NVML was not queried in this snapshot", "skip")
    init = nvml.get("init")
    if init != {"ok": True}:
        error = init.get("error") if isinstance(init, dict) else None
        name = error.get("name") if isinstance(error, dict) else None
        raise Missing(f"NVML did not initialise ({name or 'no answer'}): GPU modes are unknown (see nvml-init)")
    devices = nvml.get("devices")
    if not isinstance(devices, list):
        raise Missing("NVML gave no device list")
    return [d for d in devices if isinstance(d, dict)]


@fact("mps_pipe")
def mps_pipe_fact(snapshot: Snapshot) -> dict[str, Any]:
    """The MPS pipe directory a CUDA client here would use, and whether the control daemon listens there.

    ``running`` is True (control socket present), False (absent) or None (could not be examined); ``elsewhere``
    names /run/nvidia-mps/control when a daemon listens there while the unset variable's default has none.
    """
    configured = snapshot.env.get("CUDA_MPS_PIPE_DIRECTORY", "").strip()
    pipe_dir = configured.rstrip("/") or (MPS_DEFAULT_PIPE_DIR if not configured else "/")
    control = snapshot.path(f"{pipe_dir}/control")
    if control.get("error") == "not-collected":
        if configured and pipe_dir != MPS_DEFAULT_PIPE_DIR:
            raise Missing(f"CUDA_MPS_PIPE_DIRECTORY={configured} is outside the collection plan: "
                          f"check by hand with `ls -l {pipe_dir}/control`", "skip")
        raise Missing("the MPS pipe directory was not examined in this snapshot", "skip")
    if control.get("kind") in LISTENING_KINDS:
        running: Optional[bool] = True
    elif control.get("error") in ABSENT or control.get("kind") is not None:
        running = False  # absent, or something that is not a socket (a stale file left behind)
    else:
        running = None
    # A daemon elsewhere: only looked for when the client would use the default directory and finds none there.
    elsewhere = None
    if not configured and running is False:
        other = snapshot.path(f"{MPS_V3_ROOT_PIPE_DIR}/control")
        if other.get("kind") in LISTENING_KINDS:
            elsewhere = f"{MPS_V3_ROOT_PIPE_DIR}/control"
    return {"pipe_dir": pipe_dir, "configured": bool(configured), "running": running, "control": control,
            "elsewhere": elsewhere}


def _daemon_elsewhere(pipe: dict[str, Any], control: str) -> str:
    """Why a client using the default pipe directory may or may not reach the daemon found at /run/nvidia-mps."""
    return (f"no MPS control daemon at {control}, but one listens at {pipe['elsewhere']}: NVIDIA's MPS v3 "
            "reference (R615 and later guides) gives /run/nvidia-mps as a root daemon's default, its "
            "environment-variable appendix /tmp/nvidia-mps, so whether clients that leave "
            "CUDA_MPS_PIPE_DIRECTORY unset reach it is not known from here: read the directory the daemon "
            "announced in control.log and give clients that CUDA_MPS_PIPE_DIRECTORY")


@fact("client_env")
def client_env_fact(snapshot: Snapshot) -> dict[str, str]:
    """The collecting process's NVIDIA_* and CUDA_* variables (what a CUDA client started here inherits)."""
    return snapshot.env


def _mig_mode(device: dict[str, Any]) -> tuple[Optional[int], Optional[int], Optional[str]]:
    """(current, pending, error name) of a device's MIG mode fact."""
    mode = device.get("mig_mode")
    if isinstance(mode, dict) and "error" in mode:
        error = mode["error"]
        return None, None, str(error.get("name") if isinstance(error, dict) else error)
    if isinstance(mode, dict):
        return _int(mode.get("current")), _int(mode.get("pending")), None
    return None, None, "no MIG mode fact"


def _label(device: dict[str, Any]) -> str:
    name = device.get("name")
    return f"GPU {device.get('index')}" + (f" ({name})" if isinstance(name, str) else "")


# --8<-- [start:mig-mode-pending]
def mig_mode_applies_without_reset(device: dict[str, Any]) -> Optional[bool]:
    """True on Hopper and later (no GPU reset for a MIG mode change), False before, None when unknown.

    >>> mig_mode_applies_without_reset({"cuda_compute_capability": [9, 0]})
    True
    >>> mig_mode_applies_without_reset({"cuda_compute_capability": [8, 0]})
    False
    >>> mig_mode_applies_without_reset({"architecture": 10}), mig_mode_applies_without_reset({}) is None
    (True, True)
    """
    cc = device.get("cuda_compute_capability")
    if isinstance(cc, list) and len(cc) == 2 and all(_int(part) is not None for part in cc):
        return (cc[0], cc[1]) >= MIG_NO_RESET_CC
    arch = _int(device.get("architecture"))
    if arch is not None and 0 < arch != NVML_ARCH_UNKNOWN:
        return arch >= NVML_ARCH_HOPPER
    return None


@check("mig-mode-pending", title="MIG mode change has taken effect", page="mig", facts=("gpus",))
def mig_mode_pending_reset(gpus: list[dict[str, Any]]) -> Verdict:
    """A GPU's pending MIG mode differs from its current one: the mode change has not taken effect.

    ## Why it matters
    `nvidia-smi -mig 1` (or 0) records the wanted mode as *pending*. On Ampere (A100, A30) it takes effect
    only after a GPU reset, which the driver tries itself and gives up on while any process holds the GPU
    ("In use by another client"); in pass-through VMs the hypervisor may refuse the reset, and only a VM
    reboot applies it. From Hopper on (H100, H200, B200), the change needs no reset and applies when it is
    set, so a mode left pending there was not applied: set it again with the GPU idle. Until the modes
    agree, GPU instances cannot be created (enable pending; mig-parted then reports "unable to apply MIG
    config with MIG mode disabled") or the GPU cannot be used whole (disable pending).

    ## Evidence
    NVML nvmlDeviceGetMigMode (current, pending) and the CUDA compute capability of each GPU.

    ## References
    NVIDIA MIG User Guide, "Enable MIG Mode" (GPU Reset on Hopper+ GPUs; on NVIDIA Ampere Architecture GPUs);
    NVML nvmlDeviceSetMigMode / nvmlDeviceGetMigMode.
    """
    state = {0: "Disabled", 1: "Enabled"}
    capable: dict[str, str] = {}
    pending: dict[Optional[bool], list[str]] = {True: [], False: [], None: []}
    unreadable: list[str] = []
    for device in gpus:
        current, wanted, error = _mig_mode(device)
        if error == "NVMLError_NotSupported":
            continue  # not a MIG-capable GPU (pre-Ampere, GeForce, ...)
        if error or current is None or wanted is None:
            unreadable.append(f"{_label(device)}: {error or 'malformed MIG mode'}")
            continue
        capable[_label(device)] = f"current {state.get(current, current)}, pending {state.get(wanted, wanted)}"
        if current != wanted:
            pending[mig_mode_applies_without_reset(device)].append(
                f"{_label(device)} MIG mode is {state.get(current, current)} but {state.get(wanted, wanted)} "
                "is pending")
    evidence = {"mig_mode": capable, "unreadable": unreadable}
    parts = []
    if pending[False]:
        parts.append("; ".join(pending[False]) + ": on Ampere the change takes effect only after a GPU reset")
    if pending[True]:
        parts.append("; ".join(pending[True]) + ": on Hopper and later the change needs no GPU reset and "
                     "applies when set, so this one was not applied")
    if pending[None]:
        parts.append("; ".join(pending[None]) + ": the change has not taken effect")
    if parts:
        fixes = []
        if pending[False] or pending[None]:
            fixes.append("Ampere: stop every process on the GPU (DCGM, exporters, containers), then reset it "
                         "(nvidia-smi --gpu-reset -i N) or reboot; in a pass-through VM reboot the VM.")
        if pending[True] or pending[None]:
            fixes.append("Hopper and later: stop every process on the GPU and set the mode again "
                         "(nvidia-smi -i N -mig 1 or 0); no reset is needed.")
        anchor = "pending-reset" if pending[False] or pending[None] else "pending-hopper"
        return fail("; ".join(parts), " ".join(fixes), evidence, anchor=anchor)
    if unreadable:
        return unknown(f"MIG mode unreadable: {'; '.join(unreadable)}", evidence)
    if not capable:
        return skip("no MIG-capable GPU: NVML reports MIG as not supported", evidence)
    return ok(f"MIG mode settled on {len(capable)} MIG-capable GPU(s): "
              + "; ".join(f"{k} {v}" for k, v in capable.items()), evidence)
# --8<-- [end:mig-mode-pending]


# --8<-- [start:mig-devices-visible]
def mig_access_files(files: dict[str, Any]) -> dict[int, dict[int, dict[str, Any]]]:
    """{gpu minor: {gi id: {"minor": cap minor, "cis": {ci id: cap minor}}}} from the capability files."""
    tree: dict[int, dict[int, dict[str, Any]]] = {}
    for path, fact_ in files.items():
        match = MIG_ACCESS.match(path)
        if not match or fact_.absent:
            continue  # (an EACCES file still exists: it counts)
        minor = parse_capability_minor(fact_.text) if fact_.text is not None else None
        gpu, gi = int(match.group(1)), int(match.group(2))
        node = tree.setdefault(gpu, {}).setdefault(gi, {"minor": None, "cis": {}})
        if match.group(3) is None:
            node["minor"] = minor
        else:
            node["cis"][int(match.group(3))] = minor
    return tree


@fact("mig_capabilities")
def mig_capabilities_fact(snapshot: Snapshot) -> dict[str, Any]:
    """MIG capability files (instances that exist or were granted) and the /dev/nvidia-caps listing."""
    if snapshot.file(MIG_CONFIG_CAP).error in ("not-collected", "malformed"):
        raise Missing("/proc/driver/nvidia/capabilities was not read in this snapshot")
    return {"tree": mig_access_files(snapshot.files_matching(CAPS_DIR)),
            "caps_dir": snapshot.dir("/dev/nvidia-caps")}


@check("mig-devices-visible", title="MIG-enabled GPUs have MIG devices this workload can use", page="mig",
       facts=("gpus", "mig_capabilities", "client_env"), optional=("in_container",))
def mig_enabled_without_usable_devices(gpus: list[dict[str, Any]], caps: dict[str, Any], env: dict[str, str],
                                       in_container: Optional[bool]) -> Verdict:
    """MIG is enabled on a GPU, but no MIG device (GPU instance + compute instance) is usable here.

    ## Why it matters
    A GPU in MIG mode runs CUDA work only inside MIG devices. With no GPU instance, with a GPU instance
    but no compute instance, or inside a container that was handed the whole GPU instead of a MIG
    device, CUDA finds nothing to run on; a capability node missing from /dev/nvidia-caps makes the
    instance unusable even though it exists.

    ## Evidence
    NVML MIG mode and device minor of each GPU; /proc/driver/nvidia/capabilities/gpuN/mig/giX[/ciY]/access
    (one per existing or granted instance, with its DeviceFileMinor); the /dev/nvidia-caps listing;
    NVIDIA_VISIBLE_DEVICES inside a container.

    ## References
    NVIDIA MIG User Guide, "Getting Started with MIG" and "Device Nodes and Capabilities".
    """
    enabled = [d for d in gpus if _mig_mode(d)[0] == 1]
    if not enabled:
        return skip("MIG is not enabled on any GPU")
    tree: dict[int, dict[int, dict[str, Any]]] = caps["tree"]
    listing: dict[str, Any] = caps["caps_dir"]
    if isinstance(listing.get("entries"), dict):
        entries: Optional[dict[str, Any]] = listing["entries"]
    else:  # no /dev/nvidia-caps at all: every node is missing; unlistable: nodes cannot be judged
        entries = {} if listing.get("error") in ABSENT else None
    evidence: dict[str, Any] = {"mig_enabled": [_label(d) for d in enabled],
                                "instances": {f"gpu{g}": sorted(gis) for g, gis in tree.items()}}
    no_instance: list[str] = []
    no_compute: list[str] = []
    missing_nodes: list[str] = []
    unjudged: list[str] = []
    usable = 0
    for device in enabled:
        minor = _int(device.get("minor_number"))
        if minor is None:
            return unknown(f"{_label(device)}: NVML gave no device minor, so its MIG instances cannot be "
                           "matched", evidence)
        gis = tree.get(minor, {})
        if not gis:
            no_instance.append(_label(device))
        for gi, node in sorted(gis.items()):
            if not node["cis"]:
                no_compute.append(f"{_label(device)} GPU instance {gi}")
            for ci, ci_minor in sorted(node["cis"].items()):
                wanted = [m for m in (node["minor"], ci_minor) if m is not None]
                if wanted and entries is None:
                    unjudged.append(f"gi{gi}/ci{ci}")
                    continue
                absent = [f"nvidia-cap{m}" for m in wanted if f"nvidia-cap{m}" not in (entries or {})]
                if absent:
                    missing_nodes.append(f"{_label(device)} gi{gi}/ci{ci} needs /dev/nvidia-caps/"
                                         f"{' and '.join(absent)}")
                else:
                    usable += 1
    evidence.update(no_instance=no_instance, no_compute_instance=no_compute, missing_nodes=missing_nodes)
    visible = parse_visible_devices(env.get("NVIDIA_VISIBLE_DEVICES", ""))
    if no_instance and in_container:
        evidence["NVIDIA_VISIBLE_DEVICES"] = [t for _, t in visible]
        whole = [t for kind, t in visible if kind in ("index", "gpu-uuid")]
        return fail(f"MIG is enabled on {', '.join(no_instance)} but this container holds no MIG device"
                    + (f" (NVIDIA_VISIBLE_DEVICES names whole GPUs: {','.join(whole)})" if whole else ""),
                    "Start the container with MIG devices: NVIDIA_VISIBLE_DEVICES=MIG-<uuid> (or <gpu>:<mig>, "
                    "e.g. --gpus '\"device=0:0\"'); list them on the host with nvidia-smi -L.", evidence,
                    anchor="container-whole-gpu")
    if no_instance:
        return fail(f"MIG is enabled on {', '.join(no_instance)} but no GPU instance exists: CUDA sees no "
                    "device there", "Create GPU and compute instances: nvidia-smi mig -i N -cgi <profiles> -C "
                    "(or disable MIG: nvidia-smi -i N -mig 0).", evidence, anchor="no-instances")
    if no_compute and not usable:
        return fail(f"{', '.join(no_compute)} has no compute instance: it is not a usable MIG device",
                    "Create the compute instance: nvidia-smi mig -i N -gi <GI> -cci <profile>, or recreate "
                    "the GPU instance with -C.", evidence, anchor="no-instances")
    if missing_nodes:
        return fail("; ".join(missing_nodes) + ": the capability device node is missing",
                    "Create the nodes on the host: nvidia-modprobe -f /proc/driver/nvidia/capabilities/gpuN/"
                    "mig/giX/access -f .../ciY/access (or run nvidia-smi once as root); restart the container.",
                    evidence, anchor="caps-nodes")
    if unjudged:
        return unknown(f"/dev/nvidia-caps could not be listed ({listing.get('error')}): the capability nodes of "
                       f"{', '.join(unjudged)} are unjudged", evidence)
    if no_compute:
        return warn(f"{', '.join(no_compute)} has no compute instance (other MIG devices are usable)",
                    "Create a compute instance in it, or destroy the idle GPU instance.", evidence,
                    anchor="no-instances")
    return ok(f"{usable} MIG device(s) usable on {len(enabled)} MIG-enabled GPU(s)", evidence)
# --8<-- [end:mig-devices-visible]



def _compute_modes(gpus: list[dict[str, Any]]) -> dict[str, Optional[int]]:
    return {_label(d): _int(d.get("compute_mode")) for d in gpus}


def _mode_name(mode: Optional[int]) -> str:
    return COMPUTE_MODES.get(mode, "unknown") if mode is not None else "unreadable"


# --8<-- [start:mps-daemon]
@check("mps-daemon", title="MPS clients find a running control daemon", page="mps",
       facts=("mps_pipe",), optional=("gpus", "in_container"))
def mps_daemon_missing_or_unguarded(pipe: dict[str, Any], gpus: Optional[list[dict[str, Any]]],
                                    in_container: Optional[bool]) -> Verdict:
    """CUDA_MPS_PIPE_DIRECTORY points at a directory without the control daemon's socket, or the daemon
    runs while a GPU without MIG is not in EXCLUSIVE_PROCESS compute mode.

    ## Why it matters
    A CUDA client connects to the control daemon through `<pipe dir>/control`. When nothing listens
    there, the client silently runs without MPS (no sharing, no thread or memory limits); if the GPU is
    in EXCLUSIVE_PROCESS mode, every client after the first fails with CUDA error 46 ("all CUDA-capable
    devices are busy or unavailable", or "CUDA-capable device(s) is/are busy or unavailable" from newer
    CUDA runtimes). NVIDIA's MPS setup puts the GPU in EXCLUSIVE_PROCESS so that the MPS server is
    the only process holding a context; in Default mode processes that bypass MPS share the GPU beside it.
    A GPU in MIG mode is the exception: MPS there runs one daemon per MIG device, and EXCLUSIVE_PROCESS is
    not supported, so Default is the right mode.

    ## Evidence
    CUDA_MPS_PIPE_DIRECTORY of the collecting process (default /tmp/nvidia-mps), lstat of its `control`
    socket (and of /run/nvidia-mps/control, where an MPS v3 root daemon may listen, when the variable is unset and
    the default has none), NVML compute mode and MIG mode of each GPU.

    ## References
    NVIDIA Multi-Process Service documentation: environment variables (CUDA_MPS_PIPE_DIRECTORY),
    "Starting MPS control daemon"; nvidia-cuda-mps-control(1); NVIDIA MIG User Guide, "MIG with CUDA MPS".
    """
    control = f"{pipe['pipe_dir']}/control"
    evidence: dict[str, Any] = {"pipe_dir": pipe["pipe_dir"], "configured": pipe["configured"],
                                "control": pipe["control"]}
    if gpus is not None:
        evidence["compute_mode"] = {k: _mode_name(v) for k, v in _compute_modes(gpus).items()}
    if pipe["running"] is None:
        return unknown(f"{control} could not be examined ({pipe['control'].get('error')})", evidence)
    if not pipe["running"]:
        if pipe.get("elsewhere"):
            evidence["elsewhere"] = pipe["elsewhere"]
            return unknown(_daemon_elsewhere(pipe, control), evidence)
        if not pipe["configured"]:
            return skip(f"MPS is not in use: no control daemon at {control} and CUDA_MPS_PIPE_DIRECTORY unset",
                        evidence)
        exclusive = [k for k, v in _compute_modes(gpus or []).items() if v == EXCLUSIVE_PROCESS]
        where = (" (in a container this is also what a host daemon looks like when its pipe directory is "
                 "not shared into this container)" if in_container else "")
        summary = f"CUDA_MPS_PIPE_DIRECTORY={pipe['pipe_dir']} but no MPS control daemon listens at {control}{where}"
        fix = ("Start the daemon with the same CUDA_MPS_PIPE_DIRECTORY (nvidia-cuda-mps-control -d), or mount its "
               "pipe directory into the container; unset the variable if MPS is not wanted.")
        if exclusive:
            return fail(summary + f"; {', '.join(exclusive)} in EXCLUSIVE_PROCESS mode admit one process only, "
                        "so every further client fails", fix, evidence, anchor="no-daemon")
        return warn(summary + ": clients run without MPS (no sharing, no limits)", fix, evidence, anchor="no-daemon")
    if gpus is None:
        return unknown(f"the MPS control daemon listens at {control}, but NVML gave no compute modes to judge",
                       evidence)
    modes = _compute_modes(gpus)
    if not modes:
        return unknown(f"the MPS control daemon listens at {control}, but NVML reported no GPU", evidence)
    # MIG with MPS: one daemon per MIG device and the GPU in Default mode (EXCLUSIVE_PROCESS is not supported).
    mig = {_label(d) for d in gpus if _mig_mode(d)[0] == 1}
    if mig:
        evidence["mig_enabled"] = sorted(mig)
    unreadable = [k for k, v in modes.items() if v is None and k not in mig]
    shared = [f"{k} is {_mode_name(v)}" for k, v in modes.items()
              if v is not None and v != EXCLUSIVE_PROCESS and k not in mig]
    if shared:
        return warn(f"the MPS control daemon runs ({control}) but {'; '.join(shared)}, not Exclusive_Process: "
                    "processes that bypass MPS share the GPU beside the MPS server",
                    "Set EXCLUSIVE_PROCESS on the GPUs MPS serves before starting the daemon: "
                    "nvidia-smi -i N -c EXCLUSIVE_PROCESS.", evidence, anchor="compute-mode")
    if unreadable:
        return unknown(f"compute mode unreadable on {', '.join(unreadable)}", evidence)
    exclusive = len(modes) - len(mig)
    return ok(f"the MPS control daemon listens at {control}; "
              + "; ".join(([f"{exclusive} GPU(s) in Exclusive_Process mode"] if exclusive else [])
                          + ([f"{len(mig)} GPU(s) in MIG mode, where MPS runs per MIG device in Default "
                              "compute mode"] if mig else [])), evidence)
# --8<-- [end:mps-daemon]


# --8<-- [start:mps-thread-percentage]
@check("mps-thread-percentage", title="CUDA_MPS_ACTIVE_THREAD_PERCENTAGE is a usable percentage",
       page="mps", facts=("client_env",), optional=("mps_pipe",))
def mps_thread_percentage_invalid(env: dict[str, str], pipe: Optional[dict[str, Any]]) -> Verdict:
    """CUDA_MPS_ACTIVE_THREAD_PERCENTAGE is not a percentage in (0, 100], or is set where no MPS daemon
    runs (so it limits nothing).

    ## Why it matters
    On Volta and later the variable caps the share of each GPU's threads an MPS client may use. It only
    narrows the daemon's own limit (set_default_active_thread_percentage) and only takes effect for MPS
    clients: a value that is not a percentage cannot mean what was intended, and without a running
    daemon the process gets the whole GPU.

    ## Evidence
    CUDA_MPS_ACTIVE_THREAD_PERCENTAGE of the collecting process; the MPS control socket.

    ## References
    NVIDIA Multi-Process Service documentation: CUDA_MPS_ACTIVE_THREAD_PERCENTAGE,
    set_default_active_thread_percentage.
    """
    raw = env.get("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE")
    if raw is None:
        return skip("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE is not set")
    evidence: dict[str, Any] = {"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": raw}
    value = parse_thread_percentage(raw)
    if value is None:
        return fail(f"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE={raw!r} is not a percentage in (0, 100]",
                    "Set a plain number such as 25 (no % sign), or unset it to get the daemon's limit "
                    "(100 unless set_default_active_thread_percentage lowered it).",
                    evidence, anchor="thread-percentage")
    if pipe is None:
        return skip(f"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE={raw} is valid; whether MPS runs was not examined", evidence)
    evidence["control"] = f"{pipe['pipe_dir']}/control"
    if pipe["running"] is None:
        return unknown(f"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE={raw} is valid, but {pipe['pipe_dir']}/control could not "
                       "be examined", evidence)
    if pipe.get("elsewhere"):  # set only when nothing listens at the default
        elsewhere = _daemon_elsewhere(pipe, evidence["control"])
        return unknown(f"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE={raw} is valid; {elsewhere}", evidence)
    if not pipe["running"]:
        return warn(f"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE={raw} limits nothing: no MPS control daemon at "
                    f"{pipe['pipe_dir']}/control, so clients get the whole GPU",
                    "Start the MPS control daemon (nvidia-cuda-mps-control -d) with the same pipe directory.",
                    evidence, anchor="no-daemon")
    return ok(f"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE={raw}: clients of the running daemon use at most {value:g}% of "
              "each GPU's threads", evidence)
# --8<-- [end:mps-thread-percentage]


# --8<-- [start:mps-multi-gpu]
@check("mps-multi-gpu", title="MPS clients on a multi-GPU host choose their GPU", page="mps-multi-gpu",
       facts=("mps_pipe", "client_env", "gpus"))
def mps_clients_pile_on_one_gpu(pipe: dict[str, Any], env: dict[str, str], gpus: list[dict[str, Any]]) -> Verdict:
    """MPS runs on a host with several GPUs, but clients select no GPU (all land on device 0) or select
    them by index, which the MPS server renumbers.

    ## Why it matters
    MPS shares each GPU between processes; it does not spread processes across GPUs. A client uses the
    devices it selects, device 0 by default. When the control daemon was started with
    CUDA_VISIBLE_DEVICES, the server renumbers the GPUs it exposes from 0, so a client that repeats the
    host indices (CUDA_VISIBLE_DEVICES=0,2 under a daemon started with 0,2) names a device that does not
    exist (2) or the wrong GPU; NVIDIA recommends UUIDs.

    ## Evidence
    The MPS control socket, CUDA_VISIBLE_DEVICES of the collecting process, the GPUs NVML reports.

    ## References
    NVIDIA Multi-Process Service documentation, CUDA_VISIBLE_DEVICES (environment variables appendix).
    """
    control = f"{pipe['pipe_dir']}/control"
    if pipe["running"] is None:
        return unknown(f"{control} could not be examined ({pipe['control'].get('error')})")
    if pipe.get("elsewhere"):  # set only when nothing listens at the default
        return unknown(_daemon_elsewhere(pipe, control))
    if not pipe["running"]:
        return skip(f"MPS is not running here (no control daemon at {control})")
    raw = env.get("CUDA_VISIBLE_DEVICES")
    evidence: dict[str, Any] = {"gpus": [_label(d) for d in gpus], "CUDA_VISIBLE_DEVICES": raw, "control": control}
    if len(gpus) < 2:
        return ok(f"MPS serves {len(gpus)} GPU here: nothing to spread", evidence)
    tokens = parse_visible_devices(raw or "")
    if raw is not None and not tokens:
        return skip("CUDA_VISIBLE_DEVICES is set but empty: clients see no GPU at all", evidence)
    indices = [t for kind, t in tokens if kind == "index"]
    if raw is None:
        return warn(f"MPS runs on a host with {len(gpus)} GPUs and CUDA_VISIBLE_DEVICES is unset: MPS does not "
                    "spread clients across GPUs, every client that picks none uses device 0",
                    "Give each client its GPU (CUDA_VISIBLE_DEVICES=GPU-<uuid>), or run one MPS daemon per GPU "
                    "with its own pipe directory.", evidence, anchor="no-spreading")
    if indices:
        return warn(f"CUDA_VISIBLE_DEVICES={raw} selects GPUs by index under MPS: the MPS server renumbers the GPUs "
                    "its daemon was started with, so indices can name the wrong GPU or none",
                    "Select GPUs by UUID (nvidia-smi -L) in the daemon's and the clients' CUDA_VISIBLE_DEVICES.",
                    evidence, anchor="index-remap")
    return ok(f"MPS clients select their GPU explicitly (CUDA_VISIBLE_DEVICES={raw})", evidence)
# --8<-- [end:mps-multi-gpu]

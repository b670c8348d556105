"""Checks of a Kubernetes GPU node: device plugin registration, time-slicing, GFD labels, GPU requests, Xid errors.

They read what the node keeps on disk (the kubelet's device-plugin directory and checkpoint, GFD's label
file), the environment of the pod the doctor runs in, and the kernel log. None needs the Kubernetes API:
on a host without a kubelet every one of them skips, saying why.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from gpu_runbook.findings import Verdict, fail, ok, skip, unknown, warn
from gpu_runbook.parsers.kubernetes import (
    XidEvent,
    label_driver_version,
    parse_device_checkpoint,
    parse_feature_labels,
    parse_xid_lines,
    split_replica_id,
    xid_recovery_action,
)
from gpu_runbook.parsers.operands import gfd_label_model, gfd_model_counts, nvidia_component
from gpu_runbook.parsers.proc import DriverVersion
from gpu_runbook.probes.commands import MAX_OUTPUT_CHARS
from gpu_runbook.registry import boundary, check, fact
from gpu_runbook.snapshot import ABSENT, NOT_PRESENT, CommandFact, Missing, Snapshot, nvml_answered

DEVICE_PLUGIN_DIR = "/var/lib/kubelet/device-plugins"
CHECKPOINT = DEVICE_PLUGIN_DIR + "/kubelet_internal_checkpoint"
FEATURES_DIR = "/etc/kubernetes/node-feature-discovery/features.d"
GFD_FILE = FEATURES_DIR + "/gfd"  # gpu-feature-discovery --output-file default
# GFD v0.19.0 turned --use-node-feature-api on by default (cmd/gpu-feature-discovery/main.go at v0.19.0; CHANGELOG
# "Enable NodeFeature API by default in GFD (#1504)"): from then on it writes its labels to the NFD NodeFeature
# object nvidia-features-for-<node> in its own namespace, not to features.d/gfd. The doctor reads no Kubernetes API.
NODE_FEATURE_API_DEFAULT = boundary("gfd-node-feature-api-default", "gfd", "0.19.0")
NODE_FEATURE_PREFIX = "nvidia-features-for-"  # internal/lm/output.go nodeFeatureVendorPrefix + "-"


def _gpu_count(nvml: Optional[dict[str, Any]]) -> Optional[int]:
    """GPUs NVML counted, or None when NVML did not answer."""
    if not nvml or "error" in nvml or not nvml_answered(nvml):
        return None
    count = nvml.get("device_count")
    return count if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else None


def _nvml_unreadable(nvml: Optional[dict[str, Any]]) -> bool:
    """NVML was asked and could not answer (as opposed to: not asked, e.g. under --root)."""
    return bool(nvml) and "skipped" not in nvml and _gpu_count(nvml) is None


def _lost_gpus(nvml: Optional[dict[str, Any]]) -> list[str]:
    """Indexes of the GPUs whose NVML handle answered GPU_IS_LOST (fallen off the bus, Xid 79)."""
    devices = (nvml or {}).get("devices")
    lost = []
    for device in devices if isinstance(devices, list) else []:
        error = device.get("error") if isinstance(device, dict) else None
        if isinstance(error, dict) and error.get("name") == "NVMLError_GpuIsLost":
            lost.append(str(device.get("index", "?")))
    return lost


# -- facts of this section ------------------------------------------------------------------------

@fact("device_plugin_dir")
def device_plugin_dir_fact(snapshot: Snapshot) -> list[str]:
    """Names in /var/lib/kubelet/device-plugins (kubelet.sock, nvidia-gpu.sock, the checkpoint)."""
    listing = snapshot.dir(DEVICE_PLUGIN_DIR)
    error = listing.get("error")
    if error in NOT_PRESENT:
        raise Missing(f"{DEVICE_PLUGIN_DIR} is absent: not a Kubernetes node (no kubelet device manager)", "skip")
    if error is not None or not isinstance(listing.get("entries"), dict):
        raise Missing(f"{DEVICE_PLUGIN_DIR} could not be listed ({error or 'malformed'})")
    return sorted(str(name) for name in listing["entries"])


@fact("device_checkpoint")
def device_checkpoint_fact(snapshot: Snapshot) -> dict[str, list[str]]:
    """The kubelet's RegisteredDevices: {resource: [device ids]} from kubelet_internal_checkpoint."""
    checkpoint = snapshot.file(CHECKPOINT)
    if checkpoint.error == "not-collected":
        raise Missing(f"{CHECKPOINT} was not collected in this snapshot", "skip")
    devices = parse_device_checkpoint(checkpoint.require())
    if devices is None:
        raise Missing(f"{CHECKPOINT} is not a kubelet device checkpoint")
    return devices


@fact("checkpoint_state")
def checkpoint_state_fact(snapshot: Snapshot) -> dict[str, Any]:
    """The checkpoint, or why there is none: {"devices": {...} or None, "unreadable": reason or None}.

    The kubelet writes it once a device plugin registers, so its absence alone says little; an unreadable
    one must still keep a check from concluding ok.
    """
    try:
        return {"devices": device_checkpoint_fact(snapshot), "unreadable": None}
    except Missing as exc:
        return {"devices": None, "unreadable": None if exc.status == "skip" else exc.reason}


@fact("gfd_labels")
def gfd_labels_fact(snapshot: Snapshot) -> dict[str, str]:
    """The labels GPU feature discovery wrote for NFD's local source (features.d/gfd, or any file there with
    nvidia.com/ labels); skip, saying where the labels are now, when there is no such file."""
    files = snapshot.files_matching(FEATURES_DIR + "/")
    gfd = files.get(GFD_FILE)
    if gfd is not None and gfd.text is None and not gfd.absent:
        raise Missing(f"{GFD_FILE} could not be read ({gfd.why})")
    for fact_ in ([gfd] if gfd is not None else []) + [f for p, f in files.items() if p != GFD_FILE]:
        if fact_.text is not None and "nvidia.com/" in fact_.text:
            return parse_feature_labels(fact_.text)
    unreadable = [f for f in files.values() if f.text is None and not f.absent]
    if unreadable:
        raise Missing(f"{unreadable[0].path} could not be read ({unreadable[0].why})")
    since = "v" + ".".join(map(str, NODE_FEATURE_API_DEFAULT))
    if snapshot.path(FEATURES_DIR).get("error") in ABSENT:
        raise Missing(f"no {FEATURES_DIR} on this host: no GPU feature discovery label file to compare (not a "
                      f"Kubernetes GPU node, or GFD {since}+ publishing NodeFeature objects only)", "skip")
    raise Missing(f"no GPU feature discovery label file in {FEATURES_DIR}: GFD {since} and later publish the labels "
                  f"to the NodeFeature object {NODE_FEATURE_PREFIX}<node> in GFD's namespace, which the doctor does "
                  f"not read (kubectl get nodefeature -A | grep {NODE_FEATURE_PREFIX}); before {since}, or with "
                  "--use-node-feature-api=false, no file means GFD is not running on this node", "skip")


@fact("kernel_log")
def kernel_log_fact(snapshot: Snapshot) -> CommandFact:
    """The kernel ring buffer as `dmesg` printed it (its newest part, when it was longer than the probe keeps)."""
    command = snapshot.command("dmesg")
    if command.error == "not-collected":
        raise Missing("the kernel log was not read in this snapshot (not live)", "skip")
    if command.error is not None:
        raise Missing(f"the kernel log could not be read: dmesg {command.error} {command.detail}".rstrip())
    if command.exit != 0 and re.search(r"Operation not permitted|Permission denied", command.output):
        # kernel.dmesg_restrict=1 (the default on Ubuntu and others) keeps the log from unprivileged users.
        # Still unknown, not skip: a monitor (NPD) that cannot read the log must not report "no Xid errors".
        raise Missing("the kernel log is not readable by this user (kernel.dmesg_restrict=1): run as root "
                      "to check for Xid errors")
    if command.exit != 0:
        raise Missing(f"the kernel log could not be read: dmesg exit {command.exit}: "
                      f"{command.output.strip()[:160] or 'no output'}")
    return command


# -- device plugin ----------------------------------------------------------------------------------

# --8<-- [start:device-plugin-registered]
@check("device-plugin-registered", title="NVIDIA device plugin registered with the kubelet", page="device-plugin",
       facts=("device_plugin_dir", "checkpoint_state"), optional=("nvml", "kernel_driver"))
def device_plugin_not_registered(entries: list[str], checkpoint: dict[str, Any], nvml: Optional[dict[str, Any]],
                                 driver: Optional[DriverVersion]) -> Verdict:
    """A kubelet runs on this GPU node but no NVIDIA device plugin socket is registered, so the node advertises
    no nvidia.com/gpu and GPU pods stay Pending: "0/N nodes are available: N Insufficient nvidia.com/gpu".

    ## Why it matters
    The kubelet learns about GPUs only from a device plugin that serves a socket in
    /var/lib/kubelet/device-plugins (nvidia-gpu.sock for nvidia.com/gpu) and registers through kubelet.sock.
    No socket: capacity and allocatable nvidia.com/gpu are absent or 0, and the scheduler never places a GPU pod
    here. Fewer GPUs registered than NVML sees means some GPUs were marked unhealthy or were not found. A GPU
    that NVML reports lost while the kubelet still holds it breaks more than itself: up to v0.20.0 the
    plugin's topology-aware allocation asks NVML about every GPU, and every GPU pod on the node fails admission.

    ## Evidence
    The names in /var/lib/kubelet/device-plugins, RegisteredDevices from kubelet_internal_checkpoint,
    and NVML's GPU count.

    ## References
    Kubernetes docs, "Device Plugins"; NVIDIA/k8s-device-plugin README (Quick Start, Prerequisites) and
    internal/plugin/factory.go at v0.20.0 (the NVML init log lines); NVIDIA/gpu-operator
    assets/state-device-plugin (nodeSelector); NVIDIA/k8s-device-plugin issues #159 and #2038 (lost GPU,
    internal/rm/nvml_manager.go alignedAlloc).
    """
    sockets = [n for n in entries if n.startswith("nvidia") and n.endswith(".sock")]
    gpus = _gpu_count(nvml)
    evidence: dict[str, Any] = {"device_plugin_dir": entries, "nvidia_sockets": sockets, "nvml_gpus": gpus}
    if "kubelet.sock" not in entries:
        return skip(f"no kubelet.sock in {DEVICE_PLUGIN_DIR}: the kubelet's device manager is not running here",
                    evidence)
    if not sockets:
        if gpus == 0:
            return skip("kubelet node without NVIDIA GPUs (NVML counts 0): no device plugin expected", evidence)
        if gpus is None and driver is None:
            if _nvml_unreadable(nvml):
                return unknown("no NVIDIA device plugin socket, and NVML could not say whether this node has GPUs",
                               evidence)
            return skip("no NVIDIA driver loaded on this kubelet node: not a GPU node, no device plugin expected",
                        evidence)
        seen = f"NVML sees {gpus} GPU(s)" if gpus else f"driver {driver.version if driver else '?'} loaded"
        return fail(f"kubelet is running but there is no nvidia*.sock in {DEVICE_PLUGIN_DIR} ({seen}; "
                    "expected nvidia-gpu.sock): the device plugin is not running or never registered, so the "
                    "node advertises no nvidia.com/gpu",
                    "Check the plugin pod on this node (kubectl get pods -A -o wide | grep device-plugin) and "
                    "its log: no pod means nodeSelector/tolerations (GPU Operator: the node lacks "
                    "nvidia.com/gpu.deploy.device-plugin=true); \"Failed to initialize NVML\" (v0.19.1+), "
                    "\"Incompatible strategy detected\" (v0.16.0-v0.19.0), \"Incompatible platform detected\" "
                    "(v0.13.0-v0.15.x) or \"could not load NVML library\" (v0.12.x and older) means the plugin "
                    "cannot see the GPUs (configure the NVIDIA runtime or CDI for it); "
                    "\"No devices found\" means it found none when it started (restart it once the driver is up).",
                    evidence, anchor="plugin-not-running")
    devices = checkpoint.get("devices") or {}
    registered = {r: ids for r, ids in devices.items() if r.startswith("nvidia.com/")}
    physical = {split_replica_id(i)[0] for ids in registered.values() for i in ids}
    evidence["registered"] = {r: len(ids) for r, ids in sorted(registered.items())}
    lost = _lost_gpus(nvml)
    # The plugin marks a lost GPU unhealthy (the kubelet's checkpoint then lists only the healthy ones), but for
    # whole GPUs its aligned allocation still asks NVML for the links of every GPU, so up to v0.20.0 one lost GPU
    # fails the admission of every GPU pod (NVIDIA/k8s-device-plugin#2038, fix proposed in #2039).
    whole = all(split_replica_id(i)[1] is None for ids in registered.values() for i in ids)
    if lost and physical and whole and all(i.startswith("GPU-") for i in physical):
        evidence["lost_gpus"] = lost
        return fail(f"NVML reports GPU {', '.join(lost)} as lost (GPU_IS_LOST) while the kubelet holds "
                    f"{len(physical)} NVIDIA GPU(s) from the device plugin: on plugin versions up to v0.20.0 "
                    "every GPU pod on this node fails admission (UnexpectedAdmissionError, \"unable to get "
                    "device link information\"), not only pods that would get the lost GPU",
                    "Cordon and drain the node, then reboot it (a lost GPU needs a reboot or a reset); until "
                    "then no GPU pod starts here.", evidence, anchor="lost-gpu")
    # Whole GPUs only: MIG devices (MIG-...) are not comparable with NVML's GPU count.
    if physical and gpus and all(i.startswith("GPU-") for i in physical) and len(physical) < gpus:
        return warn(f"the device plugin registered {len(physical)} GPU(s) with the kubelet, NVML sees {gpus}: "
                    "the missing GPUs are unhealthy or invisible to the plugin",
                    "Look for Xid errors and health events in the plugin log and the kernel log "
                    "(gpu-runbook check --only xid-errors).", evidence, anchor="fewer-gpus")
    if checkpoint.get("unreadable") or (physical and _nvml_unreadable(nvml)):
        return unknown(f"device plugin socket(s) present ({', '.join(sockets)}), but the registered GPUs could not "
                       f"be compared with NVML ({checkpoint.get('unreadable') or 'NVML did not answer'})", evidence)
    held = sum(len(ids) for ids in registered.values())
    return ok(f"device plugin socket(s) registered: {', '.join(sockets)}"
              + (f"; the kubelet holds {held} NVIDIA device(s)" if registered else ""), evidence)
# --8<-- [end:device-plugin-registered]


# -- time-slicing ------------------------------------------------------------------------------------

# --8<-- [start:time-slicing-not-renamed]
@check("time-slicing-not-renamed", title="Shared GPUs are not advertised as whole GPUs", page="time-slicing",
       facts=("device_checkpoint",), optional=("gfd_labels",))
def time_slicing_not_renamed(checkpoint: dict[str, list[str]], labels: Optional[dict[str, str]]) -> Verdict:
    """The device plugin hands out time-sliced replicas of each GPU under the plain name nvidia.com/gpu
    (renameByDefault: false), so pods that ask for "a GPU" silently share one, with no memory or fault isolation.

    ## Why it matters
    With time-slicing every GPU is advertised `replicas` times. Replicas share the GPU's memory and fault
    domain: one pod can take all memory, and a GPU error that needs a reset ends every pod's work. Under the name
    nvidia.com/gpu nothing tells the workload owner; `renameByDefault: true` advertises them as
    nvidia.com/gpu.shared so only pods that ask for a shared GPU get one.

    GFD also appends "-SHARED" to nvidia.com/gpu.product for a shared resource that is not renamed, so
    nodeSelectors on the plain product name stop matching the node.

    ## Evidence
    RegisteredDevices in the kubelet's checkpoint: replica IDs look like GPU-<uuid>::<n> (MPS replicas too);
    GFD's nvidia.com/gpu.sharing-strategy and nvidia.com/gpu.product labels when its label file is there
    (GFD v0.19.0 and later write them to the NodeFeature API instead by default). Without the
    sharing-strategy label the check cannot tell MPS replicas from time-sliced ones, and says so.

    ## References
    NVIDIA/k8s-device-plugin README, "Shared Access to GPUs" (renameByDefault, failRequestsGreaterThanOne);
    internal/lm/resource.go (the "-SHARED" product suffix); NVIDIA GPU Operator docs, "Time-Slicing GPUs in
    Kubernetes".
    """
    shared: dict[str, dict[str, int]] = {}
    for resource, ids in sorted(checkpoint.items()):
        if not resource.startswith("nvidia.com/"):
            continue
        for device_id in ids:
            base, replica = split_replica_id(device_id)
            if replica is not None:
                shared.setdefault(resource, {}).setdefault(base, 0)
                shared[resource][base] += 1
    strategy = (labels or {}).get("nvidia.com/gpu.sharing-strategy")
    product = (labels or {}).get("nvidia.com/gpu.product")
    evidence: dict[str, Any] = {"resources": {r: len(ids) for r, ids in sorted(checkpoint.items())},
                                "replicas_per_gpu": {r: sorted(set(g.values())) for r, g in shared.items()},
                                "sharing_strategy_label": strategy, "product_label": product}
    if not shared:
        return ok("no shared (replicated) GPUs registered: every nvidia.com resource is a whole device", evidence)
    plain = [r for r in shared if not r.endswith(".shared")]
    if strategy == "mps":
        return ok(f"GPUs shared through MPS ({', '.join(sorted(shared))}): memory and compute are partitioned",
                  evidence)
    if plain:
        counts = ", ".join(f"{r} x{'/'.join(map(str, evidence['replicas_per_gpu'][r]))}" for r in plain)
        # GFD (internal/lm/resource.go) appends "-SHARED" to the product of a shared resource that is not renamed.
        relabelled = (f"; GFD relabelled nvidia.com/gpu.product={product[:80]}, so nodeSelectors on the plain "
                      "product name no longer match") if product and product.endswith("-SHARED") else ""
        # Without GFD's sharing-strategy label, MPS replicas (same ::<n> IDs) look the same as time-sliced ones.
        kind = ("time-sliced GPU replicas" if strategy == "time-slicing" else
                "shared GPU replicas (time-slicing, or MPS: no GFD sharing-strategy label says which)")
        return warn(f"{kind} advertised as {', '.join(plain)} ({counts} per GPU): pods that request a GPU get a "
                    "shared one, with time-slicing without memory or fault isolation (expected "
                    f"<resource>.shared with renameByDefault: true){relabelled}",
                    "Set sharing.timeSlicing.renameByDefault: true (and failRequestsGreaterThanOne: true) in the "
                    "plugin config, or keep shared GPUs on labelled node pools that only tolerant workloads use.",
                    evidence, anchor="not-renamed")
    return ok(f"shared GPU replicas are advertised under their own name ({', '.join(sorted(shared))})", evidence)
# --8<-- [end:time-slicing-not-renamed]


# -- GPU feature discovery ---------------------------------------------------------------------------

# --8<-- [start:gfd-labels-stale]
@check("gfd-labels-stale", title="GPU feature discovery labels match the node", page="feature-discovery",
       facts=("gfd_labels",), optional=("kernel_driver", "nvml"))
def gfd_labels_stale(labels: dict[str, str], driver: Optional[DriverVersion],
                     nvml: Optional[dict[str, Any]]) -> Verdict:
    """GPU feature discovery's label file disagrees with the node (driver version, GPU count): GFD stopped
    relabelling, or the file is a leftover, so node selectors on nvidia.com/* labels may place pods by stale facts.

    ## Why it matters
    Before v0.19.0, GFD rewrites features.d/gfd every sleep interval (60 s by default) and NFD's local source
    turns it into node labels. GFD removes the file when it exits cleanly (its pod deleted, an error in a
    labelling pass), but not with --oneshot or --sleep-interval=infinite, nor when it is killed without a clean
    shutdown: such a file outlives a driver upgrade or a GPU loss, pods that select nvidia.com/cuda.driver.major
    or nvidia.com/gpu.count land on nodes that cannot run them, and dashboards built on the labels lie. From
    v0.19.0 GFD publishes a NodeFeature object instead and no longer writes the file; a file left from an older
    GFD goes stale the same way. With no file the check skips and says where the labels are: the doctor does
    not read the Kubernetes API.

    A file with no GPU label at all (only nvidia.com/gfd.timestamp) on a node where NVML sees GPUs means GFD
    found no devices: it keeps the empty resource manager it fell back to when it started before the driver was
    ready (with failOnInitError false; GFD before v0.17.1 without NVML whatever that flag says; see
    internal/resource/factory.go), and never tries NVML again.

    On a node with more than one GPU model GFD labels one model only: it counts GPUs per model, writes
    gpu.product, gpu.count and gpu.memory for each, and the model it writes last wins (an unordered map, so
    it may change at every relabelling; GFD logs "Multiple device types detected"). gpu.count is then
    compared with NVML's count of the model gpu.product names, not with all GPUs.

    ## Evidence
    /etc/kubernetes/node-feature-discovery/features.d/gfd, /proc/driver/nvidia/version, NVML's GPU count and
    the GPUs' names.

    ## References
    NVIDIA/k8s-device-plugin v0.20.0 docs/gpu-feature-discovery/README.md (generated labels, --output-file,
    --sleep-interval), cmd/gpu-feature-discovery/main.go (--use-node-feature-api, default true since v0.19.0;
    removeOutputFile on exit),
    internal/lm/output.go (NodeFeature nvidia-features-for-<node>); NFD docs, "Feature files" (local source).
    """
    labelled_driver = label_driver_version(labels)
    strategy = labels.get("nvidia.com/mig.strategy", "none")
    count_label = labels.get("nvidia.com/gpu.count")
    gpus = _gpu_count(nvml)
    evidence: dict[str, Any] = {"labels": {k: v for k, v in sorted(labels.items()) if k.startswith("nvidia.com/")},
                                "kernel_driver": driver.version if driver else None, "nvml_gpus": gpus}
    if not evidence["labels"]:
        return skip("the feature file holds no nvidia.com/ labels", evidence)
    # A GFD running on its empty resource manager (it started before NVML worked, with failOnInitError false or,
    # before v0.17.1, without NVML at all, and never retries) finds no devices and writes the timestamp alone;
    # vGPU labels come from PCI, not NVML.
    device_labels = [k for k in evidence["labels"] if k != "nvidia.com/gfd.timestamp"
                     and not k.startswith("nvidia.com/vgpu.")]
    if not device_labels and gpus:
        return warn(f"GFD label file {GFD_FILE} holds no GPU labels ({', '.join(evidence['labels'])} only) while NVML "
                    f"sees {gpus} GPU(s) (expected nvidia.com/gpu.product, gpu.count, cuda.*): GFD runs on an empty "
                    "resource manager, as after a start before the driver was ready (failOnInitError false, or a GFD "
                    "before v0.17.1 without NVML)",
                    "Delete the gpu-feature-discovery pod on this node so that it starts again with the driver up, "
                    "and keep failOnInitError true (GFD v0.17.1 or later) so that an early start ends in a restart.",
                    evidence, anchor="gfd-no-retry")
    problems = []
    if labelled_driver and driver is not None and labelled_driver != driver.version:
        problems.append(f"nvidia.com/cuda.driver.* say {labelled_driver}, the loaded module is {driver.version}")
    # With the MIG "single" strategy gpu.count counts MIG devices, not GPUs.
    expected, what = _gfd_expected_count(labels.get("nvidia.com/gpu.product"), gpus, nvml, evidence)
    if count_label is not None and expected is not None and strategy != "single" and count_label != str(expected):
        problems.append(f"nvidia.com/gpu.count={count_label}, NVML sees {expected} {what}")
    if problems:
        since = "v" + ".".join(map(str, NODE_FEATURE_API_DEFAULT))
        return warn(f"GFD label file {GFD_FILE} is stale: " + "; ".join(problems) + " (expected the loaded "
                    "driver and NVML's GPU count)",
                    "Check the gpu-feature-discovery pod on this node and its log; restarting it rewrites the "
                    f"labels. GFD {since} and later no longer write this file: compare the node's labels with "
                    f"the NodeFeature object {NODE_FEATURE_PREFIX}<node> and delete a leftover file.",
                    evidence, anchor="stale-labels")
    if _nvml_unreadable(nvml) or (driver is None and labelled_driver):
        return unknown("GFD labels found, but the driver version or GPU count to compare them with could not be "
                       "read", evidence)
    compared = [w for w, done in (("driver version", labelled_driver and driver is not None),
                                  ("GPU count", count_label is not None and gpus is not None)) if done]
    if not compared:
        return skip("GFD labels found, but nothing on this node to compare them with (no driver version or "
                    "NVML count in the snapshot)", evidence)
    mixed = evidence.get("nvml_models")
    note = (f"; {len(mixed)} GPU models on this node, GFD labels one of them" if isinstance(mixed, dict)
            and len(mixed) > 1 else "")
    return ok(f"GFD labels match the node ({', '.join(compared)}){note}", evidence)


def _gfd_expected_count(product: Optional[str], gpus: Optional[int], nvml: Optional[dict[str, Any]],
                        evidence: dict[str, Any]) -> tuple[Optional[int], str]:
    """The gpu.count GFD would write now, and what it counts: GPUs of the model gpu.product names when NVML
    gave the GPUs' names (GFD counts per model), else all GPUs NVML counted."""
    devices = (nvml or {}).get("devices") if gpus is not None else None
    names = [d.get("name") for d in devices if isinstance(d, dict)] if isinstance(devices, list) else []
    if gpus is None or not names or len(names) != gpus or not all(isinstance(n, str) for n in names):
        return gpus, "GPU(s)"
    models = gfd_model_counts(names)
    evidence["nvml_models"] = models
    model = gfd_label_model(product or "", models)
    if len(models) == 1 or model is None:
        # One model, or a product label that names none of them (the GPUs changed): compare with them all.
        return gpus, "GPU(s)" if len(models) == 1 else f"GPU(s) of models {', '.join(models)}"
    return models[model], f"GPU(s) of the labelled model {model} ({gpus} GPUs of {len(models)} models in all)"
# --8<-- [end:gfd-labels-stale]


# -- GPU requests ------------------------------------------------------------------------------------

@fact("pod_env")
def pod_env_fact(snapshot: Snapshot) -> dict[str, str]:
    """The NVIDIA_* environment of the pod the doctor runs in; skip outside a pod or when judging --root."""
    if snapshot.host.get("root") not in (None, "", "/"):
        raise Missing(f"judging the host mounted at {snapshot.host.get('root')}, not this pod", "skip")
    env = snapshot.env
    if "KUBERNETES_SERVICE_HOST" not in env:
        raise Missing("not running in a Kubernetes pod (no KUBERNETES_SERVICE_HOST)", "skip")
    return {k: v for k, v in env.items() if k.startswith("NVIDIA_")}


@fact("pod_context")
def pod_context_fact(snapshot: Snapshot) -> dict[str, Any]:
    """What the pod can see of itself and of the node's GPUs: its host name (the pod name unless hostNetwork),
    the environment, the GPU device nodes in its /dev, and the GPUs in /proc/driver/nvidia/gpus (procfs is
    not per container: a CDI-injected container lists every GPU of the node there, the legacy hook mounts
    only the GPUs it injected)."""
    hostname = snapshot.host.get("hostname")
    if not isinstance(hostname, str) or not hostname:
        text = snapshot.file("/etc/hostname").text or ""
        hostname = text.splitlines()[0].strip() if text.strip() else None
    dev = snapshot.paths_matching("/dev/nvidia")
    # None when /dev was not looked at (an old or partial snapshot): no count then, rather than zero.
    dev_gpus = sorted(p for p, f in dev.items() if re.fullmatch(r"/dev/nvidia\d+", p) and f.get("kind") == "char") \
        if "/dev/nvidiactl" in dev else None
    proc_gpus = sorted(p for p, f in snapshot.files_matching("/proc/driver/nvidia/gpus/").items()
                       if p.endswith("/information") and f.exists)
    return {"hostname": hostname, "env": snapshot.env, "dev_gpus": dev_gpus, "proc_gpus": len(proc_gpus),
            "all_capabilities": full_capability_set(snapshot.file("/proc/self/status").text)}


def full_capability_set(status: Optional[str]) -> Optional[bool]:
    r"""Whether /proc/self/status shows a bounding set with every capability, as a privileged container has
    (Docker's default set is 00000000a80425fb; privileged gives 0000003fffffffff or 000001ffffffffff, one bit
    per capability the kernel knows). None when the status was not read.

    >>> full_capability_set("CapBnd:\t000001ffffffffff\n"), full_capability_set("CapBnd:\t00000000a80425fb\n")
    (True, False)
    """
    match = re.search(r"^CapBnd:\s*([0-9a-fA-F]+)\s*$", status or "", re.MULTILINE)
    if not match:
        return None
    value = int(match.group(1), 16)
    # Every bit up to the highest one set, and at least the 38 capabilities of kernels since 5.8 (CAP_BPF).
    return value >= (1 << 38) - 1 and (value + 1) & value == 0


# Values the device plugin itself sets: GPU/MIG UUIDs or indexes (envvar strategy), the volume-mounts
# marker directory, or none/void for a container without GPUs.
_DEVICE = r"(?:(?:GPU|MIG)-[0-9A-Za-z-]+|\d+(?::\d+)?)"
PLUGIN_VALUE = re.compile(rf"^{_DEVICE}(?:,{_DEVICE})*$")


# --8<-- [start:visible-devices-all-in-pod]
@check("visible-devices-all-in-pod", title="The pod sees only the GPUs it was given", page="gpu-requests",
       facts=("pod_env",), optional=("nvml", "pod_context"))
def visible_devices_all_in_pod(env: dict[str, str], nvml: Optional[dict[str, Any]],
                               pod: Optional[dict[str, Any]]) -> Verdict:
    """NVIDIA_VISIBLE_DEVICES=all inside a pod: the image or the pod spec set it, not the device plugin, so the
    container uses every GPU on the node while the scheduler counts none (or fewer) as taken.

    ## Why it matters
    With the default envvar device-list strategy the NVIDIA runtime exposes the GPUs named in
    NVIDIA_VISIBLE_DEVICES. The device plugin sets it to the UUIDs it allocated. CUDA base images set it to
    "all", so a pod that does not request nvidia.com/gpu (or sets the variable itself) gets every GPU and
    competes with the pods the scheduler placed there.

    Two kinds of pods carry "all" without that harm. NVIDIA's own node components (device plugin, GPU feature
    discovery, DCGM exporter, MIG manager, the operator's validator) set it on purpose: they manage or watch
    every GPU. And where the variable is not what injects GPUs (GPUs injected through CDI by containerd or
    CRI-O while the pod runs on runc, or a toolkit set to
    accept-nvidia-visible-devices-envvar-when-unprivileged = false) the pod keeps "all" from its image but gets
    no GPU, or only those it was allocated. CDI specs written by nvidia-ctk 1.15.0 and later set the variable to
    "void" in every container they inject into.

    A pod whose list names fewer whole GPUs than NVML sees got the others another way: a privileged container
    receives every device node of the host, whatever the plugin allocated.

    ## Evidence
    The pod's NVIDIA_VISIBLE_DEVICES, its pod name (host name) and component environment variables, NVML's
    GPU count and the /dev/nvidiaN nodes inside the pod, and the GPUs /proc/driver/nvidia/gpus lists.

    ## References
    NVIDIA/k8s-device-plugin README ("If you do not request GPUs when you use the device plugin, the plugin
    exposes all the GPUs on the machine inside your container"; DEVICE_LIST_STRATEGY) and
    internal/plugin/server.go (no NVIDIA_VISIBLE_DEVICES with CDI-only strategies); NVIDIA/gpu-operator
    assets/state-*/ (the components' NVIDIA_VISIBLE_DEVICES) and controllers/object_controls.go
    (transformToolkitCtrForCDI); nvidia-container-toolkit pkg/nvcdi (NVIDIA_VISIBLE_DEVICES=void in CDI
    specs); NVIDIA Container Toolkit docs, "Specialized Configurations with Docker" (NVIDIA_VISIBLE_DEVICES);
    NVIDIA/k8s-device-plugin#161 and #336 (a privileged container sees every GPU).
    """
    value = env.get("NVIDIA_VISIBLE_DEVICES")
    gpus = _gpu_count(nvml)
    evidence: dict[str, Any] = {"NVIDIA_VISIBLE_DEVICES": value, "nvml_gpus": gpus}
    if value is None:
        return skip("NVIDIA_VISIBLE_DEVICES is not set in this pod (no GPU requested, or a CDI device-list "
                    "strategy)", evidence)
    if value.strip().lower() == "all":
        harmless = _visible_all_harmless(pod or {}, gpus, nvml, evidence)
        if harmless:
            return ok(harmless, evidence)
        seen = f": NVML sees {gpus} GPU(s)" if gpus is not None else ""
        return warn(f"NVIDIA_VISIBLE_DEVICES=all in a Kubernetes pod{seen} (expected the GPU UUIDs the device "
                    "plugin allocated): the pod uses GPUs the scheduler did not give it",
                    "Request GPUs with resources.limits nvidia.com/gpu and do not set NVIDIA_VISIBLE_DEVICES; "
                    "cluster-wide, switch the plugin to deviceListStrategy volume-mounts or CDI and set "
                    "accept-nvidia-visible-devices-envvar-when-unprivileged = false.",
                    evidence, anchor="visible-devices-all")
    plugin_list = PLUGIN_VALUE.match(value.strip())
    if plugin_list:
        verdict = _more_gpus_than_allocated(value, gpus, nvml, pod or {}, evidence)
        if verdict is not None:
            return verdict
    if plugin_list or value.strip().lower() in ("none", "void", "") \
            or value.startswith("/var/run/nvidia-container-devices"):
        return ok(f"NVIDIA_VISIBLE_DEVICES={value[:120]}: a device list as the device plugin sets it", evidence)
    return warn(f"NVIDIA_VISIBLE_DEVICES={value[:120]} is not a value the device plugin sets (UUIDs or indexes)",
                "Remove NVIDIA_VISIBLE_DEVICES from the pod spec and the image; let the device plugin set it.",
                evidence, anchor="visible-devices-all")


def _more_gpus_than_allocated(value: str, gpus: Optional[int], nvml: Optional[dict[str, Any]],
                              pod: dict[str, Any], evidence: dict[str, Any]) -> Optional[Verdict]:
    """A warning when the pod sees more whole GPUs (NVML, else its /dev/nvidiaN nodes) than the device plugin's
    list names; unknown when neither could be counted; None when the counts agree or cannot be compared."""
    allocated = set(value.strip().split(","))
    # Whole GPUs only: NVML counts a MIG device's parent GPU, and "0:1" names a MIG device by index.
    if any(v.startswith("MIG-") or ":" in v for v in allocated):
        return None
    dev_gpus = pod.get("dev_gpus")
    if gpus is not None:
        seen, how = gpus, "NVML sees"
    elif isinstance(dev_gpus, list):
        seen, how = len(dev_gpus), "the pod has /dev nodes for"
    elif _nvml_unreadable(nvml):
        return unknown(f"NVML did not answer and the pod's /dev was not read, so the GPUs it sees cannot be "
                       f"compared with the {len(allocated)} the device plugin allocated", evidence)
    else:
        return None
    if seen <= len(allocated):
        return None
    evidence["all_capabilities"] = pod.get("all_capabilities")
    summary = (f"the pod was allocated {len(allocated)} GPU(s) (NVIDIA_VISIBLE_DEVICES={value[:120]}) but {how} "
               f"{seen}: it can use GPUs the scheduler did not give it (possibly allocated to other pods)")
    if pod.get("all_capabilities"):
        return warn(summary + "; it runs with every capability, as a privileged container, which gets every GPU "
                    "of the node", "Drop securityContext.privileged and grant the capabilities the workload "
                    "needs, or run the pod under a runtime handler with privileged_without_host_devices = true.",
                    evidence, anchor="privileged")
    return warn(summary, "Find what else gave the pod GPUs: securityContext.privileged, a hostPath mount of /dev, "
                "CDI annotations or a DRA claim beside the device plugin's allocation.", evidence, anchor="privileged")


def _visible_all_harmless(pod: dict[str, Any], gpus: Optional[int], nvml: Optional[dict[str, Any]],
                          evidence: dict[str, Any]) -> Optional[str]:
    """Why NVIDIA_VISIBLE_DEVICES=all does no harm in this pod, or None when it may."""
    component = nvidia_component(pod.get("hostname"), pod.get("env") or {})
    if component:
        evidence["nvidia_component"] = {"component": component[0], "seen_by": component[1]}
        return (f"NVIDIA_VISIBLE_DEVICES=all in NVIDIA's {component[0]} pod ({component[1]}): it sets the "
                "variable on purpose, to manage or watch every GPU of the node")
    dev_gpus, node_gpus = pod.get("dev_gpus"), pod.get("proc_gpus")
    here = gpus if gpus is not None else (len(dev_gpus) if isinstance(dev_gpus, list) else None)
    init_error = str(_dict_get(nvml, "init", "error", "name") or "")
    evidence.update(dev_gpus=dev_gpus, node_gpus_in_proc=node_gpus)
    if here == 0 or (gpus is None and init_error == "NVMLError_LibraryNotFound" and not dev_gpus):
        return ("NVIDIA_VISIBLE_DEVICES=all is set but no GPU reached this pod: whatever injects GPUs here ignored "
                "it (runc with CDI injection by containerd or CRI-O, or accept-nvidia-visible-devices-envvar-when-"
                "unprivileged = false in the toolkit's config)")
    if here is not None and isinstance(node_gpus, int) and 0 < here < node_gpus:
        return (f"NVIDIA_VISIBLE_DEVICES=all is set but the pod sees {here} of the node's {node_gpus} GPUs: "
                "its GPUs were injected by a device list (CDI), not by the variable")
    return None


def _dict_get(value: Any, *keys: str) -> Any:
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value
# --8<-- [end:visible-devices-all-in-pod]


# -- Xid errors --------------------------------------------------------------------------------------

# How NVIDIA's Xid catalog (Ampere and newer) resolves each code: its "Resolution Bucket (Immediate Action)"
# column, which NVIDIA's own health monitor ships as a table too (NVIDIA/NVSentinel, xiderrorsmapping.csv).
# Codes whose immediate action is RESET_GPU or RESTART_BM (reboot), and the workflows that end in a reset
# (48, WORKFLOW_XID_48; 74, WORKFLOW_NVLINK_ERR): the GPU must be drained and reset before new work.
# Codes above 150 (names from the driver's nverror.h, with the first open-gpu-kernel-modules tag that has them):
# 151 ROBUST_CHANNEL_KEY_ROTATION_ERROR (555.42.02; 550 drivers number it 144, below) is RESTART_VM in both tables:
# the confidential-computing VM that holds the GPU is restarted, so it fails like a reboot. 155
# NVLINK_SW_DEFINED_ERROR (570.86.15), 156 RESOURCE_RETIREMENT_EVENT (535.247.01, 550.163.01, 570.123.07, 575
# and later) and 158 GPU_FATAL_TIMEOUT (575.51.02) are RESET_GPU in both.
XID_NEEDS_RESET = {
    46: "GPU stopped processing", 48: "double bit ECC error", 62: "internal micro-controller halt",
    64: "ECC page retirement or row remapper recording failure", 74: "NVLink error",
    79: "GPU has fallen off the bus", 95: "uncontained ECC error", 109: "context switch timeout",
    110: "security fault", 119: "GSP RPC timeout", 120: "GSP error", 136: "NVLink link training failure",
    140: "unrecovered ECC error", 143: "GPU initialization failure", 151: "key rotation error",
    155: "NVLink SW defined error", 156: "resource retirement event", 158: "GPU fatal timeout",
}
# Drivers of the 550 branch number the key rotation error (151 from 555) 144: nverror.h defines
# ROBUST_CHANNEL_KEY_ROTATION_ERROR as 144 in 550.40.63-550.40.85 and 550.76-550.163.01, and no 144 at all in the
# other 550 releases (an Xid 144 cannot come from those), so on 550 an Xid 144 is a key rotation error, not an
# NVLink5 one.
KEY_ROTATION_144_BRANCH = "550"
# Immediate action IGNORE: the driver recovered by itself; a code that keeps repeating is still worth a support case.
# Xid 63 is IGNORE there too, but its line asks for a reset to activate the remapped row: it stays a warning.
# 152 and 153 (DLA errors in the catalog, RESERVED7_ERROR/RESERVED8_ERROR in nverror.h from 560.28.03), 157
# RESOURCE_RETIREMENT_FAILURE and 161 CHANNEL_RETIREMENT_FAILURE (570.123.07) are IGNORE in both tables.
XID_NO_ACTION = {
    14: "fake error (test)", 37: "unimplemented firmware method", 38: "watchdog timeout",
    43: "GPU stopped processing (channel reset)", 44: "graphics engine fault during context switch",
    66: "register access violation", 67: "verification violation", 92: "high single-bit ECC error rate",
    93: "InfoROM erase limit exceeded", 106: "SMBPBI test message", 107: "SMBPBI test message (silent)",
    121: "C2C link error", 137: "NVLink FLA privilege error", 141: "fast path error", 152: "DLA SMMU error",
    153: "DLA timeout", 157: "resource retirement failure", 161: "channel retirement failure",
}
# Not filed, so they warn: 159 ROBUST_CHANNEL_CHI_NON_DATA_ERROR (575.51.02) is CHECK_UVM in both tables; 160
# CHANNEL_RETIREMENT_EVENT (570.123.07) is IGNORE in the catalog but RESTART_BM in the CSV; 162-172 have no
# immediate action in the catalog (the CSV has only a nameless 162 row, RESET_GPU), and 173-176 (580.94.10 to
# 595.44.02) are in neither table.
# NVLink5 (Blackwell) errors, 144-150 (nverror.h NVLINK_SAW_ERROR .. NVLINK_MSE_ERROR, drivers 560 and later): the
# catalog sends them all to a workflow of their own (WORKFLOW_NVLINK5_ERR). The driver says in each line whether
# the event was Fatal or Nonfatal (the word follows the code and the unit name): the check fails on Fatal lines
# and warns on the others.
XID_NVLINK5 = {
    144: "NVLink SAW error", 145: "NVLink RLW error", 146: "NVLink TLW error", 147: "NVLink TREX error",
    148: "NVLink NVLPW control error", 149: "NVLink NETIR error", 150: "NVLink MSE error",
}
NVLINK5_FATAL = re.compile(r"(?<![A-Za-z])Fatal\b")
XID_MEANING = {
    8: "GPU stopped processing", 13: "graphics engine exception", 31: "GPU memory page fault",
    45: "preemptive cleanup, due to previous errors",
    63: "ECC page retirement or row remapping recording event", 94: "contained ECC error",
    154: "GPU recovery action changed", 159: "CHI non-data error", 160: "channel retirement event",
    **XID_NO_ACTION, **XID_NEEDS_RESET, **XID_NVLINK5,
}


def _xid_summary(events: list[XidEvent], meaning: Optional[dict[int, str]] = None) -> str:
    by_code: dict[int, set[str]] = {}
    for event in events:
        by_code.setdefault(event.code, set()).add(event.pci)
    names = meaning or XID_MEANING
    return "; ".join(f"Xid {code} ({names.get(code, 'see the Xid catalog')}) on {', '.join(sorted(pcis))}"
                     for code, pcis in sorted(by_code.items()))


# --8<-- [start:xid-errors]
@check("xid-errors", title="No GPU Xid errors that need action in the kernel log", page="health-monitoring",
       facts=("kernel_log",), optional=("kernel_driver",))
def xid_errors(dmesg: CommandFact, driver: Optional[DriverVersion] = None) -> Verdict:
    """The kernel log holds NVRM Xid errors since boot: fail for those after which the GPU needs a reset or
    reboot (codes such as 79 fallen off the bus, 48/95 uncorrectable ECC, 119/120 GSP and 158 fatal timeout,
    which NVIDIA's Xid catalog resolves as RESET_GPU, RESTART_BM or RESTART_VM or with its Xid 48 and NVLink
    workflows; an Xid 154 naming a recovery action other than None; a Blackwell NVLink5 Xid 144-150 marked
    Fatal; Xid 144 on a 550 driver, which numbers the key rotation error so), warn for those that end an
    application (13, 31, 94, ...), follow another error (45), report a Nonfatal NVLink5 event, or have no
    immediate action in the catalog (162-172).

    ## Why it matters
    An Xid is the driver's report of a GPU error. Application-level ones (a page fault, an engine
    exception) kill one CUDA context and say more about the code than the GPU. Hardware-level ones leave the
    GPU unusable or untrustworthy until a reset: new pods on the node fail or hang, and the device plugin may
    keep advertising the GPU. The node should be drained and the GPU reset or the node rebooted. Codes the
    catalog resolves as IGNORE (43, 44, 92, ...) are reported in the evidence but do not warn.

    ## Evidence
    The NVRM Xid lines in `dmesg` (code, PCI address, message).

    ## References
    NVIDIA Xid catalog, "Resolution Bucket (Immediate Action)":
    https://docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html; NVIDIA/NVSentinel
    xiderrorsmapping.csv (the same buckets as data); open-gpu-kernel-modules kernel_rc.c (the Xid line format).
    """
    log = dmesg.stdout
    events = parse_xid_lines(log)
    # A long kernel log is cut at its start: the newest lines, where a fresh Xid is, are always kept.
    truncated = dmesg.truncated
    key_rotation_144 = driver is not None and driver.version.split(".")[0] == KEY_ROTATION_144_BRANCH
    meaning = {**XID_MEANING, 144: "key rotation error, as 550 drivers number it"} if key_rotation_144 else XID_MEANING
    reset = [e for e in events if e.code in XID_NEEDS_RESET or (e.code == 144 and key_rotation_144)
             or (e.code in XID_NVLINK5 and NVLINK5_FATAL.search(e.message))]
    actions = [(e, xid_recovery_action(e.message)) for e in events if e.code == 154]
    reset += [e for e, action in actions if action and action.lower() != "none"]
    # Xid 154 back to "None": the GPU may take new work again (NVML_GPU_RECOVERY_ACTION_NONE).
    settled = [e for e, action in actions if action and action.lower() == "none"]
    quiet = [e for e in events if e.code in XID_NO_ACTION]
    act = [e for e in events if e not in reset and e not in quiet and e not in settled]
    evidence: dict[str, Any] = {"xid_lines": [e.line for e in events][-20:], "count": len(events),
                                "no_action": sorted({e.code for e in quiet}), "log_truncated": truncated}
    if reset:
        return fail(f"{len(reset)} Xid error(s) that need a GPU reset or reboot (expected none): "
                    f"{_xid_summary(reset, meaning)}",
                    "Cordon and drain the node, then reset the GPU or reboot (recovery runbook); a GPU that "
                    "repeats Xid 79, 48 or 95 needs service.", evidence, anchor="reset-xids")
    if act:
        return warn(f"{len(act)} application-level Xid error(s) since boot (expected none): "
                    f"{_xid_summary(act, meaning)}",
                    "Find the process named in the Xid line and debug it (compute-sanitizer for 13/31); "
                    "repeated Xids across different jobs point at the GPU: watch it.",
                    evidence, anchor="application-xids")
    if quiet:
        return ok(f"only Xids NVIDIA's catalog resolves as IGNORE since boot: {_xid_summary(quiet, meaning)} "
                  "(contact NVIDIA support if they repeat)", evidence)
    if settled:
        return ok(f"Xid 154 only, with no recovery action pending: {_xid_summary(settled, meaning)}", evidence)
    if not log.strip():
        return unknown("dmesg printed nothing: the kernel log could not be read (restricted or empty)", evidence)
    if truncated:
        return ok(f"no NVRM Xid lines in the newest {MAX_OUTPUT_CHARS // 1024} KiB of the kernel log "
                  "(older lines were not kept)", evidence)
    return ok("no NVRM Xid lines in the kernel log since boot", evidence)
# --8<-- [end:xid-errors]

"""Checks of the container stack: NVML start-up, the container toolkit, runtimes, CDI, compatibility."""

from __future__ import annotations

import fnmatch
import re
from typing import Any, Optional

from gpu_runbook.engines import discover as discover_engines
from gpu_runbook.engines import unit_dependencies, unit_texts
from gpu_runbook.facts import (
    OPERATOR_TOOLKIT_BINARIES,
    OPERATOR_TOOLKIT_DIR,
    TOOLKIT_BINARIES,
    toolkit_config_path_fact,
)
from gpu_runbook.findings import Verdict, fail, ok, skip, unknown, warn
from gpu_runbook.parsers.pci import is_function
from gpu_runbook.parsers.proc import DriverVersion
from gpu_runbook.parsers.toolkit import (
    containerd_imports,
    containerd_runtimes,
    crio_runtimes,
    cuda_version_from_int,
    docker_runtimes,
    eval_require,
    lib_version,
    parse_cdi_spec,
    parse_cli_info,
    parse_json,
    parse_require,
    parse_toml,
    parse_toolkit_version,
    version_tuple,
)
from gpu_runbook.registry import boundary, check, fact
from gpu_runbook.snapshot import ABSENT, NOT_PRESENT, CommandFact, Missing, Snapshot

# --8<-- [start:nvml-init]
# NVML error -> (page that explains it, anchor, one-sentence fix). Names are pynvml's exception
# classes; "timeout", "crashed" and "garbled" are the probe's own (the NVML child hung or died).
# nvmlInit errors that mean "no driver here" rather than "a broken driver": with no NVIDIA GPU on the PCI bus
# they only say that the machine has no GPU.
NO_DRIVER_ERRORS = ("NVMLError_LibraryNotFound", "NVMLError_DriverNotLoaded")

NVML_ERROR_PAGES: dict[str, tuple[str, str, str]] = {
    "NVMLError_Unknown": (
        "nvml-unknown-error", "causes",
        "The container lost access to the GPU device nodes: recreate it, then stop the cause (GPUs injected by "
        "the legacy hook, Docker --gpus where the hook serves it or legacy mode, lose access on a daemon-reload, "
        "docker update or the kubelet's static CPU manager; CDI and jit-cdi injection keep it, on runc 1.1.3 to "
        "1.1.6 or systemd older than 240 only with /dev/char links; or no-cgroups = true on a rootful engine)."),
    "NVMLError_DriverNotLoaded": (
        "kernel-modules", "driver-not-loaded",
        "Load the driver (modprobe nvidia) and find out why it is not loaded at boot."),
    "NVMLError_LibraryNotFound": (
        "container-cli-init-error", "load-library-failed",
        "libnvidia-ml.so.1 is not on the loader path: install the driver's user-space libraries "
        "(or run the container with the NVIDIA runtime so they are injected)."),
    "NVMLError_LibRmVersionMismatch": (
        "driver-mismatch", "causes",
        "The loaded kernel module and libnvidia-ml differ: reboot (or reload the module) after a driver upgrade."),
    "NVMLError_OperatingSystem": (
        "nvml-unknown-error", "operating-system",
        "NVML says the operating system blocks the GPU's control device (nvidia-smi: 'GPU access blocked by the "
        "operating system'): inside a rootful container, set no-cgroups = false in the toolkit's config.toml and "
        "recreate it; in a WSL2 distribution itself, the GPU must be in WDDM mode (TCC GPUs are not exposed to WSL)."),
    "NVMLError_NoPermission": (
        "device-nodes", "permissions",
        "The process cannot open /dev/nvidia*: fix the node modes or run with the right group."),
    "NVMLError_GpuIsLost": (
        "recovery", "gpu-lost",
        "The GPU fell off the bus: drain the node, then reset the GPU or reboot."),
    "NVMLError_ResetRequired": (
        "recovery", "reset",
        "The GPU needs a reset: drain the node, then reset the GPU or reboot."),
    "timeout": (
        "recovery", "hung-driver",
        "NVML did not answer: the driver is hung; drain the node and follow the recovery runbook."),
}

# In an LXC, Incus or LXD container the module, the nodes and the device cgroup are the host's: the same NVML
# errors have other causes and fixes there than in an engine's container.
SYSTEM_CONTAINER_NVML_PAGES: dict[str, tuple[str, str, str]] = {
    "NVMLError_Unknown": (
        "cgroup-device-access", "lxc",
        "The host's nodes are in this container but its device cgroup does not allow them: add the majors to "
        "the container's configuration on the host (or use the manager's GPU device option) and restart it."),
    "NVMLError_LibRmVersionMismatch": (
        "driver-mismatch", "system-container",
        "The container's user-space driver differs from the host's kernel module: reinstall it at the host's "
        "version (runfile with --no-kernel-modules, or that version's packages)."),
}


@check("nvml-init", title="NVML initialises", page="nvml-unknown-error", facts=("nvml",),
       optional=("pci_functions", "in_container", "system_container"))
def nvml_init_fails(nvml: dict[str, Any], pci: Optional[list[dict[str, Any]]] = None,
                    in_container: Optional[bool] = None, system_container: Optional[str] = None) -> Verdict:
    """NVML cannot start (nvmlInit fails), so nvidia-smi and the NVML-based tools (DCGM, the device plugin) fail.

    ## Why it matters
    nvidia-smi and the monitoring stack start with nvmlInit, and its error code names the broken layer:
    no driver, no library, a library/module version mismatch, or a container that lost its devices.
    CUDA does not use NVML, but it fails too when the cause is below the library (no driver, a
    mismatch, blocked device nodes).

    ## Evidence
    The NVML section of the snapshot: nvmlInit's exception class and code, driver version, GPU count.

    ## References
    NVML API reference, nvmlReturn_t: https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceEnumvs.html
    """
    init = nvml.get("init")
    error = (init or {}).get("error") if isinstance(init, dict) else None
    if error is None and isinstance(nvml.get("error"), dict):
        error = nvml["error"]  # the probe itself failed (timeout, crash)
    if isinstance(error, dict):
        name = str(error.get("name", "?"))
        message = str(error.get("message", ""))
        evidence = {"error": name, "code": error.get("code"), "message": message}
        if name in ("ModuleNotFoundError", "ImportError"):
            return unknown("pynvml is not importable here, so NVML was not asked: "
                           "install nvidia-ml-py (pip install nvidia-ml-py)", evidence)
        if name in ("crashed", "garbled", "not-started"):
            return unknown(f"the NVML probe did not report: {message}", evidence)
        if name in NO_DRIVER_ERRORS and pci is not None and not any(is_function(f, "gpu") for f in pci):
            # Nothing for a driver to drive: installing libraries or loading modules would not help. (Inside a
            # container sysfs still shows the host's whole PCI bus, so the host has no NVIDIA GPU either.)
            evidence["pci_nvidia_gpus"] = 0
            where = ("this host's PCI bus (as this container's sysfs shows it)" if in_container
                     else "this machine's PCI bus")
            return fail(f"no NVIDIA GPU on {where}, so NVML cannot start ({name})",
                        "Run this on a GPU node, or attach the GPU: the instance type, the VM's PCI passthrough, "
                        "or a GPU that is not powered or seated (`lspci -d 10de:` lists nothing).", evidence,
                        page="gpu-init-failure", anchor="no-gpu-on-bus")
        pages = {**NVML_ERROR_PAGES, **SYSTEM_CONTAINER_NVML_PAGES} if system_container else NVML_ERROR_PAGES
        page, anchor, fix = pages.get(name, ("recovery", "", "See the recovery runbook."))
        return fail(f"nvmlInit failed: {message or name} ({name})", fix, evidence, page=page, anchor=anchor)
    if not (isinstance(init, dict) and init.get("ok") is True):
        return unknown("the snapshot's NVML section has no nvmlInit result", {"nvml_keys": sorted(nvml)})
    count = nvml.get("device_count")
    evidence = {"driver_version": nvml.get("driver_version"), "cuda_driver_version":
                nvml.get("cuda_driver_version"), "device_count": count}
    if count == 0:
        return fail("NVML started but sees no GPU", "Check that the GPU is passed to this host or container.",
                    evidence, page="gpu-not-visible")
    return ok(f"NVML initialised: driver {nvml.get('driver_version')}, {count} GPU(s)", evidence)
# --8<-- [end:nvml-init]



# ---------------------------------------------------------------------------------------------------
# Facts of the container stack (pure functions of the snapshot).
# ---------------------------------------------------------------------------------------------------

TOOLKIT_CONFIG = "/etc/nvidia-container-runtime/config.toml"
NVIDIA_RUNTIME_MODES = ("auto", "legacy", "cdi", "csv", "jit-cdi")
# Errors that mean "not there" or "not looked at": every other error means the fact exists but could not
# be read, and a check must not read it as absent (no check turns "could not read" into "ok").
NOT_RUN = ("not-found", "not-collected")


def _dict(value: Any) -> dict[str, Any]:
    """Snapshot data is arbitrary JSON: a dict, or an empty one in place of anything else."""
    return value if isinstance(value, dict) else {}


@fact("unreadable_facts")
def unreadable_facts_fact(snapshot: Snapshot) -> dict[str, str]:
    """Facts the probe looked at but could not read, with why: {host path | command name | "nvml": reason}.

    Files (EACCES, EISDIR, ...), lstat facts and commands (EACCES, timeout, ...) count; absent ones
    (ENOENT, ENOTDIR, a command not installed) and ones not collected do not. NVML counts when it was
    asked and did not answer.
    """
    found: dict[str, str] = {}
    for path, file_ in snapshot.files_matching("").items():
        if not file_.exists and file_.error not in NOT_PRESENT:
            found[path] = f"{path} could not be read ({file_.why})"
    for path, stat in snapshot.paths_matching("").items():
        error = stat.get("error")
        if not stat.get("kind") and error is not None and error not in NOT_PRESENT:
            detail = stat.get("detail")
            why = f"{error}: {detail}" if isinstance(detail, str) and detail else str(error)
            found.setdefault(path, f"{path} could not be examined ({why})")
    for name in sorted(n for n in _dict(snapshot.data.get("commands")) if isinstance(n, str)):
        command = snapshot.command(name)
        if not command.ran and command.error not in NOT_RUN:
            argv = " ".join(command.argv) or name
            why = f"{command.error}: {command.detail}" if command.detail else str(command.error)
            found[name] = f"`{argv}` could not run ({why})"
    nvml = snapshot.nvml
    if nvml and "skipped" not in nvml and _dict(nvml.get("init")).get("ok") is not True:
        error = _dict(_dict(nvml.get("init")).get("error")) or _dict(nvml.get("error"))
        name, message = str(error.get("name") or "no nvmlInit result"), str(error.get("message") or "")
        found["nvml"] = f"NVML did not answer ({name}{': ' + message if message else ''})"
    return found


def _unreadable_among(unreadable: Optional[dict[str, str]], *keys: str, pattern: str = "") -> list[str]:
    """Why the named facts could not be read: keys are exact, or prefixes when they end in "/";
    `pattern` (a regex) matches more keys."""
    return [why for key, why in sorted((unreadable or {}).items())
            if any(key == k or (k.endswith("/") and key.startswith(k)) for k in keys)
            or (pattern and re.search(pattern, key))]


def _cannot_conclude(reasons: list[str], evidence: dict[str, Any], what: str = "") -> Verdict:
    """The unknown verdict for a check whose "ok" would rest on facts that could not be read."""
    shown = "; ".join(reasons[:3]) + (f" (and {len(reasons) - 3} more)" if len(reasons) > 3 else "")
    return unknown(f"{what or 'cannot conclude'}: {shown}", dict(evidence, unreadable=reasons))


def _binary_path(path: str) -> str:
    return path if path.startswith("/") else f"/usr/bin/{path}"


def _path_state(snapshot: Snapshot, path: Optional[str]) -> str:
    """"present", "missing" or "unknown" for a binary a runtime entry names (bare names: /usr/bin/)."""
    if not path:
        return "unknown"
    full = _binary_path(path)
    fact_ = snapshot.path(full)
    if fact_.get("kind"):
        return "present"
    if fact_.get("error") in ("ENOENT", "ENOTDIR"):
        # A bare name is looked up on PATH; /usr/bin missing it is only a strong hint.
        return "missing" if path.startswith("/") or path.startswith("nvidia") else "unknown"
    return "unknown"


@fact("toolkit_config")
def toolkit_config_fact(snapshot: Snapshot) -> dict[str, Any]:
    """config.toml of the NVIDIA Container Toolkit, parsed, with the lstat of the paths it names (the GPU
    Operator's under /usr/local/nvidia/toolkit/.config where its runtime is the one in use)."""
    path = toolkit_config_path_fact(snapshot)
    text = snapshot.file(path).require()
    doc, error = parse_toml(text)
    targets: dict[str, dict[str, Any]] = {}
    if doc:
        cli = doc.get("nvidia-container-cli") if isinstance(doc.get("nvidia-container-cli"), dict) else {}
        ldconfig = cli.get("ldconfig")
        if isinstance(ldconfig, str) and ldconfig.startswith("@"):  # without "@" it is a path in the container
            # The named path and both spellings the toolkit may switch it to (ldconfig_resolves_to).
            for host_path in (ldconfig[1:], *_ldconfig_candidates(ldconfig[1:])):
                targets[host_path] = snapshot.path(host_path)
        for section in ("nvidia-container-cli", "nvidia-container-runtime"):
            debug = doc.get(section, {}).get("debug") if isinstance(doc.get(section), dict) else None
            if isinstance(debug, str) and debug.startswith("/"):
                targets[debug] = snapshot.path(debug)
                parent = debug.rsplit("/", 1)[0] or "/"
                targets[parent] = snapshot.path(parent)
    return {"path": path, "doc": doc, "error": error, "targets": targets}


@fact("toolkit_versions")
def toolkit_versions_fact(snapshot: Snapshot) -> dict[str, Optional[str]]:
    """Versions reported by nvidia-ctk (toolkit) and nvidia-container-cli (libnvidia-container)."""
    versions: dict[str, Optional[str]] = {}
    for name, command in (("nvidia-ctk", "nvidia-ctk-version"),
                          ("nvidia-container-cli", "nvidia-container-cli-version")):
        fact_ = snapshot.command(command)
        versions[name] = parse_toolkit_version(fact_.output) if fact_.ran and fact_.exit == 0 else None
    return versions


@fact("engine_runtimes")
def engine_runtimes_fact(snapshot: Snapshot) -> dict[str, dict[str, Any]]:
    """Runtime entries per container engine (docker, containerd, crio), drop-in files included.

    Each engine: {"files": [...], "errors": {path: msg}, "runtimes": {name: {binary, default, file,
    binary_state}}, ...}. Engines whose configuration files were absent are left out.
    """
    engines: dict[str, dict[str, Any]] = {}

    def add(engine: str, path: str, runtimes: dict[str, dict[str, Any]]) -> None:
        entry = engines.setdefault(engine, {"files": [], "errors": {}, "runtimes": {}})
        entry["files"].append(path)
        for name, runtime in runtimes.items():
            # later drop-ins override earlier entries
            entry["runtimes"][name] = dict(runtime, file=path,
                                           binary_state=_path_state(snapshot, runtime.get("binary")))

    docker = snapshot.file("/etc/docker/daemon.json")
    if docker.exists:
        doc, error = parse_json(docker.text or "")
        add("docker", docker.path, docker_runtimes(doc))
        if error:
            engines["docker"]["errors"][docker.path] = error
    main = snapshot.file("/etc/containerd/config.toml")
    drop_ins = {**snapshot.files_matching("/etc/containerd/conf.d/"),
                **snapshot.files_matching("/etc/containerd/config.d/")}
    if main.exists or any(f.exists for f in drop_ins.values()):
        imports: list[str] = []
        version: Any = None
        if main.exists:
            doc, error = parse_toml(main.text or "")
            add("containerd", main.path, containerd_runtimes(doc))
            imports = containerd_imports(doc)
            version = doc.get("version") if isinstance(doc, dict) else None
            if error:
                engines["containerd"]["errors"][main.path] = error
        engines.setdefault("containerd", {"files": [], "errors": {}, "runtimes": {}})
        engines["containerd"].update(main_exists=main.exists, imports=imports, version=version,
                                     unimported=[])
        for path, file_ in sorted(drop_ins.items()):
            if not file_.exists:
                continue
            doc, error = parse_toml(file_.text or "")
            if main.exists and not any(fnmatch.fnmatchcase(path, glob) for glob in imports):
                engines["containerd"]["unimported"].append(path)
            add("containerd", path, containerd_runtimes(doc))
            if error:
                engines["containerd"]["errors"][path] = error
    crio_files = {"/etc/crio/crio.conf": snapshot.file("/etc/crio/crio.conf"),
                  **snapshot.files_matching("/etc/crio/crio.conf.d/")}
    for path, file_ in crio_files.items():  # CRI-O reads crio.conf.d/ on its own, in lexical order
        if file_.exists:
            doc, error = parse_toml(file_.text or "")
            add("crio", path, crio_runtimes(doc))
            if error:
                engines["crio"]["errors"][path] = error
    # nvidia-ctk 1.18.0 to 1.19.0 wrote CRI-O's drop-in to /etc/crio/conf.d/, a directory CRI-O does not read
    # (its drop-in directory is crio.conf.d); 1.19.1 writes crio.conf.d/99-nvidia.toml.
    for path, file_ in sorted(snapshot.files_matching("/etc/crio/conf.d/").items()):
        doc, _ = parse_toml(file_.text or "") if file_.exists else (None, None)
        if any(_is_nvidia_runtime(n, r) for n, r in crio_runtimes(doc).items()):
            engines.setdefault("crio", {"files": [], "errors": {}, "runtimes": {}}).setdefault(
                "unread_dropins", []).append(path)
    # Each user's rootless Docker (~/.config/docker/daemon.json) and RKE2/k3s's own containerd (its
    # config.toml, regenerated at each start, and the config.toml.tmpl it is generated from): gpu_runbook.engines.
    for engine_id, found in discover_engines(snapshot).items():
        if "@" not in engine_id or found["kind"] not in ("docker", "containerd") or not found["configs"]:
            continue
        entry = engines.setdefault(engine_id, {"files": [], "errors": {}, "runtimes": {}})
        entry["files"] += found["configs"]
        entry["errors"].update(found["errors"])
        for name, runtime in found["runtimes"].items():
            entry["runtimes"][name] = dict(runtime, binary_state=_path_state(snapshot, runtime.get("binary")))
    return engines


def _is_nvidia_runtime(name: str, runtime: dict[str, Any]) -> bool:
    return "nvidia" in name or "nvidia" in str(runtime.get("binary") or "")


@fact("nvidia_env")
def nvidia_env_fact(snapshot: Snapshot) -> dict[str, str]:
    """The NVIDIA_*, CUDA_* and LD_LIBRARY_PATH variables the collecting process saw."""
    return {k: v for k, v in snapshot.env.items()
            if k.startswith(("NVIDIA_", "CUDA_")) or k == "LD_LIBRARY_PATH"}


@fact("cdi_specs")
def cdi_specs_fact(snapshot: Snapshot) -> dict[str, dict[str, Any]]:
    """Every CDI spec file in /etc/cdi and /var/run/cdi: parsed facts, or the read error."""
    specs: dict[str, dict[str, Any]] = {}
    for prefix in ("/etc/cdi/", "/var/run/cdi/", "/run/cdi/"):
        for path, file_ in snapshot.files_matching(prefix).items():
            if file_.exists:
                specs[path] = parse_cdi_spec(file_.text or "")
            elif not file_.absent:
                specs[path] = {"error": file_.why}
    return specs


@fact("driver_libs")
def driver_libs_fact(snapshot: Snapshot) -> list[dict[str, Any]]:
    """Versioned libcuda files in the system library directories (the cuda-compat directory excluded).

    libnvidia-ml is judged by the devices section's driver-library-mismatch check; this fact feeds the
    CUDA side of the same rule.
    """
    libs = []
    for path, fact_ in snapshot.paths_matching("/").items():
        name = path.rsplit("/", 1)[-1]
        if not re.match(r"^libcuda\.so\.", name) or "/compat/" in path:
            continue
        version = lib_version(path)
        if version and fact_.get("kind") == "file":
            libs.append({"path": path, "version": version, "lib": name.split(".so", 1)[0]})
    if not libs:
        raise Missing("no versioned libcuda.so.* in the library directories looked at", "skip")
    return libs


@fact("compat_libs")
def compat_libs_fact(snapshot: Snapshot) -> list[dict[str, Any]]:
    """The CUDA forward-compatibility libcuda in /usr/local/cuda/compat (cuda-compat package)."""
    libs = [{"path": p, "version": lib_version(p)}
            for p, f in snapshot.paths_matching("/usr/local/cuda/compat/").items()
            if "libcuda.so." in p and lib_version(p) and f.get("kind") == "file"]
    if not libs:
        raise Missing("no cuda-compat libcuda in /usr/local/cuda/compat", "skip")
    return libs


# `nvidia-smi --version` prints "CUDA Version : 13.0"; drivers of the 610 branch print "CUDA version : Deprecated,
# see "CUDA UMD version" instead" and then "CUDA UMD version : 13.3": the first line with a number wins.
SMI_CUDA_VERSION = re.compile(r"CUDA (?:UMD )?version\s*:\s*(\d+\.\d+)", re.IGNORECASE)


@fact("driver_cuda_version")
def driver_cuda_version_fact(snapshot: Snapshot) -> str:
    """The highest CUDA version the loaded driver supports ("13.0"), from NVML or nvidia-smi."""
    version = cuda_version_from_int(snapshot.nvml.get("cuda_driver_version"))
    if version:
        return version
    smi = snapshot.command("nvidia-smi-version")
    match = SMI_CUDA_VERSION.search(smi.output) if smi.ran else None
    if match:
        return match.group(1)
    info = parse_cli_info(snapshot.command("nvidia-container-cli-info").output)
    if info["cuda_version"]:
        return str(info["cuda_version"])
    raise Missing("the driver's CUDA version is unknown (NVML, nvidia-smi and nvidia-container-cli did not say)")


@fact("selinux")
def selinux_fact(snapshot: Snapshot) -> dict[str, Any]:
    """SELinux mode (enforcing / permissive / disabled), the container device booleans and the
    container-selinux version (RPM hosts; None elsewhere or when it was not collected)."""
    mode: Optional[str] = None
    enforce = snapshot.file("/sys/fs/selinux/enforce")
    if enforce.exists:
        mode = {"1": "enforcing", "0": "permissive"}.get((enforce.text or "").strip())
    getenforce = snapshot.command("getenforce")
    if mode is None and getenforce.ran and getenforce.exit == 0:
        mode = getenforce.stdout.strip().lower() or None
    if mode is None:
        # An unreadable enforce file is not an absent one: SELinux may be on.
        if enforce.absent or (getenforce.error == "not-found" and enforce.error == "not-collected"):
            raise Missing("SELinux is not enabled on this host (no /sys/fs/selinux/enforce)", "skip")
        raise Missing(f"SELinux mode unknown: /sys/fs/selinux/enforce "
                      f"{'could not be read (' + enforce.why + ')' if enforce.error else 'is not 0 or 1'}; "
                      f"getenforce: {getenforce.error or f'exit {getenforce.exit}'}")
    booleans: dict[str, Optional[bool]] = {}
    for name in ("container_use_devices", "container_use_xserver_devices"):
        file_ = snapshot.file(f"/sys/fs/selinux/booleans/{name}")
        booleans[name] = (file_.text or "").split()[0] == "1" if file_.exists and (file_.text or "").split() \
            else None
    rpm = snapshot.command("container-selinux-version")
    # One version a line; with two packages installed (a multilib or half-done upgrade) the oldest one decides.
    installed = re.findall(r"^\s*(\d+(?:\.\d+)+)\s*$", rpm.stdout or "", re.M) if rpm.ran and rpm.exit == 0 else []
    oldest = min(installed, key=lambda v: version_tuple(v) or (0,)) if installed else None
    return {"mode": mode, "booleans": booleans, "container_selinux": oldest}


@fact("cli_info_cmd")
def cli_info_cmd_fact(snapshot: Snapshot) -> CommandFact:
    """The `nvidia-container-cli info` command fact; skip when it was not run (e.g. --root)."""
    command = snapshot.command("nvidia-container-cli-info")
    if command.error == "not-collected":
        raise Missing("nvidia-container-cli info was not run in this snapshot", "skip")
    return command


def _nvml_ok(nvml: Optional[dict[str, Any]]) -> bool:
    return bool(nvml) and isinstance(nvml.get("init"), dict) and nvml["init"].get("ok") is True  # type: ignore


def _nvml_names(nvml: Optional[dict[str, Any]]) -> list[str]:
    if not _nvml_ok(nvml):
        return []
    devices = nvml.get("devices")  # type: ignore[union-attr]
    return [d["name"] for d in devices if isinstance(d, dict) and isinstance(d.get("name"), str)] \
        if isinstance(devices, list) else []


# ---------------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------------

# --8<-- [start:toolkit-installed]
# The toolkit release that fixed CVE-2025-23266 ("NVIDIAScape", a container escape through the hooks'
# environment), which affects 1.17.7 and earlier (NVIDIA security bulletin 5659; fixed in v1.17.8).
TOOLKIT_FIXED_VERSION = boundary("gpu-not-visible.toolkit-cve-2025-23266-fixed", "toolkit", "1.17.8")
# In jit-cdi mode (the runtime's default from 1.18.0), 1.18.0 and 1.18.1 treat NVIDIA_VISIBLE_DEVICES=none
# like "all" (fixed in 1.18.2 by NVIDIA/nvidia-container-toolkit#1562, whose description states the bug).
VISIBLE_NONE_BUG = boundary("gpu-not-visible.visible-none-all-gpus-from", "toolkit", "1.18.0")
VISIBLE_NONE_FIXED = boundary("gpu-not-visible.visible-none-all-gpus-fixed", "toolkit", "1.18.2")
DOCKER_GPU_HOOK = "/usr/bin/nvidia-container-runtime-hook"
CDI_HOOK = "/usr/bin/nvidia-cdi-hook"


@fact("nvidia_cdi_hook")
def nvidia_cdi_hook_fact(snapshot: Snapshot) -> bool:
    """Whether /usr/bin/nvidia-cdi-hook exists (nvidia-container-toolkit-base ships it without the legacy hook)."""
    return snapshot.path(CDI_HOOK).get("kind") in ("file", "symlink")
# What engine_runtimes reads (a trailing "/": every file under it).
ENGINE_CONFIGS = ("/etc/docker/daemon.json", "/etc/containerd/config.toml", "/etc/containerd/conf.d/",
                  "/etc/containerd/config.d/", "/etc/crio/crio.conf", "/etc/crio/crio.conf.d/",
                  "/etc/crio/conf.d/")


@check("toolkit-installed", title="NVIDIA Container Toolkit installed", page="gpu-not-visible",
       facts=("toolkit_binaries", "engine_runtimes", "toolkit_versions"),
       optional=("unreadable_facts", "nvidia_cdi_hook", "toolkit_config"))
def toolkit_missing_or_outdated(  # noqa: PLR0917 (the registry passes each declared fact positionally)
        binaries: list[str], engines: dict[str, dict[str, Any]], versions: dict[str, Optional[str]],
        unreadable: Optional[dict[str, str]], cdi_hook: Optional[bool],
        config: Optional[dict[str, Any]]) -> Verdict:
    """A container engine is set up for the NVIDIA runtime but the toolkit is missing, incomplete,
    mixed-version, older than 1.17.8 (the release that fixed the CVE-2025-23266 container escape), or a
    1.18.0/1.18.1 release that, in jit-cdi mode, gives every GPU to containers that ask for none.

    ## Why it matters
    Docker's `--gpus` needs `nvidia-container-runtime-hook` (or, on Docker 29.2.0 and later (moby#50228),
    `nvidia-cdi-hook` and CDI specs); without either Docker answers `could not select device driver ""
    with capabilities: [[gpu]]`. An engine entry pointing at a removed `nvidia-container-runtime` fails
    every container it starts.

    ## Evidence
    lstat of the toolkit binaries in /usr/bin, the engines' runtime entries, `nvidia-ctk --version`,
    `nvidia-container-cli --version` and the runtime mode in config.toml.

    ## References
    NVIDIA Container Toolkit install guide and release notes (1.18.2); NVIDIA/nvidia-container-toolkit
    #1562 (NVIDIA_VISIBLE_DEVICES=none in jit-cdi mode); NVIDIA security bulletin 5659 (CVE-2025-23266);
    moby/moby#50228.
    """
    referenced = {f"{engine}:{name}": rt.get("binary") for engine, entry in engines.items()
                  for name, rt in entry["runtimes"].items() if _is_nvidia_runtime(name, rt)}
    evidence: dict[str, Any] = {"binaries": binaries, "engine_entries": referenced, "versions": versions}
    # Unread engine configuration or toolkit binaries must not pass for absent ones.
    unread_setup = _unreadable_among(unreadable, *ENGINE_CONFIGS, *TOOLKIT_BINARIES, *OPERATOR_TOOLKIT_BINARIES)
    # The GPU Operator's install (wrappers in /usr/local/nvidia/toolkit) has no /usr/bin hook for Docker's --gpus:
    # the operator registers its own runtime with the engine instead.
    operator_only = bool(binaries) and all(b.startswith(OPERATOR_TOOLKIT_DIR + "/") for b in binaries)
    if operator_only:
        evidence["installed_by"] = f"GPU Operator ({OPERATOR_TOOLKIT_DIR})"
    if not binaries:
        elsewhere = sorted({str(rt.get("binary")) for entry in engines.values() for n, rt in entry["runtimes"].items()
                            if _is_nvidia_runtime(n, rt) and rt.get("binary_state") != "missing"
                            and str(rt.get("binary") or "").startswith("/")
                            and not str(rt.get("binary")).startswith("/usr/bin/")})
        if elsewhere:  # the GPU Operator installs the toolkit under /usr/local/nvidia/toolkit
            return ok(f"toolkit installed outside /usr/bin: {', '.join(elsewhere)}", evidence)
        if referenced and not _unreadable_among(unreadable, *TOOLKIT_BINARIES, *OPERATOR_TOOLKIT_BINARIES):
            return fail(f"no toolkit binaries in /usr/bin, but {', '.join(sorted(referenced))} names the "
                        "NVIDIA runtime: every container started through it fails",
                        "Install nvidia-container-toolkit (or remove the stale runtime entry).", evidence,
                        anchor="toolkit-missing")
        if unread_setup:
            return _cannot_conclude(unread_setup, evidence, "whether the toolkit is installed cannot be judged")
        return skip("NVIDIA Container Toolkit not installed and no engine is configured for it", evidence)
    unread_hook = [] if operator_only else _unreadable_among(unreadable, DOCKER_GPU_HOOK, "/etc/docker/daemon.json")
    if DOCKER_GPU_HOOK not in binaries and unread_hook:
        return _cannot_conclude(unread_hook, evidence, "whether Docker can find the GPU hook cannot be judged")
    if DOCKER_GPU_HOOK not in binaries and "docker" in engines and cdi_hook and not operator_only:
        return warn("Docker is configured and nvidia-container-runtime-hook is missing: `docker run --gpus` "
                    "works only through CDI (nvidia-cdi-hook present), on Docker 29.2.0 and later (moby#50228) and "
                    "with a CDI spec; earlier Docker releases answer: could not select device driver",
                    "Install nvidia-container-toolkit (not only -base) so --gpus has the legacy hook, or keep "
                    "CDI specs current (nvidia-ctk cdi generate).", evidence, anchor="toolkit-missing")
    if DOCKER_GPU_HOOK not in binaries and "docker" in engines and not operator_only:
        return fail("Docker is configured but nvidia-container-runtime-hook is missing: `docker run --gpus` "
                    "fails with: could not select device driver \"\" with capabilities: [[gpu]]",
                    "Install the nvidia-container-toolkit package (it ships the hook) and restart Docker.",
                    evidence, anchor="toolkit-missing")
    ctk, cli = versions.get("nvidia-ctk"), versions.get("nvidia-container-cli")
    if ctk and cli and (version_tuple(ctk) or ())[:2] != (version_tuple(cli) or ())[:2]:
        return warn(f"mixed toolkit packages: nvidia-ctk {ctk}, libnvidia-container {cli} (expected one release)",
                    "Upgrade nvidia-container-toolkit and libnvidia-container-tools together.", evidence,
                    anchor="toolkit-missing")
    version = ctk or cli
    parts = version_tuple(version or "") or (0,)
    if version and parts < TOOLKIT_FIXED_VERSION:
        return warn(f"toolkit {version} predates 1.17.8, the release that fixed CVE-2025-23266 "
                    "(container escape through the toolkit's hooks)",
                    "Upgrade the NVIDIA Container Toolkit to the newest release (1.17.8 at least).", evidence,
                    anchor="toolkit-missing")
    mode, _, how = runtime_mode(config, versions)
    if version and VISIBLE_NONE_BUG <= parts < VISIBLE_NONE_FIXED and mode == "jit-cdi":
        return warn(f"toolkit {version} in jit-cdi mode ({how}) gives every GPU to a container started with "
                    "NVIDIA_VISIBLE_DEVICES=none (expected: driver libraries, no GPU)",
                    "Upgrade the NVIDIA Container Toolkit to 1.18.2 or later.", evidence, anchor="visible-devices")
    unread_versions = _unreadable_among(unreadable, "nvidia-ctk-version", "nvidia-container-cli-version")
    if unread_versions:
        return _cannot_conclude(unread_versions, evidence, "the toolkit version cannot be judged")
    where = f" by the GPU Operator in {OPERATOR_TOOLKIT_DIR}" if operator_only else ""
    return ok(f"toolkit installed{where} ({', '.join(b.rsplit('/', 1)[-1] for b in binaries)}), "
              f"version {version or 'unknown'}", evidence)
# --8<-- [end:toolkit-installed]


# --8<-- [start:runtime-configured]
@check("runtime-configured", title="Engines register the NVIDIA runtime", page="gpu-not-visible",
       facts=("engine_runtimes",), optional=("toolkit_binaries", "unreadable_facts"))
def nvidia_runtime_not_registered(engines: dict[str, dict[str, Any]], binaries: Optional[list[str]],
                                  unreadable: Optional[dict[str, str]]) -> Verdict:
    """No container engine registers a working `nvidia` runtime, or its configuration is broken:
    invalid daemon.json / TOML, a default runtime that is not defined, a runtime binary that does not
    exist, a containerd drop-in that the main config never imports, or a CRI-O drop-in in a directory
    CRI-O does not read.

    ## Why it matters
    `--runtime=nvidia` and Kubernetes' `runtimeClassName: nvidia` need the entry
    (`unknown or invalid runtime name: nvidia` otherwise); a drop-in the engine never reads leaves
    every GPU pod on plain runc, without GPUs. `nvidia-ctk runtime configure` writes drop-ins since
    1.18.0: containerd's to config.d/ in 1.18.0 and conf.d/ from 1.18.1 (adding the `imports` line
    itself), CRI-O's to conf.d/ from 1.18.0 to 1.19.0 and crio.conf.d/ from 1.19.1.

    ## Evidence
    /etc/docker/daemon.json, /etc/containerd/config.toml and conf.d/config.d drop-ins,
    /etc/crio/crio.conf, crio.conf.d and conf.d, and lstat of the binaries they name.

    ## References
    NVIDIA Container Toolkit install guide; nvidia-container-toolkit CHANGELOG (1.18.1, 1.19.1) and
    cmd/nvidia-ctk/runtime/configure/configure.go at v1.18.0, v1.18.1, v1.19.1.
    """
    # Configuration files, and the runtime binaries they name, that exist but could not be read.
    unread = _unreadable_among(unreadable, *ENGINE_CONFIGS, *sorted(
        {_binary_path(str(r["binary"])) for v in engines.values() for n, r in v["runtimes"].items()
         if _is_nvidia_runtime(n, r) and r.get("binary")}))
    if not engines:
        if unread:
            return _cannot_conclude(unread, {}, "the container engines' configuration cannot be judged")
        return skip("no Docker, containerd or CRI-O configuration file on this host")
    evidence: dict[str, Any] = {
        e: {"files": v["files"], "errors": v["errors"],
            "runtimes": {n: {k: r.get(k) for k in ("binary", "default", "file", "binary_state")}
                         for n, r in v["runtimes"].items()}} for e, v in engines.items()}
    for engine, entry in sorted(engines.items()):
        for path, error in entry["errors"].items():
            return fail(f"{path} does not parse ({error}): {engine} ignores or refuses it",
                        f"Fix the syntax of {path}, then restart {engine}.", evidence, anchor="runtime-not-configured")
    for engine, entry in sorted(engines.items()):
        for name, runtime in sorted(entry["runtimes"].items()):
            if runtime.get("undefined"):
                return fail(f"{engine}: default-runtime \"{name}\" is not defined under \"runtimes\" in "
                            f"{runtime['file']}", "Add the runtime entry: nvidia-ctk runtime configure "
                            "--runtime=docker, then restart Docker.", evidence, anchor="runtime-not-configured")
            if _is_nvidia_runtime(name, runtime) and runtime.get("binary_state") == "missing":
                return fail(f"{engine}: runtime \"{name}\" points at {runtime.get('binary')}, which does not exist",
                            "Reinstall the toolkit or correct the path, then restart the engine.", evidence,
                            anchor="runtime-not-configured")
    containerd = engines.get("containerd") or {}
    unimported = [p for p in containerd.get("unimported", [])
                  if any(r.get("file") == p and _is_nvidia_runtime(n, r)
                         for n, r in containerd.get("runtimes", {}).items())]
    if unimported:
        summary = (f"containerd: {', '.join(unimported)} defines the nvidia runtime but "
                   f"/etc/containerd/config.toml does not import it (imports = {containerd.get('imports')})")
        glob = unimported[0].rsplit("/", 1)[0] + "/*.toml"
        fix = (f'Add "{glob}" to the imports list of /etc/containerd/config.toml (keep the entries it has), '
               "or rerun nvidia-ctk runtime configure --runtime=containerd (1.18.1+ adds it), then restart "
               "containerd.")
        if containerd.get("version") == 3:  # containerd 2.x may import conf.d by default; confirm
            return warn(summary + "; confirm with `containerd config dump`", fix, evidence,
                        anchor="runtime-not-configured")
        return fail(summary, fix, evidence, anchor="runtime-not-configured")
    crio = engines.get("crio") or {}
    crio_lost = crio.get("unread_dropins") or []
    if crio_lost and not any(_is_nvidia_runtime(n, r) for n, r in crio.get("runtimes", {}).items()):
        return fail(f"crio: {', '.join(crio_lost)} defines the nvidia runtime in /etc/crio/conf.d/, which CRI-O "
                    "does not read (written by nvidia-ctk 1.18.0 to 1.19.0; CRI-O's drop-in directory is "
                    "/etc/crio/crio.conf.d)", "Move the file to /etc/crio/crio.conf.d/99-nvidia.toml (or rerun "
                    "nvidia-ctk runtime configure --runtime=crio with 1.19.1+), then restart CRI-O.", evidence,
                    anchor="runtime-not-configured")
    if unread:
        return _cannot_conclude(unread, evidence, "the NVIDIA runtime registration cannot be judged")
    registered = sorted(f"{e}:{n}{' (default)' if r.get('default') else ''}" for e, v in engines.items()
                        for n, r in v["runtimes"].items() if _is_nvidia_runtime(n, r))
    if not registered:
        if not binaries:
            return skip("no engine registers the NVIDIA runtime and the toolkit is not installed")
        rancher = sorted(e for e in engines if e in ("containerd@rke2", "containerd@k3s"))
        fix = ("Run nvidia-ctk runtime configure --runtime=<engine> and restart the engine." if not rancher else
               f"Restart {rancher[0].split('@')[1]} (it adds the nvidia runtime itself at start when it finds "
               "nvidia-container-runtime in /usr/local/nvidia/toolkit or /usr/bin), or add the runtime to "
               "config.toml.tmpl beside its config.toml; edits to config.toml are overwritten at each start.")
        return warn(f"the toolkit is installed but no engine registers the nvidia runtime "
                    f"({', '.join(sorted(engines))} configured): --runtime=nvidia and "
                    "runtimeClassName: nvidia fail", fix, evidence, anchor="runtime-not-configured")
    return ok(f"NVIDIA runtime registered: {', '.join(registered)}", evidence)
# --8<-- [end:runtime-configured]


# --8<-- [start:runtime-mode]
# Toolkit releases where what config.toml means changed. Each is a fact with its source in
# tests/data/facts/ (the CHANGELOG and the source at that tag); the pages state the same versions.
JIT_CDI_DEFAULT = boundary("toolkit-jit-cdi-default", "toolkit", "1.18.0")  # auto -> jit-cdi in the runtime
LDCONFIG_NORMALIZED = boundary("toolkit-ldconfig-normalized", "toolkit", "1.15.0")  # .real used where it exists
LDCONFIG_HOST_ONLY = boundary("toolkit-ldconfig-host-only", "toolkit", "1.17.3")  # no "@": config rejected
DEBUG_LOG_NONFATAL = boundary("toolkit-debug-log-nonfatal", "toolkit", "1.13.2")  # unwritable log: a warning


def toolkit_version(versions: Optional[dict[str, Optional[str]]]) -> Optional[tuple[int, ...]]:
    """The installed toolkit release: nvidia-ctk's version, else libnvidia-container's (they ship together)."""
    versions = versions or {}
    return version_tuple(versions.get("nvidia-ctk") or versions.get("nvidia-container-cli") or "")


def runtime_mode(config: Optional[dict[str, Any]],
                 versions: Optional[dict[str, Optional[str]]]) -> tuple[Optional[str], bool, str]:
    """How the `nvidia` runtime injects GPUs: (mode, set explicitly in config.toml, why).

    The mode is None when it depends on a toolkit version the snapshot lacks. `auto` (the default)
    resolves to legacy before 1.18.0 and to jit-cdi from 1.18.0 on hosts with NVML; Tegra iGPU hosts
    get csv, and a container that asks only for fully qualified CDI names gets cdi. The runtime hook
    that `docker run --gpus` adds (Docker 29.2.0 and later add it only when CDI cannot serve the request:
    CDI off, no nvidia-cdi-hook, or no spec resolves it) resolves `auto` to legacy on hosts with NVML.

    >>> runtime_mode({"doc": {}}, {"nvidia-ctk": "1.18.0"})[:2]
    ('jit-cdi', False)
    >>> runtime_mode(None, {"nvidia-ctk": "1.17.8"})[:2]
    ('legacy', False)
    >>> runtime_mode({"doc": {"nvidia-container-runtime": {"mode": "cdi"}}}, None)[:2]
    ('cdi', True)
    >>> runtime_mode({"doc": {}}, {})[0] is None
    True
    """
    section = _dict(_dict(_dict(config).get("doc")).get("nvidia-container-runtime"))
    mode = section.get("mode")
    if isinstance(mode, str) and mode != "auto":
        return mode, True, f'mode = "{mode}" in config.toml'
    version = toolkit_version(versions)
    if version is None:
        return None, False, 'mode "auto", toolkit version unknown (legacy before 1.18.0, jit-cdi since)'
    resolved = "jit-cdi" if version >= JIT_CDI_DEFAULT else "legacy"
    shown = ".".join(str(p) for p in version)
    return resolved, False, f'mode "auto" on toolkit {shown} resolves to {resolved}'


def _ldconfig_candidates(host_path: str) -> tuple[str, str]:
    """The two spellings toolkit 1.15.0+ chooses between: the path without and with ".real"."""
    base = host_path[:-len(".real")] if host_path.endswith(".real") else host_path
    return base, base + ".real"


def ldconfig_resolves_to(host_path: str, targets: dict[str, dict[str, Any]],
                         version: Optional[tuple[int, ...]]) -> tuple[Optional[str], str]:
    """The host ldconfig the hook runs for `ldconfig = "@<host_path>"`: (path, how it was chosen).

    Since 1.15.0 the toolkit runs `<path>.real` when it exists and `<path>` otherwise, whichever of
    the two was written (Ubuntu's ldconfig is a wrapper around ldconfig.real; Debian and RHEL have no
    ldconfig.real). Before 1.15.0 the path is used as written; with the version unknown, a path that
    does not exist as written counts as missing. Path None: nothing to run; "?" when a path could not
    be examined.

    >>> ok_, gone = {"kind": "file"}, {"error": "ENOENT"}
    >>> ldconfig_resolves_to("/sbin/ldconfig.real", {"/sbin/ldconfig": ok_, "/sbin/ldconfig.real": gone}, (1, 17, 8))
    ('/sbin/ldconfig', 'toolkit 1.15.0 and later run /sbin/ldconfig.real where it exists, else /sbin/ldconfig')
    >>> ldconfig_resolves_to("/sbin/ldconfig.real", {"/sbin/ldconfig": ok_, "/sbin/ldconfig.real": gone}, (1, 14, 6))[0]
    """
    def state(path: str) -> str:
        error = targets.get(path, {}).get("error")
        return "present" if targets.get(path, {}).get("kind") else "absent" if error in ("ENOENT", "ENOTDIR") else "?"

    if version is None and state(host_path) == "absent":
        return None, "toolkit releases before 1.15.0 run the path as written"
    if version is not None and version < LDCONFIG_NORMALIZED:
        seen = state(host_path)
        return ({"present": host_path, "absent": None}.get(seen, "?"),
                "toolkit releases before 1.15.0 run the path as written")
    base, real = _ldconfig_candidates(host_path)
    how = f"toolkit 1.15.0 and later run {real} where it exists, else {base}"
    if state(real) == "present":
        return real, how
    if state(real) == "absent" or (version is None and state(base) == "present"):
        return {"present": base, "absent": None}.get(state(base), "?"), how
    return "?", how
# --8<-- [end:runtime-mode]


# --8<-- [start:toolkit-config]
def _octal(value: Any) -> Optional[int]:
    """A mode string from lstat ("0755") as a number; None when it is not one."""
    try:
        return int(str(value), 8)
    except ValueError:
        return None


def _legacy_scope(mode: Optional[str], explicit: bool) -> tuple[str, str]:
    """Who reads the [nvidia-container-cli] settings in this runtime mode: ("all" | "gpus-flag" | "none", words)."""
    if mode is None:
        return "all", "before toolkit 1.18.0 every GPU container start runs nvidia-container-cli (version unknown)"
    if mode == "legacy":
        return "all", "every GPU container start runs nvidia-container-cli (legacy mode)"
    if not explicit and mode == "jit-cdi":
        return "gpus-flag", ("only `docker run --gpus` without --runtime=nvidia runs nvidia-container-cli "
                             "(the legacy hook; on Docker 29.2.0+ only when CDI cannot serve the request); "
                             "the nvidia runtime uses jit-cdi")
    return "none", f"the runtime is in {mode} mode and refuses the legacy hook, so nvidia-container-cli is not run"


@check("toolkit-config", title="config.toml of the toolkit", page="runtime-debug-logging",
       facts=("toolkit_config",), optional=("host", "unreadable_facts", "toolkit_versions", "engines"))
def toolkit_config_broken(
        config: dict[str, Any], host: Optional[dict[str, Any]], unreadable: Optional[dict[str, str]],
        versions: Optional[dict[str, Optional[str]]], engines: Optional[dict[str, dict[str, Any]]]) -> Verdict:
    """/etc/nvidia-container-runtime/config.toml is invalid TOML, has an ldconfig the toolkit rejects
    or cannot run, sets `no-cgroups = true` on a rootful host, names an unknown runtime mode, or a
    debug log that cannot be written.

    ## Why it matters
    Every GPU container start reads this file. An ldconfig without "@" makes toolkit 1.17.3+ refuse
    the whole file; an ldconfig that does not exist gives `ldcache error` on the legacy path;
    `no-cgroups` on a rootful engine gives `Failed to initialize NVML: Unknown Error`. Which settings
    matter depends on the runtime mode: since 1.18.0 `auto` means jit-cdi for the nvidia runtime, and
    the [nvidia-container-cli] settings then reach only `docker run --gpus` through the legacy hook.

    ## Evidence
    The parsed config.toml, the toolkit version, lstat of the ldconfig it names (both spellings) and
    of each debug log's directory.

    ## References
    NVIDIA/nvidia-container-toolkit source at v1.15.0, v1.17.3 and v1.18.0 (internal/config/cli.go,
    internal/info/auto.go) and CHANGELOG.md; troubleshooting guide, "Generating Debugging Logs".
    """
    doc, targets = config.get("doc"), config.get("targets") or {}
    if doc is None:
        return fail(f"{config['path']} is not valid TOML: {config.get('error')}",
                    "Fix the file (compare with `nvidia-ctk config default`).", {"error": config.get("error")},
                    anchor="config")
    cli = doc.get("nvidia-container-cli") if isinstance(doc.get("nvidia-container-cli"), dict) else {}
    runtime = doc.get("nvidia-container-runtime") if isinstance(doc.get("nvidia-container-runtime"), dict) else {}
    version = toolkit_version(versions)
    mode, explicit, mode_why = runtime_mode(config, versions)
    scope, scope_words = _legacy_scope(mode, explicit)
    evidence: dict[str, Any] = {"no-cgroups": cli.get("no-cgroups"), "ldconfig": cli.get("ldconfig"),
                                "mode": runtime.get("mode"), "resolved_mode": mode, "mode_reason": mode_why,
                                "toolkit": ".".join(map(str, version)) if version else None,
                                "debug": {"nvidia-container-cli": cli.get("debug"),
                                          "nvidia-container-runtime": runtime.get("debug")},
                                "targets": {p: t.get("error") or f"{t.get('kind')} {t.get('mode')} uid "
                                            f"{t.get('uid')}" for p, t in targets.items()}}
    ldconfig = cli.get("ldconfig")
    looked_at: list[str] = []  # the paths the verdict rests on
    resolved_ldconfig: Optional[str] = None
    from_container = _dict(doc.get("features")).get("allow-ldconfig-from-container") is True
    if isinstance(ldconfig, str) and not ldconfig.startswith("@") and not from_container:
        summary = (f"nvidia-container-cli.ldconfig = \"{ldconfig}\" has no \"@\" (a path inside the container): "
                   "toolkit 1.17.3 and later refuse the whole config.toml, so every GPU container fails")
        fix = f"Set ldconfig = \"@{ldconfig}\" (a host path): nvidia-ctk config --set " \
              f"nvidia-container-cli.ldconfig=@{ldconfig} --in-place"
        if version is not None and version >= LDCONFIG_HOST_ONLY:
            return fail(summary, fix, evidence, page="container-cli-init-error", anchor="ldconfig")
        return warn(summary + (f" (this host runs {'.'.join(map(str, version))})" if version else
                               " (toolkit version unknown)"), fix, evidence,
                    page="container-cli-init-error", anchor="ldconfig")
    if isinstance(ldconfig, str) and ldconfig.startswith("@"):
        resolved_ldconfig, how = ldconfig_resolves_to(ldconfig[1:], targets, version)
        evidence["ldconfig_runs"] = resolved_ldconfig
        looked_at.extend(p for p in (ldconfig[1:], *_ldconfig_candidates(ldconfig[1:])) if p in targets)
        if resolved_ldconfig is None and version is None and scope != "none":
            # Unknown release: 1.15.0+ would fall back to the other spelling; older ones fail.
            other = next((p for p in _ldconfig_candidates(ldconfig[1:])
                          if p != ldconfig[1:] and targets.get(p, {}).get("kind")), None)
            if other:
                return warn(f"ldconfig = \"{ldconfig}\" does not exist; toolkit 1.15.0 and later run {other} "
                            "instead, older releases fail with \"nvidia-container-cli: ldcache error\" "
                            "(toolkit version unknown)", f"Set ldconfig = \"@{other}\".", evidence,
                            page="container-cli-init-error", anchor="ldconfig")
        if resolved_ldconfig is None and scope != "none":
            summary = (f"ldconfig = \"{ldconfig}\" names no ldconfig on this host ({how}): the legacy hook fails "
                       f"with \"nvidia-container-cli: ldcache error\"; {scope_words}")
            fix = "Set ldconfig = \"@/sbin/ldconfig\", which works on every distribution."
            verdict = fail if scope == "all" else warn
            return verdict(summary, fix, evidence, page="container-cli-init-error", anchor="ldconfig")
    for key in ("nvidia-container-cli", "nvidia-container-runtime"):
        debug = evidence["debug"][key]
        if not isinstance(debug, str) or not debug.startswith("/"):
            continue
        looked_at.append(debug.rsplit("/", 1)[0] or "/")
        parent = targets.get(looked_at[-1], {})
        mode_bits = _octal(parent.get("mode", "0")) if parent.get("kind") == "dir" else None
        gone = parent.get("error") in ("ENOENT", "ENOTDIR")
        # A rootless engine writes the log as its user: one found on the host, or no-cgroups = true where
        # no engine was found (engine-user-access judges each engine's own config.toml and user).
        known = {e: v for e, v in (engines or {}).items() if not v.get("weak")}
        rootless_setup = any(v.get("rootless") for v in known.values()) if known else cli.get("no-cgroups") is True
        if gone and key == "nvidia-container-runtime" and not rootless_setup:
            continue  # the runtime creates a missing directory (MkdirAll in internal/runtime/logger.go)
        if not gone and not (rootless_setup and mode_bits is not None and parent.get("uid") == 0
                             and not mode_bits & 0o002):
            continue
        why = "its directory does not exist" if gone else \
            f"its directory is root-owned (mode {parent.get('mode')}) while " + (
                f"rootless engine(s) {', '.join(sorted(e for e, v in known.items() if v.get('rootless')))} run as "
                "their users" if known else "no-cgroups = true (a rootless setup)")
        fatal = key == "nvidia-container-runtime" and version is not None and version < DEBUG_LOG_NONFATAL
        if fatal:
            return fail(f"{key}.debug = \"{debug}\": {why}; toolkit {'.'.join(map(str, version))} (before 1.13.2) "
                        "fails every container start with \"error opening debug log file\"",
                        "Point debug at a writable path or comment the line out; upgrade the toolkit.", evidence,
                        anchor="rootless-log")
        after = ("since toolkit 1.13.2 the runtime only warns \"Failed to open log file\" and the container starts"
                 if key == "nvidia-container-runtime" else "nvidia-container-cli runs only on the legacy path")
        return warn(f"{key}.debug = \"{debug}\": {why}, so the log is not written ({after})",
                    "Use a path the runtime's user can write (under $HOME or /tmp for rootless) or comment it out.",
                    evidence, anchor="rootless-log")
    mode_value = runtime.get("mode")
    if mode_value == "jit-cdi" and version is not None and version < JIT_CDI_DEFAULT:
        # jit-cdi arrived with 1.18.0 (as the new default of auto); older runtimes know no such mode.
        return fail(f"nvidia-container-runtime.mode = \"jit-cdi\", but the toolkit is {'.'.join(map(str, version))}: "
                    "jit-cdi exists from 1.18.0, so the nvidia runtime stops every container with \"invalid runtime "
                    "mode: jit-cdi\"", "Set mode = \"auto\" (or \"cdi\" with a generated spec), or upgrade the "
                    "toolkit to 1.18.0 or later.", evidence, anchor="config")
    if isinstance(mode_value, str) and mode_value not in NVIDIA_RUNTIME_MODES:
        return warn(f"nvidia-container-runtime.mode = \"{mode_value}\" is not one of {', '.join(NVIDIA_RUNTIME_MODES)}",
                    "Set mode = \"auto\" (the default) or a documented mode.", evidence, anchor="config")
    euid = (host or {}).get("euid")
    rootless = cli.get("no-cgroups") is True
    # Who runs the engines decides, not the doctor's uid (gpu_runbook.engines; engine-user-access judges each).
    found = {eid: e for eid, e in (engines or {}).items() if not e.get("weak")}
    rootful_engines = sorted(eid for eid, e in found.items() if not e.get("rootless"))
    rootless_engines = sorted(eid for eid, e in found.items() if e.get("rootless"))
    evidence["engines"] = {"rootful": rootful_engines, "rootless": rootless_engines}
    assumed = not found and euid in (None, 0)
    if rootless and (rootful_engines or assumed) and scope != "none":
        who = (f"rootful engine(s) {', '.join(rootful_engines)}" if rootful_engines else
               "no engine found and the doctor ran as root: rootful engine assumed")
        path = config.get("path")
        sharing = [e for e in rootless_engines if (found[e].get("hook_config") or path) == path]
        both = f"; rootless {', '.join(sharing)} needs true: one file serves both" if sharing else ""
        summary = ("no-cgroups = true: nvidia-container-cli sets up no device cgroup, which only rootless engines "
                   f"need; a rootful engine then fails with Failed to initialize NVML: Unknown Error ({who}{both}); "
                   f"{scope_words}")
        fix = ("For a rootful engine set no-cgroups = false (nvidia-ctk config --set "
               "nvidia-container-cli.no-cgroups=false --in-place) and recreate its GPU containers "
               "(config.toml is read at each container start).")
        return warn(summary, fix, evidence, page="nvml-unknown-error", anchor="no-cgroups")
    unread = _unreadable_among(unreadable, *looked_at)
    if unread:
        return _cannot_conclude(unread, evidence, "the paths config.toml names cannot be judged")
    runs = f"ldconfig runs {resolved_ldconfig}; " if resolved_ldconfig and resolved_ldconfig != "?" else ""
    if scope == "none":
        return ok(f"config.toml parses; runtime: {mode_why}; the [nvidia-container-cli] settings (ldconfig, "
                  f"no-cgroups) are unused: {scope_words}", evidence)
    if rootless:
        who = f"rootless engine(s) {', '.join(rootless_engines)}" if rootless_engines else \
            f"the doctor running as uid {euid}"
        return ok(f"no-cgroups = true with {who}: a rootless setup, as intended; {runs}runtime: {mode_why}", evidence)
    return ok(f"config.toml parses; {runs}runtime: {mode_why}", evidence)
# --8<-- [end:toolkit-config]


# --8<-- [start:cdi-specs]
# The spec directories every CDI-aware engine and the nvidia runtime read, lowest precedence first: a
# device name defined in /var/run/cdi wins over the same name in /etc/cdi (container-device-interface
# pkg/cdi, DefaultSpecDirs). /run/cdi is the same directory where /var/run links to /run.
CDI_SPEC_DIRS = ("/etc/cdi/", "/var/run/cdi/")


def _unaliased(path: str) -> str:
    return "/var/run/cdi/" + path[len("/run/cdi/"):] if path.startswith("/run/cdi/") else path


def _cdi_priority(path: str) -> int:
    """The position of the file's directory in CDI_SPEC_DIRS: the higher, the stronger."""
    return next((i for i, d in enumerate(CDI_SPEC_DIRS) if _unaliased(path).startswith(d)), 0)


def effective_cdi_devices(specs: dict[str, dict[str, Any]]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Which file each qualified device name ("nvidia.com/gpu=all") resolves from, as the CDI cache
    resolves it: the later spec directory wins; two files of one directory that define the same name
    conflict, and the name resolves to nothing. The cache never forgets a conflict: one between two
    /etc/cdi files drops the name even when /var/run/cdi defines it too (pkg/cdi/cache.go, refresh).
    Returns (name -> file, conflicting name -> files).

    >>> specs = {"/etc/cdi/nvidia.yaml": {"kind": "nvidia.com/gpu", "devices": ["0", "all"]},
    ...          "/var/run/cdi/nvidia.yaml": {"kind": "nvidia.com/gpu", "devices": ["0", "all"]}}
    >>> effective_cdi_devices(specs)[0]["nvidia.com/gpu=all"]
    '/var/run/cdi/nvidia.yaml'
    >>> specs["/etc/cdi/nvidia.json"] = {"kind": "nvidia.com/gpu", "devices": ["all"]}
    >>> effective_cdi_devices(specs)[1]
    {'nvidia.com/gpu=all': ['/etc/cdi/nvidia.json', '/etc/cdi/nvidia.yaml']}
    """
    defined: dict[str, dict[int, list[str]]] = {}
    for path, spec in sorted(specs.items()):
        if "error" in spec or not spec.get("kind"):
            continue
        for device in spec.get("devices") or []:
            files = defined.setdefault(f"{spec['kind']}={device}", {}).setdefault(_cdi_priority(path), [])
            if _unaliased(path) not in files:
                files.append(_unaliased(path))
    winners: dict[str, str] = {}
    conflicts: dict[str, list[str]] = {}
    for name, by_priority in defined.items():
        clash = next((f for _, f in sorted(by_priority.items()) if len(f) > 1), None)
        if clash:
            conflicts[name] = clash
        else:
            winners[name] = by_priority[max(by_priority)][0]
    return winners, conflicts


def _regenerate(path: str) -> str:
    if path.startswith("/var/run/cdi/"):  # nvidia-cdi-refresh.service (toolkit 1.18.0+) writes nvidia.yaml here
        return (f"Regenerate it: sudo systemctl restart nvidia-cdi-refresh.service (toolkit 1.18.0+), or "
                f"nvidia-ctk cdi generate --output={path}")
    return f"Regenerate: nvidia-ctk cdi generate --output={path}"


def nvidia_cdi_specs(specs: dict[str, dict[str, Any]]) -> tuple[
        dict[str, dict[str, Any]], dict[str, dict[str, Any]], dict[str, str], dict[str, list[str]]]:
    """The GPU specs among the CDI files, the ones an engine resolves names from (plus unreadable ones),
    which file each device name resolves to, and the names that conflict."""
    nvidia_specs = {p: s for p, s in specs.items() if "error" in s or str(s.get("kind", "")).endswith("/gpu")}
    winners, conflicts = effective_cdi_devices(nvidia_specs)
    effective = {p: s for p, s in nvidia_specs.items() if "error" in s or _unaliased(p) in winners.values()}
    return nvidia_specs, effective, winners, conflicts


@check("cdi-specs", title="CDI specs present and current", page="cdi",
       facts=("cdi_specs",), optional=("toolkit_config", "kernel_driver", "nvml", "nvidia_nodes",
                                       "unreadable_facts", "toolkit_versions"))
def cdi_spec_stale_or_unreadable(  # noqa: PLR0917 (the registry passes each declared fact positionally)
        specs: dict[str, dict[str, Any]], config: Optional[dict[str, Any]],
        driver: Optional[DriverVersion], nvml: Optional[dict[str, Any]],
        nodes: Optional[dict[str, dict[str, Any]]], unreadable: Optional[dict[str, str]],
        versions: Optional[dict[str, Optional[str]]]) -> Verdict:
    """The CDI spec an engine resolves for nvidia.com/gpu is missing (while mode = "cdi"), unreadable,
    defined twice in one directory, generated for another driver version, or lists device nodes that
    no longer exist: the engine reports `unresolvable CDI devices` or injects libraries that do not
    match the kernel module.

    ## Why it matters
    CDI specs are static files written by `nvidia-ctk cdi generate`; after a driver upgrade or a GPU
    change they must be regenerated (toolkit 1.18.0+ does it with nvidia-cdi-refresh, into
    /var/run/cdi). For each device name the file in /var/run/cdi wins over /etc/cdi, so only the
    winning file is judged: a stale /etc/cdi/nvidia.yaml that /var/run/cdi/nvidia.yaml shadows is
    never read, and regenerating it changes nothing.

    ## Evidence
    /etc/cdi/* and /var/run/cdi/* (text or read error), the runtime mode in config.toml and the
    toolkit version, the loaded driver version, NVML's GPU count and lstat of /dev/nvidia*.

    ## References
    NVIDIA Container Toolkit, "Support for Container Device Interface"; container-device-interface
    pkg/cdi (spec directory precedence); deployments/systemd/nvidia-cdi-refresh.service at v1.18.0.
    """
    mode, _, mode_why = runtime_mode(config, versions)
    nvidia_specs, effective, winners, conflicts = nvidia_cdi_specs(specs)
    in_conflict = {f for files in conflicts.values() for f in files}
    shadowed = sorted(set(nvidia_specs) - set(effective) - in_conflict)
    evidence: dict[str, Any] = {"specs": {p: s.get("error") or {k: s.get(k) for k in
                                ("kind", "devices", "driver_versions")} for p, s in specs.items()},
                                "shadowed": shadowed, "conflicts": conflicts, "mode": mode, "mode_reason": mode_why,
                                "driver": driver.version if driver else None}
    if not nvidia_specs:
        if mode == "cdi":
            return fail("config.toml sets mode = \"cdi\" but no CDI spec for nvidia.com/gpu exists: containers "
                        "fail with unresolvable CDI devices", "Generate it: nvidia-ctk cdi generate "
                        "--output=/etc/cdi/nvidia.yaml", evidence, anchor="generate")
        if mode == "jit-cdi":
            return skip(f"no CDI spec file for NVIDIA GPUs: the nvidia runtime generates one per container "
                        f"({mode_why}); only an engine's own CDI requests (--device nvidia.com/gpu=all) need a file",
                        evidence)
        return skip(f"no CDI spec for NVIDIA GPUs: the legacy injection path is in use ({mode_why})", evidence)
    for path, spec in sorted(effective.items()):
        if "error" in spec:
            return fail(f"{path} cannot be read ({spec['error']}): its devices are unresolvable",
                        f"Make it readable (chmod a+r {path}) or regenerate it.", evidence, anchor="unresolvable")
    if conflicts:
        name, files = sorted(conflicts.items())[0]
        return fail(f"{name} is defined in both {' and '.join(files)}: the CDI cache drops conflicting names, "
                    "so requests for it are unresolvable", f"Keep one spec per directory: remove {files[-1]}.",
                    evidence, anchor="unresolvable")
    note = f" ({', '.join(shadowed)} shadowed by /var/run/cdi: never read)" if shadowed else ""
    if driver:
        for path, spec in sorted(effective.items()):
            spec_versions = spec.get("driver_versions") or []
            if spec_versions and driver.version not in spec_versions:
                return fail(f"{path} was generated for driver {', '.join(spec_versions)}, the loaded driver is "
                            f"{driver.version}: containers get libraries that do not match the kernel module{note}",
                            _regenerate(path), evidence, anchor="stale")
    for path, spec in sorted(effective.items()):
        gone = [n for n in spec.get("device_nodes") or [] if (nodes or {}).get(n, {}).get("error") == "ENOENT"]
        if gone:
            return fail(f"{path} lists {', '.join(gone)}, which no longer exist on this host{note}",
                        _regenerate(path), evidence, anchor="stale")
    count = nvml.get("device_count") if _nvml_ok(nvml) else None  # type: ignore[union-attr]
    names = sorted(winners)
    indexed = {n.split("=", 1)[1] for n in names if n.split("=", 1)[1].isdigit()}
    if isinstance(count, int) and indexed and len(indexed) < count:
        return warn(f"the CDI specs name GPUs {sorted(indexed)} but NVML sees {count}: new GPUs are not requestable",
                    "Regenerate the spec after a GPU change.", evidence, anchor="stale")
    if not any(n.endswith("=all") for n in names):
        return warn("no CDI device named \"all\": --device nvidia.com/gpu=all is unresolvable",
                    "Regenerate the spec with nvidia-ctk cdi generate.", evidence, anchor="unresolvable")
    # What the stale and count comparisons needed but could not read: the driver version, the nodes, NVML.
    versioned = any(s.get("driver_versions") for s in effective.values())
    unread = _unreadable_among(unreadable, *(("/proc/driver/nvidia/version",) if versioned else ()), *(
        n for s in effective.values() for n in s.get("device_nodes") or []), *(("nvml",) if indexed else ()))
    if unread:
        return _cannot_conclude(unread, evidence, "whether the CDI specs are current cannot be judged")
    shown = sorted({n.split("=", 1)[1] for n in names})
    return ok(f"{len(effective)} CDI spec(s) in effect for this driver; devices: {', '.join(shown[:8])}{note}",
              evidence)
# --8<-- [end:cdi-specs]


# --8<-- [start:cdi-hook-programs]
@fact("cdi_hook_programs")
def cdi_hook_programs_fact(snapshot: Snapshot) -> dict[str, dict[str, Any]]:
    """lstat of every program a CDI spec's hooks name, as the probe examined it ({"error": "not-collected"}
    for a path outside the probe plan)."""
    programs = sorted({h for spec in cdi_specs_fact(snapshot).values() for h in spec.get("hook_paths") or []})
    return {path: dict(snapshot.path(path)) for path in programs}


@check("cdi-hook-programs", title="The programs CDI hooks run exist", page="cdi",
       facts=("cdi_specs", "cdi_hook_programs"))
def cdi_hook_program_missing(specs: dict[str, dict[str, Any]], programs: dict[str, dict[str, Any]]) -> Verdict:
    """A CDI spec in effect names a hook program (nvidia-cdi-hook, nvidia-ctk) that does not exist on this
    host, so every container given a device from it fails at creation (runc reports the hook by number,
    e.g. "error running createContainer hook #0: fork/exec <path>: no such file or directory").

    ## Why it matters
    The runtime resolves the path of a spec's createContainer hooks on the host (the runtime namespace)
    while it creates the container. The path is whatever the generator wrote: /usr/bin for the packages,
    the GPU Operator's /usr/local/nvidia/toolkit, or another host's layout when a spec is copied or the
    toolkit was removed.

    ## Evidence
    The hook paths of the NVIDIA specs in /etc/cdi and /var/run/cdi (the ones devices resolve from), and
    lstat of each path the probe examines (the toolkit's usual install directories).

    ## References
    CDI specification (hooks); OCI runtime spec config.md (a createContainer hook's path resolves in the
    runtime namespace; the hook runs in the container namespace); NVIDIA Container Toolkit
    internal/discover/hooks.go; siderolabs/talos#13021.
    """
    _, effective, _, _ = nvidia_cdi_specs(specs)
    wanted: dict[str, list[str]] = {}  # hook program -> the specs in effect that run it
    for path, spec in sorted(effective.items()):
        for hook in spec.get("hook_paths") or []:
            wanted.setdefault(hook, []).append(path)
    evidence: dict[str, Any] = {"hooks": wanted, "programs": {h: programs.get(h, {}) for h in wanted}}
    if not wanted:
        return skip("no CDI spec in effect names a hook program", evidence)
    errors = {h: programs.get(h, {}).get("error") for h in sorted(wanted)}
    missing = [h for h, error in errors.items() if error in ABSENT]
    if missing:
        first = missing[0]
        return fail(f"{', '.join(wanted[first])} runs {first} as a hook, which does not exist here: containers "
                    f"given these devices fail with 'fork/exec {first}: no such file or directory'",
                    "Regenerate the spec on this host (nvidia-ctk cdi generate with --nvidia-cdi-hook-path set "
                    "to where nvidia-cdi-hook is installed), or install the toolkit the spec was made for.",
                    evidence, anchor="hook-failed")
    unread = [h for h, error in errors.items() if error not in (*ABSENT, None, "not-collected")]
    if unread:
        return unknown(f"could not examine the hook program(s) {', '.join(unread)}", evidence)
    unexamined = [h for h, error in errors.items() if error == "not-collected"]
    found = [h for h, error in errors.items() if error is None]
    if unexamined and not found:
        return skip(f"the specs' hook programs ({', '.join(unexamined)}) lie outside the paths the doctor "
                    "examines: check them with ls -l", evidence)
    return ok(f"the CDI hook program(s) exist: {', '.join(found)}"
              + (f" (not examined: {', '.join(unexamined)})" if unexamined else ""), evidence)
# --8<-- [end:cdi-hook-programs]


# --8<-- [start:cdi-refresh-order]
CDI_REFRESH_UNIT = "nvidia-cdi-refresh.service"
ENGINE_UNITS = ("docker.service", "containerd.service", "crio.service")


@fact("cdi_refresh_order")
def cdi_refresh_order_fact(snapshot: Snapshot) -> dict[str, Any]:
    """How nvidia-cdi-refresh.service (toolkit 1.18.0+) and the engines' units are ordered: the refresh
    unit's After= targets, and per installed engine unit its After= and WantedBy= (file plus drop-ins)."""
    refresh = unit_texts(snapshot, CDI_REFRESH_UNIT)
    if not refresh:
        raise Missing(f"no {CDI_REFRESH_UNIT} (toolkit before 1.18.0, or not installed here)", "skip")
    engines = {}
    for unit in ENGINE_UNITS:
        texts = unit_texts(snapshot, unit)
        if texts:
            engines[unit] = {"after": sorted(unit_dependencies(texts, "After")),
                             "wanted_by": sorted(unit_dependencies(texts, "WantedBy"))}
    return {"refresh_after": sorted(unit_dependencies(refresh, "After")), "engines": engines}


@check("cdi-refresh-order", title="Engines and nvidia-cdi-refresh start in an order systemd can keep",
       page="cdi", facts=("cdi_refresh_order",))
def cdi_refresh_ordering_cycle(order: dict[str, Any]) -> Verdict:
    """An engine ordered after nvidia-cdi-refresh.service while that unit is ordered after
    multi-user.target (toolkit 1.19.0) makes an ordering cycle: "docker.service: Found ordering cycle on
    nvidia-cdi-refresh.service/start", and systemd drops a job, so the engine may not start at boot.

    ## Why it matters
    Ordering an engine after the refresh unit is the way to have the CDI spec in place before containers
    with a restart policy come back (Docker 28.2.0+). With toolkit 1.19.0's unit that same drop-in closes a
    loop through multi-user.target, which waits for the engine it wants (systemd.target(5)).

    ## Evidence
    After= of nvidia-cdi-refresh.service and After=/WantedBy= of docker, containerd and crio, each read as
    its unit file plus drop-ins under /etc/systemd/system, /usr/lib/systemd/system and /lib/systemd/system.

    ## References
    NVIDIA/nvidia-container-toolkit#1735; deployments/systemd/nvidia-cdi-refresh.service at v1.19.0 and
    v1.19.1; systemd.unit(5), systemd.target(5).
    """
    refresh_after = set(order["refresh_after"])
    engines = order["engines"]
    ordered = [u for u, e in sorted(engines.items()) if CDI_REFRESH_UNIT in e["after"]]
    evidence = {"refresh_after": sorted(refresh_after), "engines": engines}
    looped = [u for u in ordered if "multi-user.target" in refresh_after
              and "multi-user.target" in engines[u]["wanted_by"]]
    if looped:
        verb = "starts" if len(looped) == 1 else "start"
        return fail(f"ordering cycle: {', '.join(looped)} {verb} after {CDI_REFRESH_UNIT}, which starts after "
                    f"multi-user.target, which waits for {', '.join(looped)}: systemd drops a job at boot "
                    f"('Found ordering cycle on {CDI_REFRESH_UNIT}/start') and the engine may not start",
                    "Upgrade the toolkit to 1.19.1 or later (its unit no longer orders itself after "
                    "multi-user.target), or remove the engine's After= drop-in until then.",
                    evidence, anchor="docker-boot-order")
    if ordered:
        verb = "starts" if len(ordered) == 1 else "start"
        return ok(f"{', '.join(ordered)} {verb} after {CDI_REFRESH_UNIT}, without a cycle", evidence)
    if engines:
        return skip(f"no engine unit lists {CDI_REFRESH_UNIT} in After=: containers restored at boot that name "
                    "CDI devices may start before the spec is written (see the page when that happens)", evidence)
    return skip("no docker, containerd or crio unit found here", evidence)
# --8<-- [end:cdi-refresh-order]


# --8<-- [start:container-visible-devices]
def requested_gpus(value: Optional[str]) -> Optional[int]:
    """How many GPUs NVIDIA_VISIBLE_DEVICES asks for: 0 for unset/void/none/empty, -1 for "all",
    None when the value cannot be counted (volume-mount strategy paths).

    >>> [requested_gpus(v) for v in (None, "void", "none", "all", "0,1", "GPU-1a2b,GPU-3c4d,GPU-5e6f")]
    [0, 0, 0, -1, 2, 3]
    """
    if value is None or value.strip() in ("", "void", "none"):
        return 0
    if value.strip() == "all":
        return -1
    if value.startswith("/"):
        return None
    return len([v for v in value.split(",") if v.strip()])


@check("container-visible-devices", title="Requested GPUs visible in the container", page="gpu-not-visible",
       facts=("in_container", "nvidia_env"), optional=("nvml",))
def container_gpus_not_visible(in_container: bool, env: dict[str, str], nvml: Optional[dict[str, Any]]) -> Verdict:
    """Inside a container, NVML sees no GPU (the container was started without a GPU request: no --gpus,
    no NVIDIA runtime, no CDI device), fewer GPUs than NVIDIA_VISIBLE_DEVICES names, or GPUs although it
    says `none`.

    ## Why it matters
    `NVIDIA_VISIBLE_DEVICES` unset, empty or `void` makes the NVIDIA runtime behave like runc; `none`
    injects the driver but no GPU, except in toolkit 1.18.0 and 1.18.1 (jit-cdi mode), which inject every
    GPU. A pod on a default runtime that is not `nvidia` gets no GPU at all. Indexes or UUIDs that do not
    exist do not give fewer GPUs: the container does not start.

    ## Evidence
    NVIDIA_VISIBLE_DEVICES of the collecting process and NVML's device count.

    ## References
    NVIDIA Container Toolkit, "Specialized Configurations with Docker" (GPU Enumeration); toolkit README;
    NVIDIA/nvidia-container-toolkit#1562.
    """
    if not in_container:
        return skip("not inside a container")
    value = env.get("NVIDIA_VISIBLE_DEVICES")
    wanted = requested_gpus(value)
    count = nvml.get("device_count") if _nvml_ok(nvml) else None  # type: ignore[union-attr]
    nvml_error = _dict(_dict(nvml).get("init")).get("error")
    evidence = {"NVIDIA_VISIBLE_DEVICES": value, "nvml_device_count": count, "nvml_error": nvml_error}
    init_error = str(_dict(nvml_error).get("name", ""))
    cuda_image = bool(env.get("CUDA_VERSION") or env.get("NVIDIA_REQUIRE_CUDA"))
    if wanted == 0:
        if isinstance(count, int) and count > 0 and (value or "").strip() == "none":
            return warn(f"NVIDIA_VISIBLE_DEVICES=none, yet NVML sees {count} GPU(s): toolkit 1.18.0 and 1.18.1 "
                        "inject every GPU for none in jit-cdi mode (or GPUs were added with --device)",
                        "Upgrade the host's NVIDIA Container Toolkit to 1.18.2 or later; until then use "
                        "NVIDIA_VISIBLE_DEVICES=void for containers that must not see a GPU.", evidence,
                        anchor="visible-devices")
        if isinstance(count, int) and count > 0:
            return ok(f"{count} GPU(s) visible (injected by CDI or --device; NVIDIA_VISIBLE_DEVICES={value!r})",
                      evidence)
        if count == 0 and (value or "").strip() == "none":
            return ok("no GPU, as NVIDIA_VISIBLE_DEVICES=none asks: the driver libraries are injected (NVML "
                      "starts) and no device is; start it with --gpus or a GPU request if it needs one", evidence)
        if not cuda_image:
            return skip("no GPU requested and no CUDA image environment: not a GPU container", evidence)
        why = "none" if value == "none" else "unset" if value is None else repr(value)
        return fail(f"no GPU in this container: NVIDIA_VISIBLE_DEVICES is {why}, so the NVIDIA runtime "
                    "injected no GPU", "Start it with --gpus all (Docker), --device nvidia.com/gpu=all (CDI) or "
                    "runtimeClassName: nvidia plus an nvidia.com/gpu limit (Kubernetes).", evidence,
                    anchor="visible-devices")
    if count is None and init_error == "NVMLError_LibraryNotFound":
        return fail(f"NVIDIA_VISIBLE_DEVICES={value} is set but no driver library was injected (libnvidia-ml.so.1 "
                    "missing): the container did not run on the NVIDIA runtime", "Use --gpus / --runtime=nvidia "
                    "(Docker) or runtimeClassName: nvidia, or make nvidia the default runtime.", evidence,
                    anchor="default-runtime")
    if count is None:
        return unknown("NVML did not answer, so the visible GPUs cannot be counted (see nvml-init)", evidence)
    if count == 0 or (wanted is not None and wanted > 0 and count < wanted):
        return fail(f"NVIDIA_VISIBLE_DEVICES={value} asks for {'all GPUs' if wanted == -1 else wanted} "
                    f"but NVML sees {count}: the runtime acted on another request than this environment shows "
                    "(changed after start, or devices given with --device)", "Recreate the container with the "
                    "request in place (--gpus, --runtime=nvidia, or a CDI device); IDs that do not exist on the "
                    "host stop the start with: unknown device.", evidence, anchor="visible-devices")
    return ok(f"NVML sees {count} GPU(s) for NVIDIA_VISIBLE_DEVICES={value}", evidence)
# --8<-- [end:container-visible-devices]


# --8<-- [start:container-driver-capabilities]
KNOWN_CAPABILITIES = ("compute", "compat32", "graphics", "utility", "video", "display", "all")


@check("container-driver-capabilities", title="Driver capabilities of the container", page="gpu-not-visible",
       facts=("in_container", "nvidia_env"))
def container_capabilities_missing(in_container: bool, env: dict[str, str]) -> Verdict:
    """NVIDIA_DRIVER_CAPABILITIES leaves out `compute` (no libcuda in the container) or `utility`
    (no nvidia-smi / libnvidia-ml), or names a capability the toolkit does not know.

    ## Why it matters
    Where the toolkit picks libraries by capability (the legacy hook behind Docker `--gpus`, and the runtime
    in legacy mode), only the driver libraries of the listed capabilities are mounted; without `compute`,
    CUDA programs then fail with `libcuda.so.1: cannot open shared object file` (PyTorch: `Found no NVIDIA
    driver on your system`). A CDI spec, and so jit-cdi mode (the runtime's default from 1.18.0), mounts the
    driver libraries whatever this variable says.

    ## Evidence
    NVIDIA_DRIVER_CAPABILITIES and NVIDIA_VISIBLE_DEVICES of the collecting process.

    ## References
    NVIDIA Container Toolkit, "Driver Capabilities"; NVIDIA/nvidia-container-toolkit
    cmd/nvidia-container-runtime/README.md.
    """
    if not in_container:
        return skip("not inside a container")
    if requested_gpus(env.get("NVIDIA_VISIBLE_DEVICES")) == 0 and env.get("NVIDIA_VISIBLE_DEVICES") != "none":
        return skip("no GPU requested through NVIDIA_VISIBLE_DEVICES (see container-visible-devices)")
    raw = env.get("NVIDIA_DRIVER_CAPABILITIES")
    # Unset or empty means the default, "utility,compute" (toolkit README); unset in a legacy image
    # (CUDA_VERSION without NVIDIA_REQUIRE_CUDA) means "all" (the hook's getDriverCapabilities).
    legacy_image = bool(env.get("CUDA_VERSION")) and not env.get("NVIDIA_REQUIRE_CUDA")
    fallback = "all" if raw is None and legacy_image else "utility,compute"
    caps = {c.strip() for c in (raw or fallback).split(",") if c.strip()}
    evidence = {"NVIDIA_DRIVER_CAPABILITIES": raw, "effective": sorted(caps)}
    unknown_caps = sorted(caps - set(KNOWN_CAPABILITIES))
    if "all" not in caps and "compute" not in caps:
        return fail(f"NVIDIA_DRIVER_CAPABILITIES={raw} has no compute: where the toolkit picks libraries by "
                    "capability (legacy hook, Docker --gpus) libcuda is not injected and CUDA cannot start",
                    "Add compute (for example -e NVIDIA_DRIVER_CAPABILITIES=compute,utility).",
                    evidence, anchor="driver-capabilities")
    if unknown_caps:
        return warn(f"unknown driver capabilities {unknown_caps} in NVIDIA_DRIVER_CAPABILITIES={raw}",
                    f"Use only {', '.join(KNOWN_CAPABILITIES)}.", evidence, anchor="driver-capabilities")
    if "all" not in caps and "utility" not in caps:
        return warn(f"NVIDIA_DRIVER_CAPABILITIES={raw} has no utility: where the toolkit picks libraries by "
                    "capability (legacy hook, Docker --gpus) nvidia-smi and NVML are not injected",
                    "Add utility if monitoring or nvidia-smi must work in the container.", evidence,
                    anchor="driver-capabilities")
    return ok(f"driver capabilities {','.join(sorted(caps))}", evidence)
# --8<-- [end:container-driver-capabilities]


# --8<-- [start:cuda-driver-table]
# Minimum Linux x86_64 driver per CUDA Toolkit release: "CUDA Toolkit and Corresponding Driver
# Versions" (Table 3) of the CUDA Toolkit Release Notes. A driver at least this new runs everything
# that release builds, with no compatibility mode.
CUDA_TOOLKIT_DRIVERS: tuple[tuple[str, str], ...] = (
    ("13.3 Update 1", "610.43.02"), ("13.3 GA", "610.43.02"),
    ("13.2 Update 1", "595.58.03"), ("13.2 GA", "595.45.04"),
    ("13.1 Update 1", "590.48.01"), ("13.1 GA", "590.44.01"),
    ("13.0 Update 2", "580.95.05"), ("13.0 Update 1", "580.82.07"), ("13.0 GA", "580.65.06"),
    ("12.9 Update 1", "575.57.08"), ("12.9 GA", "575.51.03"),
    ("12.8 Update 1", "570.124.06"), ("12.8 GA", "570.26"),
    ("12.6 Update 3", "560.35.05"), ("12.6 Update 2", "560.35.03"), ("12.6 Update 1", "560.35.03"),
    ("12.6 GA", "560.28.03"), ("12.5 Update 1", "555.42.06"), ("12.5 GA", "555.42.02"),
    ("12.4 Update 1", "550.54.15"), ("12.4 GA", "550.54.14"),
    ("12.3 Update 1", "545.23.08"), ("12.3 GA", "545.23.06"),
    ("12.2 Update 2", "535.104.05"), ("12.2 Update 1", "535.86.09"), ("12.2 GA", "535.54.03"),
    ("12.1 Update 1", "530.30.02"), ("12.1 GA", "530.30.02"),
    ("12.0 Update 1", "525.85.12"), ("12.0 GA", "525.60.13"),
    ("11.8 GA", "520.61.05"), ("11.7 Update 1", "515.48.07"), ("11.7 GA", "515.43.04"),
    ("11.6 Update 2", "510.47.03"), ("11.6 Update 1", "510.47.03"), ("11.6 GA", "510.39.01"),
    ("11.5 Update 2", "495.29.05"), ("11.5 Update 1", "495.29.05"), ("11.5 GA", "495.29.05"),
    ("11.4 Update 4", "470.82.01"), ("11.4 Update 3", "470.82.01"), ("11.4 Update 2", "470.57.02"),
    ("11.4 Update 1", "470.57.02"), ("11.4.0 GA", "470.42.01"),
    ("11.3.1 Update 1", "465.19.01"), ("11.3.0 GA", "465.19.01"),
    ("11.2.2 Update 2", "460.32.03"), ("11.2.1 Update 1", "460.32.03"), ("11.2.0 GA", "460.27.03"),
    ("11.1.1 Update 1", "455.32"), ("11.1 GA", "455.23"),
    ("11.0.3 Update 1", "450.51.06"), ("11.0.2 GA", "450.51.05"),
    ("10.2.89", "440.33"), ("10.1.105", "418.39"), ("10.0.130", "410.48"),
)
# The table ends with the newest release whose row was checked against the release notes; newer
# releases (13.4, 13.5) get "not in the table" rather than a guessed driver.
CUDA_TABLE_NEWEST = "13.3"
# Minor version compatibility (the release notes' minor-version table and the CUDA Compatibility guide):
# within one major release an application runs, with a limited feature set, on any driver at least this new.
CUDA_MINOR_COMPAT_DRIVERS: dict[int, tuple[int, ...]] = {
    13: boundary("driver-compat.cuda-13-minor-compat-driver", "driver", "580"),
    12: boundary("driver-compat.cuda-12-minor-compat-driver", "driver", "525.60.13"),
    11: boundary("driver-compat.cuda-11-minor-compat-driver", "driver", "450.80.02"),
}


def minimum_driver(cuda: str) -> Optional[str]:
    """The toolkit driver of the GA release of CUDA major.minor ("12.4" -> "550.54.14"), if listed.

    >>> minimum_driver("12.4"), minimum_driver("13.0"), minimum_driver("9.0")
    ('550.54.14', '580.65.06', None)
    """
    wanted = (version_tuple(cuda) or (0,))[:2]
    candidates = [d for label, d in CUDA_TOOLKIT_DRIVERS if (version_tuple(label) or (0,))[:2] == wanted]
    return min(candidates, key=lambda d: version_tuple(d) or (0,)) if candidates else None
# --8<-- [end:cuda-driver-table]


# --8<-- [start:require-cuda]
# libnvidia-container names a GPU's brand after NVML's brand enum (driver_get_device_brand, src/driver.c).
# Up to 1.8.x only these six had names and every other brand, among them "NVIDIA" (H100, H200, B200), read
# "Unknown"; 1.9.0 extended the switch to the newer NVML brands (toolkit CHANGELOG: "Update switch statement
# to include new brands from latest nvml.h"). CUDA images list brand=unknown, tesla, nvidia, quadro, grid and
# the vGPU brands per driver branch; never geforce or titan.
LIBNVC_BRANDS = {1: "Quadro", 2: "Tesla", 3: "NVS", 4: "GRID", 5: "GeForce", 6: "TITAN"}
# For the newer brands the name depends on the libnvidia-container release, so a GPU of such a brand is judged
# both as "Unknown" and under the word CUDA images use for its brand (an assumption about the newer names);
# where the two answers differ the verdict stays open. Brands not listed here get no second name.
IMAGE_BRAND_WORDS = {7: "vapps", 8: "vpc", 9: "vcs", 10: "vws", 11: "cloudgaming", 12: "quadrortx",
                     13: "nvidiartx", 14: "nvidia"}
# The words Go's strconv.ParseBool reads as true: the toolkit parses NVIDIA_DISABLE_REQUIRE with it.
TRUE_WORDS = ("1", "t", "T", "TRUE", "true", "True")


def _truthy(value: Optional[str]) -> bool:
    return (value or "").strip() in TRUE_WORDS


def _short(expression: str, limit: int = 60) -> str:
    """The expression for a one-line summary: CUDA base images list dozens of brand alternatives."""
    return repr(expression) if len(expression) <= limit else repr(expression[:limit].rstrip() + " ...")


def image_requirements(env: dict[str, str]) -> dict[str, str]:
    """The requirements the toolkit hands to nvidia-container-cli, ANDed: every NVIDIA_REQUIRE_* variable
    except NVIDIA_REQUIRE_JETPACK*, and cuda>=X.Y from CUDA_VERSION when NVIDIA_REQUIRE_CUDA is unset.

    >>> image_requirements({"CUDA_VERSION": "11.0.3", "NVIDIA_REQUIRE_BRAND": "brand=tesla"})
    {'NVIDIA_REQUIRE_BRAND': 'brand=tesla', 'CUDA_VERSION': 'cuda>=11.0'}
    """
    found = {k: v for k, v in sorted(env.items()) if k.startswith("NVIDIA_REQUIRE_")
             and not k.startswith("NVIDIA_REQUIRE_JETPACK") and v.strip()}
    legacy = version_tuple(env.get("CUDA_VERSION") or "")
    if not env.get("NVIDIA_REQUIRE_CUDA") and legacy and len(legacy) >= 2:
        found["CUDA_VERSION"] = f"cuda>={legacy[0]}.{legacy[1]}"
    return found


def visible_gpus(cli_info: Optional[CommandFact], nvml: Optional[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each GPU's brand and architecture as libnvidia-container compares them: from `nvidia-container-cli
    info` (its own words), else from NVML with the brand named as libnvidia-container names it.

    A brand libnvidia-container named only from 1.9.0 carries both readings in "brands".

    >>> visible_gpus(None, {"init": {"ok": True}, "devices": [
    ...     {"name": "NVIDIA H200", "brand": 14, "cuda_compute_capability": [9, 0]}]})
    [{'name': 'NVIDIA H200', 'brand': 'Unknown', 'arch': '9.0', 'source': 'nvml', 'brands': ['Unknown', 'nvidia']}]
    """
    if cli_info is not None and cli_info.ran and cli_info.exit == 0:
        devices = parse_cli_info(cli_info.output)["devices"]
        if devices and all(d.get("brand") for d in devices):
            return [{"name": d.get("model"), "brand": d["brand"], "arch": d.get("arch"),
                     "source": "nvidia-container-cli"} for d in devices]
    devices = nvml.get("devices") if _nvml_ok(nvml) else None  # type: ignore[union-attr]
    gpus: list[dict[str, Any]] = []
    for device in devices if isinstance(devices, list) else []:
        brand = _dict(device).get("brand")
        if not isinstance(brand, int) or isinstance(brand, bool):
            return []  # one GPU of unknown brand leaves the whole verdict open
        cc = device.get("cuda_compute_capability")
        arch = f"{cc[0]}.{cc[1]}" if isinstance(cc, list) and len(cc) == 2 else None
        gpu: dict[str, Any] = {"name": device.get("name"), "brand": LIBNVC_BRANDS.get(brand, "Unknown"),
                               "arch": arch, "source": "nvml"}
        if brand not in LIBNVC_BRANDS:
            gpu["brands"] = ["Unknown", IMAGE_BRAND_WORDS.get(brand)]
        gpus.append(gpu)
    return gpus


def _per_gpu(requirements: dict[str, str], facts: dict[str, Optional[str]], gpu: dict[str, Any]) -> Optional[bool]:
    """The requirements judged for one GPU; a GPU with two possible brand names counts only where both agree."""
    answers = [_all_of([eval_require(e, {**facts, "brand": brand, "arch": gpu.get("arch")})
                        for e in requirements.values()]) for brand in gpu.get("brands") or [gpu.get("brand")]]
    return answers[0] if all(a == answers[0] for a in answers) else None


def _all_of(results: list[Optional[bool]]) -> Optional[bool]:
    return False if False in results else None if None in results else True


def brands_on_this_driver(expression: str, facts: dict[str, Optional[str]]) -> list[str]:
    """The brands whose `brand=...,driver...` alternative this driver satisfies, brand set aside.

    >>> brands_on_this_driver("cuda>=12.8 brand=tesla,driver>=535,driver<536 brand=grid,driver>=550,driver<551",
    ...                       {"cuda": "12.2", "driver": "535.247.01"})
    ['tesla']
    """
    brands: list[str] = []
    for conditions in parse_require(expression):
        named = [value for key, op, value in conditions if key == "brand" and op in ("=", "==")]
        rest = ",".join(f"{key}{op}{value}" for key, op, value in conditions if key != "brand")
        if named and rest and eval_require(rest, facts) is True:
            brands += [b for b in named if b not in brands]
    return brands


@check("require-cuda", title="NVIDIA_REQUIRE_CUDA satisfied by the driver", page="driver-compat",
       facts=("nvidia_env",), optional=("driver_cuda_version", "kernel_driver", "nvml", "cli_info_cmd"))
def require_cuda_unsatisfied(env: dict[str, str], cuda: Optional[str], driver: Optional[DriverVersion],
                             nvml: Optional[dict[str, Any]], cli_info: Optional[CommandFact]) -> Verdict:
    """The image's NVIDIA_REQUIRE_CUDA (or legacy CUDA_VERSION) is not met by this driver and GPU: the legacy
    hook refuses the container (`unsatisfied condition: cuda>=X`), or CUDA fails with `CUDA driver
    version is insufficient for CUDA runtime version` where nothing checks it.

    ## Why it matters
    The driver's CUDA version is a ceiling. An image may also accept older driver branches for named GPU
    brands (`brand=tesla,driver>=535,driver<536`): libnvidia-container evaluates the expression for each
    visible GPU, so a data-center GPU on 535 starts a CUDA 12.8 image and a GeForce does not.

    ## Evidence
    NVIDIA_REQUIRE_* / CUDA_VERSION / NVIDIA_DISABLE_REQUIRE of the collecting process (set them to an
    image's values to test it on the host), the driver's CUDA version and driver version, and each GPU's
    brand and architecture (nvidia-container-cli info, else NVML).

    ## References
    libnvidia-container src/cli/configure.c and src/cli/dsl.c; toolkit README, NVIDIA_REQUIRE_*; CUDA
    Toolkit Release Notes (driver tables); CUDA Compatibility guide.
    """
    requirements = image_requirements(env)
    if not requirements:
        return skip("neither NVIDIA_REQUIRE_CUDA nor CUDA_VERSION is set (not a CUDA image's environment)")
    expression = requirements.get("NVIDIA_REQUIRE_CUDA") or requirements.get("CUDA_VERSION") \
        or next(iter(requirements.values()))
    if cuda is None:
        return unknown(f"{_short(expression)} cannot be judged: the driver's CUDA version is unknown "
                       "(NVML, nvidia-smi and nvidia-container-cli did not say)", {"requirements": requirements})
    driver_version = driver.version if driver else ((nvml or {}).get("driver_version") if _nvml_ok(nvml) else None)
    drv = driver_version if isinstance(driver_version, str) else None
    gpus = visible_gpus(cli_info, nvml)
    # libnvidia-container evaluates every requirement once per visible GPU, with that GPU's brand and arch.
    per_gpu = [_per_gpu(requirements, {"cuda": cuda, "driver": drv}, g) for g in gpus or [{}]]
    verdict = _all_of(per_gpu)
    wanted = re.search(r"cuda\s*>=?\s*(\d+\.\d+)", expression)
    needed = wanted.group(1) if wanted else None
    base = {"cuda": cuda, "driver": drv}
    evidence = {"requirements": requirements, "NVIDIA_DISABLE_REQUIRE": env.get("NVIDIA_DISABLE_REQUIRE"),
                "driver_cuda": cuda, "driver": drv, "gpus": gpus,
                "toolkit_driver_for_needed": minimum_driver(needed) if needed else None}
    if verdict is True:
        if needed and eval_require(f"cuda>={needed}", base) is False:
            brands = sorted({str(g.get("brand")) for g in gpus})
            return ok(f"driver {drv} (CUDA {cuda}) is accepted for {', '.join(brands)} GPUs through the image's "
                      f"brand alternatives for this driver branch, not through cuda>={needed}", evidence)
        return ok(f"driver CUDA {cuda} satisfies {expression.split()[0]}", evidence)
    if verdict is None:
        return warn(f"{_short(expression)} hangs on the GPU brand, which this snapshot lacks (driver CUDA {cuda}, "
                    f"driver {drv})", "Run `nvidia-container-cli info | grep Brand`: the image starts when one "
                    "alternative names that brand and this driver branch.", evidence, anchor="require-cuda")
    major = (version_tuple(needed or "") or (0,))[0]
    minor_compat = CUDA_MINOR_COMPAT_DRIVERS.get(major)
    same_major = bool(minor_compat and drv and (version_tuple(drv) or (0,)) >= minor_compat) if drv else \
        major == (version_tuple(cuda) or (0,))[0]
    advice = (f"driver CUDA {cuda} is older than the image's {needed}" if needed else
              f"driver CUDA {cuda} does not satisfy {_short(expression)}")
    accepted = brands_on_this_driver(expression, base)
    refused = sorted({f"{g.get('brand')} ({g.get('name')})" for g, r in zip(gpus, per_gpu) if r is False})
    if accepted and refused:
        shown = ", ".join(accepted[:5]) + (", ..." if len(accepted) > 5 else "")
        advice += f", and the image's alternatives for driver {drv} accept only {shown}, not {refused[0]}"
    table_end = f"Table 3 of the CUDA release notes (the doctor's table ends at CUDA {CUDA_TABLE_NEWEST})"
    if same_major:
        fix = (f"Upgrade the driver to {minimum_driver(needed or '') or table_end} or newer; or, since driver "
               f"{drv or cuda} is within CUDA {major}.x minor version compatibility, run with "
               "NVIDIA_DISABLE_REQUIRE=true and test the application (PTX JIT of newer code still fails).")
    else:
        fix = (f"Upgrade the driver to {minimum_driver(needed or '') or table_end} or newer, or use an image built "
               f"for CUDA {cuda} or older; forward compatibility (cuda-compat) is for data-center GPUs only.")
    if _truthy(env.get("NVIDIA_DISABLE_REQUIRE")):
        return warn(advice + "; NVIDIA_DISABLE_REQUIRE skips the check at start-up: "
                    + ("minor version compatibility applies" if same_major else
                       "expect CUDA driver version is insufficient for CUDA runtime version"), fix, evidence,
                    anchor="require-cuda")
    return fail(advice + f": the legacy hook (Docker --gpus where the hook injects, legacy mode) refuses it "
                f"(unsatisfied condition: cuda>={needed}); CDI injection (jit-cdi/cdi modes, Docker 29.2.0+ --gpus "
                "with a CDI spec) starts it and CUDA fails at start-up", fix, evidence, anchor="require-cuda")
# --8<-- [end:require-cuda]


# --8<-- [start:container-driver-libs]
@check("container-driver-libs", title="libcuda matches the kernel module", page="driver-compat",
       facts=("driver_libs", "kernel_driver"), optional=("in_container", "unreadable_facts"))
def driver_libs_mismatch(libs: list[dict[str, Any]], driver: DriverVersion,
                         in_container: Optional[bool], unreadable: Optional[dict[str, str]]) -> Verdict:
    """A libcuda.so.X in the library path has another version than the loaded kernel module: CUDA
    fails to initialise (cuInit returns an error; nvidia-smi, through libnvidia-ml, reports
    `Driver/library version mismatch`, judged by driver-library-mismatch).

    ## Why it matters
    The user-space driver and the kernel module must be the same build. In a container this means the
    image bundles its own driver libraries instead of the ones the toolkit injects; on a host, a driver
    upgrade without a reboot or module reload.

    ## Evidence
    lstat of libcuda.so.* in the system library directories (the cuda-compat directory excluded) and
    /proc/driver/nvidia/version.

    ## References
    NVIDIA Container Toolkit architecture (driver libraries are injected from the host); NVML API reference.
    """
    wrong = [f"{lib['path']} ({lib['version']})" for lib in libs if lib["version"] != driver.version]
    evidence = {"kernel_module": driver.version, "libraries": [lib["path"] for lib in libs], "mismatched": wrong}
    if wrong:
        where = ("the image ships its own driver libraries" if in_container else
                 "the driver was upgraded without reloading the kernel module")
        fix = ("Remove driver packages (libnvidia-compute-*, libcuda1) from the image and let the NVIDIA runtime "
               "inject the host's." if in_container else
               "Reboot (or drain and reload the nvidia modules) so the kernel module matches the libraries.")
        return fail(f"kernel module {driver.version} but {', '.join(wrong[:4])}: {where}", fix, evidence,
                    anchor="container-libs")
    unread = _unreadable_among(unreadable, pattern=r"^(?!.*/compat/).*/libcuda\.so")
    if unread:
        return _cannot_conclude(unread, evidence, "not every libcuda could be examined")
    return ok(f"{len(libs)} driver librar{'y' if len(libs) == 1 else 'ies'} match kernel module {driver.version}",
              evidence)
# --8<-- [end:container-driver-libs]


# --8<-- [start:cuda-forward-compat]
# Forward compatibility works only on NVIDIA Data Center GPUs, select NGC Server Ready RTX SKUs and
# Jetson (CUDA Compatibility guide); consumer product lines never qualify.
CONSUMER_GPU = re.compile(r"\b(GeForce|TITAN)\b", re.IGNORECASE)
WORKSTATION_GPU = re.compile(r"\b(Quadro|RTX)\b", re.IGNORECASE)


@check("cuda-forward-compat", title="cuda-compat libraries usable on this GPU", page="driver-compat",
       facts=("compat_libs", "kernel_driver"), optional=("nvml", "nvidia_env", "unreadable_facts"))
def forward_compat_unusable(compat: list[dict[str, Any]], driver: DriverVersion, nvml: Optional[dict[str, Any]],
                            env: Optional[dict[str, str]], unreadable: Optional[dict[str, str]]) -> Verdict:
    """The cuda-compat libcuda in /usr/local/cuda/compat cannot work here: the GPU is not a data-center
    part (CUDA error 804, forward compatibility was attempted on non supported HW), or the compat library
    is older than the driver and is forced in through LD_LIBRARY_PATH (error 803).

    ## Why it matters
    Forward compatibility lets a newer CUDA run on an older driver branch, but only on supported GPUs and
    only when the compat libcuda is newer than the installed driver. The toolkit's enable-cuda-compat hook
    (1.17.5 to 1.19.x) uses it only when its major version (driver branch) is higher; from 1.20.0 it reads the
    library's .note.cuda.fwd_compatibility ELF note first and uses it only when the note lists the host's
    driver branch and the library is newer, falling back to the major-version rule without a note.

    ## Evidence
    lstat of /usr/local/cuda/compat/libcuda.so.*, the kernel module version, NVML's GPU names and
    LD_LIBRARY_PATH.

    ## References
    CUDA Compatibility guide, "Forward Compatibility"; NVIDIA/container-images/cuda issue #183.
    """
    newest = max(compat, key=lambda c: version_tuple(c["version"]) or (0,))
    names = _nvml_names(nvml)
    forced = "/usr/local/cuda/compat" in (env or {}).get("LD_LIBRARY_PATH", "")
    evidence = {"compat": newest["path"], "compat_version": newest["version"], "driver": driver.version,
                "gpus": names, "compat_on_LD_LIBRARY_PATH": forced}
    newer = (version_tuple(newest["version"]) or (0,)) > (version_tuple(driver.version) or (0,))
    unread = _unreadable_among(unreadable, "/usr/local/cuda/compat", "/usr/local/cuda/compat/")
    if not newer:
        if forced:
            return fail(f"compat libcuda {newest['version']} is not newer than driver {driver.version} but "
                        "LD_LIBRARY_PATH puts it first: CUDA fails with system has unsupported display driver "
                        "/ cuda driver combination (803)", "Remove /usr/local/cuda/compat from LD_LIBRARY_PATH.",
                        evidence, anchor="forward-compat")
        if unread:
            return _cannot_conclude(unread, evidence, "not every cuda-compat library could be examined")
        return ok(f"compat libcuda {newest['version']} is older than driver {driver.version}: not used, the "
                  "driver's own libcuda serves", evidence)
    same_branch = (version_tuple(newest["version"]) or (0,))[:1] == (version_tuple(driver.version) or (0,))[:1]
    if same_branch and not forced and not unread:
        # The enable-cuda-compat hook adds the compat directory for a higher major version (1.17.5+), or when the
        # library's ELF note lists the host's branch (1.20.0+); forward compatibility targets older branches.
        return ok(f"compat libcuda {newest['version']} is from driver {driver.version}'s own branch: forward "
                  "compatibility is not needed; the enable-cuda-compat hook adds it only for a newer branch "
                  "(toolkit 1.17.5-1.19.x) or when its ELF note lists this branch (1.20.0+)", evidence)
    consumer = [n for n in names if CONSUMER_GPU.search(n)]
    if consumer:
        return fail(f"forward compatibility (compat libcuda {newest['version']} on driver {driver.version}) is not "
                    f"supported on {consumer[0]}: CUDA fails with error 804", "Upgrade the host driver to a "
                    "branch that supports this CUDA version; forward compatibility is for data-center GPUs.",
                    evidence, anchor="forward-compat")
    workstation = [n for n in names if WORKSTATION_GPU.search(n)]
    if workstation or not names:
        return warn(f"compat libcuda {newest['version']} on driver {driver.version}: forward compatibility "
                    f"works only on data-center GPUs and select NGC Server Ready RTX SKUs "
                    f"({workstation[0] if workstation else 'GPU model unknown'})",
                    "Confirm the SKU is supported, or upgrade the host driver.", evidence, anchor="forward-compat")
    if unread:
        return _cannot_conclude(unread, evidence, "not every cuda-compat library could be examined")
    return ok(f"forward compatibility: compat libcuda {newest['version']} on driver {driver.version}, {names[0]}",
              evidence)
# --8<-- [end:cuda-forward-compat]


# --8<-- [start:selinux-devices]
# container_use_devices allows map on device nodes from this release (container.te)
CONTAINER_SELINUX_MAP = boundary("selinux.container-use-devices-map-from", "container-selinux", "2.213.0")


@check("selinux-devices", title="SELinux lets containers open the GPU", page="selinux",
       facts=("selinux",), optional=("nvidia_nodes", "unreadable_facts"))
def selinux_blocks_gpu(selinux: dict[str, Any], nodes: Optional[dict[str, dict[str, Any]]],
                       unreadable: Optional[dict[str, str]]) -> Verdict:
    """SELinux is enforcing and confined containers (container_t) may not open the NVIDIA device nodes:
    neither container_use_devices nor container_use_xserver_devices is on, only container_use_devices is on
    in a container-selinux older than v2.213.0 (no map permission), or the nodes carry a generic label.

    ## Why it matters
    The denial shows inside the container as `Failed to initialize NVML: Insufficient Permissions` and
    in the audit log as an AVC denial on /dev/nvidia*.

    ## Evidence
    /sys/fs/selinux/enforce (or getenforce), the two container booleans, the container-selinux version
    (rpm), and the SELinux label of each /dev/nvidia* node. A policy that has container_use_xserver_devices
    is v2.232.0 or later, whose container_use_devices includes map (container.te).

    ## References
    NVIDIA Container Toolkit troubleshooting, "NVML: Insufficient Permissions and SELinux";
    containers/container-selinux PR #306; fedora-selinux/selinux-policy issue #1695;
    NVIDIA/nvidia-docker issue #219 (device_t nodes from a runfile-installed nvidia-modprobe).
    """
    mode = selinux["mode"]
    labels = {p: n["selinux"] for p, n in (nodes or {}).items() if isinstance(n.get("selinux"), str)
              and n["selinux"]}
    booleans = selinux["booleans"]
    evidence = {"mode": mode, "booleans": booleans, "labels": labels,
                "container_selinux": selinux.get("container_selinux")}
    if mode == "disabled":
        return skip("SELinux is disabled", evidence)
    if mode != "enforcing":
        return ok(f"SELinux is {mode}: denials are logged, not enforced", evidence)
    generic = [p for p, label in labels.items() if ":device_t:" in label]
    if generic and not booleans.get("container_use_devices"):  # that boolean grants every device type
        return warn(f"{', '.join(sorted(generic))} labelled device_t: container_use_xserver_devices "
                    "does not cover that type (only the wide container_use_devices does)",
                    "Relabel: restorecon -v /dev/nvidia* /usr/bin/nvidia-modprobe (a runfile install leaves "
                    "nvidia-modprobe bin_t, and the nodes it creates come out device_t)", evidence, anchor="labels")
    if any(booleans.get(b) for b in booleans):
        # A node whose label could not be read may carry device_t; an unreadable GPU boolean may be off.
        unread = _unreadable_among(unreadable, pattern=r"^/dev/nvidia")
        if not booleans.get("container_use_xserver_devices"):
            unread += _unreadable_among(unreadable, "/sys/fs/selinux/booleans/container_use_xserver_devices")
        if unread:
            return _cannot_conclude(unread, evidence, "the GPU device labels or booleans cannot be judged")
        on = [b for b, v in booleans.items() if v]
        if booleans.get("container_use_xserver_devices") is None:
            # Only container_use_devices is on, in a policy older than v2.232.0 (no GPU boolean). It grants every
            # device type, but the map permission CUDA needs only from container-selinux v2.213.0 (container.te).
            version = selinux.get("container_selinux")
            unread = _unreadable_among(unreadable, "container-selinux-version")
            if version is None and unread:  # rpm was there but could not answer: the version may be too old
                return _cannot_conclude(unread, evidence, "container_use_devices is on but the container-selinux "
                                        "version (map from 2.213.0) cannot be judged")
            if version is None:
                return ok("SELinux enforcing; container_use_devices on: confined containers may use the GPU if "
                          "container-selinux is v2.213.0 or later (map on device nodes; version not collected)",
                          evidence)
            if (version_tuple(version) or (0,)) < CONTAINER_SELINUX_MAP:
                return warn(f"SELinux enforcing; container_use_devices on, but container-selinux {version} does not "
                            "let containers map device nodes (from v2.213.0)",
                            "Update container-selinux to 2.213.0 or later, or add a policy module "
                            "(ausearch -m avc -ts recent | audit2allow -M ...).", evidence, anchor="boolean")
        return ok(f"SELinux enforcing; {', '.join(on)} on: confined containers may use the GPU", evidence)
    if all(v is None for v in booleans.values()):
        return unknown("SELinux is enforcing but the container booleans were not readable", evidence)
    return warn("SELinux enforcing and container_use_devices / container_use_xserver_devices are off: confined "
                "containers get Failed to initialize NVML: Insufficient Permissions",
                "setsebool -P container_use_xserver_devices on (or container_use_devices where the policy lacks it; "
                "--security-opt label=disable per container).", evidence,
                anchor="boolean")
# --8<-- [end:selinux-devices]


# --8<-- [start:container-cli-info]
# `nvidia-container-cli: initialization error: ...` variants -> (anchor on container-cli-init-error, fix).
CLI_ERRORS: tuple[tuple[str, str, str], ...] = (
    ("load library failed", "load-library-failed",
     "libnvidia-ml.so.1 is not in the ldcache: install the user-space libraries of the loaded driver's exact "
     "version (same source as the kernel module) and run ldconfig."),
    ("driver not loaded", "driver-not-loaded", "Load the kernel module (modprobe nvidia) or fix the driver install."),
    ("insufficient permissions", "insufficient-permissions",
     "The user/group the tool runs as cannot open /dev/nvidia*: compare ls -l /dev/nvidia* with user = in "
     "config.toml (SUSE: root:video; VirtualGL setups restrict the nodes to vglusers)."),
    ("ldcache error", "ldconfig", 'Set ldconfig = "@/sbin/ldconfig" in config.toml (toolkit 1.15.0+ runs ldconfig.real '
     "where it exists; before 1.15.0 name the path that exists on the host)."),
    ("driver rpc error", "driver-rpc",
     "The driver helper process failed: enable persistence mode (nvidia-persistenced), then check dmesg and the GPU."),
)


@check("container-cli-info", title="nvidia-container-cli sees the driver", page="container-cli-init-error",
       facts=("cli_info_cmd",), optional=("kernel_driver", "nvml", "unreadable_facts", "toolkit_config",
                                          "toolkit_versions"))
def container_cli_cannot_initialise(  # noqa: PLR0917 (the registry passes each declared fact positionally)
        command: CommandFact, driver: Optional[DriverVersion], nvml: Optional[dict[str, Any]],
        unreadable: Optional[dict[str, str]], config: Optional[dict[str, Any]],
        versions: Optional[dict[str, Optional[str]]]) -> Verdict:
    """`nvidia-container-cli info`, the tool the legacy hook runs at each GPU container start, fails to
    initialise, or reports another driver or fewer GPUs than the host has.

    ## Why it matters
    In legacy mode the hook runs the same code at each GPU container start; its error is the one the
    engine prints after `OCI runtime create failed`. Since toolkit 1.18.0 the nvidia runtime's default
    mode is jit-cdi, which does not run nvidia-container-cli: the hook that `docker run --gpus` without
    `--runtime=nvidia` adds (on Docker 29.2.0 and later only when CDI cannot serve the request), an
    OCI hook file (CRI-O's deprecated hook mode) and LXC's own nvidia hook still run it, so there a
    failure here is a warning, not the cause of a failing pod.

    ## Evidence
    Exit status and output of `nvidia-container-cli info`, /proc/driver/nvidia/version, NVML's GPU count,
    the runtime mode in config.toml and the toolkit version.

    ## References
    NVIDIA/libnvidia-container src/driver.c and issue #103; NVIDIA/nvidia-container-toolkit issues #154,
    #202, #1269; internal/info/auto.go and cmd/nvidia-container-runtime-hook/hook_config.go at v1.18.0.
    """
    if command.error == "not-found":
        return skip("nvidia-container-cli is not installed")
    if command.error == "timeout":
        return fail("nvidia-container-cli info did not answer in time: the driver is hung or slow to initialise "
                    "the GPUs (persistence mode off)",
                    "Check persistence mode (nvidia-persistenced); if the driver is hung, follow the recovery "
                    "runbook (drain, then reset or reboot).", {"detail": command.detail},
                    page="recovery")
    if not command.ran:
        return unknown(f"nvidia-container-cli info could not run ({command.error}: {command.detail})")
    info = parse_cli_info(command.output)
    evidence = {"exit": command.exit, "error": info["error"], "nvrm_version": info["nvrm_version"],
                "cuda_version": info["cuda_version"], "devices": len(info["devices"])}
    mode, explicit, mode_why = runtime_mode(config, versions)
    evidence.update(runtime_mode=mode, mode_reason=mode_why)
    if command.exit != 0 or info["error"]:
        message = info["error"] or command.output.strip()[-300:]
        anchor, fix = next(((a, f) for needle, a, f in CLI_ERRORS if needle in message),
                           ("causes", "Rerun with nvidia-container-cli -k -d /dev/tty info and read the last lines."))
        summary = f"nvidia-container-cli: {message}" if anchor != "causes" else \
            f"nvidia-container-cli info exited {command.exit}: {message}"
        if mode in ("cdi", "jit-cdi", "csv"):
            # Not the cause of a failing container on the nvidia runtime: it does not run the tool in this mode.
            who = ("the hook that `docker run --gpus` without --runtime=nvidia adds (on Docker 29.2.0+ only "
                   "when CDI cannot serve it) still runs it; containers and pods on the nvidia runtime do not") \
                if not explicit else \
                "neither the nvidia runtime nor its hook runs it in this mode (unless skip-mode-detection is set)"
            return warn(f"{summary[:240]} ({mode_why}: {who})", fix, evidence, anchor=anchor)
        return fail(summary, fix, evidence, anchor=anchor)
    if driver and info["nvrm_version"] and info["nvrm_version"] != driver.version:
        return fail(f"nvidia-container-cli reports driver {info['nvrm_version']}, kernel module is {driver.version}",
                    "Reboot or reload the driver so libraries and module match.", evidence, page="driver-compat",
                    anchor="container-libs")
    count = nvml.get("device_count") if _nvml_ok(nvml) else None  # type: ignore[union-attr]
    if isinstance(count, int) and len(info["devices"]) != count:
        return warn(f"nvidia-container-cli lists {len(info['devices'])} GPU(s), NVML sees {count}",
                    "Compare nvidia-smi -L with nvidia-container-cli list.", evidence, anchor="causes")
    # The driver and GPU-count comparisons need the kernel module's version and NVML's answer.
    unread = _unreadable_among(unreadable, *(("/proc/driver/nvidia/version",) if info["nvrm_version"] else ()),
                               "nvml")
    if unread:
        return _cannot_conclude(unread, evidence, "the driver and GPU count cannot be compared")
    return ok(f"driver {info['nvrm_version']}, CUDA {info['cuda_version']}, {len(info['devices'])} GPU(s)", evidence)
# --8<-- [end:container-cli-info]

"""The collection plan: every file, path, directory and command the probes may touch, in one place.

Nothing outside this plan is read or run; tests hold the probes to it and the docs show it
(docs/reference/collection-plan.md is generated from these tables). Paths are host paths: under
`--root /host` they are read below /host.
"""

from __future__ import annotations

from typing import NamedTuple

# Files whose text is recorded (globs allowed). Each is read-only, capped at MAX_FILE_BYTES.
FILES: tuple[str, ...] = (
    # kernel and driver
    "/proc/devices",
    "/proc/modules",
    "/proc/cmdline",
    "/proc/sys/kernel/osrelease",
    "/proc/sys/kernel/tainted",
    "/proc/driver/nvidia/version",
    "/proc/driver/nvidia/params",
    "/proc/driver/nvidia/registry",
    "/proc/driver/nvidia/gpus/*/information",
    "/proc/driver/nvidia/capabilities/mig/config",
    "/proc/driver/nvidia/capabilities/mig/monitor",
    "/proc/driver/nvidia-caps/mig-minors",
    "/proc/driver/nvidia-caps/sys-minors",
    # MIG instances that exist (host) or were granted (container): one access file per GPU and compute
    # instance, named by the GPU's device minor; their DeviceFileMinor names the /dev/nvidia-caps node
    "/proc/driver/nvidia/capabilities/gpu*/mig/gi*/access",
    "/proc/driver/nvidia/capabilities/gpu*/mig/gi*/ci*/access",
    "/sys/module/nvidia/version",
    "/sys/module/nvidia_uvm/version",
    "/sys/module/nouveau/initstate",
    "/sys/module/nvidia/initstate",
    "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c",
    "/proc/sys/kernel/modules_disabled",
    "/proc/sys/net/core/bpf_jit_harden",
    "/proc/sys/net/core/bpf_jit_enable",
    "/etc/modprobe.d/*.conf",
    "/lib/modprobe.d/*.conf",
    "/usr/lib/modprobe.d/*.conf",
    "/run/modprobe.d/*.conf",
    "/etc/udev/rules.d/*nvidia*.rules",
    "/lib/udev/rules.d/*nvidia*.rules",
    "/usr/lib/udev/rules.d/*nvidia*.rules",
    "/etc/os-release",
    "/etc/hostname",
    # cgroups and container context
    "/proc/self/cgroup",
    "/proc/1/cgroup",
    "/proc/self/mountinfo",
    "/proc/self/status",
    "/sys/fs/cgroup/cgroup.controllers",
    "/sys/fs/cgroup/devices.list",
    "/sys/fs/cgroup/devices/devices.list",
    "/sys/fs/selinux/enforce",
    "/etc/selinux/config",
    "/sys/fs/selinux/booleans/container_use_devices",
    "/sys/fs/selinux/booleans/container_use_xserver_devices",
    "/run/.containerenv",
    "/run/systemd/container",  # systemd's record of the container manager it was started by ("lxc", ...)
    # container toolkit and runtimes
    "/etc/nvidia-container-runtime/config.toml",
    "/etc/nvidia-container-runtime/config.toml.d/*.toml",
    # the GPU Operator's toolkit install (TOOLKIT_ROOTS below): the config its runtime and hook wrappers name
    "/usr/local/nvidia/toolkit/.config/nvidia-container-runtime/config.toml",
    "/etc/docker/daemon.json",
    "/etc/containerd/config.toml",
    "/etc/containerd/conf.d/*.toml",
    "/etc/containerd/config.d/*.toml",
    "/etc/crio/crio.conf",
    "/etc/crio/crio.conf.d/*",
    "/etc/crio/conf.d/*.toml",  # where nvidia-ctk 1.18.0-1.19.0 wrote CRI-O's drop-in (CRI-O does not read it)
    "/etc/cdi/*.yaml",
    "/etc/cdi/*.json",
    "/var/run/cdi/*.yaml",
    "/var/run/cdi/*.json",
    "/etc/ld.so.conf.d/*.conf",
    # container engines and who runs them (probes/engines.py adds each user's own files, USER_FILES below):
    # systemd units and their drop-ins (Environment= lines name XDG_CONFIG_HOME / NVIDIA_CTK_CONFIG_FILE_PATH),
    # RKE2/k3s's own containerd configuration and its template, Podman's containers.conf
    "/etc/systemd/system/*.service",
    "/etc/systemd/system/*.service.d/*.conf",
    "/usr/lib/systemd/system/docker.service",
    "/usr/lib/systemd/system/containerd.service",
    "/usr/lib/systemd/system/crio.service",
    "/usr/lib/systemd/system/podman.service",
    "/usr/lib/systemd/system/k3s*.service",
    "/usr/lib/systemd/system/rke2-*.service",
    "/lib/systemd/system/docker.service",
    "/lib/systemd/system/containerd.service",
    "/usr/lib/systemd/system/nvidia-cdi-refresh.service",  # toolkit 1.18.0+: regenerates /var/run/cdi/nvidia.yaml
    "/lib/systemd/system/nvidia-cdi-refresh.service",
    "/usr/lib/systemd/system/*.service.d/*.conf",
    # packaged units of GPU programs run as services (checks/services.py: a sandbox that hides the GPU)
    "/usr/lib/systemd/system/ollama*.service",
    "/usr/lib/systemd/system/jellyfin*.service",
    "/usr/lib/systemd/system/plexmediaserver*.service",
    "/usr/lib/systemd/system/emby-server*.service",
    "/usr/lib/systemd/system/jupyterhub*.service",
    "/lib/systemd/system/ollama*.service",
    "/lib/systemd/system/jellyfin*.service",
    "/lib/systemd/system/plexmediaserver*.service",
    "/lib/systemd/system/emby-server*.service",
    "/lib/systemd/system/jupyterhub*.service",
    "/run/systemd/transient/*.service",  # systemd-run and JupyterHub's SystemdSpawner write their units here
    "/run/systemd/system/*.service",
    "/lib/systemd/system/*.service.d/*.conf",
    "/var/lib/rancher/rke2/agent/etc/containerd/config.toml",
    "/var/lib/rancher/rke2/agent/etc/containerd/config*.toml.tmpl",
    "/var/lib/rancher/k3s/agent/etc/containerd/config.toml",
    "/var/lib/rancher/k3s/agent/etc/containerd/config*.toml.tmpl",
    "/etc/containers/containers.conf",
    "/etc/containers/containers.conf.d/*.conf",
    "/usr/share/containers/containers.conf",
    "/etc/nv_tegra_release",  # Tegra: the runtime's auto mode resolves to csv where NVML is absent
    "/sys/devices/soc0/family",
    # Kubernetes node: the kubelet's device checkpoint (what device plugins registered) and GPU feature
    # discovery's label file for NFD's local source
    "/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint",
    "/etc/kubernetes/node-feature-discovery/features.d/*",
    # GPU Operator: the validator's driver status (KEY=VALUE), the driver container's daemon status and the
    # node's workload type; the other status files are empty, their names are listed (DIRS)
    "/run/nvidia/validations/driver-ready",
    "/run/nvidia/validations/.driver-daemons-status",
    "/run/nvidia/validations/workload-type",
    # PCIe peer-to-peer and GPUDirect RDMA: IOMMU mode on the kernel command line is in /proc/cmdline;
    # whether this is a VM (emulated bridges); the peer-memory module's state
    "/sys/class/dmi/id/sys_vendor",
    "/sys/class/dmi/id/product_name",
    "/sys/hypervisor/type",
    "/sys/module/nvidia_peermem/initstate",
    "/sys/module/nvidia_peermem/version",
    "/sys/module/nvidia_peermem/parameters/peerdirect_support",
    "/sys/module/nv_peer_mem/initstate",
    "/sys/module/ib_core/initstate",
    "/sys/kernel/mm/memory_peers/*/version",
    # GPUDirect Storage: the storage drivers that registered with nvidia-fs (while a cuFile process has it open)
    "/proc/driver/nvidia-fs/modules",
)

# The running kernel's build options that checks judge: from /proc/config.gz (kernels with CONFIG_IKCONFIG_PROC)
# or the distribution's copy in /boot (each installed kernel's; the fact picks the running release). A .gz file is
# decompressed in memory, at most KERNEL_CONFIG_MAX_BYTES of it; only the lines that set or unset one of
# KERNEL_CONFIG_OPTIONS are recorded, never the rest of the configuration.
KERNEL_CONFIG_FILES: tuple[str, ...] = ("/proc/config.gz", "/boot/config-*")
KERNEL_CONFIG_OPTIONS: tuple[str, ...] = (
    # runc on cgroup v2 installs device rules as an eBPF program: without both, containers fail at create
    "CONFIG_BPF_SYSCALL",
    "CONFIG_CGROUP_BPF",
)
KERNEL_CONFIG_MAX_BYTES = 4 * 1024 * 1024

# Paths whose lstat is recorded (device nodes, links, marker files). Missing ones are recorded as ENOENT:
# the absence of /dev/nvidia-uvm is a fact a check needs.
PATHS: tuple[str, ...] = (
    "/dev/nvidiactl",
    "/dev/nvidia-uvm",
    "/dev/nvidia-uvm-tools",
    "/dev/nvidia-modeset",
    "/dev/nvidia[0-9]*",
    "/dev/nvidia-caps/*",
    "/dev/nvidia-caps-imex-channels/*",
    "/dev/nvidia-nvswitch*",
    "/dev/nvidia-nvlink",
    "/dev/dri/*",
    "/dev/dxg",  # WSL 2: the Windows driver's GPU paravirtualisation device
    "/.dockerenv",
    "/run/.containerenv",
    "/usr/bin/nvidia-smi",
    "/usr/bin/nvidia-container-cli",
    "/usr/bin/nvidia-container-runtime",
    "/usr/bin/nvidia-container-runtime-hook",
    "/usr/bin/nvidia-ctk",
    "/usr/bin/nvidia-cdi-hook",
    "/usr/local/nvidia/toolkit/nvidia-container-cli",
    "/usr/local/nvidia/toolkit/nvidia-container-runtime",
    "/usr/local/nvidia/toolkit/nvidia-container-runtime-hook",
    "/usr/local/nvidia/toolkit/nvidia-ctk",
    "/usr/local/nvidia/toolkit/nvidia-cdi-hook",
    # where CDI specs' hooks may point besides /usr/bin (Talos and hand installs)
    "/usr/local/bin/nvidia-ctk",
    "/usr/local/bin/nvidia-cdi-hook",
    "/usr/local/cuda/compat",
    "/usr/local/cuda/compat/*",
    "/etc/nvidia-container-runtime",
    "/etc/cdi",
    "/var/run/cdi",
    "/sys/fs/cgroup/cgroup.controllers",
    "/sys/fs/cgroup/devices",
    "/sys/fs/selinux",
    "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so*",
    "/usr/lib/x86_64-linux-gnu/libcuda.so*",
    "/usr/lib64/libnvidia-ml.so*",
    "/usr/lib64/libcuda.so*",
    "/usr/lib/aarch64-linux-gnu/libnvidia-ml.so*",
    "/usr/lib/aarch64-linux-gnu/libcuda.so*",
    "/usr/local/nvidia/lib64/libnvidia-ml.so*",
    "/usr/local/nvidia/lib64/libcuda.so*",
    # Arch Linux and Void keep the 64-bit driver libraries in /usr/lib itself (Fedora keeps its 32-bit ones there).
    "/usr/lib/libnvidia-ml.so*",
    "/lib/firmware/nvidia/*/gsp_*",
    "/run/nvidia/driver",
    "/run/nvidia/driver/usr/bin/nvidia-smi",
    # toolkit config targets: ldconfig named in config.toml (toolkit 1.15.0+ picks <path>.real where it
    # exists, so both spellings are looked at), debug log files and their directory
    "/sbin/ldconfig",
    "/sbin/ldconfig.real",
    "/usr/sbin/ldconfig",
    "/usr/sbin/ldconfig.real",
    # the GPU Operator's toolkit names the driver container's ldconfig (nvidia-ctk-installer: "@" + driver root)
    "/run/nvidia/driver/sbin/ldconfig",
    "/run/nvidia/driver/sbin/ldconfig.real",
    "/var/log",
    "/var/log/nvidia-container-toolkit.log",
    "/var/log/nvidia-container-runtime.log",
    # MPS: the control daemon's default pipe directory and its socket (present while the daemon runs)
    "/tmp/nvidia-mps",  # noqa: S108  (lstat only)
    "/tmp/nvidia-mps/control",  # noqa: S108  (lstat only)
    # MPS v3 (R615+ guides): a root daemon's default pipe directory according to the guide's v3 reference
    "/run/nvidia-mps",
    "/run/nvidia-mps/control",
    "/etc/kubernetes/node-feature-discovery/features.d",
    # one directory per NVSwitch the driver's nvswitch part manages (NVLink4 and older,
    # kernel-open/nvidia/procfs_nvswitch.c); only its name, a PCI address, is kept (the information file holds
    # the switch's UUID)
    "/proc/driver/nvidia-nvswitch/devices/*",
    # Fabric Manager as NVIDIA's packages install it: the daemon, its start script (NVLink5: also starts the
    # NVLink Subnet Manager) and the systemd unit, installed and enabled
    "/usr/bin/nv-fabricmanager",
    "/usr/bin/nvidia-fabricmanager-start.sh",
    "/usr/lib/systemd/system/nvidia-fabricmanager.service",
    "/lib/systemd/system/nvidia-fabricmanager.service",
    "/etc/systemd/system/multi-user.target.wants/nvidia-fabricmanager.service",
    # engine sockets: a socket that exists is an engine that runs (or ran) as that user
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/run/crio/crio.sock",
    "/run/podman/podman.sock",
    "/run/k3s/containerd/containerd.sock",
    # CDI spec files one by one: whether each engine's user may read them (FILES holds their text)
    "/etc/cdi/*",
    "/var/run/cdi/*",
    "/var/lib/systemd/linger",
)

# Paths the collecting process's environment names, lstat only like PATHS: a CUDA client started here would
# use them. Only absolute, plain paths (no "..", no glob characters) are taken.
ENV_PATHS: dict[str, tuple[str, ...]] = {
    "CUDA_MPS_PIPE_DIRECTORY": ("", "/control"),  # the MPS pipe directory and the daemon's control socket
}


def env_paths(environ: dict[str, str]) -> tuple[str, ...]:
    """The ENV_PATHS this environment names.

    >>> env_paths({"CUDA_MPS_PIPE_DIRECTORY": "/run/mps/"})
    ('/run/mps', '/run/mps/control')
    >>> env_paths({"CUDA_MPS_PIPE_DIRECTORY": "../x"}), env_paths({"CUDA_MPS_PIPE_DIRECTORY": "/a/*"}), env_paths({})
    ((), (), ())
    """
    paths: list[str] = []
    for name, suffixes in ENV_PATHS.items():
        value = environ.get(name, "").strip().rstrip("/")
        if not value.startswith("/") or "/../" in value + "/" or any(c in value for c in "*?[]\n"):
            continue
        paths += [value + suffix for suffix in suffixes]
    return tuple(paths)


# Directories whose entries are listed ({name: link target or None}).
DIRS: tuple[str, ...] = (
    "/dev/char",
    "/dev/nvidia-caps",
    "/var/lib/kubelet/device-plugins",  # kubelet.sock and one socket per registered device plugin
    "/run/nvidia/validations",  # GPU Operator validator status files (driver-ready, toolkit-ready, ...)
    "/sys/class/iommu",  # one entry per IOMMU unit (dmar0, ivhd0, ...): empty when no IOMMU is active
    "/sys/class/infiniband",  # RDMA devices (mlx5_0 -> ../../devices/pci.../<bdf>/infiniband/mlx5_0)
)

# The part of PATHS and DIRS under /dev: recorded before any live probe runs (as root, NVML and nvidia-smi
# create missing nodes), and the paths once more after them.
DEV_PATHS: tuple[str, ...] = tuple(p for p in PATHS if p.startswith("/dev/"))
DEV_DIRS: tuple[str, ...] = tuple(p for p in DIRS if p.startswith("/dev/"))

# Device nodes the open test (probes/devopen.py) opens O_RDONLY|O_NONBLOCK and closes at once, recording
# only the errno: EPERM = the devices cgroup (v1 list or v2 eBPF filter) denies it, ENOENT = the node is
# missing, EACCES = mode bits deny this user. The only place a probe opens a /dev node. Why these two:
# opening the control node or UVM allocates a per-file state and touches no GPU (nvidia-smi and every
# CUDA program open both first). GPU nodes (/dev/nvidiaN) are left out: without persistence mode their
# first open initialises the GPU, which is slow and can hang on a sick one; NVML covers them.
OPEN_TESTS: tuple[str, ...] = (
    "/dev/nvidiactl",
    "/dev/nvidia-uvm",
)
OPEN_TEST_TIMEOUT_S = 3.0

# Environment variables recorded from the collecting process (prefixes end with "_").
ENV_NAMES: tuple[str, ...] = (
    "NVIDIA_", "CUDA_", "GPU_RUNBOOK_", "LD_LIBRARY_PATH", "LD_PRELOAD", "KUBERNETES_SERVICE_HOST",
    "container",
    # NVIDIA's node components set these in their pods (device plugin, GPU feature discovery, DCGM exporter):
    # how visible-devices-all-in-pod tells their deliberate NVIDIA_VISIBLE_DEVICES=all from a user's
    "DEVICE_LIST_STRATEGY", "GFD_", "DCGM_EXPORTER_",
)


class Command(NamedTuple):
    """A read-only command the probes may run: argument list (never a shell) and its own timeout."""

    argv: tuple[str, ...]
    timeout: float
    why: str
    # Run only where one of these paths (globs) exists: a command that can only matter on some hosts should
    # not cost every host its start-up (journalctl on a large journal takes a while).
    only_where: tuple[str, ...] = ()


# A host where Fabric Manager can matter: NVSwitch nodes or procfs entries, or Fabric Manager installed.
FABRIC_HOST = ("/dev/nvidia-nvswitch*", "/proc/driver/nvidia-nvswitch", "/usr/bin/nv-fabricmanager",
               "/usr/lib/systemd/system/nvidia-fabricmanager.service",
               "/lib/systemd/system/nvidia-fabricmanager.service")

COMMANDS: dict[str, Command] = {
    "nvidia-smi": Command(
        ("nvidia-smi", "--query-gpu=index,name,uuid,driver_version,pci.bus_id,compute_mode,mig.mode.current",
         "--format=csv,noheader"),
        8.0, "the driver answers at all; a hang here is itself a diagnosis"),
    "nvidia-smi-version": Command(("nvidia-smi", "--version"), 5.0,
                                  "driver, CUDA and NVML versions as the tool reports them"),
    "nvidia-container-cli-info": Command(("nvidia-container-cli", "info"), 8.0,
                                         "what libnvidia-container sees: driver, NVML, devices"),
    "nvidia-container-cli-version": Command(("nvidia-container-cli", "--version"), 5.0, "toolkit version"),
    "nvidia-ctk-version": Command(("nvidia-ctk", "--version"), 5.0, "toolkit version"),
    "nvidia-ctk-cdi-list": Command(("nvidia-ctk", "cdi", "list"), 8.0, "CDI devices the toolkit resolves"),
    "containerd-version": Command(("containerd", "--version"), 5.0,
                                  "containerd release: 2.3 and later migrate version 3 configs file by file"),
    "getenforce": Command(("getenforce",), 3.0, "SELinux mode"),
    # Whether container_use_devices carries the map permission (container-selinux v2.213.0 and later).
    "container-selinux-version": Command(("rpm", "-q", "--queryformat", "%{VERSION}\\n", "container-selinux"), 5.0,
                                         "container-selinux version: what the container booleans allow",
                                         ("/sys/fs/selinux/booleans/container_use_devices",)),
    "mokutil-sb-state": Command(("mokutil", "--sb-state"), 3.0, "Secure Boot state"),
    # Reads the kernel ring buffer (needs root or kernel.dmesg_restrict=0); no level filter, because the
    # driver's Xid lines do not carry one fixed log level.
    "dmesg": Command(("dmesg",), 5.0, "kernel log: NVRM Xid lines, the GPU errors since boot"),
    # Fabric Manager on NVSwitch hosts: the unit's state (systemctl show only reads it), the daemon's own version,
    # and its last lines in the journal, where it says why it stopped (readable by root or systemd-journal).
    "fabricmanager-unit": Command(
        ("systemctl", "show", "nvidia-fabricmanager.service",
         "--property=LoadState,ActiveState,SubState,Result,UnitFileState,ExecMainStatus"),
        5.0, "Fabric Manager service state", FABRIC_HOST),
    "fabricmanager-version": Command(("nv-fabricmanager", "--version"), 5.0, "Fabric Manager version", FABRIC_HOST),
    "fabricmanager-journal": Command(
        ("journalctl", "--unit=nvidia-fabricmanager.service", "--lines=40", "--no-pager", "--quiet"),
        5.0, "why Fabric Manager stopped: version mismatch, no NVSwitch to manage", FABRIC_HOST),
}

# Where a containerised driver exposes its root filesystem on the host. The NVIDIA GPU Operator's
# driver container mounts it at /run/nvidia/driver: nvidia-smi and libnvidia-ml.so.1 live below it,
# not on the host's PATH or loader path. When the host has no nvidia-smi of its own, the probes run
# the tools and NVML with this root's bin and lib directories appended to PATH and LD_LIBRARY_PATH.
DRIVER_ROOTS: tuple[str, ...] = ("/run/nvidia/driver",)
# Where the GPU Operator's toolkit container installs the NVIDIA Container Toolkit on the node: ClusterPolicy
# toolkit.installDir (default /usr/local/nvidia) + "/toolkit". Not on PATH: when the host has no nvidia-ctk of its
# own, nvidia-ctk (a wrapper around nvidia-ctk.real) runs from there so its version is known. Only nvidia-ctk:
# nvidia-container-cli from there would look for the driver in / while a driver container keeps it elsewhere.
TOOLKIT_ROOTS: tuple[str, ...] = ("/usr/local/nvidia/toolkit",)
TOOLKIT_ROOT_PROGRAMS: tuple[str, ...] = ("nvidia-ctk",)
DRIVER_ROOT_BIN = ("usr/bin",)
DRIVER_ROOT_LIBS = ("usr/lib/x86_64-linux-gnu", "usr/lib64", "usr/lib/aarch64-linux-gnu", "usr/lib")

# The PCI walk (probes/pci.py), into the snapshot's "pci" section: list PCI_DEVICES (at most PCI_MAX_LISTED
# entries), read each function's vendor, and for NVIDIA and Mellanox functions and every bridge on their sysfs
# paths (at most PCI_MAX_KEPT) read PCI_ATTRS, the PCI_LINKS targets, the IOMMU group's type and, for bridges,
# the first PCI_CONFIG_BYTES of config space (the kernel gives non-root readers 64 bytes).
PCI_DEVICES = "/sys/bus/pci/devices"
PCI_KEEP_VENDORS = (0x10DE, 0x15B3)  # NVIDIA; Mellanox (ConnectX/BlueField HCAs, for GPUDirect RDMA)
PCI_ATTRS = ("vendor", "device", "class", "numa_node", "current_link_speed", "current_link_width",
             "max_link_speed", "max_link_width")
# physfn exists only on an SR-IOV virtual function (a vGPU host's VFs): it names the physical GPU.
PCI_LINKS = ("driver", "iommu_group", "physfn")
PCI_IOMMU_GROUP_TYPE = "iommu_group/type"
PCI_CONFIG_BYTES = 4096
PCI_MAX_LISTED = 4096
PCI_MAX_KEPT = 256

MAX_FILE_BYTES = 1024 * 1024
# Whole-run budget: a probe that would pass it is abandoned and recorded as "deadline".
DEFAULT_DEADLINE_S = 15.0
NVML_TIMEOUT_S = 10.0

# Engine discovery (probes/engines.py): the users whose own engines are looked for. Taken from /etc/passwd
# and /etc/group under the root (only these fields: name, uid, gid, home; group membership by gid): accounts
# with uid >= USER_MIN_UID (65534, nobody, excluded) and a real home (not one of USER_NO_HOMES), plus every
# account listed in /var/lib/systemd/linger; at most MAX_USERS of them, linger users first, then by uid.
USER_SOURCES: tuple[str, ...] = ("/etc/passwd", "/etc/group", "/var/lib/systemd/linger")
USER_MIN_UID = 1000
USER_NO_HOMES: tuple[str, ...] = ("/", "/nonexistent", "/dev/null", "/var/empty", "/run/nologin")
MAX_USERS = 16
# Per user: files read and paths examined, with {home} and {uid} filled in. Rootless Docker reads
# ~/.config/docker/daemon.json; Podman ~/.config/containers/containers.conf; user units live in
# ~/.config/systemd/user; the toolkit reads $XDG_CONFIG_HOME/nvidia-container-runtime/config.toml where
# that variable reaches it.
USER_FILES: tuple[str, ...] = (
    "{home}/.config/docker/daemon.json",
    "{home}/.config/containers/containers.conf",
    "{home}/.config/containers/containers.conf.d/*.conf",
    "{home}/.config/systemd/user/*.service",
    "{home}/.config/systemd/user/*.service.d/*.conf",
    "{home}/.config/nvidia-container-runtime/config.toml",
)
USER_PATHS: tuple[str, ...] = (
    "/run/user/{uid}/docker.sock",
    "/run/user/{uid}/podman/podman.sock",
    "{home}",
    "{home}/.config/systemd/user/default.target.wants/docker.service",
    "{home}/.config/systemd/user/sockets.target.wants/podman.socket",
)

"""Signatures for `explain`: regular expressions for error text whose exact words vary, each naming its page.

A page's `errors:` strings catch what is printed the same way every time. A signature catches the rest: an
Xid line with its number, a version in a requirement, a resource name with a MIG profile, a `kubectl`
event with node counts. `make error-index` copies this table into the explain index, so the CLI and the
site's box use the same patterns.

Patterns are written in the subset that Python's `re` and JavaScript's `RegExp` read alike (no look-behind,
no named groups, no inline flags); a test compiles each in both. `strong` marks a signature specific enough to
be a `match` on its own; a weak one only adds to the score.

`literals` keeps a 10,000-line log fast: a pattern runs only over the lines that hold one of its literals
(lower case), so each pattern must be unable to match a line without one. A test checks each signature's
examples against that rule.
"""

from __future__ import annotations

from typing import NamedTuple


class Signature(NamedTuple):
    page: str
    pattern: str
    why: str
    literals: tuple[str, ...]
    weight: float = 1.0
    strong: bool = True
    flags: str = "i"


# Xid codes after which the GPU needs a reset or reboot go to the recovery runbook; the others to health
# monitoring, where the Xid catalogue's resolution is explained. The meanings are those of the xid-errors check.
def xid_signatures(needs_reset: dict[int, str], meaning: dict[int, str]) -> list[Signature]:
    out = []
    for code in sorted(meaning):
        page = "recovery" if code in needs_reset else "health-monitoring"
        out.append(Signature(page, r"\bXid\b[^\n]{0,80}?\)?:\s*" + str(code) + r"\b",
                             f"Xid {code}: {meaning[code]}", ("xid",)))
        if code in needs_reset:  # a reset-class Xid is also a health-monitoring event
            out.append(Signature("health-monitoring", r"\bXid\b[^\n]{0,80}?\)?:\s*" + str(code) + r"\b",
                                 f"Xid {code}: {meaning[code]} (alerting)", ("xid",), 0.6, False))
    out.append(Signature("health-monitoring", r"NVRM: Xid \(", "an NVRM Xid line from the kernel log", ("xid",), 0.8))
    return out


SIGNATURES: tuple[Signature, ...] = (
    # containers
    Signature("container-cli-init-error", r"nvidia-container-cli[^\n]{0,20}: initialization error",
              "nvidia-container-cli initialization error", ("initialization error",)),
    Signature("container-cli-init-error", r"nvidia-container-cli[^\n]{0,20}: ldcache error",
              "nvidia-container-cli ldcache error", ("ldcache error",)),
    Signature("container-cli-init-error", r"load library failed: libnvidia-ml\.so",
              "libnvidia-ml could not be loaded by the hook", ("load library failed",)),
    Signature("gpu-not-visible", r"could not select device driver \S* ?with capabilities: \[\[gpu\]\]",
              "Docker has no GPU device driver (toolkit not configured)", ("could not select device driver",)),
    Signature("gpu-not-visible", r"unknown or invalid runtime name:? ?nvidia",
              "the engine does not know the nvidia runtime", ("invalid runtime name",)),
    Signature("gpu-not-visible", r"nvidia-container-cli: device error: [^\n]{0,40}unknown device",
              "a requested GPU index or UUID does not exist", ("device error",)),
    Signature("gpu-not-visible", r"libcuda\.so(\.1)?: cannot open shared object file",
              "libcuda was not injected into the container", ("libcuda.so",)),
    Signature("gpu-not-visible", r"The NVIDIA Driver was not detected", "the CUDA image's banner: no GPU was given "
              "to the container", ("driver was not detected",)),
    Signature("gpu-not-visible", r"\bnvidia-smi\W{0,3}:? executable file not found", "nvidia-smi was not injected "
              "(no GPU, or no utility capability)", ("executable file not found",)),
    Signature("gpu-not-visible", r"Cannot load libnvidia-(encode|nvcuvid|fbc)\.so", "the video libraries were not "
              "injected (NVIDIA_DRIVER_CAPABILITIES lacks video)", ("cannot load libnvidia-",)),
    Signature("driver-compat", r"unsatisfied condition: cuda\s*>=\s*\d+(\.\d+)?",
              "the image needs a newer CUDA than the driver supports", ("unsatisfied condition",)),
    Signature("driver-compat", r"CUDA driver version is insufficient for CUDA runtime version",
              "CUDA runtime newer than the driver", ("driver version is insufficient",)),
    Signature("driver-compat", r"forward compatibility was attempted on non supported HW",
              "cuda-compat on an unsupported GPU", ("forward compatibility",)),
    Signature("driver-compat", r"unsupported display driver\s*/\s*cuda driver combination",
              "CUDA runtime and driver do not combine", ("unsupported display driver",)),
    Signature("driver-compat", r"NVIDIA_REQUIRE_CUDA", "the image's CUDA requirement", ("nvidia_require_cuda",),
              0.5, False),
    Signature("driver-compat",
              r"mount error: file creation failed: [^\n]*(libnvidia|libcuda|nvidia-smi)[^\n]*: file exists",
              "a host driver file the hook mounts is already in the image", ("file creation failed",)),
    Signature("driver-compat", r"no kernel image is available for execution on the device|"
              r"cudaErrorNoKernelImageForDevice|CUDA_ERROR_NO_BINARY_FOR_GPU",
              "the program has no GPU code for this GPU's compute capability (error 209)",
              ("no kernel image", "nokernelimage", "no_binary_for_gpu")),
    Signature("driver-compat", r"CUDA capability sm_\d+a? is not compatible with the current PyTorch installation",
              "the PyTorch build has no code for this GPU's architecture", ("current pytorch installation",)),
    Signature("cdi", r"unresolvable CDI devices?\s+\S+", "the engine found no CDI spec for the device",
              ("unresolvable cdi",)),
    Signature("cdi", r"\bCDI\b[^\n]{0,60}(spec|device|registry)", "CDI specs or devices", ("cdi",), 0.5, False),
    Signature("selinux", r"avc:\s+denied\s+\{[^}]*\}[^\n]{0,300}(nvidia|xserver_misc_device_t|dri_device_t)",
              "SELinux denied a GPU device", ("avc:",)),
    Signature("selinux", r"avc:\s+denied", "an SELinux denial", ("avc:",), 0.6, False),
    Signature("nvml-unknown-error", r"Failed to initialize NVML: Unknown Error", "NVML Unknown Error",
              ("unknown error",), 0.6),
    Signature("runtime-debug-logging", r"/var/log/nvidia-container-(toolkit|runtime)\.log",
              "the toolkit's debug log", ("/var/log/nvidia-container-",), 0.6, False),
    # devices
    Signature("driver-mismatch", r"NVRM: API mismatch: the client", "kernel log: user-space and kernel versions "
              "differ", ("api mismatch",)),
    Signature("driver-mismatch", r"Driver/library version mismatch", "NVML library and kernel module differ",
              ("library version mismatch",)),
    Signature("driver-mismatch", r"this kernel module has the version \d+\.\d+",
              "kernel module version named in a mismatch", ("this kernel module has the version",)),
    Signature("kernel-modules", r"Kernel driver in use: nouveau", "lspci: nouveau drives the GPU",
              ("kernel driver in use",)),
    Signature("kernel-modules", r"\bnouveau\b", "nouveau mentioned", ("nouveau",), 0.5, False),
    Signature("kernel-modules", r"NVRM: The NVIDIA probe routine (was not called|failed)",
              "the nvidia module did not bind the GPU", ("probe routine",)),
    Signature("kernel-modules", r"couldn'?t communicate with the NVIDIA driver", "no nvidia kernel module",
              ("communicate with the nvidia driver",)),
    Signature("kernel-modules", r"Key was rejected by service", "Secure Boot rejected the module's key",
              ("key was rejected",)),
    Signature("kernel-modules", r"Loading of unsigned module is rejected", "Secure Boot rejected an unsigned module",
              ("unsigned module",)),
    Signature("kernel-modules", r"module verification failed", "the kernel could not verify the module",
              ("module verification failed",), 0.8),
    Signature("kernel-modules", r"RmInitAdapter failed", "the driver could not initialise the GPU",
              ("rminitadapter",), 0.8),
    Signature("kernel-modules", r"GSP[^\n]{0,40}(firmware|RM)[^\n]{0,40}fail|RmFetchGspRmImages",
              "the GSP firmware could not start", ("gsp",), 0.8),
    Signature("kernel-modules", r"modprobe: (FATAL|ERROR)[^\n]{0,80}nvidia", "modprobe could not load nvidia",
              ("modprobe:",)),
    Signature("device-nodes", r"/dev/nvidia-uvm\S*[^\n]{0,40}(no such file|not found|missing|does not exist)",
              "the nvidia-uvm device node is missing", ("/dev/nvidia-uvm",)),
    # open(2) on a device node: EACCES is the node's mode against this user, EPERM the devices cgroup.
    Signature("device-nodes", r"/dev/nvidia(\d+|ctl|-uvm)[^\n]{0,60}(Permission denied|EACCES)",
              "a GPU device node's mode refuses this user", ("/dev/nvidia",), 0.8),
    Signature("cgroup-device-access", r"/dev/nvidia(\d+|ctl|-uvm)[^\n]{0,60}(Operation not permitted|EPERM)",
              "the devices cgroup refuses a GPU node", ("/dev/nvidia",), 0.8),
    Signature("cgroup-device-access", r"failed to add device rules", "libnvidia-container could not add the GPUs to "
              "the container's device cgroup", ("failed to add device rules",)),
    Signature("cgroup-device-access", r"cgroup subsystem devices not found", "no devices cgroup (cgroup v2 or "
              "rootless)", ("cgroup subsystem devices",)),
    Signature("cgroup-device-access", r"devices\.allow|device filter program|BPF_PROG_TYPE_CGROUP_DEVICE|"
              r"bpf_jit_harden", "cgroup device rules", ("devices.allow", "device filter", "cgroup_device",
                                                        "bpf_jit_harden"), 0.8),
    Signature("dev-char-symlinks", r"/dev/char/\d+:\d+", "a /dev/char link", ("/dev/char/",), 0.8),
    Signature("dev-char-symlinks", r"create-dev-char-symlinks", "the toolkit's /dev/char helper",
              ("create-dev-char-symlinks",), 0.8),
    Signature("dev-char-symlinks", r"daemon-reload", "systemctl daemon-reload", ("daemon-reload",), 0.5, False),
    # sharing
    Signature("mps", r"nvidia-cuda-mps-(control|server)|CUDA_MPS_[A-Z_]+", "MPS control daemon or client settings",
              ("nvidia-cuda-mps-", "cuda_mps_"), 0.7, False),
    Signature("mps-multi-gpu", r"nvidia-cuda-mps-(control|server)|CUDA_MPS_[A-Z_]+",
              "MPS control daemon or client settings", ("nvidia-cuda-mps-", "cuda_mps_"), 0.7, False),
    Signature("mps", r"cudaErrorMps\w+|CUDA_ERROR_MPS_\w+", "a CUDA MPS error", ("cudaerrormps", "cuda_error_mps_")),
    # cudaErrorDevicesUnavailable is 46 in the CUDA runtime; frameworks print the number, not the name:
    # THC's "cuda runtime error (46)", Caffe's "(46 vs. 0)", Charm++'s "Return value 46 from 'cuda...'".
    Signature("mps", r"cuda runtime error ?\(46\)|error == cudaSuccess \(46 vs\. 0\)|return value 46 from '?cuda|"
              r"THCudaCheck FAIL[^\n]{0,120}\berror=46\b",
              "CUDA runtime error 46, cudaErrorDevicesUnavailable (all CUDA-capable devices are busy)", ("46",), 0.8),
    Signature("mps", r"using MPS requires --mps-root", "the device plugin's MPS sharing without its root directory",
              ("--mps-root",)),
    Signature("mps", r"mps-control-daemon", "the device plugin's MPS control daemon", ("mps-control-daemon",), 0.7,
              False),
    Signature("mig", r"nvidia\.com/mig-\d+g\.\d+gb", "a MIG profile resource", ("nvidia.com/mig-",)),
    Signature("mig", r"\bMIG (mode|device|instance|strategy|profile)s?\b", "MIG", ("mig ",), 0.6, False),
    Signature("mig", r"\b\d+g\.\d+gb(\+me)?\b", "a MIG profile name", ("gb",), 0.6, False),
    Signature("mig", r"mig-parted|mig-manager|nvidia\.com/mig\.config", "the MIG manager",
              ("mig-parted", "mig-manager", "mig.config")),
    Signature("mig", r"device error: MIG-[^\n]{0,80}unknown device", "a MIG device that does not exist (or not "
              "on this GPU)", ("device error: mig-",)),
    # kubernetes
    Signature("device-plugin", r"\d+/\d+ nodes are available:[^\n]{0,200}Insufficient nvidia\.com/gpu",
              "the scheduler found no node with a free nvidia.com/gpu", ("insufficient nvidia.com/gpu",)),
    Signature("device-plugin", r"No devices found\. Waiting indefinitely|Incompatible strategy detected|"
              r"Unsupported platform detected|did you (set|configure) the[^\n]{0,40}(runtime|toolkit)",
              "the device plugin found no usable GPU",
              ("no devices found", "incompatible strategy", "unsupported platform", "did you set",
               "did you configure")),
    Signature("device-plugin", r"nvidia-device-plugin", "the device plugin", ("nvidia-device-plugin",), 0.5, False),
    Signature("device-plugin", r"nvidia\.com/gpu[\"']?:\s+[\"']?0[\"']?(\n|$)", "the node advertises no nvidia.com/gpu",
              ("nvidia.com/gpu",), 0.8),
    Signature("device-plugin", r"Resource \W?nvidia\.com/gpu\W? was requested but not registered",
              "no node registers nvidia.com/gpu (the autoscaler's view)", ("was requested but not registered",)),
    Signature("device-plugin", r"error starting plugins?", "the device plugin failed to start",
              ("error starting plugin",), 0.7, False),
    Signature("gpu-requests", r"must be equal to nvidia\.com/gpu limit|must be an integer|"
              r"Limit must be set for non overcommitable resources", "an invalid nvidia.com/gpu request",
              ("must be equal to", "must be an integer", "limit must be set")),
    Signature("time-slicing", r"maximum request size for shared resources is \d+",
              "more than one shared (time-sliced) GPU requested", ("maximum request size",)),
    Signature("time-slicing", r"timeSlicing|time-slicing|nvidia\.com/gpu\.shared|-SHARED\b|replicas:\s*\d+",
              "time-slicing configuration", ("timeslicing", "time-slicing", "gpu.shared", "-shared", "replicas:"),
              0.6, False),
    Signature("feature-discovery", r"nvidia\.com/(gpu\.(product|family|count|memory|deploy\.\w+|present)|"
              r"cuda\.(driver|runtime)[\w.-]*|mig\.capable)", "a GPU feature discovery label", ("nvidia.com/",),
              0.7, False),
    Signature("feature-discovery", r"gpu-feature-discovery|NodeFeature|node-feature-discovery",
              "feature discovery", ("feature-discovery", "nodefeature"), 0.6, False),
    # GPU Operator validator (cmd/nvidia-validator/main.go) and its status files; the DCGM host engine and exporter
    # (the driver step's failures name their own cause, e.g. the /dev/char symlinks: left to those pages)
    Signature("gpu-operator", r"error validating (toolkit|plugin) installation",
              "a GPU Operator validation step failed", ("error validating",)),
    Signature("gpu-operator", r"/run/nvidia/validations/\.?[a-z-]+", "a GPU Operator validation status file",
              ("/run/nvidia/validations/",)),
    Signature("dcgm-exporter", r"CacheManager Init Failed\. Error: -?\d+", "DCGM's host engine failed to start",
              ("cachemanager init failed",)),
    Signature("dcgm-exporter", r"Profiling module (failed|returned)|DcgmModuleProfiling",
              "DCGM's profiling (DCP) module failed", ("profiling module", "dcgmmoduleprofiling")),
    # fabric: Fabric Manager and NVSwitch (nv-fabricmanager's own messages; CUDA 802; NCCL's NVLS transport)
    Signature("fabric-manager", r"fabric manager NVIDIA GPU driver interface version",
              "Fabric Manager and driver versions differ", ("fabric manager nvidia gpu driver interface",)),
    Signature("fabric-manager", r"system not yet initiali[sz]ed|cudaErrorSystemNotReady|CUDA_ERROR_SYSTEM_NOT_READY",
              "CUDA error 802: the GPUs have not joined the NVLink fabric", ("not yet initiali", "systemnotready",
                                                                            "system_not_ready")),
    Signature("fabric-manager", r"NV_WARN_NOTHING_TO_DO", "Fabric Manager found no NVSwitch to manage",
              ("nv_warn_nothing_to_do",)),
    Signature("fabric-manager", r"NVLink SHARP \(NVLS\)|transport/nvls\.cc",
              "NVLS (NVSwitch multicast) failed: Fabric Manager or NVSwitch state", ("nvls",)),
    Signature("fabric-manager", r"nv-fabricmanager|nvidia-fabricmanager|fabricmanager\.cfg",
              "Fabric Manager", ("fabricmanager",), 0.7, False),
    # fabric: PCIe peer-to-peer (CUDA's peer-access API and errors, lspci's ACS line, NCCL's P2P switches)
    Signature("p2p-topology", r"cudaDeviceEnablePeerAccess|cudaErrorPeerAccess\w+|CUDA_ERROR_PEER_ACCESS_\w+",
              "CUDA peer access between two GPUs", ("cudadeviceenablepeeraccess", "cudaerrorpeeraccess",
                                                    "cuda_error_peer_access_")),
    Signature("p2p-topology", r"ACSCtl:", "lspci's ACS control line (PCIe Access Control Services)", ("acsctl:",)),
    Signature("p2p-topology", r"NCCL_P2P_(DISABLE|LEVEL)|via P2P/(IPC|CUMEM|direct)",
              "NCCL's P2P transport", ("nccl_p2p_", "via p2p/"), 0.6, False),
    Signature("p2p-topology", r"AMD-Vi: Event logged \[IO_PAGE_FAULT|DMAR: DRHD: handling fault",
              "an IOMMU fault (AMD-Vi or Intel VT-d)", ("io_page_fault", "dmar: drhd"), 0.6, False),
    # fabric: GPUDirect RDMA (nvidia-peermem.c, the GPU Operator driver container, Mellanox nv_peer_mem)
    Signature("gpudirect-rdma", r"could not insert '(nvidia_peermem|nv_peer_mem)'|"
              r"(nvidia_peermem|nv_peer_mem)[^\n]{0,40}(Unknown symbol|disagrees about version)|"
              r"ib_(un)?register_peer_memory_client", "the GPUDirect RDMA peer-memory module did not load",
              ("nvidia_peermem", "nv_peer_mem", "peer_memory_client"), 1.2),
    Signature("gpudirect-rdma", r"nvidia-peermem|nvidia_peermem|nv_peer_mem|GDRDMA|GPU Direct RDMA",
              "GPUDirect RDMA and its peer-memory module", ("nvidia-peermem", "nvidia_peermem", "nv_peer_mem",
                                                            "gdrdma", "gpu direct rdma"), 0.7, False),
    # GPU initialisation (open-gpu-kernel-modules osinit.c, osapi.c, nv.c, kernel_gsp.c)
    Signature("gpu-init-failure", r"RmInitAdapter failed|rm_init_adapter failed",
              "the driver could not initialise a GPU (RmInitAdapter)",
              ("rminitadapter failed", "rm_init_adapter failed"), 0.8),
    Signature("gpu-init-failure", r"Cannot initialize GSP firmware RM|unexpected WPR2 already up"
                                  r"|failed to wait for GFW boot complete",
              "the GSP firmware did not boot", ("cannot initialize gsp", "wpr2", "gfw boot")),
    Signature("gpu-init-failure", r"fallen off the bus and is not responding to commands"
                                  r"|probe routine failed for \d+ device",
              "a GPU failed the driver's probe (fell off the bus while probed)", ("fallen off the bus",
                                                                                 "probe routine failed")),
    Signature("health-monitoring", r"DCGM_FI_[A-Z_]+", "a DCGM metric", ("dcgm_fi_",), 0.8, False),
    Signature("health-monitoring", r"XidCriticalError|marking device as unhealthy|device marked unhealthy",
              "the device plugin marked a GPU unhealthy after an Xid", ("xidcriticalerror", "unhealthy")),
    Signature("health-monitoring", r"Row Remapper|remapped rows|row remap", "row remapping",
              ("row remap", "remapped rows"), 0.8),
    Signature("recovery", r"GPU is lost|has fallen off the bus", "the GPU is lost until a reset or reboot",
              ("gpu is lost", "fallen off the bus")),
    Signature("recovery", r"nvidia-smi (-r|--gpu-reset)\b", "a GPU reset", ("nvidia-smi -r", "nvidia-smi --gpu-reset"),
              0.7, False),
    Signature("recovery", r"GPUs? could not be reset|currently being used by one or more other processes",
              "nvidia-smi refused a GPU reset while processes hold the GPU",
              ("could not be reset", "being used by one or more other processes")),
    Signature("recovery", r"GPU Reset Required|GPU requires restart|Node Reboot Required",
              "the driver asks for a reset or reboot", ("reset required", "requires restart", "reboot required")),
    Signature("recovery", r"blocked for more than \d+ seconds", "a task hung in the kernel",
              ("blocked for more than",)),
    # An NVIDIA tool in state D (uninterruptible sleep): `ps aux` (TTY, STAT, START, TIME, COMMAND), the page's
    # `ps -eo pid,stat,etime,wchan:32,cmd`, or the kernel's hung-task line. Case matters: the state is "D", and only
    # ps's STAT modifiers (< N L s l +) may follow it, so a date such as "2 Dec 10:00:01 host nvidia-..." is no match.
    Signature("recovery", r"(?:\s(?:\?|pts/\d+|tty\d*)\s+D[<NLsl+]*\s+\S+\s+\d+:\d+|\b\d+\s+D[<NLsl+]*\s+"
              r"[\d:-]+\s+\S+)\s+\S*nvidia-|task:nvidia\S*\s+state:D\b",
              "an NVIDIA process stuck in uninterruptible sleep (hung driver)", ("nvidia",), 0.9, True, ""),
)

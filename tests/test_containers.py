"""Unit tests of the containers section: toolkit parsers on real and malformed inputs, and checks on
edge cases the scenarios do not pin down (containerd 2.x layout, JSON CDI specs, brand alternatives)."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from gpu_runbook.checks.containers import (
    CUDA_MINOR_COMPAT_DRIVERS,
    CUDA_TOOLKIT_DRIVERS,
    cdi_hook_program_missing,
    minimum_driver,
    requested_gpus,
)
from gpu_runbook.parsers.toolkit import (
    containerd_runtimes,
    eval_require,
    parse_cdi_list,
    parse_cdi_spec,
    parse_cli_info,
    parse_require,
    parse_toml,
    parse_toolkit_version,
    version_tuple,
)
from hypothesis import given, settings
from hypothesis import strategies as st

# `nvidia-container-cli -k -d /dev/tty info` prints its debug log before the answer
# (NVIDIA/nvidia-docker#904); the parser must skip the log lines.
CLI_DEBUG_INFO = """-- WARNING, the following logs are for debugging purposes only --

I0114 04:33:38.553037 7944 nvc_info.c:489] requesting device information with ''
{listing}
NVRM version:   390.87
CUDA version:   9.1

Device Index:   0
Device Minor:   0
Model:          GeForce GTX 1080 with Max-Q Design
Brand:          GeForce
GPU UUID:       GPU-e572b8ee-523e-f7be-a359-33149791a02a
Bus Location:   00000000:01:00.0
Architecture:   6.1
I0114 04:33:38.559343 7944 nvc.c:318] shutting down library context
""".format(listing="I0114 04:33:38.559326 7944 nvc_info.c:519] listing device /dev/nvidia0 "
                  "(GPU-e572b8ee-523e-f7be-a359-33149791a02a at 00000000:01:00.0)")


def test_cli_info_parses_debug_output() -> None:
    info = parse_cli_info(CLI_DEBUG_INFO)
    assert info["nvrm_version"] == "390.87"
    assert info["cuda_version"] == "9.1"
    assert info["devices"] == [{"index": "0", "minor": "0", "model": "GeForce GTX 1080 with Max-Q Design",
                                "brand": "GeForce", "uuid": "GPU-e572b8ee-523e-f7be-a359-33149791a02a",
                                "bus": "00000000:01:00.0", "arch": "6.1"}]
    assert info["error"] is None


def test_cli_info_jetson_null_fields() -> None:
    # Jetson prints (null) for the fields it has no NVML for (NVIDIA/nvidia-docker#1775).
    info = parse_cli_info("NVRM version:   (null)\nCUDA version:   10.2\n\nDevice Index:   0\nModel:          Xavier\n")
    assert info["nvrm_version"] is None and info["cuda_version"] == "10.2"
    assert info["devices"][0]["model"] == "Xavier"


def test_toolkit_versions_from_real_outputs() -> None:
    assert parse_toolkit_version("NVIDIA Container Toolkit CLI version 1.17.8\ncommit: f202b80\n") == "1.17.8"
    assert parse_toolkit_version("cli-version: 1.10.0\nlib-version: 1.10.0\n") == "1.10.0"
    assert parse_toolkit_version("") is None


def test_containerd_v3_layout() -> None:
    doc, error = parse_toml(
        'version = 3\n[plugins."io.containerd.cri.v1.runtime".containerd]\n  default_runtime_name = "runc"\n'
        '[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.nvidia]\n'
        '  runtime_type = "io.containerd.runc.v2"\n'
        '[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.nvidia.options]\n'
        '  BinaryName = "/usr/local/nvidia/toolkit/nvidia-container-runtime"\n')
    assert error is None
    assert containerd_runtimes(doc) == {"nvidia": {"binary": "/usr/local/nvidia/toolkit/nvidia-container-runtime",
                                                   "type": "io.containerd.runc.v2", "default": False}}


def test_cdi_spec_json_form() -> None:
    # The device plugin writes JSON specs (NVIDIA/k8s-device-plugin#632).
    spec = parse_cdi_spec(json.dumps({
        "cdiVersion": "v0.5.0", "kind": "k8s.device-plugin.nvidia.com/gpu",
        "devices": [{"name": "GPU-13f2a0cd-9ac8-a110-68c4-b0e9bd769db1",
                     "containerEdits": {"deviceNodes": [{"path": "/dev/nvidia0", "hostPath": "/dev/nvidia0"}]}}],
        "containerEdits": {"mounts": [{"hostPath": "/usr/lib64/libcuda.so.550.54.15",
                                       "containerPath": "/usr/lib64/libcuda.so.550.54.15"}]}}))
    assert spec["format"] == "json"
    assert spec["kind"] == "k8s.device-plugin.nvidia.com/gpu"
    assert spec["devices"] == ["GPU-13f2a0cd-9ac8-a110-68c4-b0e9bd769db1"]
    assert spec["device_nodes"] == ["/dev/nvidia0"]
    assert spec["driver_versions"] == ["550.54.15"]


def test_cdi_list_ignores_log_lines() -> None:
    out = ("INFO[0000] Found 3 CDI devices\nnvidia.com/gpu=0\n"
           "nvidia.com/gpu=GPU-e9050893-7feb-1b73-f785-1e25e3d12837\nnvidia.com/gpu=all\n")
    assert parse_cdi_list(out) == ["nvidia.com/gpu=0", "nvidia.com/gpu=GPU-e9050893-7feb-1b73-f785-1e25e3d12837",
                                   "nvidia.com/gpu=all"]


@pytest.mark.parametrize(("expression", "facts", "expected"), [
    # a CUDA 10.0 image's expression (nvidia-container-runtime merge request 18)
    ("cuda>=10.0 brand=tesla,driver>=384,driver<385 brand=tesla,driver>=410,driver<411",
     {"cuda": "10.0", "driver": "410.48"}, True),
    ("cuda>=10.0 brand=tesla,driver>=384,driver<385", {"cuda": "9.2", "driver": "396.26"}, False),
    ("cuda>=10.0 brand=tesla,driver>=384,driver<385", {"cuda": "9.0", "driver": "384.81"}, None),
    ("cuda>=10.0 brand=tesla,driver>=384,driver<385", {"cuda": "9.0", "driver": "384.81", "brand": "Tesla"}, True),
    ("cuda>=10.0 brand=tesla,driver>=384,driver<385", {"cuda": "9.0", "driver": "384.81", "brand": "GeForce"}, False),
    ("cuda>=12.4", {"cuda": None}, None),
    ("cuda>=12.4,arch>=8.0", {"cuda": "12.4", "arch": "9.0"}, True),
    ("", {"cuda": "12.4"}, None),
    ("cuda>>12", {"cuda": "12.4"}, False),
])
def test_eval_require(expression: str, facts: dict, expected: object) -> None:
    assert eval_require(expression, facts) is expected


def test_parse_require_keeps_invalid_conditions() -> None:
    assert parse_require("cuda>=12.4,bogus") == [[("cuda", ">=", "12.4"), ("invalid", "", "bogus")]]


def test_compat_table_is_ordered_and_consistent() -> None:
    drivers = [version_tuple(d) for _, d in CUDA_TOOLKIT_DRIVERS]
    assert drivers == sorted(drivers, reverse=True), "newest release first, drivers never decrease"
    assert version_tuple(minimum_driver("12.0")) == (525, 60, 13) == CUDA_MINOR_COMPAT_DRIVERS[12]
    assert minimum_driver("12.8") == "570.26"
    assert CUDA_MINOR_COMPAT_DRIVERS[13] == (580,)
    # releases after the table's last checked row get no guessed driver
    assert minimum_driver("13.3") == "610.43.02" and minimum_driver("13.5") is None


def test_requested_gpus_volume_mount_strategy() -> None:
    assert requested_gpus("/var/run/nvidia-container-devices") is None
    assert requested_gpus(" all ") == -1


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_parsers_never_raise(text: str) -> None:
    parse_cli_info(text)
    parse_cdi_spec(text)
    parse_cdi_list(text)
    parse_toml(text)
    parse_toolkit_version(text)
    eval_require(text, {"cuda": "12.4", "driver": "550.54.14"})


def _check(snapshot: dict, only: str) -> dict:
    import os
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"schema_version": 1, **snapshot}, handle)
    try:
        _, out, _ = run_cli("check", "--snapshot", handle.name, "--format", "json", "--only", only)
    finally:
        os.unlink(handle.name)
    return json.loads(out)["findings"][0]


def test_checks_skip_on_gpu_host_without_toolkit() -> None:
    """The GPU test host has a driver but no Docker or toolkit: container checks skip, never fail."""
    snapshot = {"host": {"euid": 0, "in_container": False},
                "files": {"/etc/nvidia-container-runtime/config.toml": {"error": "ENOENT"},
                          "/etc/docker/daemon.json": {"error": "ENOENT"}},
                "paths": {p: {"error": "ENOENT"} for p in ("/usr/bin/nvidia-ctk", "/usr/bin/nvidia-container-cli",
                                                           "/usr/bin/nvidia-container-runtime",
                                                           "/usr/bin/nvidia-container-runtime-hook")},
                "commands": {"nvidia-container-cli-info": {"argv": ["nvidia-container-cli", "info"],
                                                           "error": "not-found"}}}
    for check_id in ("toolkit-installed", "runtime-configured", "toolkit-config", "cdi-specs",
                     "container-cli-info", "container-visible-devices", "container-driver-capabilities",
                     "require-cuda", "cuda-forward-compat"):
        assert _check(snapshot, check_id)["status"] == "skip", check_id


def test_containerd_v3_dropin_not_imported_is_only_a_warning() -> None:
    dropin = ('version = 3\n[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.nvidia.options]\n'
              'BinaryName = "/usr/bin/nvidia-container-runtime"\n')
    finding = _check({"files": {"/etc/containerd/config.toml": {"text": "version = 3\n"},
                                "/etc/containerd/conf.d/99-nvidia.toml": {"text": dropin}},
                      "paths": {"/usr/bin/nvidia-container-runtime": {"kind": "file"}}}, "runtime-configured")
    assert finding["status"] == "warn"
    assert "containerd config dump" in finding["summary"]


def test_gpu_operator_toolkit_outside_usr_bin_is_not_missing() -> None:
    dropin = ('version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia.options]\n'
              'BinaryName = "/usr/local/nvidia/toolkit/nvidia-container-runtime"\n')
    finding = _check({"files": {"/etc/containerd/config.toml": {"text": dropin}},
                      "paths": {p: {"error": "ENOENT"} for p in ("/usr/bin/nvidia-ctk", "/usr/bin/nvidia-container-cli",
                                                                 "/usr/bin/nvidia-container-runtime",
                                                                 "/usr/bin/nvidia-container-runtime-hook")}},
                     "toolkit-installed")
    assert finding["status"] == "ok", finding["summary"]


# -- "could not read" is never "ok" (and never "absent") -------------------------------------------
DENIED = {"error": "EACCES", "detail": "Permission denied"}


def test_unreadable_daemon_json_is_unknown_not_ok() -> None:
    paths = {p: {"kind": "file"} for p in ("/usr/bin/nvidia-ctk", "/usr/bin/nvidia-container-cli")}
    finding = _check({"files": {"/etc/docker/daemon.json": dict(DENIED)},
                      "paths": dict(paths, **{"/usr/bin/nvidia-container-runtime-hook": {"error": "ENOENT"}})},
                     "toolkit-installed")
    assert finding["status"] == "unknown"
    assert "/etc/docker/daemon.json could not be read (EACCES: Permission denied)" in finding["summary"]
    finding = _check({"files": {"/etc/docker/daemon.json": dict(DENIED)}, "paths": paths}, "runtime-configured")
    assert finding["status"] == "unknown" and "daemon.json" in finding["summary"], finding


def test_unreadable_runtime_binary_is_unknown_not_registered() -> None:
    daemon = json.dumps({"runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime"}}})
    finding = _check({"files": {"/etc/docker/daemon.json": {"text": daemon}},
                      "paths": {"/usr/bin/nvidia-container-runtime": dict(DENIED)}}, "runtime-configured")
    assert finding["status"] == "unknown" and "/usr/bin/nvidia-container-runtime" in finding["summary"]


def test_unreadable_ldconfig_is_unknown() -> None:
    finding = _check({"files": {"/etc/nvidia-container-runtime/config.toml": {
                          "text": '[nvidia-container-cli]\nldconfig = "@/sbin/ldconfig.real"\n'}},
                      "paths": {"/sbin/ldconfig.real": dict(DENIED)}}, "toolkit-config")
    assert finding["status"] == "unknown" and "/sbin/ldconfig.real could not be examined" in finding["summary"]


@pytest.mark.parametrize("init", [True, 1, "ok", [], {"error": "x"}, {"error": {"name": 5}}])
def test_visible_devices_survives_odd_nvml_init(init: object) -> None:
    finding = _check({"paths": {"/.dockerenv": {"kind": "file"}}, "env": {"NVIDIA_VISIBLE_DEVICES": "all"},
                      "nvml": {"init": init, "devices": 3}}, "container-visible-devices")
    assert finding["status"] == "unknown" and "internal_error" not in finding["evidence"], finding


# -- runtime mode, ldconfig rules and CDI precedence (containers part A sweep, toolkit 1.15.0 to 1.20.0)
_CFG = "/etc/nvidia-container-runtime/config.toml"


def _toolkit(version: str) -> dict:
    return {"nvidia-ctk-version": {"argv": ["nvidia-ctk", "--version"], "exit": 0,
                                   "stdout": f"NVIDIA Container Toolkit CLI version {version}\n"}}


def test_runtime_mode_follows_the_toolkit_version() -> None:
    from gpu_runbook.checks.containers import runtime_mode

    auto = {"doc": {"nvidia-container-runtime": {"mode": "auto"}}}
    assert runtime_mode(auto, {"nvidia-ctk": "1.18.0"})[0] == "jit-cdi"
    assert runtime_mode({"doc": {}}, {"nvidia-container-cli": "1.17.8"})[0] == "legacy"
    assert runtime_mode({"doc": {"nvidia-container-runtime": {"mode": "legacy"}}}, {"nvidia-ctk": "1.20.0"})[:2] == \
        ("legacy", True)
    assert runtime_mode(None, None)[0] is None


def test_ldconfig_real_with_unknown_toolkit_is_only_a_warning() -> None:
    finding = _check({"files": {_CFG: {"text": '[nvidia-container-cli]\nldconfig = "@/sbin/ldconfig.real"\n'}},
                      "paths": {"/sbin/ldconfig.real": {"error": "ENOENT"}, "/sbin/ldconfig": {"kind": "file"}}},
                     "toolkit-config")
    assert finding["status"] == "warn" and "1.15.0" in finding["summary"], finding


def test_ldconfig_without_at_is_allowed_by_the_feature_flag() -> None:
    text = '[nvidia-container-cli]\nldconfig = "/sbin/ldconfig"\n[features]\nallow-ldconfig-from-container = true\n'
    finding = _check({"files": {_CFG: {"text": text}}, "commands": _toolkit("1.17.8")}, "toolkit-config")
    assert finding["status"] == "ok", finding
    finding = _check({"files": {_CFG: {"text": '[nvidia-container-cli]\nldconfig = "/sbin/ldconfig"\n'}},
                      "commands": _toolkit("1.17.2")}, "toolkit-config")
    assert finding["status"] == "warn", finding  # accepted before 1.17.3, refused from 1.17.3 on


def test_missing_ldconfig_is_a_warning_when_only_docker_gpus_uses_it() -> None:
    text = '[nvidia-container-cli]\nldconfig = "@/sbin/ldconfig"\n'
    snapshot = {"files": {_CFG: {"text": text}}, "commands": _toolkit("1.18.0"),
                "paths": {"/sbin/ldconfig": {"error": "ENOENT"}, "/sbin/ldconfig.real": {"error": "ENOENT"}}}
    finding = _check(snapshot, "toolkit-config")
    assert finding["status"] == "warn" and "docker run --gpus" in finding["summary"], finding
    snapshot["files"][_CFG]["text"] = text + '[nvidia-container-runtime]\nmode = "cdi"\n'
    assert _check(snapshot, "toolkit-config")["status"] == "ok"  # the hook refuses to run in cdi mode


def test_cli_failure_in_explicit_cdi_mode_is_not_blamed_for_containers() -> None:
    commands = {"nvidia-container-cli-info": {"argv": ["nvidia-container-cli", "info"], "exit": 1,
                                              "stderr": "nvidia-container-cli: initialization error: nvml error: "
                                                        "driver not loaded\n"}, **_toolkit("1.19.1")}
    finding = _check({"files": {_CFG: {"text": '[nvidia-container-runtime]\nmode = "cdi"\n'}},
                      "commands": commands}, "container-cli-info")
    assert finding["status"] == "warn" and "neither the nvidia runtime nor its hook" in finding["summary"], finding


def test_cdi_same_directory_conflict_is_unresolvable() -> None:
    from gpu_runbook.checks.containers import effective_cdi_devices

    spec = "---\ncdiVersion: 0.5.0\ndevices:\n- containerEdits: {}\n  name: all\nkind: nvidia.com/gpu\n"
    finding = _check({"files": {"/etc/cdi/nvidia.yaml": {"text": spec}, "/etc/cdi/nvidia-copy.yaml": {"text": spec}}},
                     "cdi-specs")
    assert finding["status"] == "fail" and "nvidia.com/gpu=all is defined in both" in finding["summary"], finding
    # /run/cdi is /var/run/cdi: the same file seen twice is not a conflict, and it beats /etc/cdi.
    specs = {p: {"kind": "nvidia.com/gpu", "devices": ["all"]}
             for p in ("/etc/cdi/nvidia.yaml", "/run/cdi/nvidia.yaml", "/var/run/cdi/nvidia.yaml")}
    assert effective_cdi_devices(specs) == ({"nvidia.com/gpu=all": "/var/run/cdi/nvidia.yaml"}, {})
    # The cache keeps a conflict once seen: two /etc/cdi files drop the name although /var/run/cdi has it.
    finding = _check({"files": {"/etc/cdi/nvidia.yaml": {"text": spec}, "/etc/cdi/nvidia-copy.yaml": {"text": spec},
                                "/var/run/cdi/nvidia.yaml": {"text": spec}}}, "cdi-specs")
    assert finding["status"] == "fail" and "nvidia.com/gpu=all is defined in both /etc/cdi/" in finding["summary"], \
        finding


# -- NVIDIA_REQUIRE_CUDA as libnvidia-container evaluates it: per GPU, with its brand ----------------
REQUIRE_128 = " ".join(["cuda>=12.8"] + [f"brand={b},driver>={d},driver<{d + 1}" for d in (470, 535, 550, 560, 565)
                                         for b in ("unknown", "grid", "tesla", "nvidia", "quadro", "nvidiartx")])
DRIVER_535 = {"files": {"/proc/driver/nvidia/version": {
    "text": "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.247.01  Release Build  (dvs-builder@U16-T02-35-3)\n"}}}


def _nvml_535(*brands: int) -> dict:
    return {"init": {"ok": True}, "driver_version": "535.247.01", "cuda_driver_version": 12020,
            "device_count": len(brands), "devices": [{"index": i, "name": f"GPU {i}", "brand": b,
                                                      "cuda_compute_capability": [9, 0]} for i, b in enumerate(brands)]}


@pytest.mark.parametrize(("brands", "expected"), [
    ((14,), "ok"),      # NVML brand NVIDIA (H100, H200): libnvidia-container says "Unknown", which 12.8 images list
    ((2,), "ok"),       # Tesla
    ((5,), "fail"),     # GeForce: no alternative names it
    ((6,), "fail"),     # TITAN
    ((2, 5), "fail"),   # every visible GPU must satisfy the requirements
])
def test_require_cuda_brand_alternatives_on_535(brands: tuple, expected: str) -> None:
    finding = _check(dict(DRIVER_535, env={"NVIDIA_REQUIRE_CUDA": REQUIRE_128}, nvml=_nvml_535(*brands)),
                     "require-cuda")
    assert finding["status"] == expected, finding["summary"]


def test_require_cuda_prefers_nvidia_container_cli_brand() -> None:
    info = ("NVRM version:   535.247.01\nCUDA version:   12.2\n\nDevice Index:   0\nDevice Minor:   0\n"
            "Model:          NVIDIA GeForce RTX 4090\nBrand:          GeForce\nArchitecture:   8.9\n")
    snapshot = dict(DRIVER_535, env={"NVIDIA_REQUIRE_CUDA": REQUIRE_128}, nvml=_nvml_535(2), commands={
        "nvidia-container-cli-info": {"argv": ["nvidia-container-cli", "info"], "exit": 0, "stdout": info}})
    finding = _check(snapshot, "require-cuda")
    assert finding["status"] == "fail" and "GeForce (NVIDIA GeForce RTX 4090)" in finding["summary"], finding


def test_require_cuda_ands_every_require_variable_and_ignores_jetpack() -> None:
    env = {"NVIDIA_REQUIRE_CUDA": "cuda>=12.0", "NVIDIA_REQUIRE_ARCH": "arch>=10.0",
           "NVIDIA_REQUIRE_JETPACK": "csv-mounts=all"}
    finding = _check(dict(DRIVER_535, env=env, nvml=_nvml_535(14)), "require-cuda")
    assert finding["status"] == "fail", finding  # Hopper (9.0) fails arch>=10.0 although cuda>=12.0 holds
    assert "NVIDIA_REQUIRE_JETPACK" not in finding["evidence"]["requirements"]


def test_require_cuda_disable_require_follows_parsebool() -> None:
    for value, status in (("True", "warn"), ("yes", "fail")):
        env = {"NVIDIA_REQUIRE_CUDA": "cuda>=12.8", "NVIDIA_DISABLE_REQUIRE": value}
        assert _check(dict(DRIVER_535, env=env, nvml=_nvml_535(5)), "require-cuda")["status"] == status, value


def test_require_cuda_newer_than_table_names_no_guessed_driver() -> None:
    finding = _check(dict(DRIVER_535, env={"NVIDIA_REQUIRE_CUDA": "cuda>=13.5"}, nvml=_nvml_535(14)),
                     "require-cuda")
    assert finding["status"] == "fail" and "Table 3" in finding["fix"], finding


def test_capabilities_default_to_all_in_legacy_images() -> None:
    base = {"paths": {"/.dockerenv": {"kind": "file"}}}
    legacy = _check(dict(base, env={"NVIDIA_VISIBLE_DEVICES": "all", "CUDA_VERSION": "11.0.3"}),
                    "container-driver-capabilities")
    assert legacy["evidence"]["effective"] == ["all"], legacy
    empty = _check(dict(base, env={"NVIDIA_VISIBLE_DEVICES": "all", "CUDA_VERSION": "11.0.3",
                                   "NVIDIA_DRIVER_CAPABILITIES": ""}), "container-driver-capabilities")
    assert empty["evidence"]["effective"] == ["compute", "utility"], empty


def test_toolkit_1_18_1_in_explicit_legacy_mode_is_not_warned_for_visible_none() -> None:
    version = {"argv": ["nvidia-ctk", "--version"], "exit": 0,
               "stdout": "NVIDIA Container Toolkit CLI version 1.18.1\ncommit: 0000000\n"}
    paths = {p: {"kind": "file"} for p in ("/usr/bin/nvidia-ctk", "/usr/bin/nvidia-container-cli",
                                           "/usr/bin/nvidia-container-runtime",
                                           "/usr/bin/nvidia-container-runtime-hook")}
    config = '[nvidia-container-runtime]\nmode = "legacy"\n'
    finding = _check({"files": {"/etc/nvidia-container-runtime/config.toml": {"text": config}}, "paths": paths,
                      "commands": {"nvidia-ctk-version": version}}, "toolkit-installed")
    assert finding["status"] == "ok", finding["summary"]


def test_crio_dropin_in_conf_d_is_fine_when_crio_conf_d_registers_nvidia_too() -> None:
    dropin = ('[crio.runtime.runtimes.nvidia]\nruntime_path = "/usr/bin/nvidia-container-runtime"\n'
              'runtime_type = "oci"\n')
    finding = _check({"files": {"/etc/crio/conf.d/99-nvidia.toml": {"text": dropin},
                                "/etc/crio/crio.conf.d/99-nvidia.toml": {"text": dropin}},
                      "paths": {"/usr/bin/nvidia-container-runtime": {"kind": "file"}}}, "runtime-configured")
    assert finding["status"] == "ok", finding["summary"]


def test_same_branch_compat_lib_is_not_forward_compatibility() -> None:
    # enable-cuda-compat (toolkit 1.17.5+) adds /usr/local/cuda/compat only for a higher major version, so
    # a newer 535 compat libcuda on a 535 driver is never used and no 804 follows on a GeForce card.
    snapshot = {"host": {"euid": 0, "groups": [0], "in_container": True},
                "nvml": {"init": {"ok": True}, "driver_version": "535.104.05", "device_count": 1,
                         "devices": [{"index": 0, "name": "NVIDIA GeForce RTX 4090", "minor_number": 0}]},
                "files": {"/proc/driver/nvidia/version": {"text": "NVRM version: NVIDIA UNIX x86_64 Kernel Module  "
                                                                  "535.104.05  Release Build  (dvs-builder@U16)\n"}},
                "paths": {"/usr/local/cuda/compat/libcuda.so.535.247.01": {"kind": "file", "mode": "0755",
                                                                           "uid": 0, "gid": 0}}}
    finding = _check(snapshot, "cuda-forward-compat")
    assert finding["status"] == "ok" and "own branch" in finding["summary"], finding


@pytest.mark.parametrize(("program", "status"), [
    ({"kind": "file", "mode": "0755"}, "ok"),
    ({"error": "ENOENT"}, "fail"),
    ({"error": "EACCES", "detail": "Permission denied"}, "unknown"),  # never read as absent, nor as present
    ({"error": "not-collected"}, "skip"),  # a path outside the probe plan: say so rather than guess
])
def test_cdi_hook_program_must_exist_where_the_runtime_runs_it(program: dict, status: str) -> None:
    spec = parse_cdi_spec("containerEdits:\n  hooks:\n  - args:\n    - nvidia-cdi-hook\n    - update-ldcache\n"
                          "    hookName: createContainer\n    path: /usr/local/nvidia/toolkit/nvidia-cdi-hook\n"
                          "devices:\n- name: all\nkind: nvidia.com/gpu\n")
    verdict = cdi_hook_program_missing({"/etc/cdi/nvidia.yaml": spec},
                                       {"/usr/local/nvidia/toolkit/nvidia-cdi-hook": program})
    assert verdict.status.value == status, verdict
    if status == "fail":
        assert "fork/exec /usr/local/nvidia/toolkit/nvidia-cdi-hook" in verdict.summary


def test_cdi_hook_programs_of_a_shadowed_spec_are_not_judged() -> None:
    """Only the spec a device name resolves from runs its hooks: /var/run/cdi wins over /etc/cdi."""
    def spec(path: str) -> dict:
        return parse_cdi_spec(f"containerEdits:\n  hooks:\n  - hookName: createContainer\n    path: {path}\n"
                              "devices:\n- name: all\nkind: nvidia.com/gpu\n")

    specs = {"/etc/cdi/nvidia.yaml": spec("/usr/bin/nvidia-ctk"),
             "/var/run/cdi/nvidia.yaml": spec("/usr/bin/nvidia-cdi-hook")}
    verdict = cdi_hook_program_missing(specs, {"/usr/bin/nvidia-ctk": {"error": "ENOENT"},
                                               "/usr/bin/nvidia-cdi-hook": {"kind": "file"}})
    assert verdict.status.value == "ok", verdict


def test_unit_read_as_systemd_reads_it_etc_overrides_and_unreadable_is_unknown() -> None:
    from gpu_runbook.engines import unit_dependencies, unit_texts
    from gpu_runbook.snapshot import Missing, Snapshot

    files = {"/usr/lib/systemd/system/docker.service": {"text": "[Unit]\nAfter=network.target\n"},
             "/etc/systemd/system/docker.service": {"text": "[Unit]\nAfter=local.target\n"},
             "/usr/lib/systemd/system/docker.service.d/50-a.conf": {"text": "[Unit]\nAfter=a.service\n"},
             "/etc/systemd/system/docker.service.d/50-a.conf": {"text": "[Unit]\nAfter=b.service\n"}}
    texts = unit_texts(Snapshot({"files": files}), "docker.service")
    # /etc's unit replaces the package's; the same-named drop-in in /etc replaces the one in /usr/lib.
    assert unit_dependencies(texts, "After") == {"local.target", "b.service"}
    files["/etc/systemd/system/docker.service.d/60-b.conf"] = {"error": "EACCES", "detail": "Permission denied"}
    with pytest.raises(Missing):
        unit_texts(Snapshot({"files": files}), "docker.service")


@pytest.mark.parametrize(("stdout", "status"), [
    ("2.229.0\n", "ok"),
    ("2.211.1\n", "warn"),
    ("2.229.0\n2.211.1\n", "warn"),  # two packages installed: the older one lacks map
])
def test_selinux_devices_judges_the_oldest_container_selinux(stdout: str, status: str) -> None:
    """With only container_use_devices on, the container-selinux version decides (map from 2.213.0); rpm prints
    one version a line, and where two are installed the older one is judged."""
    from conftest import SCENARIO_DIR, load_scenario
    from gpu_runbook.registry import run_checks
    from gpu_runbook.snapshot import Snapshot

    data = json.loads(json.dumps(load_scenario(SCENARIO_DIR / "selinux" / "warn-only-container-use-devices-on.json")
                                 ["snapshot"]))
    data["commands"]["container-selinux-version"]["stdout"] = stdout
    finding = run_checks(Snapshot(data), only=["selinux-devices"])[0]
    assert finding.status.value == status, finding.summary


@pytest.mark.parametrize("stdout, expected", [
    ("NVIDIA-SMI version  : 580.159.04\nNVML version        : 580.159\nDRIVER version      : 580.159.04\n"
     "CUDA Version        : 13.0\n", "13.0"),
    # The 610 branch renamed the lines and keeps the old labels with a pointer instead of a number.
    ("NVIDIA-SMI version  : 610.57.04\nNVML version        : 610.57\n"
     'DRIVER version      : Deprecated, see "KMD version" instead\n'
     'CUDA version        : Deprecated, see "CUDA UMD version" instead\n'
     "KMD version         : 610.57.04\nCUDA UMD version    : 13.3\n", "13.3"),
])
def test_driver_cuda_version_reads_both_spellings_of_nvidia_smi(stdout: str, expected: str) -> None:
    """Without NVML the driver's CUDA version comes from `nvidia-smi --version`, old and 610-branch layouts."""
    from gpu_runbook.checks.containers import driver_cuda_version_fact
    from gpu_runbook.snapshot import Snapshot

    snapshot = Snapshot({"commands": {"nvidia-smi-version": {"argv": ["nvidia-smi", "--version"], "exit": 0,
                                                             "stdout": stdout, "stderr": ""}}})
    assert driver_cuda_version_fact(snapshot) == expected

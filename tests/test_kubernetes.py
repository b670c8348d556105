"""The kubernetes section beyond the scenarios: the manifests the pages show, parser edge cases, and the
skip/unknown paths of the node checks (a host without Kubernetes skips, an unreadable fact never is ok)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml
from conftest import DOCS, REPO, SCENARIO_DIR, load_scenario
from gpu_runbook.checks import kubernetes as k8s
from gpu_runbook.findings import Finding, Status
from gpu_runbook.parsers.kubernetes import (
    label_driver_version,
    parse_device_checkpoint,
    parse_feature_labels,
    parse_xid_lines,
    split_replica_id,
    xid_recovery_action,
)
from gpu_runbook.probes import plan
from gpu_runbook.probes.commands import MAX_OUTPUT_CHARS
from gpu_runbook.registry import run_checks
from gpu_runbook.snapshot import Snapshot

MANIFESTS = REPO / "snippets" / "manifests"
K8S_CHECKS = ("device-plugin-registered", "time-slicing-not-renamed", "gfd-labels-stale",
              "visible-devices-all-in-pod", "xid-errors")


def load_all(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((MANIFESTS / name).read_text()) if d]


def verdicts(data: dict) -> dict[str, Status]:
    return {f.check: f.status for f in run_checks(Snapshot(data), only=K8S_CHECKS, strict=True)}


def scenario(page: str, name: str) -> dict:
    return copy.deepcopy(load_scenario(SCENARIO_DIR / page / f"{name}.json")["snapshot"])


# -- manifests shown on the pages ---------------------------------------------------------------------------

def test_every_manifest_is_shown_on_a_page_and_every_include_exists() -> None:
    pages = "\n".join(p.read_text() for p in (DOCS / "kubernetes").glob("*.md"))
    included = set(re.findall(r'--8<-- "manifests/([\w.-]+)"', pages))
    assert included == {p.name for p in MANIFESTS.glob("*.yaml")}


def test_time_slicing_config_has_the_documented_keys() -> None:
    (cm,) = load_all("time-slicing-config.yaml")
    assert cm["apiVersion"] == "v1" and cm["kind"] == "ConfigMap"
    for key, text in cm["data"].items():
        config = yaml.safe_load(text)
        assert config["version"] == "v1", key
        ts = config["sharing"]["timeSlicing"]
        assert ts["renameByDefault"] is True and ts["failRequestsGreaterThanOne"] is True
        assert set(ts) == {"renameByDefault", "failRequestsGreaterThanOne", "resources"}
        for resource in ts["resources"]:
            assert resource["name"] == "nvidia.com/gpu" or resource["name"].startswith("nvidia.com/mig-")
            assert isinstance(resource["replicas"], int) and resource["replicas"] >= 2


def test_gpu_pod_requests_equal_limits_whole_gpus_and_sets_no_visible_devices() -> None:
    (pod,) = load_all("gpu-pod.yaml")
    assert pod["kind"] == "Pod" and pod["spec"]["runtimeClassName"] == "nvidia"
    for container in pod["spec"]["containers"]:
        resources = container["resources"]
        gpus = resources["limits"]["nvidia.com/gpu"]
        assert isinstance(gpus, int) and gpus >= 1
        assert resources.get("requests", {}).get("nvidia.com/gpu", gpus) == gpus
        assert "NVIDIA_VISIBLE_DEVICES" not in {e["name"] for e in container.get("env", [])}


def test_runtimeclass_names_the_nvidia_handler() -> None:
    (rc,) = load_all("runtimeclass-nvidia.yaml")
    assert (rc["apiVersion"], rc["kind"], rc["metadata"]["name"], rc["handler"]) == \
        ("node.k8s.io/v1", "RuntimeClass", "nvidia", "nvidia")


def test_npd_plugin_runs_the_doctor_in_npd_mode_with_the_host_at_host() -> None:
    cm, ds = load_all("npd-gpu-runbook.yaml")
    custom = json.loads(cm["data"]["gpu-runbook.json"])
    assert custom["plugin"] == "custom"
    (rule,) = custom["rules"]
    assert rule["type"] == "permanent" and rule["condition"] in {c["type"] for c in custom["conditions"]}
    assert rule["path"].endswith("/gpu-runbook")
    args = rule["args"]
    assert args[0] == "check" and args[args.index("--format") + 1] == "npd"
    assert args[args.index("--root") + 1] == "/host"
    assert "--live" not in args  # under --root, commands and NVML would describe the NPD container
    # NPD must wait longer than the doctor's own deadline, or a slow node reads as a plugin timeout.
    deadline = float(args[args.index("--deadline") + 1])
    seconds = {k: float(str(v).rstrip("s")) for k, v in
               (("rule", rule["timeout"]), ("plugin", custom["pluginConfig"]["timeout"]))}
    assert deadline < min(seconds.values())
    assert custom["pluginConfig"]["max_output_length"] >= 80  # the npd renderer prints at most 80 characters
    xid = json.loads(cm["data"]["gpu-xid-monitor.json"])
    assert xid["plugin"] == "kmsg" and re.search(xid["rules"][0]["pattern"],
                                                 "NVRM: Xid (PCI:0000:2b:00): 79, GPU has fallen off the bus.")
    spec = ds["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/host"]["readOnly"] is True
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[mounts["/host"]["name"]]["hostPath"]["path"] == "/"
    assert volumes[mounts["/config"]["name"]]["configMap"]["name"] == cm["metadata"]["name"]
    assert any(a.startswith("--config.custom-plugin-monitor=/config/gpu-runbook.json") for a in container["command"])


def test_npd_exit_codes_match_the_doctors() -> None:
    """NPD's custom plugin reads 0 OK, 1 NonOK, 2 Unknown: the doctor's check exits the same way."""
    from conftest import run_cli

    cases = {"fixed-no-xid": 0, "broken-xid-79-fallen-off-bus": 1, "unknown-dmesg-restricted": 2}
    for name, expected in cases.items():
        code, out, _ = run_cli("check", "--snapshot", str(SCENARIO_DIR / "health-monitoring" / f"{name}.json"),
                               "--only", "xid-errors", "--format", "npd")
        assert code == expected, (name, out)
        assert len(out.rstrip("\n")) <= 80


# -- parsers ------------------------------------------------------------------------------------------------

def test_xid_parser_reads_mig_and_kmsg_forms_and_ignores_other_nvrm_lines() -> None:
    text = ("4,9921,9370042162,-;NVRM: Xid (PCI:0000:17:00): 119, pid='N/A', Timeout waiting for RPC from GSP\n"
            "NVRM: Xid (PCI:0000:01:00 GPU-I:02 GPU-CI:00): 13, pid=42, name=python, Graphics Exception\n"
            "NVRM: GPU 0000:2b:00.0: GPU has fallen off the bus.\n")
    assert [(e.pci, e.code) for e in parse_xid_lines(text)] == [("0000:17:00", 119), ("0000:01:00", 13)]
    assert parse_xid_lines("") == [] and parse_xid_lines("NVRM: Xid (PCI:zz): x") == []


def test_recovery_action_and_replica_ids() -> None:
    assert xid_recovery_action("GPU recovery action changed from 0x1 (GPU Reset Required) to 0x0 (None)") == "None"
    assert split_replica_id("GPU-1::x") == ("GPU-1", None)
    assert split_replica_id("MIG-1::12") == ("MIG-1", 12)


def test_checkpoint_parser_tolerates_other_shapes() -> None:
    assert parse_device_checkpoint('{"Data": {"PodDeviceEntries": null}}') == {}
    assert parse_device_checkpoint('{"Data": {"RegisteredDevices": {"nvidia.com/gpu": "x"}}}') == {"nvidia.com/gpu": []}
    assert parse_device_checkpoint("not json") is None
    assert parse_device_checkpoint('{"Data": 3}') is None


def test_feature_labels_and_driver_version() -> None:
    labels = parse_feature_labels(" nvidia.com/cuda.driver.major = 580 \nnvidia.com/cuda.driver.minor=159\n")
    assert labels["nvidia.com/cuda.driver.major"] == "580"
    assert label_driver_version(labels) == "580.159"
    assert label_driver_version({}) is None


# -- checks: the paths the scenarios do not pin ---------------------------------------------------------------

def test_a_host_without_kubernetes_skips_every_kubernetes_check() -> None:
    """The GPU test host: driver and NVML, no kubelet, no GFD, not in a pod."""
    data = copy.deepcopy(load_scenario(SCENARIO_DIR / "device-nodes" / "fixed-healthy-h100-580.json")["snapshot"])
    data["dirs"]["/var/lib/kubelet/device-plugins"] = {"error": "ENOENT", "detail": "No such file or directory"}
    data["files"]["/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint"] = {"error": "ENOENT"}
    got = verdicts(data)
    for check_id in K8S_CHECKS[:4]:
        assert got[check_id] is Status.SKIP, check_id


def test_device_plugin_check_skips_gpu_less_kubelet_nodes_and_is_unknown_when_unlistable() -> None:
    data = scenario("device-plugin", "broken-no-plugin-socket")
    data["nvml"]["device_count"], data["nvml"]["devices"] = 0, []
    assert verdicts(data)["device-plugin-registered"] is Status.SKIP
    del data["nvml"]
    assert verdicts(data)["device-plugin-registered"] is Status.SKIP  # no driver, no NVML: not a GPU node
    data["files"]["/proc/driver/nvidia/version"] = {"text": "NVRM version: NVIDIA UNIX Open Kernel Module for "
                                                            "x86_64  580.159.04  Release Build  (x)\n"}
    assert verdicts(data)["device-plugin-registered"] is Status.FAIL  # --root: the driver says GPU node
    data["dirs"]["/var/lib/kubelet/device-plugins"] = {"error": "EACCES", "detail": "Permission denied"}
    assert verdicts(data)["device-plugin-registered"] is Status.UNKNOWN


def test_device_plugin_check_ignores_mig_devices_when_counting() -> None:
    data = scenario("device-plugin", "broken-fewer-gpus-registered")
    data["files"][k8s.CHECKPOINT] = {"text": json.dumps({"Data": {"RegisteredDevices": {
        "nvidia.com/mig-1g.10gb": ["MIG-6ab4f4b2-0b31-5d6c-8d5a-2f2b1c0e0a11"]}}})}
    assert verdicts(data)["device-plugin-registered"] is Status.OK


def test_mps_sharing_label_is_not_reported_as_time_slicing() -> None:
    data = scenario("time-slicing", "broken-replicas-as-nvidia-gpu")
    data["files"][k8s.GFD_FILE] = {"text": "nvidia.com/gpu.sharing-strategy=mps\n"}
    assert verdicts(data)["time-slicing-not-renamed"] is Status.OK
    data["files"][k8s.GFD_FILE] = {"text": "nvidia.com/gpu.sharing-strategy=time-slicing\n"}
    assert verdicts(data)["time-slicing-not-renamed"] is Status.WARN


def test_gfd_check_count_and_mig_single_and_unreadable() -> None:
    data = scenario("feature-discovery", "fixed-labels-current")
    data["nvml"]["device_count"] = 7
    assert verdicts(data)["gfd-labels-stale"] is Status.WARN
    data["files"][k8s.GFD_FILE]["text"] += "nvidia.com/mig.strategy=single\n"
    assert verdicts(data)["gfd-labels-stale"] is Status.OK  # gpu.count then counts MIG devices
    data["nvml"] = {"init": {"error": {"name": "NVMLError_NoPermission"}}}
    assert verdicts(data)["gfd-labels-stale"] is Status.UNKNOWN
    data["files"][k8s.GFD_FILE] = {"error": "EACCES", "detail": "Permission denied"}
    assert verdicts(data)["gfd-labels-stale"] is Status.UNKNOWN


@pytest.mark.parametrize("value, expected", [
    ("all", Status.WARN), ("ALL", Status.WARN), ("0,1", Status.OK), ("void", Status.OK), ("none", Status.OK),
    ("/var/run/nvidia-container-devices", Status.OK), ("GPU-1,GPU-2", Status.OK), ("$(echo 0)", Status.WARN)])
def test_visible_devices_values(value: str, expected: Status) -> None:
    data = scenario("gpu-requests", "broken-visible-devices-all")
    data["env"]["NVIDIA_VISIBLE_DEVICES"] = value
    data["nvml"]["device_count"] = 2  # what a pod given two GPUs sees
    assert verdicts(data)["visible-devices-all-in-pod"] is expected


def _visible_devices_finding(data: dict) -> Finding:
    return next(f for f in run_checks(Snapshot(data), only=["visible-devices-all-in-pod"], strict=True))


@pytest.mark.parametrize("value, seen, expected", [
    ("GPU-1", 8, Status.WARN), ("0,1", 8, Status.WARN), ("GPU-1,GPU-1", 2, Status.WARN),  # replicas of one GPU
    ("GPU-1,GPU-2", 2, Status.OK), ("MIG-1", 1, Status.OK), ("MIG-1", 2, Status.OK), ("0:1", 2, Status.OK)])
def test_a_pod_that_sees_more_gpus_than_it_was_allocated(value: str, seen: int, expected: Status) -> None:
    """A privileged pod gets every GPU of the node whatever the plugin allocated; MIG devices are not compared
    (NVML counts their parent GPUs)."""
    data = scenario("gpu-requests", "broken-visible-devices-all")
    data["env"]["NVIDIA_VISIBLE_DEVICES"] = value
    data["nvml"]["device_count"] = seen
    finding = _visible_devices_finding(data)
    assert finding.status is expected, finding
    if expected is Status.WARN:
        assert finding.url.endswith("gpu-requests.html#privileged") and f"NVML sees {seen}" in finding.summary


def test_more_gpus_than_allocated_names_privileged_only_when_it_is() -> None:
    data = scenario("gpu-requests", "broken-privileged-sees-every-gpu")
    finding = _visible_devices_finding(data)
    assert finding.status is Status.WARN and "every capability" in finding.summary, finding
    data["files"]["/proc/self/status"]["text"] = "CapBnd:\t00000000a80425fb\n"  # Docker's default set
    finding = _visible_devices_finding(data)
    assert finding.status is Status.WARN and "every capability" not in finding.summary, finding
    assert "hostPath mount of /dev" in finding.fix


def test_more_gpus_than_allocated_counts_dev_nodes_without_nvml() -> None:
    data = scenario("gpu-requests", "broken-privileged-sees-every-gpu")
    data["nvml"] = {"init": {"error": {"name": "NVMLError_LibraryNotFound"}}}
    assert verdicts(data)["visible-devices-all-in-pod"] is Status.UNKNOWN  # neither NVML nor /dev to count
    data["paths"] = {"/dev/nvidiactl": {"kind": "char", "major": 195, "minor": 255},
                     **{f"/dev/nvidia{i}": {"kind": "char", "major": 195, "minor": i} for i in range(4)}}
    finding = _visible_devices_finding(data)
    assert finding.status is Status.WARN and "/dev nodes for 4" in finding.summary, finding


def test_visible_devices_skips_outside_pods_and_under_root() -> None:
    data = scenario("gpu-requests", "broken-visible-devices-all")
    data["host"]["root"] = "/host"
    assert verdicts(data)["visible-devices-all-in-pod"] is Status.SKIP
    data["host"]["root"] = "/"
    del data["env"]["KUBERNETES_SERVICE_HOST"]
    assert verdicts(data)["visible-devices-all-in-pod"] is Status.SKIP


def test_xid_check_truncated_log_keeps_its_newest_lines() -> None:
    data = scenario("health-monitoring", "fixed-no-xid")
    # The probe keeps the end of a long kernel log, so the newest Xid is always in what it kept.
    data["commands"]["dmesg"]["stdout"] = "x" * (MAX_OUTPUT_CHARS - 200) + (
        "\n[86400.1] NVRM: Xid (PCI:0000:2b:00): 79, pid=0, GPU has fallen off the bus.\n")
    data["commands"]["dmesg"]["truncated"] = True
    assert verdicts(data)["xid-errors"] is Status.FAIL
    data["commands"]["dmesg"]["stdout"] = "[1.0] x\n" * 1000
    assert verdicts(data)["xid-errors"] is Status.OK


def test_probe_keeps_the_end_of_a_long_output(tmp_path) -> None:
    from gpu_runbook.probes.commands import run_command

    tool = tmp_path / "chatty"
    tool.write_text(f"#!/bin/sh\nhead -c {MAX_OUTPUT_CHARS + 5000} /dev/zero | tr '\\0' 'a'\necho LAST-LINE\n")
    tool.chmod(0o755)
    fact = run_command([str(tool)], 10)
    assert fact["truncated"] is True and fact["stdout"].endswith("LAST-LINE\n")
    assert len(fact["stdout"]) == MAX_OUTPUT_CHARS


def test_xid_check_empty_or_unreadable_log_is_unknown_never_ok() -> None:
    data = scenario("health-monitoring", "fixed-no-xid")
    data["commands"]["dmesg"]["stdout"] = ""
    assert verdicts(data)["xid-errors"] is Status.UNKNOWN
    data["commands"]["dmesg"] = {"argv": ["dmesg"], "error": "not-found", "detail": "dmesg is not on PATH"}
    assert verdicts(data)["xid-errors"] is Status.UNKNOWN
    del data["commands"]["dmesg"]
    assert verdicts(data)["xid-errors"] is Status.SKIP


def test_xid_154_back_to_none_is_not_a_reset() -> None:
    data = scenario("health-monitoring", "fixed-no-xid")
    data["commands"]["dmesg"]["stdout"] += ("[9.1] NVRM: Xid (PCI:0000:01:00): 154, GPU recovery action changed "
                                            "from 0x1 (GPU Reset Required) to 0x0 (None)\n")
    assert verdicts(data)["xid-errors"] is Status.OK  # NVML_GPU_RECOVERY_ACTION_NONE: the GPU takes new work
    data["commands"]["dmesg"]["stdout"] += "[9.2] NVRM: Xid (PCI:0000:01:00): 154, GPU recovery action changed\n"
    assert verdicts(data)["xid-errors"] is Status.WARN  # an action the parser cannot read is not waved through


@pytest.mark.parametrize("lines, expected", [
    # NVIDIA's Xid catalog: 43 and 92 resolve as IGNORE (immediate action), 13 and 31 as RESTART_APP,
    # 46, 62, 109, 140 and 143 as RESET_GPU, 79 as RESTART_BM.
    # Above 150 (catalog and NVSentinel's xiderrorsmapping.csv agree): 155, 156 and 158 are RESET_GPU, 151 is
    # RESTART_VM, 157 and 161 are IGNORE, 159 is CHECK_UVM. 160 is IGNORE in the catalog but RESTART_BM in the
    # CSV: not filed, so it warns.
    (["43, pid=3012, name=python3, Ch 00000008"], Status.OK),
    (["92, High single-bit ECC error rate"], Status.OK),
    (["43, pid=3012, name=python3, Ch 00000008", "13, pid=3012, name=python3, Graphics Exception"], Status.WARN),
    (["31, pid=7, name=train, Ch 00000010, intr 00000000. MMU Fault"], Status.WARN),
    (["46, pid='<unknown>', name=<unknown>, GPU stopped processing"], Status.FAIL),
    (["109, pid=88, name=python, Ch 00000004, errorString CTX SWITCH TIMEOUT"], Status.FAIL),
    (["143, GPU Initialization Failure"], Status.FAIL),
    (["43, pid=1, name=x, Ch 1", "79, pid=0, GPU has fallen off the bus."], Status.FAIL),
    (["155, NVLink SW defined error"], Status.FAIL),
    (["156, Resource Retirement Event"], Status.FAIL),
    (["157, Resource Retirement Failure", "161, Channel Retirement Failure"], Status.OK),
    (["161, Channel Retirement Failure", "158, GPU Fatal Timeout"], Status.FAIL),
    (["151, pid=40, name=python, Key rotation error"], Status.FAIL),
    (["159, CHI Non-Data Error"], Status.WARN),
    (["160, Channel Retirement Event"], Status.WARN),
])
def test_xid_check_follows_the_catalogs_immediate_action(lines: list[str], expected: Status) -> None:
    data = scenario("health-monitoring", "fixed-no-xid")
    data["commands"]["dmesg"]["stdout"] += "".join(f"[9.{i}] NVRM: Xid (PCI:0000:01:00): {line}\n"
                                                   for i, line in enumerate(lines))
    assert verdicts(data)["xid-errors"] is expected


def test_xid_158_after_an_ignored_retirement_fails_and_names_the_code() -> None:
    # A newer RESET_GPU code (GPU_FATAL_TIMEOUT, nverror.h from 575.51.02) is not hidden by an IGNORE one next to it.
    data = scenario("health-monitoring", "fixed-no-xid")
    data["commands"]["dmesg"]["stdout"] += ("[9.1] NVRM: Xid (PCI:0000:41:00): 157, Resource Retirement Failure\n"
                                            "[9.2] NVRM: Xid (PCI:0000:41:00): 158, GPU Fatal Timeout\n")
    (finding,) = run_checks(Snapshot(data), only=["xid-errors"], strict=True)
    assert finding.status is Status.FAIL, finding
    assert "Xid 158 (GPU fatal timeout) on 0000:41:00" in finding.summary and "157" not in finding.summary


def test_gfd_check_without_a_label_file_says_where_the_labels_are() -> None:
    data = scenario("feature-discovery", "fixed-labels-current")
    del data["files"][k8s.GFD_FILE]
    (finding,) = [f for f in run_checks(Snapshot(data), only=["gfd-labels-stale"], strict=True)]
    assert finding.status is Status.SKIP
    assert "v0.19.0" in finding.summary and "nvidia-features-for-<node>" in finding.summary
    assert k8s.NODE_FEATURE_API_DEFAULT == (0, 19, 0)
    data["paths"][k8s.FEATURES_DIR] = {"error": "ENOENT"}  # no features.d at all: not a GFD node
    assert verdicts(data)["gfd-labels-stale"] is Status.SKIP


def test_gfd_check_prefers_the_full_driver_version_label() -> None:
    data = scenario("feature-discovery", "fixed-labels-current")
    # The module is 535.129.03, as the deprecated major/minor/rev labels say; the full label wins.
    data["files"][k8s.GFD_FILE]["text"] += "nvidia.com/cuda.driver-version.full=580.159.04\n"
    assert verdicts(data)["gfd-labels-stale"] is Status.WARN


def test_plan_declares_the_kubernetes_facts() -> None:
    assert plan.COMMANDS["dmesg"].argv == ("dmesg",) and plan.COMMANDS["dmesg"].timeout <= 5
    assert "/var/lib/kubelet/device-plugins" in plan.DIRS
    assert k8s.CHECKPOINT in plan.FILES and k8s.FEATURES_DIR + "/*" in plan.FILES


def test_pages_link_the_anchors_the_checks_use() -> None:
    anchors = {"device-plugin": ["plugin-not-running", "fewer-gpus", "lost-gpu"], "time-slicing": ["not-renamed"],
               "feature-discovery": ["stale-labels", "gfd-no-retry"],
               "gpu-requests": ["visible-devices-all", "privileged"],
               "health-monitoring": ["reset-xids", "application-xids"]}
    for page, wanted in anchors.items():
        text = (DOCS / "kubernetes" / f"{page}.md").read_text()
        for anchor in wanted:
            assert f"{{ #{anchor} }}" in text, (page, anchor)
    source = Path(k8s.__file__).read_text()
    assert set(re.findall(r'anchor="([\w-]+)"', source)) == {a for v in anchors.values() for a in v}


@pytest.mark.parametrize("driver, expected, meaning", [
    ("550.127.05", Status.FAIL, "key rotation error, as 550 drivers number it"),  # nverror.h 550: KEY_ROTATION = 144
    ("580.159.04", Status.WARN, "NVLink SAW error"),  # from 560.28.03: NVLINK_SAW_ERROR, and this line is not Fatal
])
def test_xid_144_is_a_key_rotation_error_on_550_drivers(driver: str, expected: Status, meaning: str) -> None:
    data = scenario("health-monitoring", "fixed-no-xid")
    data["commands"]["dmesg"]["stdout"] += "[9.1] NVRM: Xid (PCI:0000:01:00): 144, pid=40, name=python3\n"
    data.setdefault("files", {})["/proc/driver/nvidia/version"] = {
        "text": f"NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  {driver}  Release Build  (dvs@b)\n"}
    (finding,) = run_checks(Snapshot(data), only=["xid-errors"], strict=True)
    assert finding.status is expected and f"Xid 144 ({meaning})" in finding.summary, finding.summary

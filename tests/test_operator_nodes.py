"""Nodes as they are: the GPU Operator's toolkit in /usr/local/nvidia/toolkit, NVIDIA's own pods with
NVIDIA_VISIBLE_DEVICES=all, CDI-injected pods, and GFD labels on a node with more than one GPU model."""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import SCENARIO_DIR, limit_s
from gpu_runbook.facts import OPERATOR_TOOLKIT_CONFIG, PACKAGE_TOOLKIT_CONFIG, toolkit_config_path_fact
from gpu_runbook.parsers.operands import gfd_label_model, gfd_model_counts, gfd_product, nvidia_component
from gpu_runbook.probes import plan
from gpu_runbook.probes.collect import _env_facts, run_commands, toolkit_root_env
from gpu_runbook.registry import run_checks
from gpu_runbook.snapshot import Snapshot

OPERATOR_SCENARIO = SCENARIO_DIR / "dev-char-symlinks" / "broken-operator-node-toolkit-no-links.json"


def _snapshot(path: Path) -> dict[str, Any]:
    return copy.deepcopy(json.loads(path.read_text(encoding="utf-8"))["snapshot"])


def _status(data: dict[str, Any], check_id: str) -> tuple[str, str, dict[str, Any]]:
    finding = run_checks(Snapshot(data), only=[check_id], strict=True)[0]
    return finding.status.value, finding.summary, finding.evidence


# -- the GPU Operator's toolkit ------------------------------------------------------------------------

def test_operator_toolkit_is_installed_and_named() -> None:
    status, summary, evidence = _status(_snapshot(OPERATOR_SCENARIO), "toolkit-installed")
    assert status == "ok" and "/usr/local/nvidia/toolkit" in summary and "1.18.2" in summary
    assert "/usr/local/nvidia/toolkit/nvidia-container-runtime" in evidence["binaries"]


def test_dev_char_links_on_an_operator_node_are_a_real_risk_not_latent() -> None:
    data = _snapshot(OPERATOR_SCENARIO)
    status, summary, evidence = _status(data, "dev-char-symlinks")
    assert status == "fail" and "latent" not in summary and "GPU Operator" in summary
    assert any(p.startswith("/usr/local/nvidia/toolkit/") for p in evidence["toolkit"])
    # The same node without the operator's install: nothing uses the GPU, so it is latent again.
    for path in list(data["paths"]):
        if path.startswith("/usr/local/nvidia/toolkit/"):
            data["paths"][path] = {"error": "ENOENT"}
    status, summary, _ = _status(data, "dev-char-symlinks")
    assert status == "warn" and "latent" in summary


def test_docker_hook_is_not_demanded_from_an_operator_install() -> None:
    data = _snapshot(OPERATOR_SCENARIO)
    data["files"]["/etc/docker/daemon.json"] = {"text": json.dumps({"default-runtime": "nvidia", "runtimes": {
        "nvidia": {"path": "/usr/local/nvidia/toolkit/nvidia-container-runtime", "args": []}}})}
    status, summary, _ = _status(data, "toolkit-installed")
    assert status == "ok", summary


def test_the_runtime_config_is_the_operators_where_its_runtime_is_registered() -> None:
    data = _snapshot(OPERATOR_SCENARIO)
    assert toolkit_config_path_fact(Snapshot(data)) == OPERATOR_TOOLKIT_CONFIG
    # A leftover package config in /etc does not apply while containerd runs the operator's wrapper.
    data["files"][PACKAGE_TOOLKIT_CONFIG] = {"text": "[nvidia-container-cli]\nno-cgroups = true\n"}
    assert toolkit_config_path_fact(Snapshot(data)) == OPERATOR_TOOLKIT_CONFIG
    # Without the operator's runtime in any engine configuration, /etc's file is the one.
    del data["files"]["/etc/containerd/config.toml"]
    assert toolkit_config_path_fact(Snapshot(data)) == PACKAGE_TOOLKIT_CONFIG
    del data["files"][OPERATOR_TOOLKIT_CONFIG]
    assert toolkit_config_path_fact(Snapshot(data)) == PACKAGE_TOOLKIT_CONFIG


def test_the_operators_config_is_judged() -> None:
    data = _snapshot(OPERATOR_SCENARIO)
    text = data["files"][OPERATOR_TOOLKIT_CONFIG]["text"].replace('"@/sbin/ldconfig.real"', '"/sbin/ldconfig.real"')
    data["files"][OPERATOR_TOOLKIT_CONFIG] = {"text": text}
    status, summary, _ = _status(data, "toolkit-config")
    assert status == "fail" and "no \"@\"" in summary, summary


def test_the_plan_reads_the_operators_install() -> None:
    assert OPERATOR_TOOLKIT_CONFIG in plan.FILES
    assert all(f"/usr/local/nvidia/toolkit/{p}" in plan.PATHS
               for p in ("nvidia-ctk", "nvidia-container-runtime", "nvidia-container-cli"))
    assert plan.TOOLKIT_ROOT_PROGRAMS == ("nvidia-ctk",)  # nvidia-container-cli would miss a containerised driver


def _tool(directory: Path, name: str, output: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tool = directory / name
    tool.write_text(f"#!/bin/sh\necho '{output}'\n")
    tool.chmod(0o755)


def test_toolkit_root_is_used_only_when_no_nvidia_ctk_is_on_path(tmp_path: Path) -> None:
    root = tmp_path / "usr-local-nvidia-toolkit"
    _tool(root, "nvidia-ctk", "NVIDIA Container Toolkit CLI version 1.18.2")
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {"PATH": str(empty)}
    extended, used = toolkit_root_env(env, (str(root),))
    assert used == str(root) and extended["PATH"] == os.pathsep.join([str(empty), str(root)])
    assert toolkit_root_env(env, (str(tmp_path / "absent"),)) == (env, None)
    _tool(empty, "nvidia-ctk", "NVIDIA Container Toolkit CLI version 1.17.8")
    assert toolkit_root_env(env, (str(root),)) == (env, None)


def test_only_nvidia_ctk_runs_from_the_toolkit_root(tmp_path: Path) -> None:
    root = tmp_path / "toolkit"
    _tool(root, "nvidia-ctk", "NVIDIA Container Toolkit CLI version 1.18.2")
    _tool(root, "nvidia-container-cli", "cli-version: 1.18.2")
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {"PATH": str(empty)}
    toolkit_env, _ = toolkit_root_env(env, (str(root),))
    facts = run_commands(time.monotonic() + 10, env, {p: toolkit_env for p in plan.TOOLKIT_ROOT_PROGRAMS})
    assert facts["nvidia-ctk-version"].get("exit") == 0 and "1.18.2" in facts["nvidia-ctk-version"]["stdout"]
    assert facts["nvidia-container-cli-version"].get("error") == "not-found"
    assert facts["nvidia-container-cli-info"].get("error") == "not-found"


# -- NVIDIA_VISIBLE_DEVICES=all in pods -----------------------------------------------------------------

@pytest.mark.parametrize(("hostname", "component"), [
    ("nvidia-device-plugin-daemonset-x7k2p", "device plugin"),
    ("nvdp-nvidia-device-plugin-4hx2m", "device plugin"),
    ("nvidia-device-plugin-mps-control-daemon-9zq8w", "device plugin MPS control daemon"),
    ("gpu-feature-discovery-lm2kd", "GPU feature discovery"),
    ("nvdp-nvidia-device-plugin-gpu-feature-discovery-q2w4e", "GPU feature discovery"),
    ("nvidia-dcgm-exporter-8c9vd", "DCGM exporter"),
    ("dcgm-exporter-7dn4x", "DCGM exporter"),
    ("nvidia-mig-manager-5tz2s", "MIG manager"),
    ("nvidia-operator-validator-b6hqz", "operator validator"),
])
def test_nvidia_component_pods_are_recognised_by_name(hostname: str, component: str) -> None:
    assert nvidia_component(hostname, {}) == (component, f"pod name {hostname}")


@pytest.mark.parametrize("hostname", [
    "gpu-node-7", "my-nvidia-device-plugin-test", "train-0", "nvidia-device-plugin", "dcgm-exporter-dashboard-0",
    None, "",
])
def test_other_pods_are_not_taken_for_nvidia_components(hostname: Any) -> None:
    assert nvidia_component(hostname, {"NVIDIA_VISIBLE_DEVICES": "all", "CUDA_VERSION": "12.8.1"}) is None


@pytest.mark.parametrize(("env", "component"), [
    ({"NVIDIA_MIG_CONFIG_DEVICES": "all"}, "MIG manager"),
    ({"DEVICE_LIST_STRATEGY": "envvar"}, "device plugin"),
    ({"GFD_SLEEP_INTERVAL": "60s"}, "GPU feature discovery"),
    ({"DCGM_EXPORTER_KUBERNETES": "true"}, "DCGM exporter"),
])
def test_nvidia_component_pods_are_recognised_by_environment(env: dict[str, str], component: str) -> None:
    found = nvidia_component("gpu-node-7", env)
    assert found is not None and found[0] == component


def test_component_environment_markers_are_recorded() -> None:
    env = {"DEVICE_LIST_STRATEGY": "envvar", "GFD_SLEEP_INTERVAL": "60s", "DCGM_EXPORTER_KUBERNETES": "true",
           "NVIDIA_MIG_CONFIG_DEVICES": "all", "HOME": "/root", "AWS_SECRET_ACCESS_KEY": "x"}
    assert set(_env_facts(env)) == {"DEVICE_LIST_STRATEGY", "GFD_SLEEP_INTERVAL", "DCGM_EXPORTER_KUBERNETES",
                                    "NVIDIA_MIG_CONFIG_DEVICES"}


def test_user_pod_with_visible_all_still_warns_when_it_sees_every_gpu() -> None:
    data = _snapshot(SCENARIO_DIR / "gpu-requests" / "broken-user-pod-all-every-gpu-visible.json")
    status, summary, evidence = _status(data, "visible-devices-all-in-pod")
    assert status == "warn" and evidence["node_gpus_in_proc"] == 8, summary


def test_pod_without_gpu_nodes_and_without_nvml_is_not_warned() -> None:
    data = _snapshot(SCENARIO_DIR / "gpu-requests" / "fixed-cdi-node-image-all-no-gpu.json")
    data["nvml"] = {"init": {"ok": False, "error": {"name": "ModuleNotFoundError", "message": "No module named"}}}
    status, summary, _ = _status(data, "visible-devices-all-in-pod")
    assert status == "ok" and "no GPU reached" in summary
    # Without any /dev facts (an old snapshot) there is no count to go by: the warning stays.
    data["paths"] = {}
    status, _, _ = _status(data, "visible-devices-all-in-pod")
    assert status == "warn"


# -- GFD on mixed nodes -------------------------------------------------------------------------------

def test_gfd_product_names_follow_gfd() -> None:
    counts = gfd_model_counts(["NVIDIA A100-SXM4-80GB"] * 4 + ["NVIDIA DGX Display"])
    assert counts == {"NVIDIA-A100-SXM4-80GB": 4, "NVIDIA-DGX-Display": 1}
    assert gfd_product("Tesla V100-SXM2-16GB") == "Tesla-V100-SXM2-16GB"
    assert gfd_label_model("NVIDIA-A100-SXM4-80GB-SHARED", counts) == "NVIDIA-A100-SXM4-80GB"
    assert gfd_label_model("NVIDIA-DGX-Display", counts) == "NVIDIA-DGX-Display"


def test_either_labelled_model_of_a_mixed_node_matches() -> None:
    """GFD may write either model's labels (an unordered map): both must pass."""
    data = _snapshot(SCENARIO_DIR / "feature-discovery" / "fixed-mixed-models-one-labelled.json")
    path = "/etc/kubernetes/node-feature-discovery/features.d/gfd"
    text = data["files"][path]["text"]
    assert _status(data, "gfd-labels-stale")[0] == "ok"
    data["files"][path]["text"] = text.replace("gpu.count=2", "gpu.count=1").replace(
        "NVIDIA-GeForce-RTX-4090", "NVIDIA-GeForce-RTX-3090")
    assert _status(data, "gfd-labels-stale")[0] == "ok"
    # A count that fits no model is stale.
    data["files"][path]["text"] = text.replace("gpu.count=2", "gpu.count=3")
    assert _status(data, "gfd-labels-stale")[0] == "warn"


def test_a_hung_nvidia_ctk_in_the_toolkit_root_is_killed_and_not_restarted(tmp_path: Path) -> None:
    root = tmp_path / "toolkit"
    root.mkdir()
    tool = root / "nvidia-ctk"
    tool.write_text(f"#!/bin/sh\nexec {shutil.which('sleep')} 60\n")
    tool.chmod(0o755)
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {"PATH": str(empty)}
    toolkit_env, _ = toolkit_root_env(env, (str(root),))
    started = time.monotonic()
    facts = run_commands(started + 1.5, env, {p: toolkit_env for p in plan.TOOLKIT_ROOT_PROGRAMS})
    assert time.monotonic() - started < limit_s(1.5, 3.5)
    assert facts["nvidia-ctk-version"].get("error") == "timeout"
    assert facts["nvidia-ctk-cdi-list"].get("error") in ("skipped", "deadline")

"""--redact removes GPU UUIDs, serials, host names, IP and MAC addresses and user names from snapshots and
from every report format, with stable placeholders so that findings still line up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli, run_cli_process
from gpu_runbook.redact import Redactor, redact_snapshot, redact_text
from gpu_runbook.render import OutputFormat

UUID = "GPU-67a571b1-79ee-1016-8ea3-c1fff3f1c1d2"
UUID_UPPER_IN_SMI = UUID  # nvidia-smi prints the same string NVML returns
MIG = "MIG-3e34e62f-d88e-f448-415e-be2cbf2c6178"
SERIAL = "1324021023456"
HOST = "gpu-node-7.corp.example.com"
SHORT_HOST = "gpu-node-7"
IPV4 = "10.20.30.40"
IPV6 = "2001:db8:85a3::8a2e:370:7334"
MAC = "3c:ec:ef:12:34:56"
USER = "alice.smith"
SECRETS = [UUID, UUID.lower()[4:], MIG, SERIAL, HOST, SHORT_HOST, IPV4, IPV6, MAC, USER]

SNAPSHOT = {
    "schema_version": 1,
    "host": {"hostname": HOST, "euid": 1000, "groups": [1000], "root": "/"},
    "files": {
        "/etc/hostname": {"text": f"{HOST}\n"},
        "/etc/docker/daemon.json": {"text": json.dumps({"insecure-registries": [f"{IPV4}:5000"],
                                                         "dns": [IPV6], "data-root": f"/home/{USER}/docker"})},
        "/proc/driver/nvidia/gpus/0000:3b:00.0/information": {
            "text": f"Model: \t\t NVIDIA A100-SXM4-80GB\nGPU UUID: \t {UUID}\nBus Location: \t 0000:3b:00.0\n"},
        "/proc/self/mountinfo": {"text": f"31 23 0:27 / /home/{USER} rw shared:1 - nfs {IPV4}:/export rw\n"},
    },
    "commands": {
        "nvidia-smi": {"argv": ["nvidia-smi"], "exit": 0, "seconds": 0.2, "stderr": "",
                       "stdout": f"0, NVIDIA A100-SXM4-80GB, {UUID}, 535.104.05, 00000000:3B:00.0, Default, "
                                 f"Enabled\n  MIG 1g.10gb Device 0: (UUID: {MIG})\n"},
        "nvidia-container-cli-info": {"argv": ["nvidia-container-cli", "info"], "exit": 0, "stderr": "",
                                      "stdout": f"Device Index: 0\nModel: NVIDIA A100\nGPU UUID: {UUID}\n"
                                                f"Serial Number: {SERIAL}\nhost {HOST} link/ether {MAC}\n"},
    },
    "nvml": {"init": {"error": {"name": "NVMLError_Unknown", "code": 999,
                                "message": f"Unknown Error on {SHORT_HOST} ({IPV4}, {MAC}, {UUID}, "
                                           f"serial {SERIAL}, /home/{USER}, {IPV6})"}},
             "devices": [{"index": 0, "uuid": UUID, "serial": SERIAL}]},
    "env": {"CUDA_HOME": f"/home/{USER}/cuda", "LD_LIBRARY_PATH": f"/home/{USER}/lib:/usr/lib",
            "NVIDIA_VISIBLE_DEVICES": UUID},
}


def _leaks(text: str) -> list[str]:
    lowered = text.lower()
    return [s for s in SECRETS if s.lower() in lowered]


@pytest.fixture
def snapshot_file(tmp_path: Path) -> Path:
    # The snapshot sits below a home directory, so the report's "source" carries a user name too.
    path = tmp_path / "home" / USER / "node.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(SNAPSHOT))
    return path


def test_fixture_really_carries_the_secrets(snapshot_file: Path) -> None:
    """Without --redact the secrets do reach the report: the redaction test below proves something."""
    _, out, _ = run_cli("check", "--snapshot", str(snapshot_file), "--format", "json")
    assert set(_leaks(out)) >= {UUID, SERIAL, SHORT_HOST, IPV4, MAC, USER, IPV6}


@pytest.mark.parametrize("fmt", [f.value for f in OutputFormat])
def test_no_secret_survives_in_any_format(snapshot_file: Path, fmt: str) -> None:
    code, out, err = run_cli("check", "--snapshot", str(snapshot_file), "--redact", "--format", fmt)
    assert code in (0, 1, 2) and out and not err, err
    assert not _leaks(out), f"{fmt} output leaks {_leaks(out)}"


def test_redacted_snapshot_has_no_secret_and_stable_placeholders() -> None:
    out = redact_snapshot(SNAPSHOT)
    text = json.dumps(out)
    assert not _leaks(text), _leaks(text)
    assert out["redacted"] is True
    # One GPU, one placeholder: NVML, nvidia-smi, the toolkit and /proc all say GPU-UUID-1.
    assert out["nvml"]["devices"][0]["uuid"] == "GPU-UUID-1"
    assert "GPU-UUID-1" in out["commands"]["nvidia-smi"]["stdout"]
    assert "GPU-UUID-1" in out["commands"]["nvidia-container-cli-info"]["stdout"]
    assert out["env"]["NVIDIA_VISIBLE_DEVICES"] == "GPU-UUID-1"
    assert out["host"]["hostname"] == "HOST-1" and out["files"]["/etc/hostname"]["text"] == "HOST-1\n"
    assert out["nvml"]["devices"][0]["serial"] == "SERIAL-1"
    assert "SERIAL-1" in out["commands"]["nvidia-container-cli-info"]["stdout"]
    assert out["env"]["CUDA_HOME"] == "/home/USER-1/cuda"
    # Same input, same output: redaction is deterministic, and idempotent.
    assert redact_snapshot(SNAPSHOT) == out
    assert redact_snapshot(out) == {**out}
    # What the checks need is untouched.
    assert "0000:3b:00.0" in json.dumps(out) and "535.104.05" in json.dumps(out)


def test_findings_line_up_after_redaction(snapshot_file: Path) -> None:
    _, plain, _ = run_cli("check", "--snapshot", str(snapshot_file), "--format", "json")
    _, redacted, _ = run_cli("check", "--snapshot", str(snapshot_file), "--format", "json", "--redact")
    assert ([(f["check"], f["status"]) for f in json.loads(plain)["findings"]]
            == [(f["check"], f["status"]) for f in json.loads(redacted)["findings"]])


def test_collect_and_check_redact_a_host_tree(tmp_path: Path) -> None:
    root = tmp_path / "host"
    (root / "etc" / "docker").mkdir(parents=True)
    (root / "etc" / "hostname").write_text(f"{HOST}\n")
    (root / "etc" / "docker" / "daemon.json").write_text(json.dumps({"dns": [IPV4, IPV6], "x": MAC,
                                                                      "data-root": f"/home/{USER}/d"}))
    out = tmp_path / "snap.json"
    proc = run_cli_process("collect", "--root", str(root), "--redact", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert not _leaks(out.read_text()), _leaks(out.read_text())
    plain = run_cli_process("collect", "--root", str(root))
    assert _leaks(plain.stdout), "the tree's secrets were not collected at all"
    for fmt in [f.value for f in OutputFormat]:
        proc = run_cli_process("check", "--root", str(root), "--redact", "--format", fmt)
        assert proc.returncode in (0, 1, 2) and not _leaks(proc.stdout + proc.stderr), fmt


@pytest.mark.parametrize("text, expected", [
    ("inet 192.168.1.20/24 brd 192.168.1.255", "inet IP-1/24 brd IP-2"),
    ("lo 127.0.0.1 ::1 0.0.0.0", "lo 127.0.0.1 ::1 0.0.0.0"),
    ("driver 535.104.05 cuda 12.2 bus 0000:3b:00.0 at 18:35:32",
     "driver 535.104.05 cuda 12.2 bus 0000:3b:00.0 at 18:35:32"),
    ("ether 3C-EC-EF-12-34-56 and 3c:ec:ef:12:34:56", "ether MAC-1 and MAC-1"),
    ("/home/bob/.cache /home/root/x", "/home/USER-1/.cache /home/root/x"),
    ("MIG-GPU-67a571b1-79ee-1016-8ea3-c1fff3f1c1d2/1/0", "MIG-GPU-UUID-1/1/0"),
])
def test_redact_text_by_shape(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_known_names_are_replaced_only_as_words() -> None:
    redactor = Redactor(hostnames=["node1"], users=["ann"])
    assert redactor.text("node1 and node10, ann and annual") == "HOST-1 and node10, USER-1 and annual"

"""tests/tools/capture_scenario.py: a real capture becomes a scenario without anything added or rewritten."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from capture_scenario import trim
from conftest import REPO, SCENARIO_DIR

TOOL = REPO / "tests" / "tools" / "capture_scenario.py"


def test_trim_removes_only_what_it_names() -> None:
    data = {"commands": {"dmesg": {"stdout": "[1.0] usb 1-1: new device\n[2.0] NVRM: Xid (PCI:0000:01:00): 79\n"}},
            "files": {"/proc/self/mountinfo": {"text": "24 27 0:6 / /dev rw - devtmpfs devtmpfs rw\n"
                                                       "28 27 0:25 / /mnt/infra ro - tmpfs x ro\n"},
                      "/proc/cmdline": {"text": "quiet modprobe.blacklist=nouveau -- --init-flag\n"}},
            "nvml": {"bindings": {"file": "/home/me/venv/lib/pynvml.py", "module": "pynvml"}}}
    notes = trim(data, "NVRM", ["/mnt"], True)
    assert data["commands"]["dmesg"]["stdout"] == "[2.0] NVRM: Xid (PCI:0000:01:00): 79\n"
    assert data["files"]["/proc/self/mountinfo"]["text"] == "24 27 0:6 / /dev rw - devtmpfs devtmpfs rw\n"
    assert data["files"]["/proc/cmdline"]["text"] == "quiet modprobe.blacklist=nouveau\n"
    assert data["nvml"]["bindings"]["file"] == ".../pynvml.py"
    assert len(notes) == 4
    again = json.loads(json.dumps(data))
    trim(again, None, [], False)
    assert again == data  # without options only the bindings path is touched, and it is already short


def test_refuses_an_unredacted_snapshot(tmp_path: Path) -> None:
    scenario = json.loads((SCENARIO_DIR / "device-nodes" / "fixed-healthy-h100-580.json").read_text(encoding="utf-8"))
    snapshot = dict(scenario["snapshot"], redacted=False)
    src = tmp_path / "snap.json"
    src.write_text(json.dumps(snapshot), encoding="utf-8")
    out = tmp_path / "scenario.json"
    proc = subprocess.run([sys.executable, str(TOOL), str(src), str(out), "--source", "s", "--description", "d"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--redact" in proc.stderr and not out.exists()
    src.write_text(json.dumps(dict(snapshot, redacted=True)), encoding="utf-8")
    proc = subprocess.run([sys.executable, str(TOOL), str(src), str(out), "--source", "s", "--description", "d"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["expect"]["device-nodes"] == "ok" and written["snapshot"]["redacted"] is True

"""Read-only: collect never writes a host path and runs nothing outside the declared command list.

An audit hook (sys.addaudithook) in the collecting process records every open() with its mode and
flags and every process it starts; the fixture host tree is hashed before and after.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SNIPPETS
from gpu_runbook.probes import plan

AUDITED_RUN = r"""
import json, os, sys
events = []
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

def hook(event, args):
    if event == "open":
        path, mode, flags = (list(args) + [None, None])[:3]
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, str):
            return
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
                 (isinstance(flags, int) and bool(flags & WRITE_FLAGS))
        events.append({"event": "open", "path": path, "write": writes})
    elif event in ("subprocess.Popen", "os.posix_spawn", "os.system") or event.startswith("os.exec"):
        executable, argv = (list(args) + [None, None])[:2]
        events.append({"event": event, "executable": os.fsdecode(executable) if executable else None,
                       "argv": [os.fsdecode(a) if isinstance(a, bytes) else str(a) for a in (argv or [])]
                               if isinstance(argv, (list, tuple)) else str(argv)})

events_file = sys.argv[1]
sys.addaudithook(hook)
from gpu_runbook.cli import main
code = main(sys.argv[2:])
saved = list(events)
events.clear()
sys.addaudithook(lambda *a: None)
with open(events_file, "w") as f:
    json.dump({"code": code, "events": saved}, f)
"""

STAND_IN = "#!/bin/sh\necho \"stand-in $0 $*\"\n"


def _tree_digest(root: Path) -> dict[str, str]:
    digest = {}
    for path in sorted([root, *root.rglob("*")]):
        info = os.lstat(path)
        rel = str(path.relative_to(root))
        if path.is_symlink():
            digest[rel] = f"link {os.readlink(path)}"
        elif path.is_file():
            digest[rel] = f"file {info.st_mode:o} {info.st_mtime_ns} {hashlib.sha256(path.read_bytes()).hexdigest()}"
        else:
            digest[rel] = f"other {info.st_mode:o} {info.st_mtime_ns}"
    return digest


@pytest.fixture
def host_tree(tmp_path: Path) -> Path:
    root = tmp_path / "host"
    for rel, text in {
        "proc/devices": "Character devices:\n195 nvidia-frontend\n507 nvidia-uvm\n",
        "proc/modules": "nvidia 104071168 20 nvidia_uvm, Live 0x0 (POE)\n",
        "proc/driver/nvidia/version": "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  x\n",
        "proc/driver/nvidia/params": "DeviceFileMode: 438\n",
        "proc/driver/nvidia/gpus/0000:3b:00.0/information": "Model: NVIDIA A100\n",
        "etc/nvidia-container-runtime/config.toml": "[nvidia-container-cli]\nldconfig = \"@/sbin/ldconfig\"\n",
        "etc/docker/daemon.json": "{\"runtimes\": {\"nvidia\": {\"path\": \"nvidia-container-runtime\"}}}\n",
        "etc/cdi/nvidia.yaml": "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n",
        "etc/modprobe.d/blacklist-nouveau.conf": "blacklist nouveau\n",
        "usr/bin/nvidia-smi": "#!/bin/sh\n",
        "dev/nvidiactl": "",
        "dev/nvidia0": "",
    }.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "dev" / "char").mkdir()
    (root / "dev" / "char" / "195:0").symlink_to("../nvidia0")
    (root / "usr" / "lib" / "x86_64-linux-gnu").mkdir(parents=True)
    (root / "usr" / "lib" / "x86_64-linux-gnu" / "libnvidia-ml.so.1").symlink_to("libnvidia-ml.so.535.104.05")
    os.mkfifo(root / "proc" / "self-status-fifo")
    (root / "etc" / "os-release").symlink_to("/etc/hostname")  # absolute: resolved inside the root
    return root


def _audited_collect(tmp_path: Path, root: Path, *extra: str, path_dirs: str = "") -> dict:
    events = tmp_path / "events.json"
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    script = tmp_path / "audited.py"
    script.write_text(AUDITED_RUN)
    env = dict(os.environ, PYTHONPATH=str(SNIPPETS), PYTHONDONTWRITEBYTECODE="1")
    if path_dirs:
        env["PATH"] = path_dirs
    proc = subprocess.run([sys.executable, str(script), str(events), "collect", "--root", str(root),
                           "-o", str(out_dir / "snap.json"), "--deadline", "10", *extra],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(events.read_text())
    assert result["code"] == 0
    result["out_dir"] = str(out_dir)
    return result


def _assert_read_only(result: dict, root: Path) -> None:
    out_dir = result["out_dir"]
    writes = [e["path"] for e in result["events"] if e["event"] == "open" and e["write"]
              and not os.path.abspath(e["path"]).startswith(out_dir + os.sep)
              and e["path"] != os.devnull]  # subprocess's stdin=DEVNULL opens /dev/null O_RDWR
    assert not writes, f"opened for writing outside the --output directory: {writes}"
    host_opens = [e for e in result["events"] if e["event"] == "open" and e["path"].startswith(str(root))]
    assert host_opens, "the audit saw no read of the host tree: the test would prove nothing"


def test_collect_under_root_is_read_only_and_runs_nothing(tmp_path: Path, host_tree: Path) -> None:
    before = _tree_digest(host_tree)
    result = _audited_collect(tmp_path, host_tree)
    _assert_read_only(result, host_tree)
    started = [e for e in result["events"] if e["event"] != "open"]
    assert not started, f"--root without --live must run no command: {started}"
    assert _tree_digest(host_tree) == before, "the host tree changed"


def test_live_collect_runs_only_declared_commands(tmp_path: Path, host_tree: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    declared = {c.argv[0] for c in plan.COMMANDS.values()}
    for program in declared:
        (bin_dir / program).write_text(STAND_IN)
        (bin_dir / program).chmod(0o755)
    before = _tree_digest(host_tree)
    result = _audited_collect(tmp_path, host_tree, "--live", path_dirs=f"{bin_dir}:/usr/bin:/bin")
    _assert_read_only(result, host_tree)
    started = [e for e in result["events"] if e["event"] != "open"]
    assert started, "no command ran under --live: the test would prove nothing"
    declared_argv = {tuple(c.argv[1:]) for c in plan.COMMANDS.values()}
    for event in started:
        assert event["event"] == "subprocess.Popen", event  # never a shell, exec or spawn
        program = os.path.basename(event["argv"][0])
        if event["executable"] == sys.executable or program.startswith("python"):
            assert event["argv"][1:3] == ["-m", event["argv"][2]] and event["argv"][2].startswith(
                "gpu_runbook.probes."), event  # the NVML / open-test children: our own modules
            continue
        assert program in declared and tuple(event["argv"][1:]) in declared_argv, f"undeclared command: {event}"
    ran = {os.path.basename(e["argv"][0]) for e in started}
    # Commands with a host condition (Fabric Manager's, only where NVSwitches or Fabric Manager are) run only
    # where it holds; on this machine it does not, and the snapshot must say so instead of leaving a gap.
    unconditional = {c.argv[0] for c in plan.COMMANDS.values() if not c.only_where}
    assert unconditional <= ran, f"declared commands that did not run: {unconditional - ran}"
    for name, command in plan.COMMANDS.items():
        if command.only_where and command.argv[0] not in ran:
            snapshot = json.loads((Path(result["out_dir"]) / "snap.json").read_text())
            assert snapshot["commands"][name]["error"] == "not-applicable", name
    assert _tree_digest(host_tree) == before, "the host tree changed"


def test_every_declared_command_is_shown_in_the_docs(built_site: Path) -> None:
    page = (built_site / "reference" / "collection-plan.html").read_text(encoding="utf-8")
    for name, command in plan.COMMANDS.items():
        assert name in page and command.argv[0] in page, f"{name} is not on the collection-plan page"

"""Engine discovery and per-user judgement: the engine scenarios pass through `check --root <tree>` too.

Each engine scenario's snapshot is laid out as a host tree (files with their text, modes and owners,
directories, sockets, /etc/passwd and /etc/group from its users section); collecting from that tree must
give the verdicts the scenario expects, with the engine's user in the evidence.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from conftest import SCENARIO_DIR, limit_s, load_scenario, run_cli
from gpu_runbook.engines import discover, engine_line, strip_template
from gpu_runbook.probes import plan
from gpu_runbook.probes.engines import select_users
from gpu_runbook.redact import redact_snapshot
from gpu_runbook.snapshot import Snapshot

ENGINE_SCENARIOS = sorted(
    p for p in SCENARIO_DIR.rglob("*.json")
    if any(word in p.stem for word in ("rootless-docker-spec", "mixed-host", "rootless-no-cgroups", "podman-rhel",
                                       "rke2-", "rootless-podman-")))
ROOT = os.geteuid() == 0


def _place(root: Path, path: str) -> Path:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def build_tree(root: Path, snapshot: dict[str, Any]) -> None:
    """Lay a scenario snapshot out as a host tree under root (owners only when running as root)."""
    users = snapshot.get("users") or {}
    passwd = ["root:x:0:0:root:/root:/bin/bash"] + [
        f"{n}:x:{u['uid']}:{u['gid']}::{u['home']}:/bin/bash" for n, u in users.items()]
    groups: dict[int, list[str]] = {}
    for name, user in users.items():
        for gid in user.get("groups") or []:
            groups.setdefault(gid, []).append(name)
    _place(root, "/etc/passwd").write_text("\n".join(passwd) + "\n")
    _place(root, "/etc/group").write_text("".join(f"g{g}:x:{g}:{','.join(m)}\n" for g, m in groups.items()))
    linger = root / "var/lib/systemd/linger"
    linger.mkdir(parents=True, exist_ok=True)
    for name, user in users.items():
        if user.get("linger"):
            (linger / name).write_text("")
    stats = snapshot.get("paths") or {}
    for path, fact in (snapshot.get("files") or {}).items():
        if "text" in fact:
            _place(root, path).write_text(fact["text"])
    for path, fact in sorted(stats.items()):
        kind = fact.get("kind")
        target = _place(root, path)
        if kind == "dir":
            target.mkdir(exist_ok=True)
        elif kind == "file" and not target.exists():
            target.write_text("")
        elif kind == "socket":
            sock = socket.socket(socket.AF_UNIX)
            sock.bind(str(target))
            sock.close()
        elif kind == "char" and ROOT:
            os.mknod(target, 0o600 | 0o020000, os.makedev(fact.get("major", 195), fact.get("minor", 0)))
    for path, fact in sorted(stats.items(), key=lambda item: -len(item[0])):  # children before parents
        target = root / path.lstrip("/")
        if fact.get("kind") and os.path.lexists(target):
            if ROOT:
                os.chown(target, fact.get("uid", 0), fact.get("gid", 0), follow_symlinks=False)
            os.chmod(target, int(fact.get("mode", "0644"), 8))


@pytest.mark.parametrize("path", ENGINE_SCENARIOS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_engine_scenario_through_check_root(path: Path, tmp_path: Path) -> None:
    scenario = load_scenario(path)
    root = tmp_path / "h"
    build_tree(root, scenario["snapshot"])
    _, out, err = run_cli("check", "--root", str(root), "--format", "json", "--deadline", "10")
    assert err == "", err
    findings = {f["check"]: f for f in json.loads(out)["findings"]}
    for check_id, expected in scenario["expect"].items():
        if check_id == "toolkit-config" and not ROOT:
            continue  # needs owners set in the tree
        assert findings[check_id]["status"] == expected, (check_id, findings[check_id]["summary"])
    if scenario["expect"].get("engine-user-access") in ("fail", "warn"):
        names = set(scenario["snapshot"]["users"])
        assert any(n in findings["engine-user-access"]["summary"] for n in names), "the engine's user is named"


def test_engine_scenarios_found() -> None:
    assert len(ENGINE_SCENARIOS) == 12, [p.name for p in ENGINE_SCENARIOS]


def test_collect_records_users_and_engines(tmp_path: Path) -> None:
    scenario = load_scenario(SCENARIO_DIR / "cdi" / "broken-rootless-docker-spec-unreadable.json")
    root = tmp_path / "h"
    build_tree(root, scenario["snapshot"])
    out = tmp_path / "snap.json"
    code, _, err = run_cli("collect", "--root", str(root), "-o", str(out))
    assert code == 0, err
    data = json.loads(out.read_text())
    assert data["users"]["alice"]["uid"] == 1000
    assert data["engines"]["docker@alice"]["rootless"] is True
    assert "/home/alice/.config/docker/daemon.json" in data["engines"]["docker@alice"]["configs"]
    assert "/home/alice/.config/docker/daemon.json" in data["files"]
    redacted = json.dumps(redact_snapshot(data))
    assert "alice" not in redacted


def test_users_are_bounded_and_listed_in_the_plan() -> None:
    accounts = [{"name": f"u{i}", "uid": 1000 + i, "gid": 1000 + i, "home": f"/home/u{i}"} for i in range(40)]
    assert len(select_users(accounts, [])) == plan.MAX_USERS
    assert all("{home}" in p or "{uid}" in p for p in plan.USER_FILES + plan.USER_PATHS)


def test_rke2_template_and_engine_line() -> None:
    assert "{{" not in strip_template('{{ template "base" . }}\nversion = 2\n')
    snap = Snapshot({"schema_version": 1, "files": {
        "/var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.tmpl": {"text": '{{ template "base" . }}\n'}}})
    engines = discover(snap)
    assert engines["containerd@k3s"]["template"]
    line = engine_line("containerd@k3s", dict(engines["containerd@k3s"], runtimes=[]))
    assert line.startswith("containerd@k3s  rootful")


def test_only_rootless_engine_no_rootful_assumption() -> None:
    """A host with only a rootless engine and no-cgroups = true: nothing assumes a rootful engine."""
    _, out, _ = run_cli("check", "--snapshot", str(SCENARIO_DIR / "cdi" / "fixed-rootless-docker-spec-readable.json"),
                        "--format", "json")
    for finding in json.loads(out)["findings"]:
        assert "rootful engine assumed" not in finding["summary"], finding


def test_stuck_read_of_a_user_file_is_abandoned_and_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A per-user read that never returns (a home on a hung network mount) cannot stall the doctor."""
    import threading
    import time

    from gpu_runbook.probes import collect as collect_module
    from gpu_runbook.probes import engines as engines_probe

    stuck = "/home/alice/.config/docker/daemon.json"
    release = threading.Event()
    real = engines_probe.read_file

    def read_file(root: str, path: str, max_bytes: int) -> dict[str, Any]:
        if path == stuck:
            release.wait()
        return real(root, path, max_bytes)

    monkeypatch.setattr(engines_probe, "read_file", read_file)
    root = tmp_path / "h"
    scenario = load_scenario(SCENARIO_DIR / "cdi" / "broken-rootless-docker-spec-unreadable.json")
    build_tree(root, scenario["snapshot"])
    try:
        started = time.monotonic()
        data = collect_module.collect(root=str(root), deadline=3.0, live=False)
        assert time.monotonic() - started < limit_s(3.0, 1.0)
        assert data["probe"]["blocked_on"] == stuck
        assert data["paths"][stuck]["error"] == "timeout"
        assert "alice" in data["users"]
    finally:
        release.set()


def test_nonroot_collect_of_user_homes(tmp_path: Path) -> None:
    """As nobody, homes it may not enter are recorded as EACCES, and the engines are still listed."""
    from test_nonroot import require_unprivileged, run_as_nobody

    require_unprivileged()
    import shutil
    import tempfile

    from conftest import SNIPPETS

    public = Path(tempfile.mkdtemp(prefix="gpu-runbook-engines-", dir="/tmp"))
    try:
        public.chmod(0o755)
        shutil.copytree(SNIPPETS / "gpu_runbook", public / "pkg" / "gpu_runbook",
                        ignore=shutil.ignore_patterns("__pycache__"))
        for sub in (public / "pkg").rglob("*"):
            sub.chmod(0o755 if sub.is_dir() else 0o644)
        (public / "pkg").chmod(0o755)
        root = public / "h"
        scenario = load_scenario(SCENARIO_DIR / "cdi" / "broken-rootless-docker-spec-unreadable.json")
        build_tree(root, scenario["snapshot"])
        proc = run_as_nobody(public, "collect", "--root", str(root))
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        data = json.loads(proc.stdout)
        assert data["files"]["/home/alice/.config/docker/daemon.json"]["error"] == "EACCES"
        assert "docker@alice" in data["engines"]  # the user unit's socket still shows it
    finally:
        shutil.rmtree(public, ignore_errors=True)


def test_collect_of_user_homes_is_read_only(tmp_path: Path) -> None:
    """The audit of test_readonly over a tree with users and their engines: nothing written, nothing run."""
    from test_readonly import _assert_read_only, _audited_collect, _tree_digest

    root = tmp_path / "h"
    scenario = load_scenario(SCENARIO_DIR / "runtime-debug-logging"
                             / "broken-podman-rhel-user-config-unread-by-hook.json")
    build_tree(root, scenario["snapshot"])
    before = _tree_digest(root)
    result = _audited_collect(tmp_path, root)
    _assert_read_only(result, root)
    opened = {e["path"] for e in result["events"] if e["event"] == "open"}
    assert str(root / "home/carol/.config/nvidia-container-runtime/config.toml") in opened
    assert not [e for e in result["events"] if e["event"] != "open"], "--root runs no command"
    assert _tree_digest(root) == before


def _rootless_snapshot(config: str, **extra: Any) -> Snapshot:
    scenario = load_scenario(SCENARIO_DIR / "cdi" / "fixed-rootless-docker-spec-readable.json")["snapshot"]
    data = json.loads(json.dumps(scenario))
    data["files"]["/etc/nvidia-container-runtime/config.toml"] = {"text": config}
    for section, values in extra.items():
        data.setdefault(section, {}).update(values)
    return Snapshot(data)


def test_debug_log_the_rootless_user_cannot_create_is_a_warning() -> None:
    from gpu_runbook.registry import run_checks

    config = ('[nvidia-container-cli]\nno-cgroups = true\n[nvidia-container-runtime]\n'
              'debug = "/var/log/nvidia-container-runtime.log"\n')
    log_dir = {"kind": "dir", "mode": "0755", "uid": 0, "gid": 0}
    snap = _rootless_snapshot(config, paths={"/var/log": log_dir,
                                             "/var/log/nvidia-container-runtime.log": {"error": "ENOENT"}})
    finding = run_checks(snap, only=["engine-user-access"])[0]
    assert finding.status.value == "warn" and "docker@alice" in finding.summary and "Failed to open log file" in \
        finding.summary, finding.summary


def test_tegra_without_nvml_resolves_auto_to_csv() -> None:
    from gpu_runbook.checks.engines import engines_fact

    snap = _rootless_snapshot('[nvidia-container-cli]\nno-cgroups = true\n',
                              files={"/etc/nv_tegra_release": {"text": "# R36 (release), REVISION: 4.0\n"}})
    assert engines_fact(snap)["docker@alice"]["mode"] == "csv"


def _ctk(version: str) -> dict[str, Any]:
    return {"nvidia-ctk-version": {"argv": ["nvidia-ctk", "--version"], "exit": 0, "stderr": "", "seconds": 0.05,
                                   "stdout": f"NVIDIA Container Toolkit CLI version {version}\ncommit: 0\n"}}


def test_unreadable_winning_spec_falls_back_to_a_readable_one() -> None:
    """The CDI cache skips a spec its user cannot read: /etc/cdi then answers, not `unresolvable`."""
    from gpu_runbook.registry import run_checks

    base = load_scenario(SCENARIO_DIR / "cdi" / "fixed-rootless-docker-spec-readable.json")["snapshot"]
    spec = base["files"]["/etc/cdi/nvidia.yaml"]
    root_only = {"kind": "file", "mode": "0600", "uid": 0, "gid": 0}
    snap = _rootless_snapshot('[nvidia-container-cli]\nno-cgroups = true\n',
                              files={"/var/run/cdi/nvidia.yaml": spec},
                              paths={"/var/run/cdi": {"kind": "dir", "mode": "0755", "uid": 0, "gid": 0},
                                     "/var/run/cdi/nvidia.yaml": root_only})
    finding = run_checks(snap, only=["engine-user-access"])[0]
    assert finding.status.value == "warn" and "resolves from /etc/cdi/nvidia.yaml" in finding.summary, \
        finding.summary


@pytest.mark.parametrize(("version", "status"), [("1.17.8", "fail"), ("1.18.0", "ok")])
def test_hook_reads_the_per_user_config_since_1_18(version: str, status: str) -> None:
    """XDG_CONFIG_HOME in the engine's unit reaches the runtime always, the hook only since toolkit 1.18.0."""
    from gpu_runbook.registry import run_checks

    unit = ("[Service]\nEnvironment=XDG_CONFIG_HOME=/home/alice/.config\n"
            "ExecStart=/usr/bin/dockerd-rootless.sh\n")
    legacy = '[nvidia-container-cli]\nno-cgroups = {}\n[nvidia-container-runtime]\nmode = "legacy"\n'
    snap = _rootless_snapshot(legacy.format("false"), commands=_ctk(version), files={
        "/home/alice/.config/systemd/user/docker.service": {"text": unit},
        "/home/alice/.config/nvidia-container-runtime/config.toml": {"text": legacy.format("true")}})
    finding = run_checks(snap, only=["engine-user-access"])[0]
    assert finding.status.value == status, finding.summary
    if status == "fail":
        assert "legacy hook of toolkit releases before 1.18.0" in finding.summary, finding.summary


def test_bpf_jit_harden_does_not_apply_with_no_cgroups() -> None:
    """A rootless setup (no-cgroups = true) never asks nvidia-container-cli to extend runc's device filter."""
    from gpu_runbook.registry import run_checks

    data = json.loads(json.dumps(load_scenario(SCENARIO_DIR / "cgroup-device-access" / "broken-bpf-jit-harden-2.json")
                                 ["snapshot"]))
    data.setdefault("files", {})["/etc/nvidia-container-runtime/config.toml"] = {
        "text": "[nvidia-container-cli]\nno-cgroups = true\n"}
    finding = run_checks(Snapshot(data), only=["bpf-jit-harden"])[0]
    assert finding.status.value == "ok" and "no-cgroups = true" in finding.summary, finding.summary


@pytest.mark.parametrize("extra, status", [
    ({}, "ok"),
    ({"/usr/lib/systemd/system/docker.service": "[Service]\nExecStart=/usr/bin/dockerd\n"}, "fail"),
    ({"/etc/crio/crio.conf": "[crio.runtime]\n"}, "fail"),
    ({"/etc/nvidia-container-runtime/config.toml": "[nvidia-container-runtime]\nmode = \"legacy\"\n"}, "fail"),
])
def test_bpf_jit_harden_passes_only_where_nothing_runs_the_legacy_hook(extra: dict[str, str], status: str) -> None:
    """containerd alone with `auto` resolving to jit-cdi passes; Docker (--gpus), CRI-O (OCI hook file) or a
    legacy mode bring nvidia-container-cli back, and the hardened sysctl fails again."""
    from gpu_runbook.registry import run_checks

    data = json.loads(json.dumps(load_scenario(
        SCENARIO_DIR / "cgroup-device-access" / "fixed-bpf-jit-harden-containerd-jit-cdi.json")["snapshot"]))
    for path, text in extra.items():
        data["files"][path] = {"text": text}
    finding = run_checks(Snapshot(data), only=["bpf-jit-harden"])[0]
    assert finding.status.value == status, finding.summary


def test_engine_environment_follows_systemd_precedence() -> None:
    """The runtime's config path comes from the unit systemd runs: an /etc copy replaces the package's unit
    (its Environment= too), and a drop-in applies over either, whichever directory holds it."""
    from gpu_runbook.engines import runtime_config_path

    def env(files: dict[str, str]) -> dict[str, str]:
        snap = Snapshot({"files": {path: {"text": text} for path, text in files.items()}})
        return discover(snap)["docker"]["environment"]

    package = "[Service]\nEnvironment=NVIDIA_CTK_CONFIG_FILE_PATH=/usr/share/nvidia/config.toml\n"
    admin = "[Service]\nEnvironment=NVIDIA_CTK_CONFIG_FILE_PATH=/etc/site/config.toml\n"
    both = {"/etc/systemd/system/docker.service": admin, "/usr/lib/systemd/system/docker.service": package}
    assert runtime_config_path(env(both))[0] == "/etc/site/config.toml"
    drop_in = "[Service]\nEnvironment=NVIDIA_CTK_CONFIG_FILE_PATH=/opt/gpu/config.toml\n"
    with_drop_in = dict(both, **{"/usr/lib/systemd/system/docker.service.d/10-gpu.conf": drop_in})
    assert runtime_config_path(env(with_drop_in))[0] == "/opt/gpu/config.toml"
    only_package = {"/lib/systemd/system/docker.service": package}
    assert runtime_config_path(env(only_package))[0] == "/usr/share/nvidia/config.toml"

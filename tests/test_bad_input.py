"""Bad input never crashes the doctor: fuzzed facts through every check and parser, and named bad cases.

Outcome every time: a finding, or one clear error line, exit 0/1/2, no traceback. The number of bad
inputs tried is printed at the end of this module ("bad inputs tried: N").
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pkgutil
import shutil
import string
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import gpu_runbook.parsers
import pytest
from conftest import SNIPPETS, run_cli_process
from gpu_runbook.probes import plan
from gpu_runbook.probes.nvml import collect_nvml, probe_nvml_finish, probe_nvml_start
from gpu_runbook.registry import load_checks, run_checks
from gpu_runbook.snapshot import Snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TRIED = {"count": 0}
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture(scope="module", autouse=True)
def _report_count(request: pytest.FixtureRequest):
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    line = f"bad inputs tried: {TRIED['count']}"
    if reporter is None:  # pragma: no cover - terminal reporting disabled
        sys.__stdout__.write(line + "\n")
        return
    if capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\n{line}")
    else:  # pragma: no cover
        reporter.write_line(f"\n{line}")


def tried(n: int = 1) -> None:
    TRIED["count"] += n


# -- strategies ------------------------------------------------------------------------------
def _literal(pattern: str) -> str:
    """A concrete path for a plan glob (/dev/nvidia[0-9]* -> /dev/nvidia0)."""
    return pattern.replace("[0-9]*", "0").replace("*", "x")


FILE_PATHS = sorted({_literal(p) for p in plan.FILES})
STAT_PATHS = sorted({_literal(p) for p in plan.PATHS} | {"/dev/nvidia1", "/dev/nvidia-caps/nvidia-cap1"})
JSON_SCALARS = (st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False)
                | st.text(max_size=40))
JSON = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)
TEXT = st.text(max_size=400) | st.text(alphabet=string.printable, max_size=400) | st.sampled_from([
    "", "\x00\x00", "Character devices:\n195 nvidia-frontend\n\u00b2\u00b2 nvidia-uvm\n",
    "nvidia 1 2 - Live 0x0 (POE)\n", "[plugins\n", "{\"runtimes\": [1, 2]}", "\ufffd" * 10])

file_fact = st.one_of(st.builds(lambda t, tr: {"text": t, "truncated": tr}, TEXT, st.booleans()),
                      st.sampled_from([{"error": "EACCES", "detail": "Permission denied"},
                                       {"error": "ENOENT", "detail": "No such file or directory"},
                                       {"error": "ENOTREG"}, {"error": None}, {}]),
                      JSON)
stat_fact = st.one_of(
    st.fixed_dictionaries({}, optional={
        "kind": st.sampled_from(["char", "file", "dir", "symlink", "block", "fifo", "other"]) | JSON,
        "mode": st.sampled_from(["0666", "0600", "0000", "9999", "rw", ""]) | JSON,
        "major": st.integers(-1, 600) | JSON, "minor": st.integers(-1, 300) | JSON,
        "uid": st.integers(-1, 70000) | JSON, "gid": st.integers(-1, 70000) | JSON,
        "target": TEXT | JSON, "selinux": TEXT, "size": JSON, "error": st.sampled_from(["ENOENT", "EACCES"]) | JSON}),
    JSON)
command_fact = st.one_of(
    st.fixed_dictionaries({}, optional={
        "argv": st.lists(st.text(max_size=10), max_size=3) | JSON, "exit": st.integers(-9, 256) | JSON,
        "stdout": TEXT | JSON, "stderr": TEXT | JSON, "seconds": st.floats(allow_nan=False) | JSON,
        "error": st.sampled_from(["timeout", "deadline", "skipped", "not-found", "EACCES"]) | JSON,
        "detail": TEXT | JSON}),
    JSON)
nvml_error = st.fixed_dictionaries({"name": st.sampled_from(["NVMLError_Unknown", "NVMLError_GpuIsLost",
                                                              "NVMLError_ResetRequired", "timeout", "crashed"]) | JSON,
                                    "message": TEXT | JSON, "code": JSON})
nvml_device = st.fixed_dictionaries({}, optional={
    "index": JSON, "name": TEXT | JSON, "uuid": TEXT | JSON, "minor_number": st.integers(-1, 64) | JSON,
    "error": nvml_error | JSON, "mig_mode": JSON,
    "persistence_mode": st.just({"error": {"name": "NVMLError_ResetRequired"}}) | JSON,
    "cuda_compute_capability": JSON, "memory_total_bytes": JSON, "pci_bus_id": JSON})
nvml_section = st.one_of(
    st.fixed_dictionaries({}, optional={
        "init": st.just({"ok": True}) | st.builds(lambda e: {"error": e}, nvml_error) | JSON,
        "error": nvml_error | JSON, "skipped": TEXT | JSON, "driver_version": TEXT | JSON,
        "cuda_driver_version": st.integers(-1, 20000) | JSON, "device_count": st.integers(-2, 70) | JSON,
        "devices": st.lists(nvml_device | JSON, max_size=3) | JSON}),
    JSON)
snapshot_data = st.fixed_dictionaries({"schema_version": st.just(1)}, optional={
    "host": st.fixed_dictionaries({}, optional={"euid": st.integers(-1, 70000) | JSON, "groups": JSON,
                                                "hostname": TEXT, "in_container": JSON, "root": TEXT | JSON})
    | JSON,
    "files": st.dictionaries(st.sampled_from(FILE_PATHS) | st.text(max_size=20), file_fact, max_size=12) | JSON,
    "paths": st.dictionaries(st.sampled_from(STAT_PATHS) | st.text(max_size=20), stat_fact, max_size=12) | JSON,
    "dirs": st.dictionaries(st.sampled_from(list(plan.DIRS)), st.one_of(
        st.builds(lambda e: {"entries": e}, st.dictionaries(st.text(max_size=12), st.none() | TEXT | JSON,
                                                            max_size=6)), JSON), max_size=2) | JSON,
    "commands": st.dictionaries(st.sampled_from(sorted(plan.COMMANDS)) | st.text(max_size=12), command_fact,
                                max_size=8) | JSON,
    "nvml": nvml_section,
    "env": st.dictionaries(st.sampled_from(["NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES",
                                            "NVIDIA_REQUIRE_CUDA", "CUDA_VERSION", "LD_LIBRARY_PATH",
                                            "container"]) | st.text(max_size=10), TEXT | JSON, max_size=6) | JSON,
    "opens": JSON, "probe": JSON,
})


# -- every check, arbitrary facts ---------------------------------------------------------------
@FUZZ
@given(snapshot_data)
def test_every_check_survives_arbitrary_facts(data: dict[str, Any]) -> None:
    tried()
    findings = run_checks(Snapshot(data), strict=True)  # strict: a check exception fails this test
    assert {f.check for f in findings} == set(load_checks())


@FUZZ
@given(st.dictionaries(st.sampled_from(["host", "files", "paths", "dirs", "commands", "nvml", "env", "probe",
                                        "opens"]), JSON, max_size=8))
def test_every_check_survives_arbitrary_sections(sections: dict[str, Any]) -> None:
    tried()
    run_checks(Snapshot({"schema_version": 1, **sections}), strict=True)


# -- every parser, arbitrary text ---------------------------------------------------------------
def _text_functions() -> list[tuple[str, Callable[[str], Any]]]:
    """Every public parse_* function, and every public one taking a single str, in gpu_runbook.parsers."""
    found = []
    for info in pkgutil.iter_modules(gpu_runbook.parsers.__path__):
        module = importlib.import_module(f"gpu_runbook.parsers.{info.name}")
        for name, func in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("_") or func.__module__ != module.__name__:
                continue
            required = [p for p in inspect.signature(func).parameters.values()
                        if p.default is inspect.Parameter.empty and p.kind is not p.VAR_KEYWORD]
            if name.startswith("parse_") or (len(required) == 1 and required[0].annotation in ("str", str)):
                found.append((f"{info.name}.{name}", func))
    return found


PARSERS = _text_functions()


def test_parsers_are_found() -> None:
    assert len(PARSERS) >= 5 and any(n == "proc.parse_proc_devices" for n, _ in PARSERS), PARSERS


@pytest.mark.parametrize("name, parser", PARSERS, ids=[n for n, _ in PARSERS])
def test_parser_survives_arbitrary_text(name: str, parser: Callable[[str], Any]) -> None:
    @settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(TEXT)
    def run(text: str) -> None:
        tried()
        parser(text)

    run()


# -- every NVMLError class, at init and later -----------------------------------------------------
def _nvml_error_classes() -> list[type]:
    import pynvml

    return sorted((c for c in vars(pynvml).values() if isinstance(c, type) and issubclass(c, pynvml.NVMLError)),
                  key=lambda c: c.__name__)


NVML_ERRORS = _nvml_error_classes()


class FakeNVML:
    """A stand-in pynvml module: raises `error` from the named calls, answers the others."""

    __name__ = "fake_pynvml"

    def __init__(self, error: type, failing: set[str]) -> None:
        self.error, self.failing = error, failing

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("nvml"):
            raise AttributeError(name)

        def call(*args: Any) -> Any:
            if name in self.failing or (name == "nvmlDeviceGetHandleByIndex" and args and args[0] == 1
                                        and "handle1" in self.failing):
                raise self.error(getattr(self.error, "value", 999)) if self.error.__name__ == "NVMLError" \
                    else self.error()
            return {"nvmlDeviceGetCount": 2, "nvmlSystemGetDriverVersion": "535.104.05",
                    "nvmlDeviceGetMinorNumber": 0, "nvmlSystemGetCudaDriverVersion": 12020}.get(name, "x")

        return call


def test_every_nvml_error_class_is_covered() -> None:
    assert len(NVML_ERRORS) >= 30  # nvidia-ml-py 12.x defines one class per nvmlReturn_t


@pytest.mark.parametrize("error", NVML_ERRORS, ids=lambda c: c.__name__)
def test_every_nvml_error_at_init_gives_a_finding(error: type) -> None:
    tried()
    nvml = collect_nvml(FakeNVML(error, {"nvmlInit"}))
    # The base class with no code is NVML_ERROR_UNKNOWN (999), which pynvml maps to its subclass.
    assert nvml["init"]["error"]["name"] in (error.__name__, "NVMLError_Unknown")
    json.dumps(nvml)
    by_id = {f.check: f for f in run_checks(Snapshot({"schema_version": 1, "nvml": nvml}), strict=True)}
    assert by_id["nvml-init"].status.value in ("fail", "unknown"), by_id["nvml-init"]
    assert error.__name__ in by_id["nvml-init"].summary or by_id["nvml-init"].evidence


@pytest.mark.parametrize("error", NVML_ERRORS, ids=lambda c: c.__name__)
def test_every_nvml_error_on_later_calls_gives_findings(error: type) -> None:
    tried(2)
    getters = {"nvmlDeviceGetUUID", "nvmlDeviceGetSerial", "nvmlDeviceGetMinorNumber", "nvmlDeviceGetPciInfo",
               "nvmlDeviceGetMigMode", "nvmlDeviceGetMemoryInfo", "nvmlSystemGetCudaDriverVersion", "handle1"}
    for failing in (getters, {"nvmlDeviceGetCount", "nvmlShutdown"}):
        nvml = collect_nvml(FakeNVML(error, failing))
        assert nvml["init"] == {"ok": True}
        json.dumps(nvml)
        findings = run_checks(Snapshot({"schema_version": 1, "nvml": nvml}), strict=True)
        assert not [f for f in findings if f.evidence.get("internal_error")]


def test_nvml_bindings_missing_functions_are_recorded() -> None:
    tried()
    empty = type("EmptyBindings", (), {})()
    nvml = collect_nvml(empty)
    assert nvml["init"]["error"]["name"] == "AttributeError"


def test_no_libnvidia_ml_at_all() -> None:
    """The real child and the real pynvml on a host without the library (this CI machine)."""
    tried()
    if any(Path(d, "libnvidia-ml.so.1").exists() for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib")):
        pytest.skip("libnvidia-ml.so.1 is installed here: the case needs a host without it")
    result = probe_nvml_finish(probe_nvml_start(), 20)
    assert result["init"]["error"]["name"] == "NVMLError_LibraryNotFound", result
    finding = {f.check: f for f in run_checks(Snapshot({"schema_version": 1, "nvml": result}))}["nvml-init"]
    assert finding.status.value == "fail" and "container-cli-init-error" in finding.url


def test_unimportable_pynvml(tmp_path: Path) -> None:
    tried()
    (tmp_path / "pynvml.py").write_text("raise ImportError('libnvidia-ml bindings are broken')\n")
    result = probe_nvml_finish(probe_nvml_start(dict(os.environ, PYTHONPATH=str(tmp_path))), 20)
    assert result["init"]["error"]["name"] == "ImportError", result
    finding = {f.check: f for f in run_checks(Snapshot({"schema_version": 1, "nvml": result}))}["nvml-init"]
    assert finding.status.value == "unknown"


# -- named bad snapshot files, through the real CLI -----------------------------------------------
def _sparse(path: Path, size: int) -> None:
    with open(path, "wb") as handle:
        handle.truncate(size)


def _write(content: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(content)


NAMED_SNAPSHOTS: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing-file": (lambda path: None, "no such file"),
    "empty-file": (_write(b""), "not valid JSON"),
    "nul-bytes": (_write(b"\x00" * 64), "not valid JSON"),
    "non-utf8": (_write(b'{"schema_version": 1, "x": "\xff\xfe"}'), "not UTF-8"),
    "100-mb-file": (lambda path: _sparse(path, 100 * 1024 * 1024), "too large"),
    "truncated-json": (_write(b'{"schema_version": 1, "files": {"/proc/devices": {"te'), "not valid JSON"),
    "not-json": (_write(b"NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05\n"), "not valid JSON"),
    "json-array": (_write(b"[1, 2, 3]"), "a snapshot is a JSON object"),
    "unknown-schema-version": (_write(b'{"schema_version": 999}'), "not supported"),
    "schema-version-string": (_write(b'{"schema_version": "1"}'), "not supported"),
    "deeply-nested-json": (_write(b'{"schema_version": 1, "nvml": ' + b"[" * 200000 + b"]" * 200000 + b"}"),
                           "nested too deeply"),
    "section-not-object": (_write(b'{"schema_version": 1, "files": [1]}'), "must be an object"),
    "directory": (lambda path: path.mkdir(), "is a directory"),
}


@pytest.mark.parametrize("case", sorted(NAMED_SNAPSHOTS))
def test_named_bad_snapshot_is_one_clear_line(tmp_path: Path, case: str) -> None:
    tried()
    make, needle = NAMED_SNAPSHOTS[case]
    path = tmp_path / "snapshot.json"
    make(path)
    proc = run_cli_process("check", "--snapshot", str(path), timeout=60)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu-runbook: error:") and needle in lines[0], proc.stderr


def test_unreadable_snapshot_eacces(tmp_path: Path) -> None:
    tried()
    path = tmp_path / "snapshot.json"
    path.write_text('{"schema_version": 1}')
    path.chmod(0)
    if os.geteuid() == 0:  # root reads anything: ask as nobody, from a directory nobody can enter
        from test_nonroot import require_unprivileged, run_as_nobody

        require_unprivileged()
        public = Path(tempfile.mkdtemp(prefix="gpu-runbook-eacces-", dir="/tmp"))
        try:
            public.chmod(0o755)
            shutil.copytree(SNIPPETS / "gpu_runbook", public / "pkg" / "gpu_runbook",
                            ignore=shutil.ignore_patterns("__pycache__"))
            for sub in [public / "pkg", *(public / "pkg").rglob("*")]:
                sub.chmod(0o755 if sub.is_dir() else 0o644)
            secret = public / "snapshot.json"
            shutil.copy(path, secret)
            secret.chmod(0o600)
            proc = run_as_nobody(public, "check", "--snapshot", str(secret))
        finally:
            shutil.rmtree(public, ignore_errors=True)
    else:
        proc = run_cli_process("check", "--snapshot", str(path), cwd="/")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "permission denied" in proc.stderr, proc.stderr


def test_odd_but_valid_snapshot_gives_findings(tmp_path: Path) -> None:
    """NUL bytes and lone surrogates inside JSON strings are valid JSON: judged, not rejected."""
    tried()
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps({"schema_version": 1, "files": {"/proc/devices": {"text": "\x00\ud800195 nvidia"}},
                                "nvml": {"init": {"error": {"name": "\x00", "message": "\udfff"}}}}))
    for fmt in ("text", "json", "npd", "prometheus", "html"):
        proc = run_cli_process("check", "--snapshot", str(path), "--format", fmt)
        assert proc.returncode in (0, 1, 2) and proc.stdout and "Traceback" not in proc.stderr, proc.stderr


# -- named bad host files, through collect --root -------------------------------------------------
def test_bad_host_files_are_facts_not_crashes(tmp_path: Path) -> None:
    root = tmp_path / "host"
    (root / "proc" / "driver" / "nvidia" / "gpus" / "0000:3b:00.0").mkdir(parents=True)
    (root / "etc" / "modprobe.d").mkdir(parents=True)
    (root / "sys" / "module" / "nvidia").mkdir(parents=True)
    (root / "proc" / "devices").write_bytes(b"Character devices:\n\x00\x00195 nvidia-frontend\n\xff\xfe\n")
    _sparse(root / "proc" / "modules", 100 * 1024 * 1024)  # 100 MB: read capped, marked truncated
    (root / "proc" / "cmdline").write_bytes(b"")
    os.mkfifo(root / "proc" / "driver" / "nvidia" / "version")  # a FIFO must not block the reader
    (root / "proc" / "driver" / "nvidia" / "params").mkdir()  # a directory where a file should be
    (root / "proc" / "driver" / "nvidia" / "gpus" / "0000:3b:00.0" / "information").symlink_to("information")
    (root / "etc" / "modprobe.d" / "loop.conf").symlink_to("/etc/modprobe.d/loop.conf")  # absolute loop
    (root / "etc" / "os-release").write_bytes(bytes(range(256)))
    (root / "sys" / "module" / "nvidia" / "version").write_text("535.104.05\n" * 100000)
    tried(9)
    out = tmp_path / "snap.json"
    proc = run_cli_process("collect", "--root", str(root), "-o", str(out), timeout=60)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    files = json.loads(out.read_text())["files"]
    assert files["/proc/modules"]["truncated"] is True
    assert files["/proc/driver/nvidia/version"]["error"] == "ENOTREG"
    assert files["/proc/driver/nvidia/params"]["error"] == "EISDIR"
    assert files["/proc/driver/nvidia/gpus/0000:3b:00.0/information"]["error"] == "ELOOP"
    assert files["/etc/modprobe.d/loop.conf"]["error"] == "ELOOP"
    assert files["/proc/devices"].get("binary") is True
    for fmt in ("text", "json", "npd", "prometheus", "html"):
        proc = run_cli_process("check", "--snapshot", str(out), "--format", fmt, timeout=60)
        assert proc.returncode in (0, 1, 2) and "Traceback" not in proc.stderr, proc.stderr

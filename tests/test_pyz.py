"""The single-file doctor (gpu-runbook.pyz, `make pyz`): it runs with nothing installed under every Python
3.9+ on this machine, judges like the package does, bundles its own pynvml and tomli, and in NPD plugin
mode (as the DaemonSet image runs it) exits 0/1/2 with one line of at most 80 characters.

`make test` passes the file it built in GPU_RUNBOOK_PYZ; a plain pytest run builds one of its own.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO, SCENARIO_DIR, run_cli

sys.path.insert(0, str(REPO / "packaging"))

# Where Pythons live on this project's machines: the venv's, the system's (Debian's python3 is what
# the DaemonSet image installs), and pyenv's builds.
CANDIDATES = ["/usr/bin/python3", *sorted(glob.glob("/usr/bin/python3.[0-9]*")),
              *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin/python3"))),
              *sorted(glob.glob("/root/.pyenv/versions/3.*/bin/python3"))]


def _version(python: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:3])"], capture_output=True,
                             text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return tuple(int(p) for p in out.split())


def pythons() -> dict[str, str]:
    """Version string -> interpreter, for each distinct Python 3.9+ found (first found wins)."""
    found: dict[str, str] = {}
    seen: set[str] = set()
    for candidate in [sys.executable, *CANDIDATES]:
        if not re.search(r"python3(\.\d+)?$", candidate) or not os.access(candidate, os.X_OK):
            continue
        real = os.path.realpath(candidate)
        if real in seen:
            continue
        seen.add(real)
        version = _version(candidate)
        if version and version >= (3, 9):
            found.setdefault(".".join(map(str, version)), candidate)
    return dict(sorted(found.items(), key=lambda kv: tuple(int(p) for p in kv[0].split("."))))


PYTHONS = pythons()


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("GPU_RUNBOOK_PYZ")
    if given:
        return Path(given)
    from build_pyz import build

    return build(tmp_path_factory.mktemp("pyz") / "gpu-runbook.pyz", None)


def _bare_env() -> dict[str, str]:
    """No PYTHONPATH, no user site: what a host with nothing installed gives the file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _run(python: str, pyz: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([python, str(pyz), *args], capture_output=True, text=True, env=_bare_env(),
                          timeout=120, cwd=cwd or Path("/"), check=False)


def test_at_least_two_pythons_run_the_file() -> None:
    assert len(PYTHONS) >= 2, f"only {PYTHONS} found: the single file must be tried on two Python versions"


def test_the_file_holds_the_package_and_its_pure_python_needs(pyz: Path) -> None:
    with zipfile.ZipFile(pyz) as archive:
        names = set(archive.namelist())
    assert {"__main__.py", "gpu_runbook/cli.py", "gpu_runbook/explain_index.json", "pynvml.py",
            "tomli/__init__.py"} <= names
    assert not [n for n in names if n.endswith((".so", ".pyd"))]
    assert pyz.read_bytes().startswith(b"#!/usr/bin/env python3\n")


def test_needs_match_the_package_dependencies() -> None:
    from build_pyz import NEEDS

    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    for need in NEEDS:
        assert f'"{need}' in text, need


@pytest.mark.parametrize("version", list(PYTHONS))
def test_check_runs_with_nothing_installed(pyz: Path, version: str, tmp_path: Path) -> None:
    python = PYTHONS[version]
    proc = _run(python, pyz, "collect", "-o", str(tmp_path / "snap.json"))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    snapshot = json.loads((tmp_path / "snap.json").read_text(encoding="utf-8"))
    assert snapshot["host"]["python"] == version
    # The NVML child ran from the file too, with the pynvml bundled in it.
    assert str(pyz) in str(snapshot["nvml"].get("bindings", {}).get("file")), snapshot["nvml"]
    proc = _run(python, pyz, "check", "--format", "json")
    assert proc.returncode in (0, 1, 2) and "Traceback" not in proc.stderr, proc.stderr
    assert json.loads(proc.stdout)["findings"]


@pytest.mark.parametrize("version", list(PYTHONS))
def test_the_file_judges_the_scenarios_as_the_package_does(pyz: Path, version: str) -> None:
    """Every parser, the TOML reader (tomli below 3.11) included, gives the same fleet report."""
    proc = _run(PYTHONS[version], pyz, "report", str(SCENARIO_DIR), "--format", "json", "--jobs", "1")
    assert "Traceback" not in proc.stderr, proc.stderr
    code, out, _ = run_cli("report", str(SCENARIO_DIR), "--format", "json", "--jobs", "1")
    assert (proc.returncode, json.loads(proc.stdout)) == (code, json.loads(out))


@pytest.mark.parametrize("version", list(PYTHONS))
def test_explain_reads_its_index_from_inside_the_file(pyz: Path, version: str) -> None:
    proc = _run(PYTHONS[version], pyz, "explain", "Failed to initialize NVML: Unknown Error")
    assert proc.returncode == 0 and "nvml-unknown-error" in proc.stdout, proc.stdout + proc.stderr


def test_a_python_older_than_3_11_reads_toml_with_the_bundled_tomli(pyz: Path) -> None:
    older = [v for v in PYTHONS if tuple(map(int, v.split(".")))[:2] < (3, 11)]
    if not older:
        pytest.skip(f"no Python below 3.11 on this machine ({', '.join(PYTHONS)})")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import tomli; "
            "from gpu_runbook.parsers.toolkit import parse_toml; "
            "print(tomli.__file__.startswith(sys.argv[1]), parse_toml('a = 1'))")
    proc = subprocess.run([PYTHONS[older[0]], "-c", code, str(pyz)], capture_output=True, text=True,
                          env=_bare_env(), timeout=60, check=False)
    assert proc.stdout.strip() == "True ({'a': 1}, None)", proc.stderr


# -- the DaemonSet image: NPD runs the file as /usr/local/bin/gpu-runbook under Debian's python3 -------------

IMAGE_PYTHON = "/usr/bin/python3.11"  # Debian bookworm's, what `clean-install python3` puts in NPD's image
NPD_CASES = {"fixed-no-xid": 0, "broken-xid-79-fallen-off-bus": 1, "unknown-dmesg-restricted": 2}


@pytest.mark.parametrize("name,expected", NPD_CASES.items())
def test_plugin_mode_under_the_image_python(pyz: Path, name: str, expected: int) -> None:
    python = IMAGE_PYTHON if os.access(IMAGE_PYTHON, os.X_OK) else sys.executable
    scenario = SCENARIO_DIR / "health-monitoring" / f"{name}.json"
    proc = _run(python, pyz, "check", "--snapshot", str(scenario), "--only", "xid-errors", "--format", "npd")
    assert proc.returncode == expected, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and 0 < len(lines[0]) <= 80, proc.stdout


def test_plugin_command_of_the_manifest_under_the_image_python(pyz: Path, tmp_path: Path) -> None:
    """The manifest's own arguments (check --root /host --format npd --deadline 20), with an empty
    directory standing in for the host: a verdict, one short line, well within NPD's 30 s timeout."""
    import yaml

    config = yaml.safe_load_all((REPO / "snippets" / "manifests" / "npd-gpu-runbook.yaml").read_text())
    (rule,) = json.loads(next(config)["data"]["gpu-runbook.json"])["rules"]
    args = [str(tmp_path) if a == "/host" else a for a in rule["args"]]
    python = IMAGE_PYTHON if os.access(IMAGE_PYTHON, os.X_OK) else sys.executable
    proc = _run(python, pyz, *args)
    assert proc.returncode in (0, 1, 2) and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and 0 < len(lines[0]) <= 80, proc.stdout

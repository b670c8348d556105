"""The notebooks run under papermill (against scenarios and this host) and pass nbval."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest
from conftest import REPO, SCENARIO_DIR, SNIPPETS, load_scenario

TRIAGE = REPO / "notebooks" / "triage.ipynb"
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def _execute(tmp_path: Path, notebook: Path = TRIAGE, **parameters: object) -> nbformat.NotebookNode:
    out = tmp_path / f"out-{notebook.name}"
    papermill.execute_notebook(str(notebook), str(out), parameters=parameters, kernel_name="python3",
                               cwd=str(REPO), progress_bar=False, log_output=False)
    return nbformat.read(str(out), as_version=4)


def _result(nb: nbformat.NotebookNode) -> dict:
    cell = next(c for c in nb.cells if "findings-json" in c.metadata.get("tags", []))
    text = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
    return json.loads(text)


def _scenario(name: str) -> Path:
    path = next(iter(sorted(SCENARIO_DIR.glob(f"*/{name}*.json"))), None)
    assert path is not None, f"no scenario matching {name}"
    return path


@pytest.mark.parametrize("pattern", ["broken-", "fixed-"])
def test_triage_notebook_gives_scenario_verdicts(tmp_path: Path, pattern: str) -> None:
    path = _scenario(pattern)
    result = _result(_execute(tmp_path, snapshot_path=str(path)))
    assert result["error"] == ""
    for check_id, status in load_scenario(path)["expect"].items():
        assert result["findings"][check_id] == status, check_id


def test_triage_notebook_reports_bad_parameters_without_raising(tmp_path: Path) -> None:
    result = _result(_execute(tmp_path, snapshot_path=str(tmp_path / "missing.json")))
    assert result["error"].startswith("gpu-runbook: error:") and "no such file" in result["error"]
    assert result["exit_code"] == 2 and result["findings"] == {}


def test_triage_notebook_runs_on_this_host(tmp_path: Path) -> None:
    result = _result(_execute(tmp_path, deadline=10.0))
    assert result["error"] == "" and "nvml-init" in result["findings"]


def test_nbval_lax_passes_on_every_notebook() -> None:
    # --nbval-lax: the cells must run without error; outputs are not compared, because they describe
    # whatever host runs the test (a CPU CI runner here, an H100 in the GPU job).
    env = dict(os.environ, PYTHONPATH=str(SNIPPETS))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                           "-o", "addopts=", *map(str, NOTEBOOKS)], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout


def test_notebooks_are_committed_without_outputs() -> None:
    for path in NOTEBOOKS:
        nb = nbformat.read(str(path), as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name}: clear outputs"
        assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells), f"{path.name}: no parameters"


def test_triage_notebook_redacts_what_it_shows(tmp_path: Path) -> None:
    # The snapshot's own path names its owner (/home/<user>/...), and the notebook prints it.
    home = tmp_path / "home" / "alice-gpu-ops"
    home.mkdir(parents=True)
    snapshot = home / "snap.json"
    snapshot.write_text(_scenario("broken-").read_text())
    shown = lambda nb: json.dumps([c.get("outputs", []) for c in nb.cells])  # noqa: E731
    plain = _execute(tmp_path, snapshot_path=str(snapshot))
    masked = _execute(tmp_path, snapshot_path=str(snapshot), redact=True)
    assert "alice-gpu-ops" in shown(plain)
    assert "alice-gpu-ops" not in shown(masked) and "USER-1" in shown(masked)
    assert _result(masked)["findings"] == _result(plain)["findings"]


def test_triage_notebook_explains_a_pasted_error(tmp_path: Path) -> None:
    nb = _execute(tmp_path, snapshot_path=str(_scenario("fixed-")),
                  error_text="docker: Error response from daemon: failed to create task for container: "
                             "nvidia-container-cli: initialization error: nvml error: driver not loaded: unknown")
    result = _result(nb)
    assert result["explained"][0] == {"page": "container-cli-init-error", "level": "match"}
    shown = next(c for c in nb.cells if "explain" in c.metadata.get("tags", []))
    text = "".join(o.get("text", "") for o in shown.outputs if o.get("output_type") == "stream")
    assert "1. match" in text and "known error" in text

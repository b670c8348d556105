"""Shared test helpers: the repository layout, scenarios, and running the CLI in-process."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SNIPPETS = REPO / "snippets"
SCENARIO_DIR = REPO / "tests" / "scenarios"
DOCS = REPO / "docs"

if str(SNIPPETS) not in sys.path:
    sys.path.insert(0, str(SNIPPETS))


def load_hook(name: str) -> Any:
    """A site hook (docs/hooks/<name>.py) as a module, loaded once; MkDocs loads them by path, not as a package."""
    module_name = f"gpu_runbook_test_hook_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, DOCS / "hooks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def scenario_files() -> list[Path]:
    return sorted(SCENARIO_DIR.glob("*/*.json"))


def load_scenario(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def run_cli(*args: str) -> tuple[int, str, str]:
    """Run `gpu-runbook ARGS` in-process; returns (exit code, stdout, stderr)."""
    from gpu_runbook.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def run_cli_process(*args: str, env: dict[str, str] | None = None, timeout: float = 60,
                    **kwargs: Any) -> subprocess.CompletedProcess:
    """Run the CLI as a real process (`python -m gpu_runbook`), as an operator would."""
    full_env = dict(os.environ if env is None else env)
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SNIPPETS), full_env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "gpu_runbook", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, **kwargs)


# How long _pace_workload() took on the 2-core machines the time limits of the timing tests were set on.
_PACE_REFERENCE_S = 0.015
_PACE_TOKEN = re.compile(r"[a-z0-9]+")


def _pace_workload() -> int:
    """Tokenise and count, the kind of pure-Python work that explain, the parsers and the checks do."""
    counts: dict[str, int] = {}
    line = "Dec 02 03:00:00 node-1 kubelet[1234]: NVRM: Xid (PCI:0000:17:00): 79, GPU has fallen off the bus."
    for i in range(4000):
        for word in _PACE_TOKEN.findall(line.lower()):
            counts[word] = counts.get(word, 0) + i
    return len(counts)


def machine_pace() -> float:
    """How many times slower than the reference machine this one runs right now; never less than 1.

    Timing tests scale their slack by it, so a shared CI host that runs several times slower for a while does
    not fail them, while what they guard against (a probe that waits out a 3600 s sleep, a ranking that turns
    quadratic) stays far beyond any pace. Call it right after the timed work: the median of five short runs
    sees the load that work saw."""
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        _pace_workload()
        runs.append(time.perf_counter() - started)
    return max(1.0, statistics.median(runs) / _PACE_REFERENCE_S)


def limit_s(base: float, slack: float) -> float:
    """A time limit of `base` seconds (the deadline under test) plus `slack` seconds scaled by machine_pace()."""
    return base + slack * machine_pace()


@pytest.fixture(scope="session")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the site once per session with --strict into a temporary directory."""
    out = tmp_path_factory.mktemp("site")
    mkdocs = Path(sys.executable).with_name("mkdocs")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(out)], cwd=REPO,
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out

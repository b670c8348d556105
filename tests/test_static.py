"""Static guarantees: the runtime stays Python 3.9 compatible and the code passes ruff."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import REPO

RUNTIME = REPO / "snippets" / "gpu_runbook"
BIN = Path(sys.executable).parent


def test_runtime_code_needs_at_most_python_3_9() -> None:
    # vermin infers the minimum version from syntax *and* standard-library use (tomllib, str.removeprefix, ...)
    proc = subprocess.run([str(BIN / "vermin"), "--no-tips", "--violations", "-t=3.9-", "--eval-annotations",
                           str(RUNTIME)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_is_clean() -> None:
    proc = subprocess.run([str(BIN / "ruff"), "check", "snippets", "tests", "docs/hooks", "notebooks"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_runtime_imports_only_stdlib_and_pynvml() -> None:
    allowed = set(sys.stdlib_module_names) | {"gpu_runbook", "pynvml", "tomli", "__future__"}
    offenders = []
    for path in RUNTIME.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] not in allowed]
    assert not offenders, offenders

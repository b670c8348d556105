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


def _absolute_imports(path: Path) -> list[str]:
    """Every module a file imports by absolute name (function-level imports included)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_runtime_imports_only_stdlib_and_pynvml() -> None:
    allowed = set(sys.stdlib_module_names) | {"gpu_runbook", "pynvml", "tomli", "__future__"}
    offenders = [f"{path.relative_to(REPO)}: {name}" for path in RUNTIME.rglob("*.py")
                 for name in _absolute_imports(path) if name.split(".")[0] not in allowed]
    assert not offenders, offenders


def test_site_hooks_import_only_what_the_site_extra_installs() -> None:
    """`make serve` installs only the `site` extra: a hook that imports anything else breaks the README's serve
    command on a fresh machine (it did once, when the notebook pages began to be executed at build time)."""
    tomllib = __import__("tomllib")  # the site tools need Python >= 3.11
    extra = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    installed = {req.split(">")[0].split("=")[0].split("<")[0].strip().lower() for req in extra["site"]}
    # import name -> distribution name, where they differ
    dist = {"material": "mkdocs-material", "pymdownx": "pymdown-extensions"}
    provided_by_mkdocs = {"yaml", "jinja2", "markdown", "markupsafe"}
    repo_tools = {p.stem for p in (REPO / "tests" / "tools").glob("*.py")}  # put on sys.path by the hook itself
    allowed = set(sys.stdlib_module_names) | {"gpu_runbook", "__future__"} | provided_by_mkdocs | repo_tools
    offenders = []
    for path in (REPO / "docs" / "hooks").glob("*.py"):
        for name in _absolute_imports(path):
            top = name.split(".")[0]
            if top not in allowed and dist.get(top, top).lower() not in installed:
                offenders.append(f"{path.relative_to(REPO)}: {name}")
    assert not offenders, f"hooks import what the site extra does not install: {offenders}"

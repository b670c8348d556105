"""Build gpu-runbook.pyz: the doctor as one file that runs as `python3 gpu-runbook.pyz check` with
nothing installed, on Python 3.9 to 3.13 (`make pyz`).

The zip holds the gpu_runbook package and its two pure-Python needs, nvidia-ml-py (`import pynvml`) and
tomli (read on Python < 3.11 only), with their licence metadata. Nothing compiled goes in: NVML itself
is the driver's libnvidia-ml.so.1, loaded from the host at run time.

Usage: python packaging/build_pyz.py [-o gpu-runbook.pyz] [--wheelhouse DIR]
Where the needs come from: an existing --wheelhouse (`make wheelhouse`), else the package index.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipapp
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "snippets" / "gpu_runbook"
# The same ranges as pyproject.toml's dependencies (a test holds them equal).
NEEDS = ("nvidia-ml-py>=12.535", "tomli>=1.1")

MAIN = '''"""gpu-runbook as a single file: python3 gpu-runbook.pyz check"""
import sys

if sys.version_info < (3, 9):
    sys.stderr.write("gpu-runbook: needs Python 3.9 or newer; this is %d.%d\\n" % sys.version_info[:2])
    sys.exit(2)

from gpu_runbook.cli import main  # noqa: E402

sys.exit(main())
'''


def _ignore(_directory: str, names: list[str]) -> list[str]:
    return [n for n in names if n == "__pycache__" or n.endswith((".pyc", ".pyo"))]




def build(output: Path, wheelhouse: Path | None, compile_with: str | None = sys.executable) -> Path:
    with tempfile.TemporaryDirectory(prefix="gpu-runbook-pyz-") as tmp:
        staging = Path(tmp) / "app"
        shutil.copytree(PACKAGE, staging / "gpu_runbook", ignore=_ignore)
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile",
               "--disable-pip-version-check", "--target", str(staging)]
        if wheelhouse is not None:
            pip += ["--no-index", "--find-links", str(wheelhouse)]
        # Pure-Python wheels only, chosen for the oldest Python the file supports: tomli also ships
        # compiled (mypyc) wheels that would tie the file to the building Python's version.
        subprocess.run([*pip, "--only-binary", ":all:", "--platform", "any", "--implementation", "py",
                        "--abi", "none", "--python-version", "3.9", *NEEDS], check=True,
                       env=dict(os.environ, PIP_ROOT_USER_ACTION="ignore"))
        # nvidia-ml-py installs a top-level example.py next to pynvml.py; the doctor does not need it.
        for leftover in ("bin", "example.py"):
            path = staging / leftover
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        compiled = [p.name for p in staging.rglob("*") if p.suffix in (".so", ".pyd")]
        if compiled:
            raise SystemExit(f"build_pyz: compiled files would tie the file to one Python: {compiled}")
        (staging / "__main__.py").write_text(MAIN, encoding="utf-8")
        if compile_with:
            # A zip cannot cache bytecode, so each run would compile every module again (pynvml.py alone
            # is 330 KB). Legacy-placed .pyc files (module.pyc beside module.py) are what zipimport
            # looks for; a Python of another version finds the magic number wrong and compiles the
            # .py instead, so the file still runs everywhere and is fast under the Python it was built
            # with. Unchecked hashes: zip timestamps have a 2-second grain.
            subprocess.run([compile_with, "-m", "compileall", "-q", "-b", "--invalidation-mode",
                            "unchecked-hash", str(staging)], check=True)
        output.parent.mkdir(parents=True, exist_ok=True)
        zipapp.create_archive(staging, output, interpreter="/usr/bin/env python3", compressed=True)
    output.chmod(0o755)
    return output


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default=str(REPO / "gpu-runbook.pyz"))
    parser.add_argument("--wheelhouse", help="install the needs from this directory of wheels (no index)")
    parser.add_argument("--compile-with", default=sys.executable, metavar="PYTHON",
                        help="add .pyc files compiled by this Python, the one the file will mostly run under "
                             "(default: the Python running this script; '' for none)")
    args = parser.parse_args()
    wheelhouse = Path(args.wheelhouse) if args.wheelhouse else None
    if wheelhouse is None and (REPO / "wheelhouse").is_dir() and any((REPO / "wheelhouse").glob("tomli-*")):
        wheelhouse = REPO / "wheelhouse"
    target = build(Path(args.output), wheelhouse, args.compile_with or None)
    print(f"built {target} ({target.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

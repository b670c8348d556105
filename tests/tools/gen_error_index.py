"""Regenerate snippets/gpu_runbook/errors.json from the pages' `errors:` front matter (make error-index)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
TARGET = REPO / "snippets" / "gpu_runbook" / "errors.json"


def build() -> list[dict[str, str]]:
    entries = []
    for md in sorted((REPO / "docs").glob("*/*.md")):
        match = re.match(r"^---\n(.*?)\n---\n", md.read_text(encoding="utf-8"), re.DOTALL)
        meta = yaml.safe_load(match.group(1)) if match else {}
        for error in (meta or {}).get("errors") or []:
            entries.append({"page": meta["id"], "error": error})
    return entries


def render() -> str:
    return json.dumps(build(), indent=1, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    TARGET.write_text(render(), encoding="utf-8")
    print(f"{TARGET.relative_to(REPO)}: {len(build())} error strings", file=sys.stderr)

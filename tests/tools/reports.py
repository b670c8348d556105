"""The real-report corpus (tests/data/reports/<page-id>.jsonl) and its fixed dev/test split.

One record per report: `id`, `page` (the page that fixes the confirmed cause), `source` (link), `form`,
`cause`, `text` (as pasted), optional `also`, and `relabelled` on the records the consistency pass changed
(tests/data/reports/README.md). The split is a pure function of the id (a hash), decided once
and never by a result: a report cannot move between `dev` and `test`, and new reports fall where their id
puts them. `explain` and the site index learn from `dev` only; `test` only measures.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

REPORTS_DIR = Path(__file__).resolve().parents[1] / "data" / "reports"
FORMS = {"cli-output", "engine-error", "log", "kubectl", "dmesg", "prose", "app"}
TEST_SHARE = 30  # percent


def split_of(report_id: str) -> str:
    """'test' for about 30% of ids, 'dev' for the rest; fixed by the id alone.

    >>> split_of("NVIDIA/k8s-device-plugin#852"), split_of("c")
    ('dev', 'test')
    """
    digest = hashlib.sha256(report_id.encode("utf-8")).hexdigest()
    return "test" if int(digest[:8], 16) % 100 < TEST_SHARE else "dev"


def load_reports(directory: Path = REPORTS_DIR) -> list[dict[str, Any]]:
    """Every record, in file and line order, with its `split` added."""
    out = []
    for path in sorted(directory.glob("*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            record = json.loads(line)
            record["split"] = split_of(record["id"])
            record["_where"] = f"{path.name}:{number}"
            out.append(record)
    return out

"""Measure `explain` on the real-report corpus: top-1 and top-3, overall, per section and per form.

    python tests/tools/eval_explain.py            # dev split, each report left out of the index (tuning)
    python tests/tools/eval_explain.py --split test   # the held-out split: measure, never tune on it
    python tests/tools/eval_explain.py --misses   # list the misses (dev only unless --split test is given)
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "snippets"))
sys.path.insert(0, str(Path(__file__).parent))

from gpu_runbook.explain import explain, load_index  # noqa: E402
from gpu_runbook.pages import PAGES  # noqa: E402
from reports import load_reports  # noqa: E402


def evaluate(split: str, index: dict[str, Any] | None = None) -> dict[str, Any]:
    """Hits per report of one split; dev reports are left out of the index while they are judged."""
    data = index or load_index()
    rows = []
    for report in load_reports():
        if report["split"] != split:
            continue
        matches = explain(report["text"], data, exclude_reports=[report["id"]])
        ranked = [m.page for m in matches]
        top3 = ranked[:3]
        rows.append({"report": report, "ranked": ranked, "top1": bool(ranked) and ranked[0] == report["page"],
                     "top3": report["page"] in top3, "levels": [m.level for m in matches]})
    return {"rows": rows, **summarise(rows)}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def rate(items: list[dict[str, Any]], key: str) -> float:
        return sum(r[key] for r in items) / len(items) if items else 0.0

    by_section: dict[str, list] = defaultdict(list)
    by_form: dict[str, list] = defaultdict(list)
    by_page: dict[str, list] = defaultdict(list)
    for row in rows:
        by_section[PAGES[row["report"]["page"]].section].append(row)
        by_form[row["report"]["form"]].append(row)
        by_page[row["report"]["page"]].append(row)
    return {
        "n": len(rows), "top1": rate(rows, "top1"), "top3": rate(rows, "top3"),
        "answered": sum(1 for r in rows if r["ranked"]) / len(rows) if rows else 0.0,
        "sections": {k: (len(v), rate(v, "top1"), rate(v, "top3")) for k, v in sorted(by_section.items())},
        "forms": {k: (len(v), rate(v, "top1"), rate(v, "top3")) for k, v in sorted(by_form.items())},
        "pages": {k: (len(v), rate(v, "top1"), rate(v, "top3")) for k, v in sorted(by_page.items())},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=["dev", "test"], default="dev")
    parser.add_argument("--misses", action="store_true")
    args = parser.parse_args()
    result = evaluate(args.split)
    print(f"{args.split}: n={result['n']} top1={result['top1']:.3f} top3={result['top3']:.3f} "
          f"answered={result['answered']:.3f}")
    for title in ("sections", "forms", "pages"):
        print(f"  by {title[:-1]}:")
        for name, (n, top1, top3) in result[title].items():
            print(f"    {name:28} n={n:3} top1={top1:.2f} top3={top3:.2f}")
    if args.misses:
        for row in result["rows"]:
            if not row["top1"]:
                report = row["report"]
                print(f"\n--- {report['id']} [{report['form']}] want {report['page']} got {row['ranked'][:3]} "
                      f"{row['levels'][:3]}\n{report['text'][:400]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

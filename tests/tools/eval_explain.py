"""Measure `explain` on the real-report corpus: top-1 and top-3, overall, per section and per form.

    python tests/tools/eval_explain.py            # dev split, each report left out of the index (tuning)
    python tests/tools/eval_explain.py --split test   # the held-out split: measure, never tune on it
    python tests/tools/eval_explain.py --misses   # list the misses (dev only unless --split test is given)
    python tests/tools/eval_explain.py --update-readme   # rewrite the accuracy block of README.md
    python tests/tools/eval_explain.py --fresh new.jsonl # reports not yet in the corpus, before adding them

`--fresh` is the honest estimate of how `explain` does on reports nobody tuned for: run it on newly collected
records (same format as the corpus) before they are merged and the index learns from them.
"""

from __future__ import annotations

import argparse
import json
import re
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


def evaluate_fresh(path: Path, index: dict[str, Any] | None = None) -> dict[str, Any]:
    """Hits per record of a JSON-lines file of reports the index has never seen (no leave-one-out needed)."""
    data = index or load_index()
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        report = json.loads(line)
        if report.get("page") not in PAGES:
            raise SystemExit(f"{path}:{number}: page {report.get('page')!r} is not a catalogue page")
        rows.append(_judged({**report, "form": report.get("form", "?")}, explain(report["text"], data)))
    return {"rows": rows, **summarise(rows)}


def evaluate(split: str, index: dict[str, Any] | None = None) -> dict[str, Any]:
    """Hits per report of one split; dev reports are left out of the index while they are judged."""
    data = index or load_index()
    reports = load_reports()
    # A dev report is judged without itself and without the other reports of its thread ("owner/repo#12" and
    # "owner/repo#12-2"), which would otherwise hand it its own words.
    threads: dict[str, list[str]] = defaultdict(list)
    for report in reports:
        threads[thread_of(report["id"])].append(report["id"])
    rows = []
    for report in reports:
        if report["split"] != split:
            continue
        rows.append(_judged(report, explain(report["text"], data, exclude_reports=threads[thread_of(report["id"])])))
    return {"rows": rows, **summarise(rows)}


def _judged(report: dict[str, Any], matches: list[Any]) -> dict[str, Any]:
    """One report's row: the pages `explain` ranked, their levels, and whether the labelled page is first or in
    the top three."""
    ranked = [m.page for m in matches]
    return {"report": report, "ranked": ranked, "top1": bool(ranked) and ranked[0] == report["page"],
            "top3": report["page"] in ranked[:3], "levels": [m.level for m in matches]}


def thread_of(report_id: str) -> str:
    """The thread a report comes from: its id without a "-2", "-3" suffix.

    >>> thread_of("NVIDIA/k8s-device-plugin#990-2"), thread_of("stackoverflow-25708786")
    ('NVIDIA/k8s-device-plugin#990', 'stackoverflow-25708786')
    """
    return re.sub(r"(#\d+)-\d+$", r"\1", report_id)


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


README = REPO / "README.md"
README_BLOCK = re.compile(r"(<!-- explain-accuracy -->\n).*?(<!-- /explain-accuracy -->)", re.DOTALL)


_CITED_LINK = re.compile(r"github\.com/([\w.-]+/[\w.-]+)/(?:issues|pull|discussions)/(\d+)")
_CITED_REF = re.compile(r"\b([\w.-]+/[\w.-]+)#(\d+)\b")


def cited_threads() -> dict[str, set[str]]:
    """Threads the project cites ("owner/repo#12", lower case) -> the pages and modules citing them: GitHub links
    on the pages, owner/repo#N in the doctor's sources. A report from such a thread is easier than a fresh one:
    the page was written from that very thread."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in sorted((REPO / "docs").rglob("*.md")):
        for match in _CITED_LINK.finditer(path.read_text(encoding="utf-8")):
            found[f"{match.group(1)}#{match.group(2)}".lower()].add(path.stem)
    for path in sorted((REPO / "snippets").rglob("*.py")):
        for match in _CITED_REF.finditer(path.read_text(encoding="utf-8")):
            found[f"{match.group(1)}#{match.group(2)}".lower()].add(path.name)
    return found


def cited_test_reports() -> list[str]:
    """Ids of test-split reports whose thread the project cites."""
    cited = cited_threads()
    return sorted(r["id"] for r in load_reports() if r["split"] == "test" and thread_of(r["id"]).lower() in cited)


def readme_block() -> str:
    """The README's accuracy table: both splits, overall and per section, and the test reports whose thread no
    page cites."""
    results = {split: evaluate(split) for split in ("dev", "test")}
    rows = ["| | dev top-1 | dev top-3 | test top-1 | test top-3 |", "|---|---|---|---|---|"]
    for name in ["all", *sorted(results["dev"]["sections"])]:
        cells = []
        for split in ("dev", "test"):
            result = results[split]
            _, top1, top3 = ((result["n"], result["top1"], result["top3"]) if name == "all"
                             else result["sections"].get(name, (0, 0.0, 0.0)))
            cells += [f"{top1:.0%}", f"{top3:.0%}"]
        label = f"all ({results['dev']['n']} dev, {results['test']['n']} test reports)" if name == "all" else name
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    cited = set(cited_test_reports())
    uncited = [row for row in results["test"]["rows"] if row["report"]["id"] not in cited]
    top1, top3 = (sum(row[k] for row in uncited) / len(uncited) if uncited else 0.0 for k in ("top1", "top3"))
    rows.append(f"| test reports from threads no page cites ({len(uncited)}) | | | {top1:.0%} | {top3:.0%} |")
    return "\n".join(rows) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=["dev", "test"], default="dev")
    parser.add_argument("--misses", action="store_true")
    parser.add_argument("--update-readme", action="store_true")
    parser.add_argument("--fresh", type=Path, metavar="JSONL", help="measure reports that are not in the corpus")
    args = parser.parse_args()
    if args.update_readme:
        text = README.read_text(encoding="utf-8")
        README.write_text(README_BLOCK.sub(lambda m: m.group(1) + readme_block() + m.group(2), text),
                          encoding="utf-8")
        return 0
    if args.fresh:
        try:
            result = evaluate_fresh(args.fresh)
        except (OSError, ValueError, KeyError) as error:
            print(f"eval_explain: cannot read {args.fresh}: {error}", file=sys.stderr)
            return 2
        label = f"fresh ({args.fresh.name})"
    else:
        result = evaluate(args.split)
        label = args.split
    print(f"{label}: n={result['n']} top1={result['top1']:.3f} top3={result['top3']:.3f} "
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
    try:
        sys.exit(main())
    except BrokenPipeError:  # piped into head: the reader has what it wanted
        sys.stderr.close()
        sys.exit(0)

"""Regenerate snippets/gpu_runbook/explain_index.json (make error-index): the one index `explain` and the site use.

Sources, each read here and nowhere else:
- the pages (docs/<section>/<id>.md): front matter `title`, `errors:`; headings, Symptoms, Causes and the rest
  of the text, weighted by where a word stands;
- the checks (title and the first paragraph of each docstring), credited to their page;
- the signature table (snippets/gpu_runbook/signatures.py) and the Xid meanings of the xid-errors check;
- the `dev` split of the real-report corpus (tests/data/reports/*.jsonl): never the `test` split.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "snippets"))

from gpu_runbook.explain import SPEC_VERSION, line_terms, parse_query, prepare_tokenizer, word_pairs, words  # noqa: E402
from gpu_runbook.pages import PAGES, docs_path  # noqa: E402
from gpu_runbook.registry import load_checks  # noqa: E402
from gpu_runbook.signatures import SIGNATURES, xid_signatures  # noqa: E402
from reports import load_reports  # noqa: E402

TARGET = REPO / "snippets" / "gpu_runbook" / "explain_index.json"

# English function words and the filler of log lines; everything else is left to idf. "not" and "no" stay
# words: error text turns on them ("not found", "no such file", "no devices were found"; dev top-1 +0.7 points).
STOP = sorted(set("""
a an the to of on for in is are was were be been it its this that these those with and or by as at
from into out if then than so but can cannot could should would will may might do does did done has have had
i we you he she they me my our your their there here what which who when where why how all any some each
also just only very more most other such same own too again further once about over under up down off
above below after before between both during through until while yes per via
""".split()))
# Chinese words common in GPU reports (HAMi, Volcano, PaddlePaddle and other trackers), read as the English
# words the pages use: without them a report written in Chinese keeps only its pasted log lines.
GLOSSARY = {
    "显存": "gpu memory", "显卡": "gpu", "驱动": "driver", "容器": "container", "镜像": "image", "释放": "released",
    "占用": "used", "重启": "reboot", "找不到": "not found", "未找到": "not found", "版本": "version",
    "不匹配": "mismatch", "共享": "sharing", "节点": "node", "调度": "scheduling", "失败": "failed",
    "权限": "permission", "内核": "kernel", "模块": "module", "加载": "load", "无法": "cannot", "报错": "error",
    "错误": "error", "升级": "upgrade", "安装": "install", "分配": "allocate", "申请": "request", "虚拟": "virtual",
    "进程": "process", "挂载": "mount", "设备": "device", "插件": "plugin", "休眠": "suspend", "掉卡": "gpu lost",
    "拓扑": "topology", "带宽": "bandwidth", "多卡": "multiple gpu", "退出": "exit",
}
TOKENIZER = {"stop": STOP, "max_len": 30, "glossary": GLOSSARY}
_WORDS_SPEC = prepare_tokenizer(dict(TOKENIZER))  # what words() reads; TOKENIZER itself goes into the index
PARAMS: dict[str, Any] = {
    "k1": 1.2, "b": 0.75,
    "weights": {"string": 2.0, "signature": 1.5, "words": 2.0, "reports": 1.0},
    "min_coverage": 0.6, "match_coverage": 0.9,
    # How far the first page must lead the second for a guess from the words to be "likely" (on dev, about 80% of
    # such guesses are right; below it about 60%).
    "likely_margin": 0.8,
    # Weight of a dev report's words in its page's word counts.
    "report_field": 0.5,
    # The summed idf of its word pairs at which a known string counts fully.
    "string_idf": 6.0,
}
# How much a word counts by where it stands on the page.
FIELD_WEIGHTS = {"title": 3.0, "errors": 3.0, "heading": 2.0, "symptoms": 2.0, "causes": 1.0, "other": 0.5,
                 "code": 0.3, "references": 1.0, "checks": 1.0}


def front_matter(path: Path) -> tuple[dict[str, Any], str]:
    text = path.read_text(encoding="utf-8")
    match = re.match(r"^---\n(.*?)\n---\n(.*)$", text, re.DOTALL)
    return (yaml.safe_load(match.group(1)) or {}, match.group(2)) if match else ({}, text)


def _clean(markdown: str) -> str:
    text = re.sub(r"<!--.*?-->", " ", markdown, flags=re.DOTALL)
    text = re.sub(r"^.*--8<--.*$", " ", text, flags=re.MULTILINE)
    text = re.sub(r"\]\([^)]*\)", "]", text)          # link targets: keep the link text
    text = re.sub(r"\{\s*#[^}]*\}", " ", text)          # attribute lists
    text = re.sub(r"https?://\S+", " ", text)
    return text


def page_fields(page_id: str, meta: dict[str, Any], body: str) -> list[tuple[str, str]]:
    """(field, text) pieces of one page (its parsed front matter and body), the field deciding the weight of its
    words."""
    pieces = [("title", str(meta.get("title") or PAGES[page_id].title))]
    pieces += [("errors", e) for e in meta.get("errors") or []]
    section = ""
    in_code = False
    for line in _clean(body).splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        heading = re.match(r"^(#{1,4})\s+(.*)$", line) if not in_code else None
        if heading:
            if len(heading.group(1)) == 2:
                section = heading.group(2).strip().lower()
            pieces.append(("heading" if len(heading.group(1)) > 1 else "title", heading.group(2)))
            continue
        if section.startswith("symptoms"):
            field = "symptoms"
        elif in_code:
            field = "code"
        elif section.startswith("causes"):
            field = "causes"
        elif section.startswith("references"):
            field = "references"
        else:
            field = "other"
        pieces.append((field, line))
    return pieces


def check_fields() -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for spec in load_checks().values():
        first_paragraph = spec.doc.split("\n\n", 1)[0]
        out[spec.page] += [spec.title, first_paragraph]
    return out


def _string_keys(text: str) -> list[str]:
    found = words(text, _WORDS_SPEC)
    return word_pairs(found) if len(found) >= 2 else found


def build() -> dict[str, Any]:
    pages = list(PAGES)
    position = {p: i for i, p in enumerate(pages)}
    checks = check_fields()
    parsed = {page_id: front_matter(REPO / "docs" / docs_path(page_id)) for page_id in pages}

    # Real reports of the dev split, as word sets: folded into their page's words (each report counts once per
    # word, so one long log cannot outweigh the page) and kept for the nearest-report evidence.
    dev = [r for r in load_reports() if r["split"] == "dev"]
    report_terms = [sorted(parse_query(report["text"], _WORDS_SPEC).terms) for report in dev]
    rdf = Counter(t for terms in report_terms for t in terms)
    # A word pair seen in one report only says nothing about other reports: left out.
    report_terms = [[t for t in terms if "_" not in t or rdf[t] > 1] for terms in report_terms]

    # Words per page, weighted by field.
    tf: list[Counter] = []
    for page_id in pages:
        counts: Counter = Counter()
        pieces = page_fields(page_id, *parsed[page_id]) + [("checks", t) for t in checks.get(page_id, [])]
        for field, text in pieces:
            for line in text.splitlines():
                for term in line_terms(words(line, _WORDS_SPEC)):
                    counts[term] += FIELD_WEIGHTS[field]
        tf.append(counts)
    for report, terms in zip(dev, report_terms):
        for term in terms:
            tf[position[report["page"]]][term] += PARAMS["report_field"]
    n = len(pages)
    df = Counter(term for counts in tf for term in counts)
    idf = {t: round(math.log(1 + (n - d + 0.5) / (d + 0.5)), 4) for t, d in sorted(df.items())}
    postings = {t: [[i, round(tf[i][t], 2)] for i in range(n) if t in tf[i]] for t in sorted(df)}
    doclen = [round(sum(counts.values()), 2) for counts in tf]

    # Known strings: every errors: string, as word pairs; a string several pages share weighs less.
    raw_strings = []
    for page_id in pages:
        meta, _ = parsed[page_id]
        for error in meta.get("errors") or []:
            raw_strings.append((page_id, error, _string_keys(error)))
    # A string weighs by how specific its words are (idf: "OCI runtime create failed" is on many pages) and
    # less when several pages list it.
    sharing = Counter(" ".join(keys) for _, _, keys in raw_strings)
    strings = [{"page": position[p], "text": text, "keys": keys, "words": len(words(text, _WORDS_SPEC)),
                "weight": round(min(1.0, sum(idf.get(k, 0.0) for k in keys) / PARAMS["string_idf"])
                                / math.sqrt(sharing[" ".join(keys)]), 4)}
               for p, text, keys in raw_strings if keys]

    # Signatures, the Xid ones from the check's own tables.
    from gpu_runbook.checks.kubernetes import XID_MEANING, XID_NEEDS_RESET
    signatures = [{"page": position[s.page], "pattern": s.pattern, "why": s.why, "literals": list(s.literals),
                   "weight": s.weight, "strong": s.strong, "flags": s.flags}
                  for s in [*SIGNATURES, *xid_signatures(XID_NEEDS_RESET, XID_MEANING)]]

    reports = []
    for report, terms in zip(dev, report_terms):
        norm = math.sqrt(sum(idf[t] * idf[t] for t in terms)) or 1.0
        reports.append({"id": report["id"], "page": position[report["page"]], "source": report["source"],
                        "terms": terms, "norm": round(norm, 6)})

    return {"spec_version": SPEC_VERSION, "tokenizer": TOKENIZER, "params": PARAMS, "pages": pages,
            "strings": strings, "signatures": signatures, "idf": dict(sorted(idf.items())),
            "postings": postings, "doclen": doclen, "avgdl": round(sum(doclen) / n, 4), "reports": reports}


def render() -> str:
    return json.dumps(build(), ensure_ascii=False, separators=(",", ":"), sort_keys=False) + "\n"


if __name__ == "__main__":
    text = render()
    TARGET.write_text(text, encoding="utf-8")
    data = json.loads(text)
    print(f"{TARGET.relative_to(REPO)}: {len(text) // 1024} KiB, {len(data['strings'])} error strings, "
          f"{len(data['signatures'])} signatures, {len(data['postings'])} terms, {len(data['reports'])} dev reports",
          file=sys.stderr)

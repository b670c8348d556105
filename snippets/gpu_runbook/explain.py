"""`gpu-runbook explain`: rank the runbook pages for pasted error text (a message, a log, `kubectl describe`).

The ranking reads one index, `explain_index.json` beside this module, generated from the pages (their
`errors:` strings, symptoms, causes, headings), the checks, the signature table (`signatures.py`) and the
`dev` part of the real-report corpus by `make error-index`; a test fails when it is stale. The site's "Paste
an error" box runs the same specification in the browser (docs/assets/javascripts/explain.js) from the same
index, and a browser test holds the two to the same answers.

The score of a page adds four kinds of evidence, each in [0, 1] before its weight:
- **known strings**: the share of a page's `errors:` string (as word pairs) found in the text;
- **signatures**: regular expressions for the parts that vary (Xid numbers, versions, resource names);
- **words**: BM25 over the words and word pairs of everything the page says, relative to the best page;
- **similar reports**: the closest real report of the page (cosine of idf-weighted word sets).

Only the standard library: it runs on the troubled host. Arithmetic is `+ - * /` and `sqrt` over values the
index stores, so Python and the browser compute the same floats (no logarithm at query time).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple, Optional

from gpu_runbook.pages import PAGES, page_url

INDEX_PATH = Path(__file__).with_name("explain_index.json")
SPEC_VERSION = 2
_WORD = re.compile(r"[a-z0-9]+")
_HEXISH = re.compile(r"^[0-9a-f]{8,}$")
_DIGITS = re.compile(r"^[0-9]+$")
_LINE = re.compile(r"\r\n|\r|\n")
# Unicode quotes people paste from chat and web pages, folded to ASCII before matching signatures.
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u00a0": " "})
# Terminal colour codes, kept by logs captured to a file (docker compose, CI output).
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Escapes of JSON or Go-quoted strings (kubectl events, containerd and dockerd logs): a pasted
# `...not available\\nfailed to initialize nvml` would otherwise read as the word "nfailed".
_ESCAPED_BREAK = re.compile(r"\\+(?:r\\+n|n(?!vidia)|r)")  # not the \nvidia-smi of a UNC path
_ESCAPED_TAB = re.compile(r"\\+t")
_ESCAPED_QUOTE = re.compile(r"\\+\"")
_WINDOWS_PATH = re.compile(r"[A-Za-z]:\\")

MATCH, LIKELY, POSSIBLE = "match", "likely", "possible"


class Match(NamedTuple):
    """One ranked page: its score, confidence level and the evidence that matched."""

    score: float
    page: str
    level: str
    why: tuple[str, ...]
    matched: Optional[str]  # the known string or signature that matched, when one did

    @property
    def url(self) -> str:
        return page_url(self.page)


class Query(NamedTuple):
    """The pasted text, reduced to what the ranking reads."""

    raw: str
    terms: tuple[str, ...]  # unique words and in-line word pairs, in order of first appearance
    keys: frozenset[str]


# -- text -> words ------------------------------------------------------------------------------------------

def words(line: str, spec: dict[str, Any]) -> list[str]:
    """The words of one line as the index stores them.

    Lower case, letters and digits only; numbers, hashes and UUID parts, one-letter words and stop words
    dropped; a plural "s" folded; the glossary's words of other languages read as English.

    >>> words("Failed to initialize NVML: Unknown Error (pid 4242, GPU-6f3c1a2e)", load_index()["tokenizer"])
    ['failed', 'initialize', 'nvml', 'unknown', 'error', 'pid', 'gpu']
    """
    stop = spec["stop_set"]
    glossary = spec.get("glossary_re")
    if glossary is not None and not line.isascii():
        line = glossary.sub(lambda m: " " + spec["glossary"][m.group(0)] + " ", line)
    out = []
    for found in _WORD.findall(line.lower()):
        if len(found) < 2 or len(found) > spec["max_len"] or _DIGITS.match(found) or \
                (_HEXISH.match(found) and any(c.isdigit() for c in found)) or found in stop:
            continue
        plural = len(found) > 4 and found.endswith("s") and not found.endswith("ss")
        out.append(found[:-1] if plural else found)
    return out


def word_pairs(line_words: list[str]) -> list[str]:
    """Adjacent word pairs of one line, the keys known strings are matched by.

    >>> word_pairs(["nvml", "unknown", "error"])
    ['nvml_unknown', 'unknown_error']
    """
    return [f"{a}_{b}" for a, b in zip(line_words, line_words[1:])]


def line_terms(line_words: list[str]) -> list[str]:
    """Words and adjacent word pairs ("unknown_error") of one line.

    >>> line_terms(["nvml", "unknown", "error"])
    ['nvml', 'unknown', 'error', 'nvml_unknown', 'unknown_error']
    """
    return line_words + word_pairs(line_words)


def unfold_paste(text: str) -> str:
    """The pasted text with the escapes of quoted log strings unfolded and terminal colour codes removed.

    A Windows path (`C:\\Windows\\System32\\nvidia-smi.exe`, pasted from WSL) keeps its backslashes.

    >>> unfold_paste('caused \\\\"prestart: not available\\\\nfailed to initialize nvml\\\\"')
    'caused "prestart: not available\\nfailed to initialize nvml"'
    >>> unfold_paste("\\x1b[31mERROR\\x1b[0m: nvidia-smi")
    'ERROR: nvidia-smi'
    """
    text = text.translate(_QUOTES)
    if "\x1b" in text:
        text = _ANSI.sub("", text)
    if "\\" in text and not _WINDOWS_PATH.search(text):
        text = _ESCAPED_BREAK.sub("\n", text)
        text = _ESCAPED_TAB.sub(" ", text)
        text = _ESCAPED_QUOTE.sub('"', text)
    return text


def parse_query(text: str, spec: dict[str, Any]) -> Query:
    text = unfold_paste(text)
    seen: dict[str, None] = {}
    for line in _LINE.split(text):
        for term in line_terms(words(line, spec)):
            seen.setdefault(term, None)
    terms = tuple(seen)
    return Query(text, terms, frozenset(terms))


# -- the index ---------------------------------------------------------------------------------------------

_CACHE: dict[str, dict[str, Any]] = {}


def _read_index(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        if path != INDEX_PATH:
            raise
        # In the single-file doctor (gpu-runbook.pyz) the package is inside a zip: its loader reads it.
        import pkgutil

        raw = pkgutil.get_data("gpu_runbook", INDEX_PATH.name)
        if raw is None:
            raise
        return raw.decode("utf-8")


def load_index(path: Path = INDEX_PATH) -> dict[str, Any]:
    """The explain index (cached per path); an empty but valid index when the file is missing or unreadable."""
    key = str(path)
    if key not in _CACHE:
        try:
            data = json.loads(_read_index(path))
            if not isinstance(data, dict) or data.get("spec_version") != SPEC_VERSION:
                raise ValueError("not an explain index of this version")
        except (OSError, ValueError):
            data = empty_index()
        _CACHE[key] = prepare(data)
    return _CACHE[key]


def prepare_tokenizer(tokenizer: dict[str, Any]) -> dict[str, Any]:
    """The tokenizer specification with its stop words as a set and its glossary (words of other languages
    read as English words) as one pattern, longest first, as `words` reads them."""
    tokenizer["stop_set"] = set(tokenizer["stop"])
    glossary = tokenizer.get("glossary") or {}
    longest_first = sorted(glossary, key=lambda k: (-len(k), k))
    tokenizer["glossary_re"] = re.compile("|".join(map(re.escape, longest_first))) if glossary else None
    return tokenizer


def prepare(data: dict[str, Any]) -> dict[str, Any]:
    """Compile what the index stores as text (stop words, signature patterns) for repeated use."""
    prepare_tokenizer(data["tokenizer"])
    data["_signatures"] = [(s, re.compile(s["pattern"], re.IGNORECASE if "i" in s["flags"] else 0))
                           for s in data["signatures"]]
    return data


def empty_index() -> dict[str, Any]:
    return {"spec_version": SPEC_VERSION, "tokenizer": {"stop": [], "max_len": 30}, "pages": [],
            "params": {"k1": 1.2, "b": 0.5, "weights": {"string": 1, "signature": 1, "words": 1, "reports": 1},
                       "min_coverage": 0.6, "match_coverage": 0.9, "likely_margin": 1.0},
            "strings": [], "signatures": [], "idf": {}, "postings": {}, "doclen": [], "avgdl": 1.0,
            "reports": []}


# -- scoring -----------------------------------------------------------------------------------------------

def _coverage(keys: list[str], query: Query) -> float:
    return sum(1 for k in keys if k in query.keys) / len(keys) if keys else 0.0


def _first_line(text: str, start: int) -> str:
    begin = text.rfind("\n", 0, start) + 1
    end = text.find("\n", start)
    line = text[begin:end if end >= 0 else len(text)].strip()
    return line if len(line) <= 160 else line[:157] + "..."


def score_pages(query: Query, index: dict[str, Any],
                exclude_reports: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Per page: the four evidence scores, the total and the evidence lines. `exclude_reports` leaves reports
    out by id (leave-one-out evaluation on the dev split)."""
    pages = index["pages"]
    params = index["params"]
    weights = params["weights"]
    rows = [{"page": p, "string": 0.0, "signature": 0.0, "words": 0.0, "reports": 0.0, "why": [],
             "matched": None, "strong": False} for p in pages]

    # Known strings: the best-covered string of each page.
    for entry in index["strings"]:
        cov = _coverage(entry["keys"], query)
        if cov < params["min_coverage"]:
            continue
        row = rows[entry["page"]]
        value = cov * entry["weight"]
        if value > row["string"]:
            row["string"] = value
            row["matched"] = entry["text"]
        # One word is a match only when it is a long identifier (UnexpectedAdmissionError), not a common word.
        if cov >= params["match_coverage"] and (entry["words"] >= 2 or len(entry["keys"][0]) >= 12):
            row["strong"] = True
        row["why"].append(f"known error {entry['text']!r} ({round(cov * 100)}% of it)")

    # Signatures: the strongest one of each page. A pattern runs over the lines holding one of its literals.
    lower = query.raw.lower()
    raw_lines: list[str] = []
    lower_lines: list[str] = []
    candidates: dict[tuple[str, ...], str] = {}
    for entry, pattern in index["_signatures"]:
        literals = tuple(entry["literals"])
        if literals not in candidates:
            if not any(literal in lower for literal in literals):
                candidates[literals] = ""
            else:
                if not raw_lines:
                    raw_lines, lower_lines = query.raw.split("\n"), lower.split("\n")
                candidates[literals] = "\n".join(raw_lines[i] for i, line in enumerate(lower_lines)
                                                 if any(literal in line for literal in literals))
        text = candidates[literals]
        found = pattern.search(text) if text else None
        if not found:
            continue
        row = rows[entry["page"]]
        if entry["weight"] > row["signature"]:
            row["signature"] = entry["weight"]
            if row["matched"] is None or not row["strong"]:
                row["matched"] = entry["why"]
        if entry["strong"]:
            row["strong"] = True
        row["why"].append(f"{entry['why']}: {_first_line(text, found.start())}")

    # Words: BM25 with the stored idf and per-page term frequencies (dev reports folded in; a report left
    # out for evaluation is taken back out of its page's counts).
    excluded = set(exclude_reports)
    removed: dict[tuple[int, str], float] = {}
    doclen = list(index["doclen"])
    if excluded:
        weight = params.get("report_field", 0.0)
        for report in index["reports"]:
            if report["id"] in excluded:
                for term in report["terms"]:
                    removed[(report["page"], term)] = removed.get((report["page"], term), 0.0) + weight
                doclen[report["page"]] -= weight * len(report["terms"])
    k1, b, avgdl = params["k1"], params["b"], index["avgdl"]
    norms = [k1 * (1 - b + b * dl / avgdl) for dl in doclen]
    bm25 = [0.0] * len(pages)
    contributions: list[list[tuple[float, str]]] = [[] for _ in pages]
    for term in query.terms:
        posting = index["postings"].get(term)
        if not posting:
            continue
        idf = index["idf"][term]
        for page_index, stored_tf in posting:
            tf = stored_tf - removed.get((page_index, term), 0.0) if removed else stored_tf
            if tf <= 1e-9:
                continue
            gain = idf * tf * (k1 + 1) / (tf + norms[page_index])
            bm25[page_index] += gain
            contributions[page_index].append((gain, term))
    best = max(bm25) if bm25 else 0.0
    if best > 0:
        for i, row in enumerate(rows):
            row["words"] = bm25[i] / best
            top = sorted(contributions[i], key=lambda c: (-c[0], c[1]))[:6]
            if top and row["words"] >= 0.5:
                row["why"].append("words: " + ", ".join(t.replace("_", " ") for _, t in top))

    # Similar real reports: cosine of idf-weighted word sets, the best report per page.
    qnorm_sq = 0.0
    for term in query.terms:
        idf = index["idf"].get(term)
        if idf is not None:
            qnorm_sq += idf * idf
    if qnorm_sq > 0:
        qnorm = math.sqrt(qnorm_sq)
        for report in index["reports"]:
            if report["id"] in excluded:
                continue
            dot = 0.0
            for term in report["terms"]:
                if term in query.keys:
                    idf = index["idf"][term]
                    dot += idf * idf
            if dot <= 0:
                continue
            sim = dot / (qnorm * report["norm"])
            row = rows[report["page"]]
            if sim > row["reports"]:
                row["reports"] = sim
                row["similar"] = report["source"]
    for row in rows:
        if row["reports"] >= 0.2 and row.get("similar"):
            row["why"].append(f"similar report ({round(row['reports'] * 100)}%): {row['similar']}")

    for row in rows:
        row["score"] = (weights["string"] * row["string"] + weights["signature"] * row["signature"]
                        + weights["words"] * row["words"] + weights["reports"] * row["reports"])
    return rows


def rank(query: Query, index: dict[str, Any], limit: int = 3,
         exclude_reports: Iterable[str] = ()) -> list[Match]:
    """The best `limit` pages, plus every further page a known string or signature matched."""
    rows = score_pages(query, index, exclude_reports)
    order = sorted(range(len(rows)), key=lambda i: (-rows[i]["score"], i))
    # A guess from the words is "likely" when the first page leads the second by a clear margin.
    margin = rows[order[0]]["score"] - rows[order[1]]["score"] if len(order) > 1 else 0.0
    likely = margin >= index["params"]["likely_margin"]
    out: list[Match] = []
    for position, i in enumerate(order):
        row = rows[i]
        if row["score"] <= 0:
            break
        if position >= limit and not row["strong"]:
            continue
        if row["strong"]:
            level = MATCH
        elif position == 0 and likely:
            level = LIKELY
        else:
            level = POSSIBLE
        page_id = index["pages"][i]
        out.append(Match(round(row["score"], 4), page_id, level, tuple(row["why"][:6]), row["matched"]))
    return out


def explain(text: str, index: Optional[dict[str, Any]] = None, limit: int = 3,
            exclude_reports: Iterable[str] = ()) -> list[Match]:
    """Pages for pasted error text, best first, each with a level (match / likely / possible) and evidence.

    >>> [(m.page, m.level) for m in explain("$ nvidia-smi\\nFailed to initialize NVML: Unknown Error")][:1]
    [('nvml-unknown-error', 'match')]
    >>> explain("zzz qqq")
    []
    """
    data = load_index() if index is None else index
    pages = [p for p in data["pages"] if p in PAGES]
    if len(pages) != len(data["pages"]):  # an index from another catalogue: use nothing rather than mislink
        return []
    return rank(parse_query(text, data["tokenizer"]), data, limit, exclude_reports)

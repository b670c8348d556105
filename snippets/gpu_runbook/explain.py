"""`gpu-runbook explain`: paste an error message, get the runbook pages that explain it.

The index (errors.json, beside this module) is generated from the `errors:` front matter of the
pages by `make error-index`; a test fails when it is stale, so the pages stay the one source.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, NamedTuple

from gpu_runbook.pages import PAGES, page_url

INDEX_PATH = Path(__file__).with_name("errors.json")
_SPLIT = re.compile(r"[\s\-_,:;!=<>\[\]()\"'/|.]+")
# Words too common in error messages to tell pages apart.
_STOP = {"the", "a", "an", "to", "of", "on", "for", "in", "is", "error", "failed", "with", "and", "or", "not", ""}


class Match(NamedTuple):
    score: float
    page: str
    error: str

    @property
    def url(self) -> str:
        return page_url(self.page)


def load_index(path: Path = INDEX_PATH) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [e for e in data if isinstance(e, dict) and e.get("page") in PAGES and isinstance(e.get("error"), str)]


def _tokens(text: str) -> set[str]:
    return {t for t in _SPLIT.split(text.lower()) if t not in _STOP}


def explain(text: str, index: list[dict[str, Any]] | None = None, limit: int = 5) -> list[Match]:
    """Pages whose known error strings match the text, best first.

    A known string found verbatim in the text wins outright; otherwise the share of the known
    string's words present in the text decides (at least 60%), so a message with a different
    device number or version still finds its page.

    >>> index = [{"page": "nvml-unknown-error", "error": "Failed to initialize NVML: Unknown Error"}]
    >>> explain("$ nvidia-smi\\nFailed to initialize NVML: Unknown Error", index)[0].page
    'nvml-unknown-error'
    >>> explain("segmentation fault", index)
    []
    """
    entries = load_index() if index is None else index
    haystack = " ".join(text.lower().split())
    words = _tokens(text)
    best: dict[str, Match] = {}
    for entry in entries:
        error = entry["error"]
        needle = " ".join(error.lower().split())
        if needle and needle in haystack:
            score = 2.0 + len(needle) / 1000
        else:
            known = _tokens(error)
            if not known:
                continue
            score = len(known & words) / len(known)
            if score < 0.6:
                continue
        page = entry["page"]
        if page not in best or score > best[page].score:
            best[page] = Match(score, page, error)
    return sorted(best.values(), key=lambda m: -m.score)[:limit]

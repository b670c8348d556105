"""The site builds strict, fetches nothing from outside hosts, and its search finds error strings by parts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from conftest import REPO

EXTERNAL_FETCH = re.compile(
    r"""<(?:script|img|iframe|source|audio|video)\b[^>]*\bsrc=["']https?://"""
    r"""|<link\b[^>]*\bhref=["']https?://[^"']*["'][^>]*>"""
    r"""|import\s*\(\s*["']https?://|@import\s+url\(\s*["']?https?://|\bfrom\s+["']https?://""",
    re.IGNORECASE)


def _pages(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


def test_no_page_fetches_from_an_outside_host(built_site: Path) -> None:
    offenders = {}
    for page in _pages(built_site):
        hits = [m.group(0)[:120] for m in EXTERNAL_FETCH.finditer(page.read_text(encoding="utf-8"))
                if "rel=\"canonical\"" not in m.group(0)]
        if hits:
            offenders[str(page.relative_to(built_site))] = hits
    assert not offenders, offenders


def test_notebooks_are_rendered_on_the_site(built_site: Path) -> None:
    html = (built_site / "notebooks" / "triage.html").read_text(encoding="utf-8")
    assert "snapshot_path" in html and "judge(" in html


def _tokens(text: str, separator: str) -> list[str]:
    return [t.lower() for t in re.split(separator, text) if t]


def test_search_index_finds_every_error_string_by_its_parts(built_site: Path) -> None:
    config = yaml.load((REPO / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)  # noqa: S506 (tags as text)
    separator = next(p["search"]["separator"] for p in config["plugins"] if isinstance(p, dict) and "search" in p)
    index = json.loads((built_site / "search" / "search_index.json").read_text(encoding="utf-8"))
    assert index["config"]["separator"] == separator
    by_page: dict[str, str] = {}
    for doc in index["docs"]:
        page = doc["location"].split("#", 1)[0]
        by_page[page] = by_page.get(page, "") + " " + doc["title"] + " " + re.sub(r"<[^>]+>", " ", doc["text"])
    checked = 0
    for md in sorted((REPO / "docs").glob("*/*.md")):
        head = md.read_text(encoding="utf-8").split("---", 2)
        meta = yaml.safe_load(head[1]) if len(head) > 2 else {}
        for error in meta.get("errors") or []:
            prefix = md.relative_to(REPO / "docs").with_suffix("").as_posix()
            location = next(k for k in by_page if k in (f"{prefix}.html", f"{prefix}/"))
            page_tokens = set(_tokens(by_page[location], separator))
            missing = [t for t in _tokens(error, separator) if t not in page_tokens]
            assert not missing, f"{md.name}: search would not find {error!r}: tokens {missing} not indexed"
            checked += 1
    assert checked > 0


def test_search_separator_splits_error_punctuation() -> None:
    config = yaml.load((REPO / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)  # noqa: S506
    separator = next(p["search"]["separator"] for p in config["plugins"] if isinstance(p, dict) and "search" in p)
    assert _tokens("load library failed: libnvidia-ml.so.1", separator) == [
        "load", "library", "failed", "libnvidia", "ml", "so", "1"]
    assert _tokens("NVIDIA_REQUIRE_CUDA=cuda>=12.4", separator) == ["nvidia", "require", "cuda", "cuda", "12", "4"]
    assert _tokens("/dev/nvidia-uvm", separator) == ["dev", "nvidia", "uvm"]


def test_verified_boxes_show_the_recorded_gpu_run(built_site: Path) -> None:
    """Each page with checks shows the newest GPU run's status for them; "Verified" only when one was judged."""
    runs = sorted((REPO / "tests" / "gpu" / "runs").glob("*.json"))
    # Newest first, ties in file-name order: the order the hook shows them in.
    records = sorted((json.loads(p.read_text(encoding="utf-8")) for p in runs),
                     key=lambda r: (r["date"], r.get("recorded_at", "")), reverse=True)
    for md in sorted((REPO / "docs").glob("*/*.md")):
        meta = yaml.safe_load(md.read_text(encoding="utf-8").split("---", 2)[1]) or {}
        checks = meta.get("checks") or []
        if not checks:
            continue
        html = (built_site / md.parent.name / (md.stem + ".html")).read_text(encoding="utf-8")
        run = next((r for r in records if any(c in r["checks"] for c in checks)), None)
        if run is None:
            assert "Not yet verified on a real GPU" in html, md.name
            continue
        statuses = {run["checks"][c] for c in checks if c in run["checks"]}
        title = "Verified on" if statuses & {"ok", "warn", "fail"} else "Ran on"
        assert f"{title} {run['gpu']} · driver {run['driver']}" in html, md.name
        for check in checks:
            if check in run["checks"]:
                assert re.search(rf"<code>{re.escape(check)}</code>\s*<strong>{run['checks'][check]}</strong>",
                                 html), (md.name, check)

"""`gpu-runbook explain` finds the page for every documented error string, and its index is current."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from gen_error_index import TARGET, build, render
from gpu_runbook.explain import explain, load_index


def test_index_is_current_with_the_pages() -> None:
    assert TARGET.read_text(encoding="utf-8") == render(), "stale: run `make error-index`"


@pytest.mark.parametrize("entry", build(), ids=lambda e: f"{e['page']}:{e['error'][:40]}")
def test_every_documented_error_leads_to_its_page(entry: dict[str, str]) -> None:
    pasted = f"$ some command\n{entry['error']}\nexit status 1"
    pages = [m.page for m in explain(pasted, load_index())]
    assert entry["page"] in pages, f"{entry['error']!r} -> {pages}"


def test_explain_cli(tmp_path) -> None:
    index = load_index()
    if not index:
        pytest.fail("errors.json is empty: the pages list no error strings")
    code, out, _ = run_cli("explain", index[0]["error"])
    assert code == 0 and index[0]["page"] in out
    code, out, _ = run_cli("explain", "zzz qqq nothing like a GPU error")
    assert code == 1 and "no runbook page" in out
    code, out, _ = run_cli("explain", "--json", index[0]["error"])
    assert json.loads(out)[0]["page"] == index[0]["page"]

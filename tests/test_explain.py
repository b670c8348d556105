"""`gpu-runbook explain` ranks pages for pasted text: its index is current, every documented string and a mixed
log land where they should, it is fast on big logs, and on the held-out real reports it meets the issue's bar."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import DOCS, limit_s, machine_pace, run_cli
from eval_explain import README, README_BLOCK, cited_test_reports, evaluate, evaluate_fresh, readme_block, thread_of
from gen_error_index import TARGET, front_matter, render
from gpu_runbook.explain import LIKELY, MATCH, POSSIBLE, explain, load_index, parse_query
from gpu_runbook.pages import PAGES, docs_path
from gpu_runbook.signatures import SIGNATURES
from reports import FORMS, load_reports, split_of

REPORTS = load_reports()
DOCUMENTED = [(pid, e) for pid in PAGES for e in front_matter(DOCS / docs_path(pid))[0].get("errors") or []]


def test_index_is_current_with_its_sources() -> None:
    assert TARGET.read_text(encoding="utf-8") == render(), "stale: run `make error-index`"


def test_index_learns_from_the_dev_split_only() -> None:
    test_ids = {r["id"] for r in REPORTS if r["split"] == "test"}
    indexed = {r["id"] for r in load_index()["reports"]}
    assert indexed, "the index holds no dev report"
    assert not indexed & test_ids, f"test-split reports in the index: {sorted(indexed & test_ids)[:5]}"


@pytest.mark.parametrize("page_id, error", DOCUMENTED, ids=lambda v: str(v)[:40])
def test_every_documented_error_leads_to_its_page(page_id: str, error: str) -> None:
    pasted = f"$ some command\n{error}\nexit status 1"
    matches = explain(pasted)
    assert page_id in [m.page for m in matches], f"{error!r} -> {[m.page for m in matches]}"
    assert next(m for m in matches if m.page == page_id).level == MATCH


def test_a_mixed_log_names_every_page_it_touches() -> None:
    log = "\n".join([
        "Events:",
        "  Type     Reason            Age   From               Message",
        "  Warning  FailedScheduling  2m    default-scheduler  0/3 nodes are available: 3 Insufficient "
        "nvidia.com/gpu. preemption: 0/3 nodes are available: 3 No preemption victims found",
        "[  812.113507] NVRM: Xid (PCI:0000:3b:00): 79, pid=1913, GPU has fallen off the bus.",
        "[  900.000001] NVRM: API mismatch: the client has the version 550.127.05, but",
        "               NVRM: this kernel module has the version 550.90.07.  Please",
    ])
    pages = [m.page for m in explain(log) if m.level == MATCH]
    assert {"device-plugin", "recovery", "driver-mismatch"} <= set(pages), pages


def test_escaped_and_coloured_pastes_rank_as_the_plain_text() -> None:
    """A JSON/Go-quoted log line (`\\n`, `\\"`) or a terminal-coloured one scores exactly as its plain form; a
    pasted Windows path keeps its backslashes (its `\\nvidia-smi.exe` is no escaped line break)."""
    plain = 'stderr: Auto-detected mode as legacy\nFailed to initialize NVML: Unknown Error\n: unknown "hook"'
    quoted = plain.replace("\n", "\\n").replace('"', '\\"')
    coloured = plain.replace("Failed", "\x1b[1;31mFailed\x1b[0m")
    expected = explain(plain)[0]
    assert (expected.page, expected.level) == ("nvml-unknown-error", MATCH) and "\\n" in quoted
    for text in (quoted, coloured):
        assert explain(text)[0] == expected, text
    windows = "PS> C:\\Windows\\System32\\nvidia-smi.exe\\nFailed to initialize NVML: Unknown Error"
    assert "\\nvidia-smi.exe" in parse_query(windows, load_index()["tokenizer"]).raw


def test_levels_and_evidence() -> None:
    strong = explain("nvidia-container-cli: initialization error: load library failed: libnvidia-ml.so.1: "
                     "cannot open shared object file: no such file or directory: unknown")
    assert strong[0].page == "container-cli-init-error" and strong[0].level == MATCH
    assert any("known error" in why for why in strong[0].why)
    vague = explain("our pods share one card and somehow every pod sees the whole memory")
    assert vague and all(m.level in (LIKELY, POSSIBLE) for m in vague)
    assert len(vague) <= 3


def test_explain_cli_text_json_and_exit_codes() -> None:
    code, out, _ = run_cli("explain", "Failed to initialize NVML: Driver/library version mismatch")
    assert code == 0 and "driver-mismatch" in out and out.startswith("1. match")
    code, out, _ = run_cli("explain", "--json", "NVRM: Xid (PCI:0000:2b:00): 79, GPU has fallen off the bus.")
    rows = json.loads(out)
    assert code == 0 and rows[0]["page"] == "recovery"
    assert set(rows[0]) == {"page", "title", "url", "matched", "score", "level", "why"}
    assert isinstance(rows[0]["score"], float) and rows[0]["why"]
    code, out, _ = run_cli("explain", "only one of my pods gets a time slice of the card")
    assert code == 1 and "guesses" in out
    code, out, _ = run_cli("explain", "zzz qqq")
    assert code == 1 and "no runbook page" in out
    code, _, err = run_cli("explain", "   ")
    assert code == 2 and "empty" in err and "Traceback" not in err


def test_a_ten_thousand_line_log_answers_in_under_a_second() -> None:
    lines = [f"Dec 02 03:{i // 60 % 60:02d}:{i % 60:02d} node-{i % 7} kubelet[1234]: I1202 03:00:00.{i:06d} "
             f"{i} reconciler.go:{i % 400}] operationExecutor.MountVolume started for volume pvc-{i:08x}"
             for i in range(10_000)]
    lines[7_777] = "[ 9912.44] NVRM: Xid (PCI:0000:17:00): 48, pid='<unknown>', name=<unknown>, An uncorrectable " \
                   "double bit error (DBE) has been detected on GPU in the framebuffer at partition 6, subpartition 0."
    text = "\n".join(lines)
    explain("warm the index")
    start = time.perf_counter()
    matches = explain(text)
    elapsed = time.perf_counter() - start
    assert matches[0].page in ("recovery", "health-monitoring") and matches[0].level == MATCH
    assert elapsed < limit_s(0.0, 1.0), f"{elapsed:.2f} s for 10,000 lines (pace {machine_pace():.1f})"


def test_signatures_compile_and_name_catalogue_pages() -> None:
    for signature in SIGNATURES:
        assert signature.page in PAGES, signature
        assert "(?" not in signature.pattern.replace("(?:", ""), f"JS-incompatible group: {signature.pattern}"
        re.compile(signature.pattern)


# -- the real-report corpus ----------------------------------------------------------------------------------

def test_corpus_records_are_well_formed() -> None:
    assert len(REPORTS) >= 250, f"{len(REPORTS)} reports; the corpus needs at least 250"
    ids = Counter(r["id"] for r in REPORTS)
    assert not [i for i, n in ids.items() if n > 1], "duplicate ids"
    texts = Counter(" ".join(r["text"].split()) for r in REPORTS)
    assert not [t[:60] for t, n in texts.items() if n > 1], "the same text twice"
    for report in REPORTS:
        where = report["_where"]
        assert report["page"] in PAGES, where
        assert report["form"] in FORMS, where
        assert report["text"].strip() and len(report["text"]) <= 4000, where
        assert urlparse(report["source"]).scheme == "https", where
        assert isinstance(report.get("cause"), str) and len(report["cause"]) > 10, where
        assert all(p in PAGES for p in report.get("also") or []), where
        assert report["_where"].split(".jsonl")[0] == report["page"], f"{where}: filed under another page"
        if "relabelled" in report:  # the consistency pass keeps the old page first in `also`
            was = re.fullmatch(r"2026-12-02 (?:second )?consistency pass(?: \([^)]*\))?: was ([a-z0-9-]+)",
                               report["relabelled"])
            assert was and was.group(1) != report["page"] and report["also"][0] == was.group(1), where


def test_corpus_covers_every_page_and_splits_about_seventy_thirty() -> None:
    per_page = Counter(r["page"] for r in REPORTS)
    thin = {p: per_page[p] for p in PAGES if per_page[p] < 8}
    assert not thin, f"pages with fewer than 8 real reports: {thin}"
    share = sum(r["split"] == "test" for r in REPORTS) / len(REPORTS)
    assert 0.22 <= share <= 0.38, share
    assert all(r["split"] == split_of(r["id"]) for r in REPORTS)


def test_no_page_starts_citing_a_test_report_thread() -> None:
    """The test split stays held out: a page written from a test report's thread would be tuned on it."""
    listed = Path(__file__).parent / "data" / "reports" / "cited-test-threads.txt"
    allowed = {line for line in listed.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")}
    cited = set(cited_test_reports())
    new = sorted(cited - allowed)
    assert not new, f"pages or checks now cite the thread of test-split reports {new}: cite another source"
    gone = sorted(allowed - cited)
    assert not gone, f"no longer cited, drop from {listed.name}: {gone}"


@pytest.fixture(scope="module")
def held_out() -> dict:
    return evaluate("test")


def test_held_out_reports_stay_above_the_measured_floor(held_out: dict) -> None:
    """Regression guard on the test split (never tuned on): the level measured on 2026-12-02 after the
    labelling consistency pass (tests/data/reports/README.md), nine collection rounds, the page audits that
    removed 26 citations of test-split threads and the verbatim error strings added from dev reports (top-1
    0.735, top-3 0.916 on 310 reports), less about two reports. The third page audits of the same evening
    changed page text only, not the ranker, and left 0.726 / 0.913; the page additions of 2026-12-03, written
    from dev-split misses, left 0.716 / 0.910 (three and one reports fewer), and the floor went down by those
    reports rather than taking out correct page text; a second round of such additions and the tenth collection
    round (eight new test reports) left 0.711 / 0.906 on 318, and the fourth audits moved it between 0.711 and
    0.714, as did the fifth audits, the MPS v3 and DCGM exporter additions and the pinned links of the evening
    (0.714 / 0.906 to 0.909), and the last corrections (RKE2, jellyfin, MIG manager) to 0.711 / 0.909,
    the attribution checks back to 0.714 / 0.909.
    Page corrections alone move it by a report or two either way, so the guard sits about three reports
    below the measured level: it is there to catch a ranker regression, not wording churn
    (tests/data/reports/README.md)."""
    sections = {name: round(top3, 3) for name, (_, _, top3) in held_out["sections"].items()}
    assert held_out["top1"] >= 0.70, f"test top-1 fell to {held_out['top1']:.3f}"
    assert held_out["top3"] >= 0.90, f"test top-3 fell to {held_out['top3']:.3f}"
    assert all(v >= 0.8 for v in sections.values()), f"a section's test top-3 < 0.8: {sections}"


@pytest.mark.xfail(strict=True, reason="issue 10's bar is not met yet: test top-1 0.714 (bar 0.85), top-3 0.909 (bar "
                                       "0.95) on 2026-12-03; when it passes, drop this marker")
def test_held_out_reports_meet_the_bar(held_out: dict) -> None:
    """On the test split (never used for tuning): top-1 >= 0.85, top-3 >= 0.95, each section's top-3 >= 0.8."""
    sections = {name: round(top3, 3) for name, (_, _, top3) in held_out["sections"].items()}
    assert held_out["top1"] >= 0.85, f"test top-1 {held_out['top1']:.3f} < 0.85"
    assert held_out["top3"] >= 0.95, f"test top-3 {held_out['top3']:.3f} < 0.95"
    assert all(v >= 0.8 for v in sections.values()), f"a section's test top-3 < 0.8: {sections}"


def test_readme_reports_the_current_accuracy() -> None:
    block = README_BLOCK.search(README.read_text(encoding="utf-8"))
    assert block, "README.md lost its <!-- explain-accuracy --> block"
    assert block.group(0).split("\n", 1)[1].rsplit("<!--", 1)[0] == readme_block(), \
        "README accuracy is out of date: python tests/tools/eval_explain.py --update-readme"


def test_fresh_reports_are_measured_and_a_bad_record_is_named(tmp_path: Path) -> None:
    """`eval_explain.py --fresh` scores records the index has never seen, and names a record it cannot use."""
    good = tmp_path / "new.jsonl"
    good.write_text(json.dumps({"id": "x/y#1", "page": "driver-mismatch", "form": "cli-output", "source": "https://x",
                                "cause": "upgrade without reboot", "text": "Failed to initialize NVML: Driver/library "
                                "version mismatch"}) + "\n\n", encoding="utf-8")
    result = evaluate_fresh(good)
    assert (result["n"], result["top1"], result["top3"]) == (1, 1.0, 1.0)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x/y#2", "page": "no-such-page", "text": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"bad.jsonl:1: page 'no-such-page'"):
        evaluate_fresh(bad)


def test_thread_mates_share_a_thread() -> None:
    assert thread_of("NVIDIA/k8s-device-plugin#990-2") == thread_of("NVIDIA/k8s-device-plugin#990")
    assert thread_of("stackoverflow-25708786") == "stackoverflow-25708786"


@pytest.mark.parametrize(("text", "page"), [
    ("升级驱动后没有重启，nvidia-smi 报错：驱动版本不匹配", "driver-mismatch"),  # noqa: RUF001 (driver upgraded, no reboot)
    ("ctrl+c 退出后显存没有释放，进程还占用显存", "recovery"),  # noqa: RUF001 (memory held after Ctrl+C)
])
def test_a_report_written_in_chinese_reads_through_the_glossary(text: str, page: str) -> None:
    assert explain(text)[0].page == page
    spec = dict(load_index()["tokenizer"], glossary_re=None)
    assert explain(text)[0].score > score_without_glossary(text, spec)


def score_without_glossary(text: str, spec: dict) -> float:
    index = dict(load_index(), tokenizer=spec)
    matches = explain(text, index)
    return matches[0].score if matches else 0.0

"""What a person reads: the terminal report fits one screen with the problem on top and the verdict last; colour
only on a terminal and never with NO_COLOR; a note on stderr while a slow collection runs; the HTML report is one
self-contained page for a ticket."""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path

import pytest
from conftest import SCENARIO_DIR, load_scenario, run_cli, scenario_files
from gpu_runbook.cli import main, progress_line
from gpu_runbook.render.text import EXIT_MEANING

SCREEN_LINES = 24
BROKEN = [p for p in scenario_files() if p.name.startswith(("broken-", "captured-"))
          and "fail" in load_scenario(p)["expect"].values()]
CAPTURE = SCENARIO_DIR / "device-nodes" / "captured-h200-mode-0600-nonroot.json"
ANSI = "\033["
STATUS_LINE = re.compile(r"^(FAIL|WARN|UNKNOWN|OK|SKIP) ")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_a_broken_host_fits_one_screen_with_the_problem_on_top(path: Path) -> None:
    code, out, err = run_cli("check", "--snapshot", str(path))
    lines = out.splitlines()
    assert code == 1 and not err
    assert len(lines) <= SCREEN_LINES, "\n".join(lines)
    # The header (what was judged; one line per container engine) ends where the first status label starts.
    top = next(line for line in lines if STATUS_LINE.match(line))
    assert top.startswith("FAIL "), top
    assert lines.index(top) <= 4, "the header pushes the problem down"
    assert lines[-1].startswith("verdict: ") and lines[-1].endswith(EXIT_MEANING[1]), lines[-1]


def test_header_then_problems_then_one_line_per_group_then_verdict() -> None:
    _, out, _ = run_cli("check", "--snapshot", str(CAPTURE))
    lines = out.splitlines()
    assert lines[0].startswith("gpu-runbook ") and "host vm" in lines[0] and "collected 2026-11-27" in lines[0]
    assert [line.split()[0] for line in lines if STATUS_LINE.match(line)][:2] == ["FAIL", "FAIL"]
    assert sum(1 for line in lines if line.startswith("SKIP")) == 1
    assert re.search(r"^SKIP +\d+ checks did not apply \(--verbose lists them\)$", out, re.M)
    assert re.search(r"^OK +\d+ checks passed \(--verbose lists them\)$", out, re.M)
    assert re.fullmatch(r"verdict: 2 failed \(\d+ checks: .*2 fail\); exit 1: a check failed", lines[-1])
    assert lines[0].isascii() and lines[-1].isascii()  # what the tool adds; summaries quote the host as-is


def test_verbose_lists_every_check() -> None:
    _, plain, _ = run_cli("check", "--snapshot", str(CAPTURE))
    _, verbose, _ = run_cli("check", "--snapshot", str(CAPTURE), "--verbose")
    _, data, _ = run_cli("check", "--snapshot", str(CAPTURE), "--format", "json")
    checks = [f["check"] for f in json.loads(data)["findings"]]
    assert all(re.search(rf"^\S+ +{re.escape(c)} ", verbose, re.M) for c in checks)
    assert len(verbose.splitlines()) > len(plain.splitlines()) + len(checks) // 2


def test_the_verdict_line_names_each_exit_code() -> None:
    healthy = SCENARIO_DIR / "device-nodes" / "captured-h200-private-dev-healthy.json"
    code, out, _ = run_cli("check", "--snapshot", str(healthy))
    assert out.splitlines()[-1].endswith(EXIT_MEANING[code])
    code, out, _ = run_cli("check", "--snapshot", str(CAPTURE), "--only", "xid-errors")
    assert code == 2 and out.splitlines()[-1].endswith("exit 2: a check could not judge")


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    terminal = _Terminal()
    main(["check", "--snapshot", str(CAPTURE)], stdout=terminal, stderr=io.StringIO())
    assert ANSI in terminal.getvalue()
    pipe = io.StringIO()
    main(["check", "--snapshot", str(CAPTURE)], stdout=pipe, stderr=io.StringIO())
    assert ANSI not in pipe.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    terminal = _Terminal()
    main(["check", "--snapshot", str(CAPTURE)], stdout=terminal, stderr=io.StringIO())
    assert ANSI not in terminal.getvalue()
    monkeypatch.delenv("NO_COLOR")
    terminal = _Terminal()
    main(["check", "--snapshot", str(CAPTURE), "--no-color"], stdout=terminal, stderr=io.StringIO())
    assert ANSI not in terminal.getvalue()


def test_a_slow_collection_says_so_on_a_terminal_and_then_clears_the_line() -> None:
    terminal = _Terminal()
    with progress_line(terminal, "collecting", after=0.05):
        time.sleep(0.3)
    assert terminal.getvalue().startswith("gpu-runbook: collecting") and terminal.getvalue().endswith("\r\033[K")
    quick = _Terminal()
    with progress_line(quick, "collecting", after=0.5):
        pass
    time.sleep(0.6)  # the timer was cancelled: nothing appears later either
    assert quick.getvalue() == ""
    pipe = io.StringIO()
    with progress_line(pipe, "collecting", after=0.0):
        time.sleep(0.1)
    assert pipe.getvalue() == ""


def test_html_report_is_one_self_contained_page() -> None:
    code, page, _ = run_cli("check", "--snapshot", str(CAPTURE), "--format", "html")
    assert code == 1 and page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    assert not re.findall(r'\ssrc="', page) and "url(" not in page
    assert "@media print" in page
    verdict = page.index('class="verdict"')
    failed = page.index('<section class="fail">')
    stack = page.index('<section class="stack">')
    unknown = page.index('<section class="unknown">')
    skipped = page.index('<details class="skip">')
    assert verdict < failed < stack < unknown < skipped
    for needle in ('"row">Host</th><td>vm</td>', f'"row">Source</th><td>{CAPTURE}</td>', '"row">Collected</th>',
                   '"row">Report written</th>', '"row">Tool</th><td>gpu-runbook 0.1.0</td>'):
        assert needle in page, needle
    failing = re.findall(r'<article class="finding" data-check="([^"]+)" data-status="fail"', page)
    assert failing == ["nvml-init", "device-nodes"]
    assert page.count("<b>Fix:</b>") == 2 and page.count("<b>Evidence:</b>") == 2
    assert 'data-broken="true"' in page and 'data-layer="layer-driver"' in page

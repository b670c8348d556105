"""Every output format renders the same findings; exit codes follow the NPD convention."""

from __future__ import annotations

import io
import json
import re

import pytest
from gpu_runbook.findings import Finding, Status
from gpu_runbook.render import OutputFormat, exit_code, renderer_for


def _finding(check: str, status: Status) -> Finding:
    return Finding(check=check, status=status, summary=f"{check} is {status.value} <b>&", page="device-nodes",
                   url=f"http://127.0.0.1:8000/devices/device-nodes.html#{check}", evidence={"k": 1},
                   fix="do the thing" if status is not Status.OK else "")


@pytest.fixture
def findings() -> list[Finding]:
    return [_finding(f"check-{s.value}", s) for s in Status]


def _render(fmt: OutputFormat, findings: list[Finding], **meta: object) -> str:
    out = io.StringIO()
    renderer_for(fmt)(findings, out, {"source": "test", **meta})
    return out.getvalue()


@pytest.mark.parametrize("fmt", list(OutputFormat))
def test_every_format_renders_every_finding(fmt: OutputFormat, findings: list[Finding]) -> None:
    # The text format folds what passed and what did not apply into one line each; --verbose lists them.
    text = _render(fmt, findings, verbose=True)
    if fmt is OutputFormat.NPD:
        assert text.count("\n") == 1 and len(text.strip()) <= 80
        assert text.startswith("check-fail:")
    else:
        for f in findings:
            assert f.check in text


def test_json_is_parseable_with_findings(findings: list[Finding]) -> None:
    report = json.loads(_render(OutputFormat.JSON, findings))
    assert [f["check"] for f in report["findings"]] == [f.check for f in findings]
    assert report["summary"]["worst"] == "fail" and report["summary"]["fail"] == 1


def test_prometheus_lines_are_valid_exposition(findings: list[Finding]) -> None:
    sample = re.compile(r'^[a-z_]+(\{([a-z_]+="[^"\n]*",?)+\})? -?\d+(\.\d+)?$')
    for line in _render(OutputFormat.PROMETHEUS, findings).splitlines():
        assert line.startswith("#") or sample.match(line), line


def test_html_escapes_text(findings: list[Finding]) -> None:
    html = _render(OutputFormat.HTML, findings)
    assert "<b>&" not in html and "&lt;b&gt;&amp;" in html


def test_text_puts_problems_first(findings: list[Finding]) -> None:
    from gpu_runbook.render.text import header_lines

    lines = _render(OutputFormat.TEXT, findings).splitlines()
    first = lines[len(header_lines({"source": "test"}))]
    assert first.startswith("FAIL")


@pytest.mark.parametrize("statuses, code", [
    ([], 0), ([Status.OK, Status.WARN, Status.SKIP], 0), ([Status.OK, Status.UNKNOWN], 2),
    ([Status.UNKNOWN, Status.FAIL], 1), ([Status.FAIL], 1),
])
def test_exit_codes(statuses: list[Status], code: int) -> None:
    assert exit_code([_finding("x", s) for s in statuses]) == code

"""JSON renderer: {"schema_version", "source", "summary", "findings": [...]} for machines."""

from __future__ import annotations

import json
from typing import TextIO

from gpu_runbook.findings import Finding, Status, worst

REPORT_SCHEMA_VERSION = 1


def report(findings: list[Finding], meta: dict[str, object]) -> dict[str, object]:
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "source": meta.get("source"),
        "summary": {
            "worst": worst(findings).value,
            **{s.value: sum(1 for f in findings if f.status is s) for s in Status},
        },
        "findings": [f.to_dict() for f in findings],
    }


def render(findings: list[Finding], out: TextIO, meta: dict[str, object]) -> None:
    json.dump(report(findings, meta), out, indent=2, ensure_ascii=False)
    out.write("\n")

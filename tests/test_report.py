"""`gpu-runbook report`: many snapshots judged at once, per finding the nodes that have it (worst first),
in four formats; bad input gets one line; a generated fleet is judged fast and in bounded memory."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SNIPPETS, limit_s, load_scenario, run_cli, scenario_files

sys.path.insert(0, str(REPO / "benchmarks"))

BROKEN = [p for p in scenario_files() if p.name.startswith("broken-")]
FIXED = [p for p in scenario_files() if p.name.startswith("fixed-")]


def _fleet(tmp_path: Path) -> tuple[Path, dict[str, dict[str, str]]]:
    """A directory of broken and fixed scenarios (some gzipped, some in a sub-directory), with the
    verdicts each node's scenario expects."""
    fleet = tmp_path / "fleet"
    expected = {}
    for index, path in enumerate(BROKEN[:12] + FIXED[:8]):
        data = load_scenario(path)
        body = json.dumps(data["snapshot"]).encode("utf-8")
        rack = fleet / ("rack-b" if index % 2 else "rack-a")
        rack.mkdir(parents=True, exist_ok=True)
        name = f"{path.parent.name}--{path.stem}"
        if index % 3 == 0:
            (rack / f"{name}.json.gz").write_bytes(gzip.compress(body))
        else:
            (rack / f"{name}.json").write_bytes(body)
        expected[f"{rack.name}/{name}"] = data["expect"]
    return fleet, expected


def test_report_counts_each_finding_on_the_nodes_whose_scenario_has_it(tmp_path: Path) -> None:
    fleet, expected = _fleet(tmp_path)
    code, out, err = run_cli("report", str(fleet), "--format", "json", "--jobs", "1")
    report = json.loads(out)
    assert err == ""
    assert report["judged"] == len(expected)
    rows = {(r["check"], r["status"]): r for r in report["findings"]}
    for node, verdicts in expected.items():
        for check, status in verdicts.items():
            if status in ("fail", "warn", "unknown"):
                assert node in rows[(check, status)]["nodes"], (node, check, status)
            else:
                assert all(node not in r["nodes"] for (c, _), r in rows.items() if c == check), (node, check)
    assert all(r["count"] == len(r["nodes"]) for r in report["findings"])
    assert code == report["exit_code"] == 1  # broken scenarios fail


def test_nodes_are_listed_worst_first(tmp_path: Path) -> None:
    fleet, _ = _fleet(tmp_path)
    report = json.loads(run_cli("report", str(fleet), "--format", "json", "--jobs", "1")[1])
    rank = {n["node"]: (n["fail"], n["unknown"], n["warn"]) for n in report["worst_nodes"]}
    ranks = [rank[n["node"]] for n in report["worst_nodes"]]
    assert ranks == sorted(ranks, reverse=True)
    for row in report["findings"]:
        keys = [rank.get(n, (0, 0, 0)) for n in row["nodes"]]
        assert keys == sorted(keys, reverse=True), row["check"]
    statuses = [r["status"] for r in report["findings"]]
    order = ["fail", "unknown", "warn"]
    assert statuses == sorted(statuses, key=order.index)


def test_parallel_and_serial_reports_agree(tmp_path: Path) -> None:
    fleet, _ = _fleet(tmp_path)
    for copy in range(4):  # past PARALLEL_FROM files, so that the workers really start
        shutil.copytree(fleet / "rack-a", fleet / f"rack-copy{copy}")
        shutil.copytree(fleet / "rack-b", fleet / f"rack-copy{copy}b")
    serial = run_cli("report", str(fleet), "--format", "json", "--jobs", "1")
    parallel = run_cli("report", str(fleet), "--format", "json", "--jobs", "2")
    assert json.loads(serial[1])["judged"] >= 64
    assert serial == parallel


@pytest.mark.parametrize("fmt,marker", [("text", "worst nodes:"), ("markdown", "| status | check |"),
                                        ("html", '<table class="gpu-runbook-fleet">'), ("json", '"findings"')])
def test_every_format_renders(tmp_path: Path, fmt: str, marker: str) -> None:
    fleet, expected = _fleet(tmp_path)
    code, out, err = run_cli("report", str(fleet), "--format", fmt, "--jobs", "1")
    assert code == 1 and err == ""
    assert marker in out
    if fmt != "json":
        assert f"{len(expected)} snapshots judged" in out


def test_single_files_and_unreadable_ones(tmp_path: Path) -> None:
    good = tmp_path / "node-a.json"
    good.write_text(json.dumps(load_scenario(FIXED[0])["snapshot"]), encoding="utf-8")
    garbled = tmp_path / "node-b.json.gz"
    garbled.write_bytes(b"not gzip at all")
    not_snapshot = tmp_path / "node-c.json"
    not_snapshot.write_text("[1, 2]", encoding="utf-8")
    code, out, err = run_cli("report", str(good), str(garbled), str(not_snapshot))
    assert code == 2  # a node that could not be judged is not a healthy node
    assert "1 snapshot judged" in out and "2 files unreadable" in out
    assert f"{garbled}: cannot read" in out
    assert f"{not_snapshot}: a snapshot is a JSON object" in out
    assert "Traceback" not in out + err


@pytest.mark.parametrize("args,message", [
    (["/nonexistent/fleet"], "report: /nonexistent/fleet: no such file or directory"),
    (["--jobs", "-1", "."], "--jobs must be 0"),
])
def test_bad_input_is_one_line(args: list[str], message: str) -> None:
    code, out, err = run_cli("report", *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err, err


def test_a_directory_without_snapshots(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    code, _, err = run_cli("report", str(tmp_path))
    assert code == 2 and "no snapshot files" in err and err.count("\n") == 1


def test_generated_fleet_is_fast_and_bounded(tmp_path: Path) -> None:
    """The issue's bar is 10,000 snapshots in 60 s on two cores: 12 ms of CPU per snapshot with both cores
    busy. benchmarks/bench_report.py measures the full fleet's wall time; here 600 real-sized snapshots
    (about 30 MB of JSON) must stay within that CPU budget (CPU time, unlike wall time, does not depend
    on what else the machine runs), and the report's peak memory far below what holding them all would
    take."""
    from bench_report import generate

    size = generate(tmp_path / "fleet", 600)
    env = dict(os.environ, PYTHONPATH=str(SNIPPETS))
    # A wrapper process waits for the report alone, so its children's peak RSS is the report's (or a
    # worker's), not that of whatever this test session ran before.
    wrapper = ("import json, resource, subprocess, sys, time; t = time.perf_counter(); "
               "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
               "print(json.dumps({'rc': p.returncode, 'wall': time.perf_counter() - t, 'out': p.stdout, "
               "'err': p.stderr, 'rss_kib': u.ru_maxrss, 'cpu': u.ru_utime + u.ru_stime}))")
    proc = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-m", "gpu_runbook", "report",
                           str(tmp_path / "fleet"), "--format", "json", "--jobs", "2"],
                          capture_output=True, text=True, env=env, timeout=120, check=True)
    result = json.loads(proc.stdout)
    assert result["rc"] in (0, 1, 2) and json.loads(result["out"])["judged"] == 600, result["err"]
    assert result["cpu"] / 600 <= 2 * 60 / 10000, f"{result['cpu'] / 600 * 1000:.1f} ms CPU per snapshot"
    assert result["wall"] < limit_s(0.0, 60.0), f"{result['wall']:.0f} s for 600 snapshots"
    # Parsed, 30 MB of JSON would take several times that in Python objects.
    assert size > 20 * 2**20
    assert result["rss_kib"] / 1024 < 150, f"peak RSS {result['rss_kib'] / 1024:.0f} MiB"


def test_the_manifests_name_the_image_placeholder_the_docs_replace() -> None:
    """Both DaemonSets run the image built from packaging/Containerfile, named by one placeholder that the
    health-monitoring page's command replaces; the collector writes one redacted snapshot per node."""
    import yaml

    manifests = REPO / "snippets" / "manifests"
    docs = (REPO / "docs" / "kubernetes" / "health-monitoring.md").read_text(encoding="utf-8")
    assert 'sed "s|GPU_RUNBOOK_NPD_IMAGE|$IMAGE|"' in docs
    for name in ("npd-gpu-runbook.yaml", "gpu-runbook-collect.yaml"):
        daemonset = next(d for d in yaml.safe_load_all((manifests / name).read_text()) if d["kind"] == "DaemonSet")
        (container,) = daemonset["spec"]["template"]["spec"]["containers"]
        assert container["image"] == "GPU_RUNBOOK_NPD_IMAGE", name
    script = container["command"][-1]
    assert "gpu-runbook collect --root /host --redact --force" in script
    assert '-o "/snapshots/${NODE_NAME}.json"' in script
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/host"]["readOnly"] is True and "/snapshots" in mounts
    containerfile = (REPO / "packaging" / "Containerfile").read_text(encoding="utf-8")
    assert "COPY gpu-runbook.pyz /usr/local/bin/gpu-runbook" in containerfile

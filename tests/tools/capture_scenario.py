"""Turn a snapshot captured on a real host into a scenario: the checks' verdicts become its `expect`.

Usage:
    python tests/tools/capture_scenario.py SNAPSHOT OUT.json --source "captured on ..." --description "..."
        [--keep-dmesg REGEX] [--drop-mounts-under DIR ...] [--drop-init-args]

Only take a snapshot collected with --redact (UUIDs, serials, hostnames replaced). The trimming options
drop what belongs to the lending infrastructure rather than the GPU stack (its boot log, its own mounts,
its init arguments); each one used is named in the scenario's source, so the capture stays honest about
what was removed. Nothing is added or rewritten.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "snippets"))

from gpu_runbook.registry import run_checks  # noqa: E402
from gpu_runbook.snapshot import Snapshot  # noqa: E402


def trim(data: dict[str, Any], keep_dmesg: str | None, drop_mounts: list[str], drop_init_args: bool) -> list[str]:
    """Trim `data` in place; returns a note per trim applied."""
    notes = []
    dmesg = data.get("commands", {}).get("dmesg")
    if keep_dmesg and isinstance(dmesg, dict) and isinstance(dmesg.get("stdout"), str):
        pattern = re.compile(keep_dmesg)
        lines = dmesg["stdout"].splitlines()
        kept = [line for line in lines if pattern.search(line)]
        dmesg["stdout"] = "".join(line + "\n" for line in kept)
        notes.append(f"dmesg trimmed to the {len(kept)} of {len(lines)} lines matching /{keep_dmesg}/")
    mountinfo = data.get("files", {}).get("/proc/self/mountinfo")
    if drop_mounts and isinstance(mountinfo, dict) and isinstance(mountinfo.get("text"), str):
        def dropped(line: str) -> bool:
            fields = line.split()
            return len(fields) > 4 and any(fields[4].startswith(d.rstrip("/") + "/") for d in drop_mounts)
        lines = mountinfo["text"].splitlines()
        kept = [line for line in lines if not dropped(line)]
        mountinfo["text"] = "".join(line + "\n" for line in kept)
        notes.append(f"{len(lines) - len(kept)} mount(s) under {', '.join(drop_mounts)} dropped from mountinfo")
    cmdline = data.get("files", {}).get("/proc/cmdline")
    if drop_init_args and isinstance(cmdline, dict) and isinstance(cmdline.get("text"), str):
        # The kernel hands everything after " -- " to init untouched: not the kernel's (or the driver's) options.
        head, sep, _ = cmdline["text"].partition(" -- ")
        if sep:
            cmdline["text"] = head + "\n"
            notes.append("/proc/cmdline cut before the init arguments (after ' -- ')")
    bindings = data.get("nvml", {}).get("bindings")
    if isinstance(bindings, dict) and isinstance(bindings.get("file"), str) and "/" in bindings["file"]:
        # Where the capturing checkout kept pynvml is a path on that machine, not a fact about the GPU stack.
        bindings["file"] = ".../" + bindings["file"].rsplit("/", 1)[-1]
        notes.append("the pynvml file path shortened to its name")
    return notes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("snapshot")
    parser.add_argument("out")
    parser.add_argument("--source", required=True)
    parser.add_argument("--description", required=True)
    parser.add_argument("--keep-dmesg", metavar="REGEX")
    parser.add_argument("--drop-mounts-under", action="append", default=[], metavar="DIR")
    parser.add_argument("--drop-init-args", action="store_true")
    args = parser.parse_args()
    data = json.loads(Path(args.snapshot).read_text(encoding="utf-8"))
    if not data.get("redacted"):
        print(f"capture_scenario: {args.snapshot} was not collected with --redact; refusing to store it",
              file=sys.stderr)
        return 2
    notes = trim(data, args.keep_dmesg, args.drop_mounts_under, args.drop_init_args)
    expect = {f.check: f.status.value for f in run_checks(Snapshot(data), strict=True)}
    scenario = {"description": args.description,
                "source": "; ".join([args.source, *notes]),
                "expect": expect,
                "snapshot": data}
    Path(args.out).write_text(json.dumps(scenario, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(expect, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

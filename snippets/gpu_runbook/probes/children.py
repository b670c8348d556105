"""Probes that run in a child Python process, so that a call stuck in the driver can be abandoned.

NVML calls and open() of a device node can block in the kernel for minutes on a sick GPU, and Python
cannot interrupt them. Such probes run as `python -m gpu_runbook.probes.<module>`, print one JSON
object, and are killed (with their process group) at the deadline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any, NamedTuple, Optional

from gpu_runbook.probes.commands import KILL_GRACE_S, kill_group

_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ChildResult(NamedTuple):
    """The child's JSON object, or why there is none ("timeout", "crashed", "garbled")."""

    payload: Optional[dict[str, Any]]
    error: Optional[str]
    detail: str
    waited: float


def start_child(module: str, env: Optional[dict[str, str]] = None) -> subprocess.Popen[bytes]:
    """Start `python -m module` in its own session, with this package importable; raises OSError."""
    child_env = dict(env if env is not None else os.environ)
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_PARENT, child_env.get("PYTHONPATH")) if p)
    return subprocess.Popen([sys.executable, "-m", module], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=child_env, start_new_session=True, close_fds=True)


def finish_child(proc: subprocess.Popen[bytes], timeout: float, since: Optional[float] = None) -> ChildResult:
    """Wait up to `timeout` seconds for the child's JSON object; kill it and its group after that.

    `since` is the monotonic time the child started, so a timeout reports how long it really had.
    """
    started = time.monotonic()
    try:
        stdout, stderr = proc.communicate(timeout=max(timeout, 0.01))
    except subprocess.TimeoutExpired:
        kill_group(proc)
        try:
            proc.communicate(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            pass  # stuck in the kernel: abandoned, as a hung nvidia-smi is
        waited = time.monotonic() - (started if since is None else since)
        return ChildResult(None, "timeout", f"no answer within {waited:.1f} s; killed", waited)
    waited = time.monotonic() - started
    if proc.returncode != 0:
        tail = stderr.decode("utf-8", errors="replace").strip().splitlines()[-1:] or [""]
        return ChildResult(None, "crashed", f"exited {proc.returncode}: {tail[0]}"[:500], waited)
    try:
        payload = json.loads(stdout.decode("utf-8", errors="replace"))
    except ValueError:
        return ChildResult(None, "garbled", "printed no JSON", waited)
    if not isinstance(payload, dict):
        return ChildResult(None, "garbled", "printed no JSON object", waited)
    return ChildResult(payload, None, "", waited)

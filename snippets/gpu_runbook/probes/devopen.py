"""Open test: open each device node in plan.OPEN_TESTS read-only and record the errno, in a child process.

This is the one probe that opens a /dev node. It tells apart the causes a stat cannot:
ENOENT (the node is missing), EACCES (mode bits deny this user), EPERM (the devices cgroup or its
eBPF filter denies the open, which is invisible from inside a cgroup v2 container). The node is
opened O_RDONLY|O_NONBLOCK and closed at once: no read, no write, no ioctl.

A driver that is stuck can leave open() blocked in the kernel, so the opens run in a child process
that the parent kills at the deadline; a timeout is recorded as a fact of its own.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from typing import TYPE_CHECKING, Any, Optional, Union

from gpu_runbook.probes import plan

# The parent's helpers (subprocess and friends) are imported where used: the child that runs this
# module as __main__ then starts faster.
if TYPE_CHECKING:
    import subprocess


def open_test(path: str) -> dict[str, Any]:
    """Open one node read-only and close it; {"ok": True} or {"error": "EPERM", "detail": ...}."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, "EIO") if exc.errno else "EIO"
        return {"error": name, "detail": exc.strerror or str(exc)}
    os.close(fd)
    return {"ok": True}


def child_main() -> int:
    """Entry point of the child: one JSON object {path: result} on stdout."""
    sys.stdout.write(json.dumps({path: open_test(path) for path in plan.OPEN_TESTS}))
    return 0


def start_open_tests(env: Optional[dict[str, str]] = None) -> Union[subprocess.Popen[bytes], dict[str, Any]]:
    """Start the open-test child (collected later by finish_open_tests), or the fact of why it did not start."""
    from gpu_runbook.probes.children import start_child

    try:
        return start_child("gpu_runbook.probes.devopen", env)
    except OSError as exc:
        return {"error": "not-started", "detail": str(exc)}


def finish_open_tests(started: Union[subprocess.Popen[bytes], dict[str, Any], None],
                      timeout: float) -> dict[str, Any]:
    """The open tests' results; a hang (killed after `timeout`) or a crash is recorded, never raised."""
    if started is None or isinstance(started, dict):
        return started or {"error": "not-started", "detail": "no open-test child"}
    from gpu_runbook.probes.children import finish_child

    result = finish_child(started, timeout)
    if result.payload is None:
        detail = f"open() did not return: {result.detail}" if result.error == "timeout" else result.detail
        return {"error": result.error, "detail": f"open-test child {detail}"}
    return result.payload


def probe_open_tests(timeout: float, env: Optional[dict[str, str]] = None) -> dict[str, Any]:
    """Run the open tests in a child process and wait for them (at most `timeout` seconds)."""
    if timeout <= 0:
        return {"error": "deadline"}
    return finish_open_tests(start_open_tests(env), timeout)


if __name__ == "__main__":
    sys.exit(child_main())

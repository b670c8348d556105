"""Run the plan's read-only commands: argument lists, no shell, a timeout each, killed as a group."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from typing import Any, Optional

MAX_OUTPUT_CHARS = 256 * 1024
# After SIGKILL a process is reaped in milliseconds, unless it is stuck in the kernel (D state), where
# no wait helps: wait this long for its last output, then abandon it.
KILL_GRACE_S = 0.3


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    # The command may have forked (nvidia-smi does not, wrappers do); kill the whole session.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        try:
            proc.kill()
        except OSError:
            pass


def _text(data: Optional[bytes]) -> str:
    # Keep the end of a long output: the newest kernel-log lines and a tool's final error are there.
    return (data or b"")[-MAX_OUTPUT_CHARS:].decode("utf-8", errors="replace")


def _truncated(*outputs: Optional[bytes]) -> dict[str, Any]:
    return {"truncated": True} if any(len(o or b"") > MAX_OUTPUT_CHARS for o in outputs) else {}


def run_command(argv: Sequence[str], timeout: float, env: Optional[dict[str, str]] = None) -> dict[str, Any]:
    """Run argv with a timeout; return a command fact (exit, stdout, stderr, seconds) or an error fact."""
    started = time.monotonic()
    if timeout <= 0:
        return {"argv": list(argv), "error": "deadline", "detail": "overall deadline reached before this ran"}
    path_env = (env or os.environ).get("PATH", os.defpath)
    executable = shutil.which(argv[0], path=path_env)
    if executable is None:
        return {"argv": list(argv), "error": "not-found", "detail": f"{argv[0]} is not on PATH"}
    try:
        proc = subprocess.Popen(
            [executable, *argv[1:]],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, "EIO") if exc.errno else "EIO"
        return {"argv": list(argv), "error": name, "detail": exc.strerror or str(exc)}
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        try:
            stdout, stderr = proc.communicate(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            # A process stuck in the kernel (D state) ignores SIGKILL until it wakes; abandon it.
            stdout, stderr = b"", b""
        return {
            "argv": list(argv),
            "error": "timeout",
            "detail": f"no answer within {timeout:.1f} s; killed",
            "stdout": _text(stdout),
            "stderr": _text(stderr),
            **_truncated(stdout, stderr),
            "seconds": round(time.monotonic() - started, 3),
        }
    return {
        "argv": list(argv),
        "exit": proc.returncode,
        "stdout": _text(stdout),
        "stderr": _text(stderr),
        **_truncated(stdout, stderr),
        "seconds": round(time.monotonic() - started, 3),
    }

"""The Snapshot: every fact the probes saw on a host, as plain JSON, and the typed views checks read.

A snapshot is written by `gpu-runbook collect` on the troubled host and judged anywhere. Its sections:

- ``files``: host path -> ``{"text": ..., "truncated": bool}`` or ``{"error": "ENOENT", "detail": ...}``
- ``paths``: host path -> lstat facts (``kind``, ``mode``, ``major``, ``minor``, ``uid``, ``gid``,
  ``target`` for links, ``selinux`` label) or ``{"error": ...}``
- ``dirs``: host path -> ``{"entries": {name: link-target-or-null}}`` or ``{"error": ...}``
- ``pci``: NVIDIA and Mellanox PCI functions and the bridges above them, keyed by sysfs path (see probes/pci.py)
- ``users``: the accounts engine discovery looked at (probes/engines.py): name -> ``{"uid", "gid", "home",
  "groups", "linger"}``; their own engine files are in ``files`` and ``paths``
- ``engines``: what collect found (gpu_runbook/engines.py): id (``docker``, ``docker@alice``, ``containerd@rke2``)
  -> ``{"kind", "user", "uid", "rootless", "found_by", "configs", "toolkit_config", "runtimes", "mode",
  "mode_reason"}``; for people and aggregators, the checks derive the same from the raw facts
- ``commands``: name -> ``{"argv", "exit", "stdout", "stderr", "seconds", "truncated"?}`` or ``{"error": ...}``;
  a long output keeps its end
- ``nvml``: what NVML answered (see probes/nvml.py), or ``{"error": ...}`` / ``{"skipped": ...}``
- ``opens``: device node -> ``{"ok": true}`` or ``{"error": "EPERM", ...}`` from the open test
  (probes/devopen.py), or ``{"skipped": ...}`` / ``{"error": "timeout"}``
- ``env``: the allow-listed environment variables of the collecting process
- ``host``: host name, kernel, architecture, effective uid, whether in a container
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
# A real snapshot is tens of kilobytes; anything near this is not one.
MAX_SNAPSHOT_BYTES = 32 * 1024 * 1024

SECTIONS = ("host", "files", "paths", "dirs", "pci", "users", "engines", "commands", "nvml", "opens", "env", "probe")


# Fact errors that mean "not there": the probe looked and found nothing (ABSENT), or did not look
# (NOT_PRESENT adds "not-collected"). Any other error means "there, but could not be read", which a
# check must never turn into ok.
ABSENT = ("ENOENT", "ENOTDIR")
NOT_PRESENT = (*ABSENT, "not-collected")


class SnapshotError(ValueError):
    """A snapshot file that cannot be used; the message is one line for the operator."""


class Missing(Exception):
    """A fact that a check needs is absent or unusable; becomes a skip or unknown finding."""

    def __init__(self, reason: str, status: str = "unknown") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class FileFact:
    """One file as the probe saw it: text, or why there is none."""

    path: str
    text: Optional[str] = None
    error: Optional[str] = None  # errno name (ENOENT, EACCES, ...), "not-collected" or "malformed"
    detail: str = ""
    truncated: bool = False

    @property
    def exists(self) -> bool:
        return self.text is not None

    @property
    def absent(self) -> bool:
        """True only when the probe looked and the file was not there."""
        return self.error in ABSENT

    def require(self) -> str:
        """The text, or raise Missing with the reason (skip when absent, unknown when unreadable)."""
        if self.text is not None:
            return self.text
        if self.absent:
            raise Missing(f"{self.path} does not exist", "skip")
        raise Missing(f"{self.path} could not be read ({self.why})")

    @property
    def why(self) -> str:
        return f"{self.error}: {self.detail}" if self.detail else str(self.error)


@dataclass(frozen=True)
class CommandFact:
    """One command run by the probes: its output, or why there is none."""

    name: str
    argv: tuple = ()
    exit: Optional[int] = None
    stdout: str = ""
    stderr: str = ""
    seconds: Optional[float] = None
    error: Optional[str] = None  # "not-found", "timeout", "deadline", "EACCES", "not-collected", ...
    detail: str = ""
    truncated: bool = False  # the output was longer than the probe keeps; its end was kept

    @property
    def ran(self) -> bool:
        return self.error is None and self.exit is not None

    @property
    def output(self) -> str:
        return (self.stdout or "") + (self.stderr or "")


def nvml_answered(nvml: Optional[dict[str, Any]]) -> bool:
    """Whether the NVML probe's `nvmlInit` succeeded (`init.ok`); False for a missing or malformed probe.

    >>> nvml_answered({"init": {"ok": True}}), nvml_answered({"init": {"ok": False}}), nvml_answered(None)
    (True, False, False)
    """
    init = nvml.get("init") if isinstance(nvml, dict) else None
    return isinstance(init, dict) and bool(init.get("ok"))


def nvml_devices(nvml: Optional[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-GPU entries of the NVML probe's device list; empty for a missing or malformed list.

    >>> nvml_devices({"devices": [{"index": 0}, "junk"]}), nvml_devices({"devices": 1}), nvml_devices(None)
    ([{'index': 0}], [], [])
    """
    devices = nvml.get("devices") if isinstance(nvml, dict) else None
    return [d for d in devices if isinstance(d, dict)] if isinstance(devices, list) else []


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class Snapshot:
    """Read-only view over a snapshot dict; every accessor tolerates malformed content."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data: dict[str, Any] = dict(data)

    # -- sections -------------------------------------------------------------------------
    @property
    def schema_version(self) -> Any:
        return self.data.get("schema_version")

    @property
    def host(self) -> dict[str, Any]:
        return _mapping(self.data.get("host"))

    @property
    def env(self) -> dict[str, str]:
        return {k: v for k, v in _mapping(self.data.get("env")).items() if isinstance(v, str)}

    @property
    def nvml(self) -> dict[str, Any]:
        return _mapping(self.data.get("nvml"))

    @property
    def probe(self) -> dict[str, Any]:
        return _mapping(self.data.get("probe"))

    @property
    def in_container(self) -> Optional[bool]:
        value = self.host.get("in_container")
        return value if isinstance(value, bool) else None

    # -- single facts ---------------------------------------------------------------------
    def file(self, path: str) -> FileFact:
        raw = _mapping(self.data.get("files")).get(path)
        if raw is None:
            return FileFact(path, error="not-collected", detail="the probe did not read this file")
        if not isinstance(raw, dict):
            return FileFact(path, error="malformed", detail="file fact is not an object")
        text = raw.get("text")
        if isinstance(text, str):
            return FileFact(path, text=text, truncated=bool(raw.get("truncated")))
        return FileFact(path, error=str(raw.get("error") or "malformed"), detail=str(raw.get("detail") or ""))

    def files_matching(self, prefix: str) -> dict[str, FileFact]:
        """All file facts whose path starts with prefix (for globbed files such as /etc/cdi/*)."""
        files = _mapping(self.data.get("files"))
        return {p: self.file(p) for p in sorted(files) if isinstance(p, str) and p.startswith(prefix)}

    def path(self, path: str) -> dict[str, Any]:
        """lstat facts of a path; ``{"error": "not-collected"}`` when the probe did not look."""
        raw = _mapping(self.data.get("paths")).get(path)
        if raw is None:
            return {"error": "not-collected"}
        return raw if isinstance(raw, dict) else {"error": "malformed"}

    def paths_matching(self, prefix: str) -> dict[str, dict[str, Any]]:
        paths = _mapping(self.data.get("paths"))
        return {p: self.path(p) for p in sorted(paths) if isinstance(p, str) and p.startswith(prefix)}

    def dir(self, path: str) -> dict[str, Any]:
        raw = _mapping(self.data.get("dirs")).get(path)
        if raw is None:
            return {"error": "not-collected"}
        if not isinstance(raw, dict):
            return {"error": "malformed"}
        if "entries" in raw and not isinstance(raw["entries"], dict):
            return {"error": "malformed"}
        return raw

    @property
    def pci(self) -> dict[str, Any]:
        """The PCI walk (probes/pci.py): sysfs path -> fact; empty when the snapshot has none."""
        return _mapping(self.data.get("pci"))

    def command(self, name: str) -> CommandFact:
        raw = _mapping(self.data.get("commands")).get(name)
        if raw is None:
            return CommandFact(name, error="not-collected", detail="the probe did not run this command")
        if not isinstance(raw, dict):
            return CommandFact(name, error="malformed")
        exit_code = raw.get("exit")
        seconds = raw.get("seconds")
        return CommandFact(
            name=name,
            argv=tuple(str(a) for a in raw["argv"]) if isinstance(raw.get("argv"), list) else (),
            exit=exit_code if isinstance(exit_code, int) and not isinstance(exit_code, bool) else None,
            stdout=raw.get("stdout") if isinstance(raw.get("stdout"), str) else "",
            stderr=raw.get("stderr") if isinstance(raw.get("stderr"), str) else "",
            seconds=float(seconds) if isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
            else None,
            error=str(raw["error"]) if raw.get("error") is not None else (
                None if isinstance(exit_code, int) else "malformed"),
            detail=str(raw.get("detail") or ""),
            truncated=raw.get("truncated") is True,
        )

    def to_json(self) -> str:
        return json.dumps(self.data, indent=2, sort_keys=True, ensure_ascii=False)


def parse_snapshot(text: str, origin: str = "snapshot") -> Snapshot:
    """Parse snapshot JSON text, or raise SnapshotError with a one-line reason."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise SnapshotError(f"{origin}: JSON nested too deeply to be a snapshot") from None
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise SnapshotError(f"{origin}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise SnapshotError(f"{origin}: a snapshot is a JSON object, this is a {type(data).__name__}")
    # Scenario files wrap a snapshot with its verdicts; accept them so any scenario can be judged.
    if "snapshot" in data and isinstance(data["snapshot"], dict) and "schema_version" not in data:
        data = data["snapshot"]
    version = data.get("schema_version")
    if version is None:
        raise SnapshotError(f"{origin}: no schema_version: not a gpu-runbook snapshot")
    if version not in SUPPORTED_SCHEMA_VERSIONS or isinstance(version, bool):
        raise SnapshotError(
            f"{origin}: schema_version {version!r} is not supported by this gpu-runbook "
            f"(supported: {', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))}); upgrade gpu-runbook or re-collect")
    for section in SECTIONS:
        if section in data and not isinstance(data[section], dict):
            raise SnapshotError(f"{origin}: section {section!r} must be an object")
    return Snapshot(data)


def load_snapshot(path: str) -> Snapshot:
    """Read and parse a snapshot file ('-' for standard input), or raise SnapshotError."""
    import sys

    if path == "-":
        return parse_snapshot(sys.stdin.read(MAX_SNAPSHOT_BYTES + 1), "<stdin>")
    try:
        size = os.path.getsize(path)
        if size > MAX_SNAPSHOT_BYTES:
            raise SnapshotError(f"{path}: {size} bytes is too large for a snapshot "
                                f"(limit {MAX_SNAPSHOT_BYTES})")
        with open(path, "rb") as handle:
            raw = handle.read(MAX_SNAPSHOT_BYTES + 1)
    except SnapshotError:
        raise
    except FileNotFoundError:
        raise SnapshotError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SnapshotError(f"{path}: is a directory, not a snapshot file") from None
    except PermissionError:
        raise SnapshotError(f"{path}: permission denied") from None
    except OSError as exc:
        raise SnapshotError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SnapshotError(f"{path}: not UTF-8 text (byte {exc.start}): not a snapshot") from None
    return parse_snapshot(text, path)

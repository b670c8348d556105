"""Read-only access to the host's files under a root: text, lstat facts and directory listings.

Every function returns a fact dict and never raises. Symbolic links are resolved *inside* the root, so
that `--root /host` in a DaemonSet never reads the container's own /etc through an absolute link.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
import zlib
from typing import Any, Optional

_MAX_LINK_HOPS = 40


def _err(exc: OSError) -> dict[str, Any]:
    name = errno.errorcode.get(exc.errno or 0, "EIO") if exc.errno else "EIO"
    return {"error": name, "detail": exc.strerror or str(exc)}


def host_path(root: str, path: str, follow: bool = True) -> str:
    """Map a host path to the path under `root`, resolving symlinks inside the root.

    With follow=False the last component is not resolved (for lstat of links themselves).
    Raises OSError(ELOOP) on a link cycle; every other problem surfaces when the caller opens the path.
    """
    if root in ("", "/"):
        return path
    parts = [p for p in path.split("/") if p]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        is_last = not parts
        if (follow or not is_last) and os.path.islink(candidate):
            hops += 1
            if hops > _MAX_LINK_HOPS:
                raise OSError(errno.ELOOP, "Too many levels of symbolic links", path)
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)


def read_file_bytes(root: str, path: str, max_bytes: int) -> dict[str, Any]:
    """The first max_bytes of a regular file: {"data": bytes, "truncated": bool}, or an error fact."""
    try:
        real = host_path(root, path)
        # O_NONBLOCK: a FIFO or a device where a file was expected must not block the doctor.
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
        fd = os.open(real, flags)
    except OSError as exc:
        return _err(exc)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            return {"error": "EISDIR", "detail": "Is a directory"}
        if not stat.S_ISREG(info.st_mode):
            # Reading a character device could change or hang the device; only record that it is one.
            return {"error": "ENOTREG", "detail": "not a regular file; not read"}
        chunks: list[bytes] = []
        remaining = max_bytes + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
    except OSError as exc:
        return _err(exc)
    finally:
        os.close(fd)
    return {"data": data[:max_bytes], "truncated": len(data) > max_bytes}


def read_file(root: str, path: str, max_bytes: int) -> dict[str, Any]:
    """Read a file as text (UTF-8, undecodable bytes replaced), at most max_bytes."""
    raw = read_file_bytes(root, path, max_bytes)
    if "error" in raw:
        return raw
    data: bytes = raw["data"]
    fact: dict[str, Any] = {"text": data.decode("utf-8", errors="replace")}
    if raw["truncated"]:
        fact["truncated"] = True
    if b"\x00" in data:
        fact["binary"] = True
    return fact


def read_kernel_config(root: str, path: str, options: tuple[str, ...], max_bytes: int) -> dict[str, Any]:
    """The lines of a kernel configuration file (plain, or gzip like /proc/config.gz) that set or unset one of
    `options`, as a file fact whose text holds only those lines ("filtered": true).

    A configuration larger than max_bytes (after decompression) is cut there and marked truncated; a .gz file
    that does not decompress is recorded as EBADMSG rather than read as text.
    """
    raw = read_file_bytes(root, path, max_bytes)
    if "error" in raw:
        return raw
    data: bytes = raw["data"]
    truncated = raw["truncated"]
    if path.endswith(".gz"):
        try:
            inflater = zlib.decompressobj(wbits=47)  # 32 + 15: a gzip or zlib header, detected
            out = inflater.decompress(data, max_bytes + 1)
        except zlib.error as exc:
            return {"error": "EBADMSG", "detail": f"not a gzip file: {exc}"}
        truncated = truncated or len(out) > max_bytes or bool(inflater.unconsumed_tail)
        data = out[:max_bytes]
    wanted = set(options)
    kept = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        name = line[2:].split(" ", 1)[0] if line.startswith("# CONFIG_") else line.split("=", 1)[0]
        if name in wanted:
            kept.append(line)
    fact: dict[str, Any] = {"text": "".join(f"{line}\n" for line in kept), "filtered": True}
    if truncated:
        fact["truncated"] = True
    return fact


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISCHR, "char"), (stat.S_ISBLK, "block"), (stat.S_ISDIR, "dir"),
                       (stat.S_ISLNK, "symlink"), (stat.S_ISREG, "file"), (stat.S_ISFIFO, "fifo"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "other"


def stat_path(root: str, path: str) -> dict[str, Any]:
    """lstat a path: kind, permission bits, owner, device numbers, link target, SELinux label."""
    try:
        real = host_path(root, path, follow=False)
        info = os.lstat(real)
    except OSError as exc:
        return _err(exc)
    fact: dict[str, Any] = {
        "kind": _kind(info.st_mode),
        "mode": f"{stat.S_IMODE(info.st_mode):04o}",
        "uid": info.st_uid,
        "gid": info.st_gid,
    }
    if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode):
        fact["major"] = os.major(info.st_rdev)
        fact["minor"] = os.minor(info.st_rdev)
    if stat.S_ISLNK(info.st_mode):
        try:
            fact["target"] = os.readlink(real)
        except OSError as exc:
            fact["target_error"] = _err(exc)["error"]
    if stat.S_ISREG(info.st_mode):
        fact["size"] = info.st_size
    label = _selinux_label(real)
    if label:
        fact["selinux"] = label
    return fact


def _selinux_label(real: str) -> Optional[str]:
    getxattr = getattr(os, "getxattr", None)
    if getxattr is None:
        return None
    try:
        raw = getxattr(real, "security.selinux", follow_symlinks=False)
    except OSError:
        return None
    return raw.rstrip(b"\x00").decode("utf-8", errors="replace") or None


def list_dir(root: str, path: str, max_entries: int = 4096) -> dict[str, Any]:
    """List a directory: {name: link target or None}, sorted, capped at max_entries."""
    try:
        real = host_path(root, path)
        names = sorted(os.listdir(real))
    except OSError as exc:
        return _err(exc)
    entries: dict[str, Optional[str]] = {}
    for name in names[:max_entries]:
        full = os.path.join(real, name)
        try:
            entries[name] = os.readlink(full) if os.path.islink(full) else None
        except OSError:
            entries[name] = None
    fact: dict[str, Any] = {"entries": entries}
    if len(names) > max_entries:
        fact["truncated"] = True
    return fact


def expand(root: str, pattern: str, max_matches: int = 256) -> list[str]:
    """Expand a host-path glob under root into host paths (no match: the pattern itself if literal)."""
    if not any(ch in pattern for ch in "*?["):
        return [pattern]
    directory, _, name_pattern = pattern.rpartition("/")
    if any(ch in directory for ch in "*?["):
        # One wildcard directory level (e.g. /proc/driver/nvidia/gpus/*/information).
        parent, _, dir_pattern = directory.rpartition("/")
        out: list[str] = []
        for sub in expand(root, f"{parent}/{dir_pattern}", max_matches):
            out.extend(expand(root, f"{sub}/{name_pattern}", max_matches))
        return out[:max_matches]
    try:
        names = sorted(os.listdir(host_path(root, directory or "/")))
    except OSError:
        return []
    return [f"{directory}/{n}" for n in names if fnmatch.fnmatchcase(n, name_pattern)][:max_matches]

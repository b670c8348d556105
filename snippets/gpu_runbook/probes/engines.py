"""Which users may run their own container engine: the accounts the per-user reads of the plan are made for.

Reads /etc/passwd, /etc/group and the /var/lib/systemd/linger listing under the root (read-only, through
probes/host.py) and keeps, for at most plan.MAX_USERS accounts, only name, uid, gid, home, the gids of the
groups that list the account, and whether it lingers. Never raises; an unreadable source is recorded.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from gpu_runbook.probes import plan
from gpu_runbook.probes.host import expand, list_dir, read_file, stat_path

Record = Callable[[str, str, Any], None]


def parse_passwd(text: str) -> list[dict[str, Any]]:
    """Accounts of an /etc/passwd text: name, uid, gid, home (malformed lines are skipped).

    Sample Content::

        root:x:0:0:root:/root:/bin/bash
        alice:x:1000:1000:Alice:/home/alice:/bin/bash

    >>> users = parse_passwd("root:x:0:0:root:/root:/bin/bash\\nalice:x:1000:1000:A:/home/alice:/bin/sh\\nbad\\n")
    >>> users[1]
    {'name': 'alice', 'uid': 1000, 'gid': 1000, 'home': '/home/alice'}
    """
    users = []
    for line in (text or "").splitlines():
        fields = line.split(":")
        if len(fields) < 7 or line.startswith("#"):
            continue
        try:
            uid, gid = int(fields[2]), int(fields[3])
        except ValueError:
            continue
        users.append({"name": fields[0], "uid": uid, "gid": gid, "home": fields[5]})
    return users


def parse_group_members(text: str) -> dict[str, list[int]]:
    """Supplementary groups per user name from an /etc/group text: {user: [gid, ...]}.

    >>> parse_group_members("video:x:44:alice,bob\\nrender:x:109:alice\\nbad:x:z:alice\\n")
    {'alice': [44, 109], 'bob': [44]}
    """
    members: dict[str, list[int]] = {}
    for line in (text or "").splitlines():
        fields = line.split(":")
        if len(fields) < 4:
            continue
        try:
            gid = int(fields[2])
        except ValueError:
            continue
        for name in filter(None, (n.strip() for n in fields[3].split(","))):
            members.setdefault(name, []).append(gid)
    return members


def select_users(accounts: list[dict[str, Any]], lingering: list[str],
                 limit: int = plan.MAX_USERS) -> list[dict[str, Any]]:
    """The accounts the per-user reads are made for: linger users first, then uid >= USER_MIN_UID with a
    real home (absolute, not one of USER_NO_HOMES), in uid order, at most `limit`.

    >>> accounts = [{"name": "root", "uid": 0, "gid": 0, "home": "/root"},
    ...             {"name": "bob", "uid": 1001, "gid": 1001, "home": "/home/bob"},
    ...             {"name": "svc", "uid": 990, "gid": 990, "home": "/var/lib/svc"},
    ...             {"name": "ghost", "uid": 65534, "gid": 65534, "home": "/nonexistent"},
    ...             {"name": "nohome", "uid": 1002, "gid": 1002, "home": "/nonexistent"}]
    >>> [u["name"] for u in select_users(accounts, ["svc"])]
    ['svc', 'bob']
    """
    chosen: list[dict[str, Any]] = []
    by_name = {a["name"]: a for a in accounts}
    for name in sorted(lingering):
        if name in by_name and by_name[name]["home"].startswith("/"):
            chosen.append(dict(by_name[name], linger=True))
    for account in sorted(accounts, key=lambda a: a["uid"]):
        if account["name"] in lingering or account["uid"] < plan.USER_MIN_UID or account["uid"] >= 65534:
            continue
        home = account["home"].rstrip("/") or "/"
        if home.startswith("/") and home not in plan.USER_NO_HOMES:
            chosen.append(dict(account, linger=False))
    return chosen[:limit]


def user_patterns(user: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The plan's per-user files and paths for one account, filled in.

    >>> user_patterns({"uid": 1000, "home": "/home/alice/"})[1][:2]
    ('/run/user/1000/docker.sock', '/run/user/1000/podman/podman.sock')
    """
    home, uid = str(user["home"]).rstrip("/") or "/", str(user["uid"])
    fill = lambda p: p.replace("{home}", home).replace("{uid}", uid)  # noqa: E731
    return tuple(fill(p) for p in plan.USER_FILES), tuple(fill(p) for p in plan.USER_PATHS)


def probe_users(root: str, record: Record, at: Callable[[str], None]) -> list[dict[str, Any]]:
    """Find the users (recorded as record("users", name, fact)), then read their plan files and paths
    (recorded in "files" and "paths" like the plan's own). `at` names the path being read, for the
    reader's hang report. Returns the users."""
    sources: dict[str, Optional[str]] = {}
    for path in plan.USER_SOURCES[:2]:
        at(path)
        fact = read_file(root, path, plan.MAX_FILE_BYTES)
        sources[path] = fact.get("text")
        if "text" not in fact:
            record("users", f"!{path}", {"error": fact.get("error"), "detail": fact.get("detail", "")})
    at(plan.USER_SOURCES[2])
    linger = list_dir(root, plan.USER_SOURCES[2])
    record("dirs", plan.USER_SOURCES[2], linger)
    lingering = sorted(linger.get("entries") or {})
    groups = parse_group_members(sources.get("/etc/group") or "")
    users = select_users(parse_passwd(sources.get("/etc/passwd") or ""), lingering)
    for user in users:
        user["groups"] = sorted(set(groups.get(user["name"], [])))
        record("users", user["name"], {k: user[k] for k in ("uid", "gid", "home", "groups", "linger")})
    for user in users:
        files, paths = user_patterns(user)
        for pattern in files:
            at(pattern)
            for path in expand(root, pattern):
                at(path)
                fact = read_file(root, path, plan.MAX_FILE_BYTES)
                if fact.get("error") not in ("ENOENT", "ENOTDIR") or "*" not in pattern:
                    record("files", path, fact)
        for path in paths:
            at(path)
            record("paths", path, stat_path(root, path))
    return users

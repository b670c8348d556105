"""Redaction: replace what identifies a host or its owner with stable placeholders before anything is shared.

`gpu-runbook collect --redact` and `gpu-runbook check --redact` pass the snapshot through one Redactor
before it is written or judged, and pass the rendered report through the same one, so that a value
gets the same placeholder everywhere (the NVML UUID and the nvidia-smi UUID of one GPU both become
``GPU-UUID-1``) and findings still line up. What is replaced:

- GPU and MIG UUIDs (``GPU-6f0b...``, ``MIG-...``) -> ``GPU-UUID-n`` / ``MIG-UUID-n``
- serial numbers (NVML's, and "Serial Number: ..." lines) -> ``SERIAL-n``
- the host name (host facts, /etc/hostname) wherever it appears as a word -> ``HOST-n``
- IPv4 and IPv6 addresses (not loopback or unspecified) -> ``IP-n`` / ``IPV6-n``
- MAC addresses -> ``MAC-n``
- user names: /home/<user>-style path components, and names the caller passes -> ``USER-n``

Redaction is text substitution over every string (keys included); PCI bus ids, driver versions,
device numbers and file modes are not identifying and stay, since the checks need them.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable
from typing import Any, Optional

# NVML prints GPU-<8-4-4-4-12 hex>; MIG devices are MIG-<uuid> (R470+) or MIG-GPU-<uuid>/gi/ci (older).
_UUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
GPU_UUID = re.compile(r"(?<![0-9A-Za-z])GPU-" + _UUID + r"(?![0-9A-Za-z])")
MIG_UUID = re.compile(r"(?<![0-9A-Za-z])MIG-" + _UUID + r"(?![0-9A-Za-z])")
MAC = re.compile(r"(?<![0-9A-Za-z:-])[0-9A-Fa-f]{2}(?:([:-])[0-9A-Fa-f]{2})(?:\1[0-9A-Fa-f]{2}){4}(?![0-9A-Za-z:-])")
IPV4 = re.compile(r"(?<![0-9A-Za-z.])(?:\d{1,3}\.){3}\d{1,3}(?![0-9A-Za-z]|\.\d)")
IPV6_CANDIDATE = re.compile(r"(?<![0-9A-Za-z:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![0-9A-Za-z:])")
# "Serial Number : 1324021023456", "serial=...", "Board Serial: ..."
SERIAL_LINE = re.compile(r"(?i)(\bserial(?:[ _]?number)?\b\s*[:=]\s*)([0-9A-Za-z][0-9A-Za-z._-]{2,})")
# A path component after a home-directory root is a user name.
# (Also below a --root: /host/home/alice.)
HOME_USER = re.compile(r"(/(?:home|Users|export/home)/)([A-Za-z0-9_][A-Za-z0-9._-]*)")

# Account names that identify no one; replacing them would only blur the report.
SYSTEM_USERS = frozenset({"root", "nobody", "daemon", "bin", "sys", "admin", "user", "nvidia", "docker",
                          "ubuntu", "ec2-user", "centos", "debian", "core", "cloud-user", "runner"})
# Host names that identify no one.
GENERIC_HOSTS = frozenset({"localhost", "localhost.localdomain", "(none)"})


def _ip_is_private_to_host(text: str) -> bool:
    """Loopback, unspecified and link-local-less forms that say nothing about where the host is."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return True  # not an address at all: leave it
    return address.is_loopback or address.is_unspecified


class Redactor:
    """Replaces identifying values with numbered placeholders; one instance = one consistent mapping."""

    def __init__(self, hostnames: Iterable[str] = (), users: Iterable[str] = (),
                 serials: Iterable[str] = ()) -> None:
        self.mapping: dict[tuple[str, str], str] = {}
        self.counts: dict[str, int] = {}
        self.literals: dict[str, str] = {}  # value -> kind, for values known by name rather than shape
        for name in hostnames:
            self.add_hostname(name)
        for name in users:
            self.add_user(name)
        for serial in serials:
            self.add_literal(serial, "SERIAL")

    # -- what to look for -------------------------------------------------------------------
    def add_literal(self, value: Any, kind: str) -> None:
        if isinstance(value, str):
            value = value.strip()
            if len(value) >= 3 and not value.startswith(("GPU-", "MIG-")) and value.upper() != "N/A":
                self.literals.setdefault(value, kind)

    def add_hostname(self, name: Any) -> None:
        if not isinstance(name, str):
            return
        name = name.strip().rstrip(".")
        if not name or name.lower() in GENERIC_HOSTS or len(name) < 2:
            return
        self.add_literal(name, "HOST")
        short = name.split(".", 1)[0]
        if short != name and len(short) >= 3 and short.lower() not in GENERIC_HOSTS:
            self.add_literal(short, "HOST")

    def add_user(self, name: Any) -> None:
        if isinstance(name, str) and name.strip() and name.strip() not in SYSTEM_USERS:
            self.add_literal(name.strip(), "USER")

    def learn(self, data: Any) -> None:
        """Find identifying values known by name in a snapshot: host name, serials, home-directory users."""
        if not isinstance(data, dict):
            return
        host = data.get("host")
        if isinstance(host, dict):
            self.add_hostname(host.get("hostname"))
            self.add_hostname(host.get("nodename"))
        files = data.get("files")
        if isinstance(files, dict):
            hostname_file = files.get("/etc/hostname")
            if isinstance(hostname_file, dict) and isinstance(hostname_file.get("text"), str):
                for line in hostname_file["text"].splitlines()[:1]:
                    self.add_hostname(line)
        users = data.get("users")  # the accounts engine discovery looked at (probes/engines.py)
        for name in users if isinstance(users, dict) else ():
            if isinstance(name, str) and not name.startswith("!"):
                self.add_user(name)
        nvml = data.get("nvml")
        devices = nvml.get("devices") if isinstance(nvml, dict) else None
        for device in devices if isinstance(devices, list) else []:
            if isinstance(device, dict):
                self.add_literal(device.get("serial"), "SERIAL")
        for text in _strings(data):
            for match in HOME_USER.finditer(text):
                self.add_user(match.group(2))
            for match in SERIAL_LINE.finditer(text):
                self.add_literal(match.group(2), "SERIAL")

    # -- replacing --------------------------------------------------------------------------
    def placeholder(self, kind: str, value: str) -> str:
        key = (kind, value)
        if key not in self.mapping:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            self.mapping[key] = f"{kind}-{self.counts[kind]}"
        return self.mapping[key]

    def text(self, text: str) -> str:
        """Redact one string."""
        if not text:
            return text
        text = GPU_UUID.sub(lambda m: self.placeholder("GPU-UUID", m.group(0).lower()), text)
        text = MIG_UUID.sub(lambda m: self.placeholder("MIG-UUID", m.group(0).lower()), text)
        text = SERIAL_LINE.sub(lambda m: m.group(1) + self.placeholder("SERIAL", m.group(2)), text)
        text = HOME_USER.sub(lambda m: m.group(1) + self._user(m.group(2)), text)
        if self.literals:
            # Longest first, so "gpu-node-7.example.org" wins over its short name "gpu-node-7".
            for value in sorted(self.literals, key=len, reverse=True):
                if value in text:
                    pattern = r"(?<![0-9A-Za-z_.-])" + re.escape(value) + r"(?![0-9A-Za-z_-])"
                    kind = self.literals[value]
                    text = re.sub(pattern, lambda m, k=kind, v=value: self.placeholder(k, v), text)
        text = MAC.sub(self._mac, text)
        text = IPV4.sub(self._ipv4, text)
        text = IPV6_CANDIDATE.sub(self._ipv6, text)
        return text

    def _user(self, name: str) -> str:
        # A report passes the redactor after the snapshot did: its /home/USER-1 is already a placeholder.
        if name in SYSTEM_USERS or re.fullmatch(r"USER-\d+", name):
            return name
        return self.placeholder("USER", name)

    def _mac(self, match: re.Match[str]) -> str:
        value = match.group(0).lower().replace("-", ":")
        if value == "00:00:00:00:00:00":
            return match.group(0)
        return self.placeholder("MAC", value)

    def _ipv4(self, match: re.Match[str]) -> str:
        value = match.group(0)
        if any(int(octet) > 255 for octet in value.split(".")) or _ip_is_private_to_host(value):
            return value
        return self.placeholder("IP", value)

    def _ipv6(self, match: re.Match[str]) -> str:
        value = match.group(0)
        try:
            address = ipaddress.IPv6Address(value)
        except ValueError:
            return value  # PCI bus ids, clock times and the like
        if address.is_loopback or address.is_unspecified:
            return value
        return self.placeholder("IPV6", address.compressed)

    def value(self, value: Any) -> Any:
        """Redact every string in a JSON-like value (dict keys included), keeping its shape."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(k) if isinstance(k, str) else k: self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        return value

    def snapshot(self, data: dict[str, Any]) -> dict[str, Any]:
        """A redacted copy of a snapshot dict, marked as redacted."""
        self.learn(data)
        out = self.value(_sorted_walk(data))
        if isinstance(out, dict):
            out["redacted"] = True
        return out


def _strings(value: Any, depth: int = 0) -> Iterable[str]:
    if depth > 64:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                yield key
            yield from _strings(item, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item, depth + 1)


def _sorted_walk(value: Any) -> Any:
    """The same value with dict keys in sorted order, so placeholders are numbered the same every run."""
    if isinstance(value, dict):
        try:
            items = sorted(value.items(), key=lambda kv: str(kv[0]))
        except TypeError:
            items = list(value.items())
        return {k: _sorted_walk(v) for k, v in items}
    if isinstance(value, list):
        return [_sorted_walk(v) for v in value]
    return value


def redact_snapshot(data: dict[str, Any], users: Iterable[str] = (),
                    redactor: Optional[Redactor] = None) -> dict[str, Any]:
    """Redact a snapshot dict (a new dict; the argument is not changed).

    >>> snap = {"schema_version": 1, "host": {"hostname": "gpu-node-7"},
    ...         "nvml": {"devices": [{"uuid": "GPU-6f0b8a2c-1d3e-4f5a-8b7c-9d0e1f2a3b4c", "serial": "1324021023456"}]},
    ...         "commands": {"nvidia-smi": {"stdout": "0, GPU-6f0b8a2c-1d3e-4f5a-8b7c-9d0e1f2a3b4c on gpu-node-7"}}}
    >>> out = redact_snapshot(snap)
    >>> out["nvml"]["devices"][0], out["host"]["hostname"]
    ({'serial': 'SERIAL-1', 'uuid': 'GPU-UUID-1'}, 'HOST-1')
    >>> out["commands"]["nvidia-smi"]["stdout"]
    '0, GPU-UUID-1 on HOST-1'
    """
    redactor = redactor or Redactor(users=users)
    return redactor.snapshot(data)


def redact_text(text: str, redactor: Optional[Redactor] = None) -> str:
    """Redact one text (a rendered report, a log line) by shape alone, or with a snapshot's Redactor.

    >>> redact_text("eth0 00:1a:2b:3c:4d:5e 10.1.2.3 fe80::1ff:fe23:4567:890a /home/alice/x 0000:3b:00.0")
    'eth0 MAC-1 IP-1 IPV6-1 /home/USER-1/x 0000:3b:00.0'
    """
    return (redactor or Redactor()).text(text)


def process_redactor() -> Redactor:
    """One run's Redactor (snapshot and report share its placeholders), told the names of this user."""
    names = [os.environ.get(v, "") for v in ("USER", "LOGNAME", "SUDO_USER")]
    try:
        import pwd

        names.append(pwd.getpwuid(os.geteuid()).pw_name)
    except (ImportError, KeyError, OSError):
        pass
    return Redactor(users=[n for n in names if n])

"""Parsers for GPU sharing facts: MIG capability files, device selection variables, MPS settings.

Pure functions of text; they never raise on malformed input.
"""

from __future__ import annotations

import math
import re
from typing import Optional

_MINOR = re.compile(r"^\s*DeviceFileMinor:\s*(\d+)\s*$", re.MULTILINE)
_INDEX = re.compile(r"^\d+$")
_MIG_INDEX = re.compile(r"^\d+:\d+$")
_NUMBER = re.compile(r"^[0-9]+(?:\.[0-9]+)?$")


def parse_capability_minor(text: str) -> Optional[int]:
    """The ``DeviceFileMinor`` of an nvidia-capabilities file, or None (``/proc`` mode files are empty).

    Sample Content::

        DeviceFileMinor: 1
        DeviceFileMode: 256
        DeviceFileModify: 1

    >>> parse_capability_minor("DeviceFileMinor: 21\\nDeviceFileMode: 292\\n")
    21
    >>> parse_capability_minor("") is None
    True
    """
    match = _MINOR.search(text or "")
    return int(match.group(1)) if match else None


def parse_visible_devices(value: str) -> list[tuple[str, str]]:
    """Classify a ``CUDA_VISIBLE_DEVICES`` / ``NVIDIA_VISIBLE_DEVICES`` value, token by token.

    Kinds: ``index`` (a whole GPU by index), ``gpu-uuid`` (a whole GPU by UUID), ``mig-uuid``
    (``MIG-<uuid>``, or the older ``MIG-GPU-<uuid>/<gi>/<ci>``), ``mig-index`` (``<gpu>:<mig>``, the
    container toolkit's form), ``all``, ``none``, ``void``, ``other``.

    Sample Content::

        0,2
        GPU-6f0b2c1e-...,MIG-0929581a-2be6-5dec-bf34-0954c6c529a6
        0:0,0:1

    >>> parse_visible_devices("0, GPU-36c9561a,MIG-0929581a-2be6,0:1")
    [('index', '0'), ('gpu-uuid', 'GPU-36c9561a'), ('mig-uuid', 'MIG-0929581a-2be6'), ('mig-index', '0:1')]
    >>> parse_visible_devices("all")
    [('all', 'all')]
    >>> parse_visible_devices("")
    []
    """
    tokens: list[tuple[str, str]] = []
    for raw in (value or "").split(","):
        token = raw.strip()
        if not token:
            continue
        lower = token.lower()
        if lower in ("all", "none", "void"):
            kind = lower
        elif _INDEX.match(token):
            kind = "index"
        elif _MIG_INDEX.match(token):
            kind = "mig-index"
        elif token.startswith("MIG-"):
            kind = "mig-uuid"
        elif token.startswith("GPU-"):
            kind = "gpu-uuid"
        else:
            kind = "other"
        tokens.append((kind, token))
    return tokens


def parse_thread_percentage(value: str) -> Optional[float]:
    """``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`` as a number when it is a percentage in (0, 100], else None.

    MPS accepts fractions: the server logs ``Active Threads Percentage set to 12.0``.

    Sample Content::

        25

    >>> parse_thread_percentage(" 12.5 ")
    12.5
    >>> [parse_thread_percentage(v) for v in ("0", "150", "50%", "", "nan")]
    [None, None, None, None, None]
    """
    token = (value or "").strip()
    if not _NUMBER.match(token):
        return None
    number = float(token)
    if not math.isfinite(number) or number <= 0 or number > 100:
        return None
    return number

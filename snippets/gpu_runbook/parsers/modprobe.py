"""Parsers for module configuration: modprobe.d files, the kernel command line, library file names."""

from __future__ import annotations

import re
from typing import Optional


def parse_modprobe_conf(text: str) -> dict[str, list[str]]:
    """Collect the directives of a modprobe.d file: {"blacklist": [...], "install": [...], "options": [...],
    "alias": [...]}; each entry is the rest of the line after the keyword (comments dropped).

    Sample Content::

        # /etc/modprobe.d/blacklist-nouveau.conf
        blacklist nouveau
        options nouveau modeset=0

    >>> conf = parse_modprobe_conf("blacklist nouveau\\noptions nouveau modeset=0\\n# blacklist x\\n")
    >>> conf["blacklist"], conf["options"]
    (['nouveau'], ['nouveau modeset=0'])
    """
    result: dict[str, list[str]] = {"blacklist": [], "install": [], "options": [], "alias": []}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        keyword, _, rest = line.partition(" ")
        if keyword in result and rest.strip():
            result[keyword].append(" ".join(rest.split()))
    return result


def _module_names(module: str) -> set[str]:
    """The spellings modprobe treats as one module: dashes and underscores are interchangeable."""
    return {module, module.replace("_", "-"), module.replace("-", "_")}


def module_disabled_by(confs: dict[str, str], cmdline: str, module: str) -> list[str]:
    """Where `module` is kept from loading: modprobe.d blacklist/install-to-false/alias-off lines,
    or the kernel command line (modprobe.blacklist=, rd.driver.blacklist=, module_blacklist=).

    A plain `blacklist` only stops loading by alias; `install nouveau /bin/false` stops it entirely.
    `nouveau modeset=0` lets the module load, so it is not counted here (see module_option_set).

    >>> module_disabled_by({"/etc/modprobe.d/b.conf": "blacklist nouveau\\n"}, "", "nouveau")
    ['/etc/modprobe.d/b.conf: blacklist nouveau']
    >>> module_disabled_by({}, "BOOT_IMAGE=/vmlinuz rd.driver.blacklist=nouveau quiet", "nouveau")
    ['/proc/cmdline: rd.driver.blacklist=nouveau']
    >>> module_disabled_by({"/etc/modprobe.d/x.conf": "options nouveau modeset=0\\n"}, "", "nouveau")
    []
    """
    found: list[str] = []
    names = _module_names(module)
    for path, text in sorted(confs.items()):
        conf = parse_modprobe_conf(text)
        for entry in conf["blacklist"]:
            if entry.split()[0] in names:
                found.append(f"{path}: blacklist {entry}")
        for entry in conf["install"]:
            words = entry.split()
            if words[0] in names and len(words) > 1 and re.search(r"(^|/)(false|true)$", words[1]):
                found.append(f"{path}: install {entry}")
        for entry in conf["alias"]:
            words = entry.split()
            if len(words) == 2 and words[0] in names and words[1] == "off":
                found.append(f"{path}: alias {entry}")
    for token in cmdline.split():
        key, _, value = token.partition("=")
        if key in ("modprobe.blacklist", "rd.driver.blacklist", "module_blacklist"):
            if names & set(value.split(",")):
                found.append(f"/proc/cmdline: {token}")
    return found


def module_option_set(confs: dict[str, str], cmdline: str, module: str, option: str, value: str) -> list[str]:
    """Where `module`'s parameter `option` is set to `value`: modprobe.d `options` lines and the kernel command
    line's `module.option=value` (which applies to a built-in module too). The last setting on a line wins,
    as modprobe applies them in order.

    >>> module_option_set({"/etc/modprobe.d/n.conf": "options nouveau modeset=0\\n"}, "", "nouveau", "modeset", "0")
    ['/etc/modprobe.d/n.conf: options nouveau modeset=0']
    >>> module_option_set({}, "quiet nouveau.modeset=0", "nouveau", "modeset", "0")
    ['/proc/cmdline: nouveau.modeset=0']
    >>> module_option_set({"/x.conf": "options nouveau modeset=0 modeset=1\\n"}, "", "nouveau", "modeset", "0")
    []
    """
    found: list[str] = []
    names = _module_names(module)
    for path, text in sorted(confs.items()):
        for entry in parse_modprobe_conf(text)["options"]:
            words = entry.split()
            if not words or words[0] not in names:
                continue
            settings = [w.partition("=") for w in words[1:]]
            last = [v for k, _, v in settings if k == option]
            if last and last[-1] == value:
                found.append(f"{path}: options {entry}")
    for token in cmdline.split():
        key, _, setting = token.partition("=")
        owner, _, name = key.partition(".")
        if owner in names and name == option and setting == value:
            found.append(f"/proc/cmdline: {token}")
    return found


_LIB_VERSION = re.compile(r"\.so\.(\d+\.\d+(?:\.\d+)?)$")


def library_version(path: str) -> Optional[str]:
    """The driver version in a versioned library file name, e.g. libnvidia-ml.so.580.159.04 -> 580.159.04.

    The SONAME link (libnvidia-ml.so.1) and the dev link (libnvidia-ml.so) carry no version.

    >>> library_version("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.580.159.04")
    '580.159.04'
    >>> library_version("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1") is None
    True
    """
    match = _LIB_VERSION.search(path)
    return match.group(1) if match else None


def nvml_library_version(nvml_version: object) -> Optional[str]:
    """The driver version in NVML's own version string (nvmlSystemGetNVMLVersion), or None.

    NVML reports the driver build it belongs to behind the CUDA major version: 13.580.159.04 on driver
    580.159.04. It names the libnvidia-ml actually loaded, wherever it lives (LD_LIBRARY_PATH included).

    >>> nvml_library_version("13.580.159.04"), nvml_library_version("11.450.51.06")
    ('580.159.04', '450.51.06')
    >>> nvml_library_version("580.159.04") is None, nvml_library_version(None) is None
    (True, True)
    """
    if not isinstance(nvml_version, str):
        return None
    match = re.fullmatch(r"\d{1,2}\.(\d{3}\.\d+(?:\.\d+)?)", nvml_version.strip())
    return match.group(1) if match else None

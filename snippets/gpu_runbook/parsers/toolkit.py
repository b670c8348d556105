"""Parsers for the NVIDIA Container Toolkit's files and outputs: versions, `nvidia-container-cli info`,
config TOML, runtime entries of Docker / containerd / CRI-O, CDI specs and `NVIDIA_REQUIRE_*` expressions.

Every parser takes text and returns plain data; none raises on malformed input.
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional

try:  # Python 3.11+
    import tomllib  # novermin  (3.11+; tomli below for 3.9 and 3.10)
except ModuleNotFoundError:  # pragma: no cover - exercised on 3.9/3.10 only
    import tomli as tomllib  # type: ignore[no-redef]

VersionTuple = tuple  # tuple[int, ...]


def version_tuple(text: Any) -> Optional[tuple[int, ...]]:
    """"580.159.04" -> (580, 159, 4); None when the text holds no dotted number.

    >>> version_tuple("580.159.04"), version_tuple("12.4"), version_tuple("v1.17.8"), version_tuple("x")
    ((580, 159, 4), (12, 4), (1, 17, 8), None)
    """
    match = re.search(r"(\d+(?:\.\d+)*)", str(text or ""))
    if not match:
        return None
    return tuple(int(p) for p in match.group(1).split("."))


def cuda_version_from_int(value: Any) -> Optional[str]:
    """NVML's CUDA driver version integer (major*1000 + minor*10) as "major.minor".

    >>> cuda_version_from_int(13000), cuda_version_from_int(12040), cuda_version_from_int("x")
    ('13.0', '12.4', None)
    """
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return f"{value // 1000}.{(value % 1000) // 10}"


def parse_toolkit_version(text: str) -> Optional[str]:
    """The version in `nvidia-ctk --version` or `nvidia-container-cli --version` output.

    Sample Content::

        NVIDIA Container Toolkit CLI version 1.14.3
        commit: 53b24618a542025b108239fe602e66e912b7d6e2

    >>> parse_toolkit_version("NVIDIA Container Toolkit CLI version 1.14.3\\ncommit: 53b2461\\n")
    '1.14.3'
    >>> parse_toolkit_version("cli-version: 1.8.0\\nlib-version: 1.8.0\\nbuild date: 2022-02-04T09:21+00:00\\n")
    '1.8.0'
    >>> parse_toolkit_version("bash: nvidia-ctk: command not found") is None
    True
    """
    for pattern in (r"^cli-version:\s*(\S+)", r"\bversion\s+v?(\d+\.\d+\.\d+\S*)", r"^version:\s*v?(\S+)"):
        match = re.search(pattern, text or "", re.MULTILINE | re.IGNORECASE)
        if match and version_tuple(match.group(1)):
            return match.group(1)
    return None


_CLI_FIELDS = {"Device Index": "index", "Device Minor": "minor", "Model": "model", "Brand": "brand",
               "GPU UUID": "uuid", "Bus Location": "bus", "Architecture": "arch"}


def parse_cli_info(text: str) -> dict[str, Any]:
    """Parse `nvidia-container-cli info`: driver, CUDA version, devices, or the error it printed.

    Sample Content::

        NVRM version:   390.87
        CUDA version:   9.1

        Device Index:   0
        Device Minor:   0
        Model:          GeForce GTX 1080 with Max-Q Design
        Brand:          GeForce
        GPU UUID:       GPU-e572b8ee-523e-f7be-a359-33149791a02a
        Bus Location:   00000000:01:00.0
        Architecture:   6.1

    >>> info = parse_cli_info("NVRM version:   390.87\\nCUDA version:   9.1\\n\\nDevice Index:   0\\n"
    ...                       "Device Minor:   0\\nModel:          GeForce GTX 1080\\n")
    >>> info["nvrm_version"], info["cuda_version"], info["devices"][0]["model"]
    ('390.87', '9.1', 'GeForce GTX 1080')
    >>> parse_cli_info("nvidia-container-cli: initialization error: nvml error: driver not loaded\\n")["error"]
    'initialization error: nvml error: driver not loaded'
    """
    info: dict[str, Any] = {"nvrm_version": None, "cuda_version": None, "devices": [], "error": None}
    device: Optional[dict[str, str]] = None
    for raw in (text or "").splitlines():
        line = raw.strip()
        if line.startswith("nvidia-container-cli:") and info["error"] is None:
            info["error"] = line.split(":", 1)[1].strip()
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "NVRM version":
            info["nvrm_version"] = value if value != "(null)" else None
        elif key == "CUDA version":
            info["cuda_version"] = value
        elif key in _CLI_FIELDS:
            if key == "Device Index":
                device = {}
                info["devices"].append(device)
            if device is not None:
                device[_CLI_FIELDS[key]] = value
    return info


def parse_toml(text: str) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    """(document, None), or (None, the parser's message) for text that is not valid TOML.

    >>> parse_toml('[nvidia-container-cli]\\nno-cgroups = true\\n')
    ({'nvidia-container-cli': {'no-cgroups': True}}, None)
    >>> parse_toml('no-cgroups = yes')[1][:15]
    'Invalid value ('
    """
    try:
        return tomllib.loads(text or ""), None
    except tomllib.TOMLDecodeError as exc:
        return None, str(exc)
    except Exception as exc:  # a parser bug must not stop the doctor
        return None, f"{type(exc).__name__}: {exc}"


def parse_json(text: str) -> tuple[Optional[Any], Optional[str]]:
    """(document, None), or (None, the parser's message) for text that is not valid JSON.

    >>> parse_json('{"runtimes": {}}')
    ({'runtimes': {}}, None)
    >>> parse_json('{"runtimes": {},}')[1]
    'Expecting property name enclosed in double quotes: line 1 column 17 (char 16)'
    """
    try:
        return json.loads(text or ""), None
    except RecursionError:
        return None, "nested too deeply"
    except ValueError as exc:
        return None, str(exc)


def _dig(doc: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


# containerd's CRI plugin moved in config version 3 (containerd 2.x).
CONTAINERD_CRI_PLUGINS = ("io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime")


def containerd_runtimes(doc: Any) -> dict[str, dict[str, Any]]:
    """Runtime entries of a containerd config (v2 or v3 layout): name -> {binary, type, default}.

    Sample Content::

        version = 2
        [plugins."io.containerd.grpc.v1.cri".containerd]
          default_runtime_name = "nvidia"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]
          runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia.options]
          BinaryName = "/usr/bin/nvidia-container-runtime"

    >>> doc, _ = parse_toml('version = 2\\n[plugins."io.containerd.grpc.v1.cri".containerd]\\n'
    ...     'default_runtime_name = "nvidia"\\n'
    ...     '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia.options]\\n'
    ...     'BinaryName = "/usr/bin/nvidia-container-runtime"\\n')
    >>> containerd_runtimes(doc)
    {'nvidia': {'binary': '/usr/bin/nvidia-container-runtime', 'type': None, 'default': True}}
    """
    found: dict[str, dict[str, Any]] = {}
    for plugin in CONTAINERD_CRI_PLUGINS:
        section = _dig(doc, "plugins", plugin, "containerd")
        if not isinstance(section, dict):
            continue
        default = section.get("default_runtime_name")
        runtimes = section.get("runtimes")
        if not isinstance(runtimes, dict):
            continue
        for name, entry in runtimes.items():
            if isinstance(entry, dict):
                binary = _dig(entry, "options", "BinaryName")
                found[name] = {"binary": binary if isinstance(binary, str) else None,
                               "type": entry.get("runtime_type"), "default": name == default}
    return found


def containerd_imports(doc: Any) -> list[str]:
    """The `imports` globs of a containerd config (drop-in files are read only through these).

    >>> containerd_imports({"imports": ["/etc/containerd/conf.d/*.toml"], "version": 2})
    ['/etc/containerd/conf.d/*.toml']
    """
    imports = doc.get("imports") if isinstance(doc, dict) else None
    return [i for i in imports if isinstance(i, str)] if isinstance(imports, list) else []


def crio_runtimes(doc: Any) -> dict[str, dict[str, Any]]:
    """Runtime entries of a CRI-O config: name -> {binary, type, default}.

    Sample Content::

        [crio.runtime]
        default_runtime = "nvidia"
        [crio.runtime.runtimes.nvidia]
        runtime_path = "/usr/bin/nvidia-container-runtime"
        runtime_type = "oci"

    >>> doc, _ = parse_toml('[crio.runtime]\\ndefault_runtime = "nvidia"\\n[crio.runtime.runtimes.nvidia]\\n'
    ...                     'runtime_path = "/usr/bin/nvidia-container-runtime"\\nruntime_type = "oci"\\n')
    >>> crio_runtimes(doc)
    {'nvidia': {'binary': '/usr/bin/nvidia-container-runtime', 'type': 'oci', 'default': True}}
    """
    section = _dig(doc, "crio", "runtime")
    if not isinstance(section, dict):
        return {}
    default = section.get("default_runtime")
    runtimes = section.get("runtimes")
    found: dict[str, dict[str, Any]] = {}
    if isinstance(runtimes, dict):
        for name, entry in runtimes.items():
            if isinstance(entry, dict):
                binary = entry.get("runtime_path")
                found[name] = {"binary": binary if isinstance(binary, str) else None,
                               "type": entry.get("runtime_type"), "default": name == default}
    return found


def docker_runtimes(doc: Any) -> dict[str, dict[str, Any]]:
    """Runtime entries of Docker's daemon.json: name -> {binary, type, default}.

    >>> docker_runtimes({"default-runtime": "nvidia",
    ...                  "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}}})
    {'nvidia': {'binary': 'nvidia-container-runtime', 'type': None, 'default': True}}
    """
    if not isinstance(doc, dict):
        return {}
    default = doc.get("default-runtime")
    runtimes = doc.get("runtimes")
    found: dict[str, dict[str, Any]] = {}
    if isinstance(runtimes, dict):
        for name, entry in runtimes.items():
            binary = entry.get("path") if isinstance(entry, dict) else None
            found[name] = {"binary": binary if isinstance(binary, str) else None, "type": None,
                           "default": name == default}
    if isinstance(default, str) and default not in found:
        found[default] = {"binary": None, "type": None, "default": True, "undefined": True}
    return found


_LIB_VERSION = re.compile(r"\.so\.(\d+\.\d+(?:\.\d+)?)$")


def lib_version(path: str) -> Optional[str]:
    """The driver version in a versioned library name (libcuda.so.580.159.04), else None.

    >>> lib_version("/usr/lib/x86_64-linux-gnu/libcuda.so.580.159.04"), lib_version("/x/libcuda.so.1")
    ('580.159.04', None)
    """
    match = _LIB_VERSION.search(path or "")
    return match.group(1) if match else None


def parse_cdi_spec(text: str) -> dict[str, Any]:
    """The facts of a CDI spec (YAML or JSON) a check needs: kind, device names, device nodes, the
    driver versions it was generated for (from versioned library mounts and the compat hook), and the
    programs its hooks run.

    YAML is read line by line (the doctor carries no YAML library); nvidia-ctk writes a regular layout.

    Sample Content::

        ---
        cdiVersion: 0.5.0
        containerEdits:
          hooks:
          - args:
            - nvidia-cdi-hook
            - enable-cuda-compat
            - --host-driver-version=575.57.08
        devices:
        - containerEdits:
            deviceNodes:
            - path: /dev/nvidia0
          name: "0"
        - name: all
        kind: nvidia.com/gpu

    >>> spec = parse_cdi_spec('---\\ncdiVersion: 0.5.0\\ncontainerEdits:\\n  hooks:\\n  - args:\\n'
    ...     '    - --host-driver-version=575.57.08\\ndevices:\\n- containerEdits:\\n    deviceNodes:\\n'
    ...     '    - path: /dev/nvidia0\\n  name: "0"\\n- name: all\\nkind: nvidia.com/gpu\\n')
    >>> spec["kind"], spec["devices"], spec["device_nodes"], spec["driver_versions"]
    ('nvidia.com/gpu', ['0', 'all'], ['/dev/nvidia0'], ['575.57.08'])
    >>> parse_cdi_spec('containerEdits:\\n  hooks:\\n  - args:\\n    - nvidia-cdi-hook\\n    - update-ldcache\\n'
    ...     '    hookName: createContainer\\n    path: /usr/bin/nvidia-cdi-hook\\n')["hook_paths"]
    ['/usr/bin/nvidia-cdi-hook']
    >>> parse_cdi_spec("")["kind"] is None
    True
    """
    spec: dict[str, Any] = {"cdi_version": None, "kind": None, "devices": [], "device_nodes": [],
                            "driver_versions": [], "hook_paths": [], "format": "yaml"}
    stripped = (text or "").lstrip()
    versions: set[str] = set()
    if stripped.startswith("{"):
        doc, _ = parse_json(stripped)
        spec["format"] = "json"
        if isinstance(doc, dict):
            spec["cdi_version"] = doc.get("cdiVersion")
            spec["kind"] = doc.get("kind")
            devices = doc.get("devices") if isinstance(doc.get("devices"), list) else []
            spec["devices"] = [str(d.get("name")) for d in devices if isinstance(d, dict) and "name" in d]
        flat = stripped
    else:
        flat = stripped
        for line in flat.splitlines():
            if line.startswith("cdiVersion:"):
                spec["cdi_version"] = line.split(":", 1)[1].strip().strip("'\"")
            elif line.startswith("kind:"):
                spec["kind"] = line.split(":", 1)[1].strip().strip("'\"")
        # Device entries are the top-level `devices:` list; their names sit at two-space indent.
        in_devices = False
        for line in flat.splitlines():
            if re.match(r"^[A-Za-z]", line):
                in_devices = line.startswith("devices:")
                continue
            if in_devices:
                match = re.match(r"^(?:- |  )name:\s*(.+?)\s*$", line)
                if match:
                    spec["devices"].append(match.group(1).strip("'\""))
    spec["device_nodes"] = sorted(set(re.findall(r"[\"\s]path\"?:\s*\"?(/dev/nvidia\d+)\b", flat)))
    # In containerEdits a plain `path` names a device node or, outside /dev, the program a hook runs (mounts
    # use hostPath and containerPath).
    spec["hook_paths"] = sorted({p for p in re.findall(r"[\"\s]path\"?:\s*\"?([^\s\",]+)", flat)
                                 if p.startswith("/") and not p.startswith("/dev/")})
    for path in re.findall(r"[\"\s]hostPath\"?:\s*\"?([^\s\"]+)", flat):
        if re.search(r"/lib(?:cuda|nvidia-ml)\.so\.", path):
            version = lib_version(path)
            if version:
                versions.add(version)
    versions.update(re.findall(r"--host-driver-version=(\d+\.\d+(?:\.\d+)?)", flat))
    spec["driver_versions"] = sorted(versions)
    return spec


def parse_cdi_list(text: str) -> list[str]:
    """Fully qualified device names printed by `nvidia-ctk cdi list`.

    Sample Content::

        INFO[0000] Found 2 CDI devices
        nvidia.com/gpu=0
        nvidia.com/gpu=all

    >>> parse_cdi_list("INFO[0000] Found 2 CDI devices\\nnvidia.com/gpu=0\\nnvidia.com/gpu=all\\n")
    ['nvidia.com/gpu=0', 'nvidia.com/gpu=all']
    """
    return [line.strip() for line in (text or "").splitlines()
            if re.match(r"^\s*[\w.-]+/[\w.-]+=\S+\s*$", line)]


_CONDITION = re.compile(r"^(cuda|driver|arch|brand)\s*(>=|<=|==|!=|=|>|<)\s*([0-9A-Za-z][^\s,]*)$", re.IGNORECASE)


def parse_require(expression: str) -> list[list[tuple[str, str, str]]]:
    """Parse an NVIDIA_REQUIRE_* expression: space-separated alternatives (ORed), each a comma-separated
    list of conditions (ANDed), as the toolkit's documentation defines them.

    Unparseable conditions become ("invalid", "", text) so the check can report them.

    >>> parse_require("cuda>=12.4 brand=tesla,driver>=470,driver<471")
    [[('cuda', '>=', '12.4')], [('brand', '=', 'tesla'), ('driver', '>=', '470'), ('driver', '<', '471')]]
    >>> parse_require("cuda>=")
    [[('invalid', '', 'cuda>=')]]
    """
    alternatives: list[list[tuple[str, str, str]]] = []
    for alternative in (expression or "").split():
        conditions: list[tuple[str, str, str]] = []
        for condition in alternative.split(","):
            if not condition:
                continue
            match = _CONDITION.match(condition)
            if match:
                conditions.append((match.group(1).lower(), match.group(2), match.group(3)))
            else:
                conditions.append(("invalid", "", condition))
        if conditions:
            alternatives.append(conditions)
    return alternatives


def _compare(left: tuple[int, ...], op: str, right: tuple[int, ...]) -> bool:
    width = max(len(left), len(right))
    a = left + (0,) * (width - len(left))
    b = right + (0,) * (width - len(right))
    return {">=": a >= b, "<=": a <= b, ">": a > b, "<": a < b, "=": a == b, "==": a == b, "!=": a != b}[op]


def eval_require(expression: str, facts: dict[str, Optional[str]]) -> Optional[bool]:
    """Evaluate an NVIDIA_REQUIRE_* expression against facts {"cuda", "driver", "arch", "brand"}.

    Returns True or False, or None when the answer hangs on a fact that is unknown (None in `facts`).
    Versions compare numerically, as libnvidia-container does; brand compares case-insensitively.

    >>> eval_require("cuda>=12.4 brand=tesla,driver>=470,driver<471", {"cuda": "12.2", "driver": "535.104.05"})
    False
    >>> eval_require("cuda>=12.4 brand=tesla,driver>=535,driver<536", {"cuda": "12.2", "driver": "535.104.05"})
    >>> eval_require("cuda>=12.4", {"cuda": "13.0"})
    True
    """
    alternatives = parse_require(expression)
    if not alternatives:
        return None
    unknown = False
    for conditions in alternatives:
        result: Optional[bool] = True
        for key, op, value in conditions:
            if key == "invalid":
                return False
            have = facts.get(key)
            if have is None:
                result = None if result is not False else False
                continue
            if key == "brand":
                ok = (have.lower() == value.lower()) == (op in ("=", "=="))
            else:
                left, right = version_tuple(have), version_tuple(value)
                ok = bool(left and right and _compare(left, op, right))
            if not ok:
                result = False
        if result is True:
            return True
        if result is None:
            unknown = True
    return None if unknown else False

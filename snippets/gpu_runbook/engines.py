"""The container engines of a host and who runs them, derived from a snapshot (pure: no I/O).

An engine is found by its systemd unit, its socket or its configuration file: rootful Docker, containerd,
CRI-O and Podman; RKE2's and k3s's own containerd; and per user (the snapshot's ``users`` section) rootless
Docker and Podman. Each engine record names its user, the files it reads, the runtimes it registers and the
toolkit config.toml its `nvidia` runtime resolves. `gpu-runbook collect` stores the summary in the snapshot's
``engines`` section; the checks derive the same records from the raw facts.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Optional

from gpu_runbook.parsers.operands import operator_runtime_config
from gpu_runbook.parsers.toolkit import containerd_runtimes, docker_runtimes, parse_json, parse_toml
from gpu_runbook.snapshot import NOT_PRESENT, FileFact, Missing, Snapshot

TOOLKIT_CONFIG = "/etc/nvidia-container-runtime/config.toml"
TOOLKIT_RELATIVE = "nvidia-container-runtime/config.toml"
RANCHER = {"rke2": "/var/lib/rancher/rke2/agent/etc/containerd/",
           "k3s": "/var/lib/rancher/k3s/agent/etc/containerd/"}
# Both share k3s's socket path (docs.rke2.io/reference/cli_tools names it for RKE2).
RANCHER_SOCKETS = {"k3s": "/run/k3s/containerd/containerd.sock", "rke2": "/run/k3s/containerd/containerd.sock"}
# Where system units live, in systemd's order of precedence: transient units (systemd-run, JupyterHub's
# SystemdSpawner), the administrator's, runtime and packaged units. Engines are looked for in the persistent ones.
SYSTEM_UNIT_DIRS = ("/run/systemd/transient/", "/etc/systemd/system/", "/run/systemd/system/",
                    "/usr/lib/systemd/system/", "/lib/systemd/system/")
UNIT_DIRS = tuple(d for d in SYSTEM_UNIT_DIRS if not d.startswith("/run/"))
# kind -> (unit names, sockets, configuration files) of the rootful engine
ROOTFUL: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "docker": (("docker.service",), ("/run/docker.sock", "/var/run/docker.sock"), ("/etc/docker/daemon.json",)),
    "containerd": (("containerd.service",), ("/run/containerd/containerd.sock",),
                   ("/etc/containerd/config.toml", "/etc/containerd/conf.d/", "/etc/containerd/config.d/")),
    "crio": (("crio.service",), ("/run/crio/crio.sock",), ("/etc/crio/crio.conf", "/etc/crio/crio.conf.d/")),
    "podman": (("podman.service",), ("/run/podman/podman.sock",),
               ("/etc/containers/containers.conf", "/etc/containers/containers.conf.d/")),
}
ENV_NAMES = ("XDG_CONFIG_HOME", "NVIDIA_CTK_CONFIG_FILE_PATH")


def strip_template(text: str) -> str:
    """A k3s/RKE2 config.toml.tmpl without its Go template actions, so that its literal TOML parses.

    >>> strip_template('{{ template "base" . }}\\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]\\n')
    '\\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]\\n'
    """
    return "\n".join("" if "{{" in line else line for line in (text or "").split("\n"))


def unit_assignments(texts: list[str]) -> Iterator[tuple[str, str]]:
    """The `Key=value` lines of a unit and its drop-ins, in the order systemd reads them (value unstripped).

    >>> list(unit_assignments(["[Service]\\nDeviceAllow=/dev/nvidiactl rw\\n", "DeviceAllow=\\n"]))
    [('DeviceAllow', '/dev/nvidiactl rw'), ('DeviceAllow', '')]
    """
    for text in texts:
        for line in (text or "").splitlines():
            key, sep, value = line.strip().partition("=")
            if sep:
                yield key.strip(), value


def unit_environment(text: str) -> dict[str, str]:
    """The XDG_CONFIG_HOME and NVIDIA_CTK_CONFIG_FILE_PATH a systemd unit sets with Environment= lines.

    >>> unit_environment('[Service]\\nEnvironment="XDG_CONFIG_HOME=/srv/cfg" PATH=/usr/bin\\n')
    {'XDG_CONFIG_HOME': '/srv/cfg'}
    """
    found: dict[str, str] = {}
    for key, value in unit_assignments([text]):
        if key != "Environment":
            continue
        for match in re.finditer(r'"([^"]*)"|(\S+)', value):
            name, eq, setting = (match.group(1) or match.group(2) or "").partition("=")
            if eq and name in ENV_NAMES:
                found[name] = setting
    return found


def runtime_config_path(environment: dict[str, str]) -> tuple[str, str]:
    """The config.toml the `nvidia` runtime reads in this environment, and why (toolkit api/config/v1
    GetConfigFilePath: NVIDIA_CTK_CONFIG_FILE_PATH, since 1.18.0, then $XDG_CONFIG_HOME, then /etc).

    >>> runtime_config_path({"XDG_CONFIG_HOME": "/home/a/.config"})[0]
    '/home/a/.config/nvidia-container-runtime/config.toml'
    """
    if environment.get("NVIDIA_CTK_CONFIG_FILE_PATH"):
        return environment["NVIDIA_CTK_CONFIG_FILE_PATH"], "NVIDIA_CTK_CONFIG_FILE_PATH in the engine's unit"
    if environment.get("XDG_CONFIG_HOME", "").startswith("/"):
        return (environment["XDG_CONFIG_HOME"].rstrip("/") + "/" + TOOLKIT_RELATIVE,
                "XDG_CONFIG_HOME in the engine's unit")
    return TOOLKIT_CONFIG, "no override in the engine's environment"


def users(snapshot: Snapshot) -> dict[str, dict[str, Any]]:
    """The snapshot's users section: name -> {uid, gid, home, groups, linger} (errors left out)."""
    raw = snapshot.data.get("users")
    return {n: u for n, u in (raw.items() if isinstance(raw, dict) else ())
            if isinstance(n, str) and not n.startswith("!") and isinstance(u, dict)
            and isinstance(u.get("uid"), int) and isinstance(u.get("home"), str)}


def _present(snapshot: Snapshot, path: str) -> bool:
    return bool(snapshot.path(path).get("kind"))


def _files(snapshot: Snapshot, spec: str) -> list[str]:
    """Existing files for a path, or every file under a prefix ending in "/"."""
    if spec.endswith("/"):
        return sorted(p for p, f in snapshot.files_matching(spec).items() if f.exists)
    return [spec] if snapshot.file(spec).exists else []


def unit_dependencies(texts: list[str], key: str) -> set[str]:
    """The units named by `key` (After, Wants, WantedBy, ...) across a unit file and its drop-ins, read in
    order: lists add up, and an empty assignment ("After=") empties what came before, as systemd reads them.

    >>> sorted(unit_dependencies(["[Unit]\\nAfter=network.target\\n", "[Unit]\\nAfter=a.service b.service\\n"],
    ...                          "After"))
    ['a.service', 'b.service', 'network.target']
    >>> unit_dependencies(["[Unit]\\nAfter=network.target\\n", "[Unit]\\nAfter=\\n"], "After")
    set()
    """
    found: set[str] = set()
    for name, value in unit_assignments(texts):
        if name != key:
            continue
        if not value.strip():
            found.clear()
        found.update(value.split())
    return found


def unit_texts(snapshot: Snapshot, name: str, dirs: tuple[str, ...] = UNIT_DIRS) -> list[str]:
    """A unit as systemd reads it: the first file of that name in `dirs` (/etc overrides the packages'),
    then its drop-ins from every directory, by file name (a drop-in in /etc replaces one of the same name
    further down). Raises Missing when a file exists but cannot be read."""
    texts: list[str] = []
    for directory in dirs:
        file_ = snapshot.file(directory + name)
        _readable_or_missing(file_)
        if file_.exists:
            texts.append(file_.text or "")
            break
    drop_ins = {}
    for directory in reversed(dirs):
        for path, file_ in snapshot.files_matching(f"{directory}{name}.d/").items():
            if not path.endswith(".conf"):  # systemd reads only *.conf drop-ins
                continue
            _readable_or_missing(file_)
            if file_.exists:
                drop_ins[path.rsplit("/", 1)[-1]] = file_
    return texts + [drop_ins[key].text or "" for key in sorted(drop_ins)] if texts else []


def _readable_or_missing(file_: FileFact) -> None:
    """A unit file that exists but cannot be read leaves its unit unknown: never read it as absent."""
    if not file_.exists and file_.error not in NOT_PRESENT:
        raise Missing(f"{file_.path} could not be read ({file_.why})")


def _units(snapshot: Snapshot, dirs: tuple[str, ...],
           names: tuple[str, ...]) -> tuple[list[str], dict[str, str]]:
    """Every unit file and drop-in found for these names in these directories (each shows the engine is
    installed), and the environment the units set as systemd reads them (`unit_texts`: the /etc copy of a
    unit replaces the package's, drop-ins apply last)."""
    found: list[str] = []
    for directory in dirs:
        for name in names:
            for path in [directory + name, *sorted(snapshot.files_matching(f"{directory}{name}.d/"))]:
                if snapshot.file(path).exists:
                    found.append(path)
    environment: dict[str, str] = {}
    for name in names:
        try:
            texts = unit_texts(snapshot, name, dirs)
        except Missing:
            continue  # an unreadable unit: discovery still lists it; its environment stays unknown
        for text in texts:
            environment.update(unit_environment(text))
    return found, environment


def _engine(kind: str, user: str, uid: int, rootless: bool, **more: Any) -> dict[str, Any]:
    return dict({"kind": kind, "user": user, "uid": uid, "rootless": rootless, "found_by": [], "configs": [],
                 "runtimes": {}, "errors": {}, "environment": {}}, **more)


def podman_runtimes(doc: Any) -> dict[str, dict[str, Any]]:
    """Runtime entries of a containers.conf: [engine.runtimes] name = [paths], [engine] runtime = default.

    >>> podman_runtimes({"engine": {"runtime": "nvidia",
    ...                             "runtimes": {"nvidia": ["/usr/bin/nvidia-container-runtime"]}}})
    {'nvidia': {'binary': '/usr/bin/nvidia-container-runtime', 'type': None, 'default': True}}
    """
    engine = doc.get("engine") if isinstance(doc, dict) else None
    if not isinstance(engine, dict):
        return {}
    runtimes = engine.get("runtimes") if isinstance(engine.get("runtimes"), dict) else {}
    found: dict[str, dict[str, Any]] = {}
    for name, paths in runtimes.items():
        binary = next((p for p in paths if isinstance(p, str)), None) if isinstance(paths, list) else None
        found[name] = {"binary": binary, "type": None, "default": name == engine.get("runtime")}
    return found


def _runtimes_of(snapshot: Snapshot, engine: dict[str, Any]) -> None:
    """Fill the engine's runtime entries from its own configuration files."""
    for path in engine.get("inherited_configs", []) + engine["configs"]:
        text = snapshot.file(path).text or ""
        if engine["kind"] == "docker":
            doc, error = parse_json(text)
            runtimes = docker_runtimes(doc)
        elif engine["kind"] == "containerd":
            doc, error = parse_toml(strip_template(text) if path.endswith(".tmpl") else text)
            runtimes = containerd_runtimes(doc)
        elif engine["kind"] == "podman":
            doc, error = parse_toml(text)
            runtimes = podman_runtimes(doc)
        else:
            continue  # CRI-O's runtimes are judged by runtime-configured
        if error:
            engine["errors"][path] = error
        for name, runtime in runtimes.items():
            engine["runtimes"][name] = dict(runtime, file=path)


def discover(snapshot: Snapshot) -> dict[str, dict[str, Any]]:
    """Every engine the snapshot shows: id ("docker", "docker@alice", "containerd@rke2") -> record."""
    engines: dict[str, dict[str, Any]] = {}
    for kind, (units, sockets, configs) in ROOTFUL.items():
        unit_files, environment = _units(snapshot, UNIT_DIRS, units)
        engine = _engine(kind, "root", 0, False, environment=environment)
        engine["found_by"] = [f"unit {u}" for u in unit_files if not re.search(r"\.d/", u)] + \
            [f"socket {s}" for s in sockets if _present(snapshot, s)]
        engine["configs"] = [f for spec in configs for f in _files(snapshot, spec)]
        engine["found_by"] += [f"config {f}" for f in engine["configs"]]
        # A containers.conf alone shows Podman installed, not run as root: weak evidence for host-wide verdicts.
        engine["weak"] = kind == "podman" and not any(not f.startswith("config ") for f in engine["found_by"])
        if engine["found_by"]:
            engines[kind] = engine
    for distribution, directory in RANCHER.items():
        unit_names = ("k3s.service", "k3s-agent.service") if distribution == "k3s" else \
            ("rke2-server.service", "rke2-agent.service")
        unit_files, environment = _units(snapshot, UNIT_DIRS, unit_names)
        files = sorted(p for p, f in snapshot.files_matching(directory).items()
                       if f.exists and re.search(r"/config(-v3)?\.toml(\.tmpl)?$", p))
        if not files and not unit_files:
            continue
        engine = _engine("containerd", "root", 0, False, distribution=distribution, environment=environment,
                         configs=files, template=[f for f in files if f.endswith(".tmpl")])
        engine["found_by"] = [f"unit {u}" for u in unit_files if not re.search(r"\.d/", u)] + \
            [f"config {f}" for f in files]
        engines[f"containerd@{distribution}"] = engine
    for name, user in sorted(users(snapshot).items()):
        home, uid = user["home"].rstrip("/"), user["uid"]
        user_units = (f"{home}/.config/systemd/user/",)
        checks = {"docker": (("docker.service",), (f"/run/user/{uid}/docker.sock",),
                             (f"{home}/.config/docker/daemon.json",)),
                  "podman": (("podman.service", "podman.socket"), (f"/run/user/{uid}/podman/podman.sock",),
                             (f"{home}/.config/containers/containers.conf",
                              f"{home}/.config/containers/containers.conf.d/"))}
        for kind, (units, sockets, configs) in checks.items():
            unit_files, environment = _units(snapshot, user_units, units)
            engine = _engine(kind, name, uid, True, environment=environment, linger=bool(user.get("linger")),
                             groups=user.get("groups") or [], gid=user.get("gid"), home=home)
            engine["configs"] = [f for spec in configs for f in _files(snapshot, spec)]
            engine["found_by"] = [f"unit {u}" for u in unit_files if not re.search(r"\.d/", u)] + \
                [f"socket {s}" for s in sockets if _present(snapshot, s)] + \
                [f"config {f}" for f in engine["configs"]]
            if engine["found_by"]:
                if kind == "podman":  # a rootless Podman reads /etc/containers first, then the user's files
                    engine["inherited_configs"] = [f for spec in ROOTFUL["podman"][2] for f in _files(snapshot, spec)]
                own = f"{home}/.config/{TOOLKIT_RELATIVE}"
                if snapshot.file(own).exists:
                    engine["user_toolkit_config"] = own
                engines[f"{kind}@{name}"] = engine
    for engine in engines.values():
        _runtimes_of(snapshot, engine)
        engine["toolkit_config"], engine["toolkit_config_why"] = \
            operator_runtime_config(engine["runtimes"]) or runtime_config_path(engine["environment"])
    return engines


def is_tegra(snapshot: Snapshot) -> bool:
    """Tegra files as go-nvlib's HasTegraFiles looks for them: /etc/nv_tegra_release, or a soc0 family
    starting with "tegra"."""
    family = snapshot.file("/sys/devices/soc0/family")
    return snapshot.file("/etc/nv_tegra_release").exists or \
        (family.exists and (family.text or "").strip().lower().startswith("tegra"))


def engines_summary(data: dict[str, Any]) -> dict[str, Any]:
    """The snapshot's ``engines`` section: id -> {kind, user, rootless, found_by, configs, toolkit_config,
    mode}. Written by `collect` for people and aggregators; the checks derive their own records."""
    try:
        from gpu_runbook.checks.engines import resolved_mode  # the checks' own resolution, one place

        snapshot = Snapshot(dict(data, schema_version=1))
        out: dict[str, Any] = {}
        for engine_id, engine in discover(snapshot).items():
            mode, _, why = resolved_mode(snapshot, engine)
            out[engine_id] = {k: engine.get(k) for k in ("kind", "user", "uid", "rootless", "found_by", "configs",
                                                          "toolkit_config")}
            out[engine_id].update(runtimes=sorted(engine["runtimes"]), mode=mode, mode_reason=why)
        return out
    except Exception as exc:  # the summary must never stop a collection
        return {"!error": {"detail": f"{type(exc).__name__}: {exc}"}}


def engine_line(engine_id: str, engine: dict[str, Any]) -> str:
    """One line per engine for the text report.

    >>> engine_line("docker@alice", {"kind": "docker", "user": "alice", "rootless": True, "mode": "jit-cdi",
    ...             "configs": ["/home/alice/.config/docker/daemon.json"], "runtimes": ["nvidia"]}).split("; ")[:3]
    ['docker@alice  rootless, user alice', 'runtimes: nvidia', 'nvidia runtime mode: jit-cdi']
    """
    configs = engine.get("configs") or []
    return (f"{engine_id}  {'rootless' if engine.get('rootless') else 'rootful'}, user {engine.get('user')}; "
            f"runtimes: {', '.join(engine.get('runtimes') or []) or 'none configured'}; "
            f"nvidia runtime mode: {engine.get('mode') or 'unknown'}; "
            f"config: {', '.join(configs[:3]) or 'none found'}")


def toolkit_doc(snapshot: Snapshot, path: Optional[str]) -> Optional[dict[str, Any]]:
    """A config.toml parsed ({} when absent, None when unreadable or invalid)."""
    if not path:
        return None
    file_ = snapshot.file(path)
    if file_.absent:
        return {}
    doc, _ = parse_toml(file_.text or "") if file_.exists else (None, None)
    return doc

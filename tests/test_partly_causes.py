"""The causes folded into existing pages by issue 14: containerd's runtime entry layout, NVLink5 Xids, a lost GPU."""

from __future__ import annotations

import doctest
from typing import Any

import gpu_runbook.parsers.containerd as containerd_parser
import pytest
from gpu_runbook.checks.containerd import containerd_runtime_entry_unusable
from gpu_runbook.checks.kubernetes import NVLINK5_FATAL, XID_MEANING, XID_NVLINK5, device_plugin_not_registered
from gpu_runbook.parsers.containerd import config_version, misplaced, runtime_entries
from gpu_runbook.parsers.toolkit import parse_toml


def test_parser_doctests() -> None:
    failed, _ = doctest.testmod(containerd_parser)
    assert failed == 0


def _engines(*files: tuple[str, str]) -> dict[str, Any]:
    parsed, main_version = [], None
    for path, text in files:
        doc, error = parse_toml(text)
        assert error is None, error
        own = config_version(doc) if "version" in doc or path.endswith("config.toml") else None
        if path.endswith("config.toml"):
            main_version = own
        parsed.append({"path": path, "version": own if own is not None else main_version,
                       "declared": config_version(doc) if "version" in doc else None,
                       "entries": runtime_entries(doc)})
    return {"containerd": {"main_version": main_version, "files": parsed}}


V3_RUNC = ('version = 3\n[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]\n'
           'runtime_type = "io.containerd.runc.v2"\n')


def test_v2_layout_in_a_v2_file_is_fine() -> None:
    text = ('version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]\n'
            'runtime_type = "io.containerd.runc.v2"\n')
    entry = runtime_entries(parse_toml(text)[0])[0]
    assert not misplaced(entry, 2)
    verdict = containerd_runtime_entry_unusable(_engines(("/etc/containerd/config.toml", text)), None)
    assert verdict.status.value == "ok"


def test_dropin_without_version_inherits_the_main_version() -> None:
    dropin = ('[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]\n'
              'runtime_type = "io.containerd.runc.v2"\n')
    verdict = containerd_runtime_entry_unusable(
        _engines(("/etc/containerd/config.toml", V3_RUNC), ("/etc/containerd/conf.d/99-nvidia.toml", dropin)), None)
    assert verdict.status.value == "fail" and "version 3" in verdict.summary


OLD_KEY_NVIDIA = ('[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]\n'
                  'runtime_type = "io.containerd.runc.v2"\n')


def test_containerd_2_3_reads_an_old_key_entry_of_a_version_3_file_without_new_key_runtimes() -> None:
    """containerd 2.3 migrates each version 3 file as it loads and copies its old-key runtimes when the file has
    none under the new key; 2.0 to 2.2 ignore them. A file with new-key runtimes (a `containerd config default`
    with an entry pasted under the old key) is ignored by every 2.x."""
    dropin = "version = 3\n" + OLD_KEY_NVIDIA
    engines = _engines(("/etc/containerd/config.toml", V3_RUNC), ("/etc/containerd/conf.d/99-nvidia.toml", dropin))
    unknown_release = containerd_runtime_entry_unusable(engines, None, None)
    assert unknown_release.status.value == "fail" and "2.0 to 2.2 do not register it" in unknown_release.summary
    old = containerd_runtime_entry_unusable(engines, None, (2, 2, 7))
    assert old.status.value == "fail" and "containerd 2.2.7 does not register it" in old.summary
    assert containerd_runtime_entry_unusable(engines, None, (2, 3, 0)).status.value == "ok"
    pasted = _engines(("/etc/containerd/config.toml", V3_RUNC + OLD_KEY_NVIDIA))
    for release in (None, (2, 2, 7), (2, 3, 4)):
        verdict = containerd_runtime_entry_unusable(pasted, None, release)
        assert verdict.status.value == "fail" and "2.0 to 2.2" not in verdict.summary, release
    # A root file of version 4 exists only under 2.3 or later: its versionless drop-ins are migrated too.
    v4 = _engines(("/etc/containerd/config.toml", V3_RUNC.replace("version = 3", "version = 4")),
                  ("/etc/containerd/conf.d/99-nvidia.toml", OLD_KEY_NVIDIA))
    assert containerd_runtime_entry_unusable(v4, None, None).status.value == "ok"


def test_containerd_version_from_the_command() -> None:
    from gpu_runbook.checks.containerd import containerd_version_fact
    from gpu_runbook.snapshot import Missing, Snapshot

    out = "containerd github.com/containerd/containerd/v2 v2.3.0 2a6d5c3e\n"
    snapshot = Snapshot({"commands": {"containerd-version": {"argv": ["containerd", "--version"], "exit": 0,
                                                            "stdout": out, "stderr": ""}}})
    assert containerd_version_fact(snapshot) == (2, 3, 0)
    with pytest.raises(Missing):
        containerd_version_fact(Snapshot({"commands": {}}))


def test_version_4_is_judged_like_version_3() -> None:
    """containerd 2.3's version 4 moved only server settings: runtimes still live under io.containerd.cri.v1.runtime,
    so an entry under the version 2 key of a version 4 file is ignored, and nvidia-ctk before 1.17.4 cannot read
    the file."""
    main = V3_RUNC.replace("version = 3", "version = 4")
    # A version 4 file is not migrated (a versionless or version 3 one is: the test above).
    dropin = ('version = 4\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]\n'
              'runtime_type = "io.containerd.runc.v2"\n')
    misplaced_entry = containerd_runtime_entry_unusable(
        _engines(("/etc/containerd/config.toml", main), ("/etc/containerd/conf.d/99-nvidia.toml", dropin)), None)
    assert misplaced_entry.status.value == "fail" and "version 4" in misplaced_entry.summary
    right = main + ('[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.nvidia]\n'
                    'runtime_type = "io.containerd.runc.v2"\n')
    engines = _engines(("/etc/containerd/config.toml", right))
    assert containerd_runtime_entry_unusable(engines, {"nvidia-ctk": "1.20.0"}).status.value == "ok"
    old_ctk = containerd_runtime_entry_unusable(engines, {"nvidia-ctk": "1.17.2"})
    assert old_ctk.status.value == "warn" and "unsupported config version: 4" in old_ctk.summary


def test_missing_runtime_type_filled_by_an_earlier_file_is_not_judged_broken() -> None:
    main = V3_RUNC + ('[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.nvidia]\n'
                      'runtime_type = "io.containerd.runc.v2"\n')
    dropin = ('version = 3\n[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.nvidia.options]\n'
              'BinaryName = "/usr/bin/nvidia-container-runtime"\n')
    verdict = containerd_runtime_entry_unusable(
        _engines(("/etc/containerd/config.toml", main), ("/etc/containerd/conf.d/99-nvidia.toml", dropin)),
        {"nvidia-ctk": "1.20.0"})
    assert verdict.status.value == "ok", verdict.summary


def test_old_toolkit_on_v3_names_the_upgrade_only_when_old() -> None:
    dropin = ('version = 3\n[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.nvidia]\n'
              'runtime_type = ""\n')
    engines = _engines(("/etc/containerd/config.toml", V3_RUNC), ("/etc/containerd/conf.d/99-nvidia.toml", dropin))
    assert "1.20.0 and later" in containerd_runtime_entry_unusable(engines, {"nvidia-ctk": "1.19.1"}).fix
    assert "1.20.0 and later" not in containerd_runtime_entry_unusable(engines, {"nvidia-ctk": "1.20.1"}).fix


def test_nvlink5_fatal_and_nonfatal() -> None:
    assert set(XID_NVLINK5) == set(range(144, 151)) and all(code in XID_MEANING for code in XID_NVLINK5)
    assert NVLINK5_FATAL.search("NETIR_LINK_EVT Fatal XC0 i0 Link 00 (0x025001c6 0x00000000)")
    assert not NVLINK5_FATAL.search("RLW_RXPIPE Nonfatal XC0 i0 Link 13 (0x0409a0c2 0x00000008)")


def test_lost_gpu_with_shared_replicas_is_not_the_aligned_path() -> None:
    """Time-sliced replicas take the greedy allocation path, which does not enumerate NVML links."""
    uuid = "GPU-67a571b1-79ee-1016-8ea3-c1fff3f1c1d2"
    nvml = {"init": {"ok": True}, "device_count": 2,
            "devices": [{"index": 0, "uuid": uuid}, {"index": 1, "error": {"name": "NVMLError_GpuIsLost"}}]}
    checkpoint = {"devices": {"nvidia.com/gpu": [f"{uuid}::0", f"{uuid}::1"]}, "unreadable": None}
    verdict = device_plugin_not_registered(["kubelet.sock", "nvidia-gpu.sock"], checkpoint, nvml, None)
    assert verdict.status.value != "fail" or "lost" not in verdict.summary
    whole = {"devices": {"nvidia.com/gpu": [uuid]}, "unreadable": None}
    verdict = device_plugin_not_registered(["kubelet.sock", "nvidia-gpu.sock"], whole, nvml, None)
    assert verdict.status.value == "fail" and verdict.anchor == "lost-gpu"

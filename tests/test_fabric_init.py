"""The NVML fabric and NVLink probes against stand-in bindings (no NVSwitch or NVLink-bridged host is at hand),
and the kernel-log parser of GPU initialisation failures on log forms the scenarios do not carry."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pynvml
from gpu_runbook.parsers.proc import gpu_init_failures
from gpu_runbook.probes.nvml import _fabric, _nvlink
from gpu_runbook.registry import load_checks, run_checks
from gpu_runbook.snapshot import Snapshot


class _Info:
    """A fabric-info struct as the bindings build it, filled by the call."""

    def __init__(self) -> None:
        self.state, self.status, self.cliqueId = 0, 0, 0


class _Bindings:
    """Stand-in pynvml: `fail` maps a call name to the NVMLError class it raises."""

    def __init__(self, fail: dict[str, type], state: int = 3) -> None:
        self.fail, self.state, self.calls = fail, state, []
        self.c_nvmlGpuFabricInfoV_t = _Info
        self.c_nvmlGpuFabricInfo_t = _Info

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("nvmlDeviceGetGpuFabricInfo"):
            raise AttributeError(name)

        def call(_handle: Any, info: _Info) -> int:
            self.calls.append(name)
            if name in self.fail:
                raise self.fail[name]()
            info.state, info.status, info.cliqueId = self.state, 0, 7
            return 0

        return call


def test_fabric_falls_back_to_the_older_call_on_drivers_without_the_v_form() -> None:
    bindings = _Bindings({"nvmlDeviceGetGpuFabricInfoV": pynvml.NVMLError_FunctionNotFound})
    assert _fabric(bindings, object()) == {"state": 3, "status": 0, "clique_id": 7,
                                           "api": "nvmlDeviceGetGpuFabricInfo"}
    assert bindings.calls == ["nvmlDeviceGetGpuFabricInfoV", "nvmlDeviceGetGpuFabricInfo"]


def test_fabric_records_not_supported_without_a_second_call() -> None:
    bindings = _Bindings({"nvmlDeviceGetGpuFabricInfoV": pynvml.NVMLError_NotSupported})
    result = _fabric(bindings, object())
    assert result["error"]["name"] == "NVMLError_NotSupported"
    assert bindings.calls == ["nvmlDeviceGetGpuFabricInfoV"]


def test_fabric_in_progress_is_reported_as_such() -> None:
    assert _fabric(_Bindings({}, state=2), object())["state"] == 2


def test_fabric_with_bindings_that_have_no_fabric_structs() -> None:
    class Old:
        pass

    assert _fabric(Old(), object())["error"]["name"] == "AttributeError"


class _Links:
    """Stand-in pynvml for the NVLink calls: `links` maps a link number to its peer's bus id (None: link down);
    a link past the last raises InvalidArgument, as the driver does; `none` raises NotSupported on every link."""

    NVML_NVLINK_MAX_LINKS = 6  # what old bindings say; an H100 has 18 links

    def __init__(self, links: dict[int, Any], none: bool = False) -> None:
        self.links, self.none, self.calls = links, none, 0

    def nvmlDeviceGetNvLinkState(self, _handle: Any, link: int) -> int:
        self.calls += 1
        if self.none:
            raise pynvml.NVMLError_NotSupported()
        if link not in self.links:
            raise pynvml.NVMLError_InvalidArgument()
        if isinstance(self.links[link], type):
            raise self.links[link]()
        return 0 if self.links[link] is None else 1

    def nvmlDeviceGetNvLinkRemotePciInfo(self, _handle: Any, link: int) -> Any:
        return type("Pci", (), {"busId": self.links[link].encode()})()


def test_nvlink_lists_the_peer_of_each_active_link_and_stops_past_the_last() -> None:
    bindings = _Links({0: "00000000:84:00.0", 1: None, 2: "00000000:84:00.0"})
    assert _nvlink(bindings, object()) == {"active": [[0, "00000000:84:00.0"], [2, "00000000:84:00.0"]]}
    assert bindings.calls == 4  # links 0-2, then the refusal of link 3: not all 36


def test_nvlink_walks_past_the_bindings_constant_and_past_a_link_it_cannot_read() -> None:
    """An 18-link GPU under old bindings (NVML_NVLINK_MAX_LINKS = 6), with link 3 unreadable: links 4-17 still
    count, and the unread link is recorded rather than ending the walk."""
    links: dict[int, Any] = {i: None for i in range(18)}
    links.update({3: pynvml.NVMLError_Timeout, 12: "00000000:84:00.0", 17: "00000000:84:00.0"})
    result = _nvlink(_Links(links), object())
    assert result["active"] == [[12, "00000000:84:00.0"], [17, "00000000:84:00.0"]]
    assert result["errors"]["3"]["name"] == "NVMLError_Timeout"


def test_nvlink_on_a_gpu_without_nvlink_is_one_call_and_its_error() -> None:
    bindings = _Links({}, none=True)
    assert _nvlink(bindings, object())["error"]["name"] == "NVMLError_NotSupported"
    assert bindings.calls == 1


def test_init_failures_in_a_journald_export() -> None:
    """journalctl -k keeps the kernel's lines; a syslog forward may join continuation lines with #012."""
    log = ("Jun 02 kernel: NVRM: The NVIDIA GPU 0000:b3:00.0#012NVRM: (PCI ID: 10de:26b5) installed in this system "
           "has#012NVRM: fallen off the bus and is not responding to commands.\n"
           "Jun 02 kernel: NVRM: GPU6 RmInitAdapter: Cannot initialize GSP firmware RM\n"
           "Jun 02 kernel: NVRM: GPU 0000:A1:00.0: RmInitAdapter failed! (0x61:0x56:1770)\n")
    found = [(f.kind, f.pci, f.detail) for f in gpu_init_failures(log)]
    assert found == [("fell-off-at-probe", "0000:b3:00.0", "PCI ID 10de:26b5"), ("gsp-boot", "", ""),
                     ("rm-init", "0000:a1:00.0", "fetching the GSP firmware: NV_ERR_NOT_SUPPORTED")]


def test_nvml_init_on_a_machine_without_an_nvidia_gpu_names_the_empty_bus() -> None:
    """A machine with no NVIDIA GPU on its PCI bus is sent to the empty-bus section, not told to install the driver;
    the same NVML error with a GPU on the bus keeps the driver page."""
    load_checks()
    scenario = Path(__file__).parent / "scenarios" / "gpu-init-failure" / "broken-no-nvidia-gpu-on-the-bus.json"
    data = json.loads(scenario.read_text(encoding="utf-8"))["snapshot"]
    (empty,) = run_checks(Snapshot(data), only=["nvml-init"])
    assert empty.status.value == "fail" and empty.url.endswith("gpu-init-failure.html#no-gpu-on-bus"), empty
    with_gpu = copy.deepcopy(data)
    with_gpu["pci"]["/sys/bus/pci/devices/0000:00:05.0"] = {"vendor": "0x10de", "device": "0x13f2", "class": "0x030000",
                                                            "link": "../../../devices/pci0000:00/0000:00:05.0"}
    (loaded,) = run_checks(Snapshot(with_gpu), only=["nvml-init"])
    assert loaded.status.value == "fail" and "kernel-modules.html#driver-not-loaded" in loaded.url, loaded

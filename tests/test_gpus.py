"""The GPU adapter and `ssp gpus`: the real no-driver path, then NVML's library stood in.

On a machine without the NVIDIA driver the real `pynvml` fails to load libnvidia-ml.so.1;
that path is tested as it is. Everything that needs GPUs runs against `nvml_standin`, which
replaces only the C library's functions and keeps pynvml's structs and exception classes.
The real-GPU checks live in tests/gpu/.
"""

from __future__ import annotations

import ctypes
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pynvml
import pytest
import yaml
from nvml_standin import MiB, NvmlStandin, StandinGpu, seed_server

from provisioner import cli
from provisioner.gpu.nvml import REQUIRED_NODES, missing_device_nodes, read_gpus
from provisioner.validation.hostsfile import update_hosts_text
from provisioner.values.errors import GpuError
from provisioner.values.gpuinventory import Gpu, GpuProcess, compare_inventory, nvml_to_lxd_pci

SEED_PCI = ["0000:1a:00.0", "0000:4b:00.0", "0000:b1:00.0", "0000:ca:00.0"]


def _nvml_library_loads() -> bool:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


@pytest.fixture
def seed(monkeypatch: pytest.MonkeyPatch) -> NvmlStandin:
    return NvmlStandin(seed_server()).install(monkeypatch)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv), env={})
    out, err = capsys.readouterr()
    return code, out, err


# -- the real library, no driver ---------------------------------------------------------

no_driver = pytest.mark.skipif(_nvml_library_loads(), reason="this machine has the NVIDIA driver")


@no_driver
def test_without_the_driver_read_gpus_says_what_is_missing() -> None:
    with pytest.raises(GpuError) as caught:
        read_gpus()
    message = str(caught.value)
    assert message.startswith("NVIDIA driver library (libnvidia-ml.so.1) not found: ")
    assert "Install the NVIDIA driver" in message
    assert isinstance(caught.value.__cause__, pynvml.NVMLError_LibraryNotFound)


@no_driver
def test_without_the_driver_ssp_gpus_exits_3_with_the_message_and_no_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_cli(capsys, "gpus")
    assert code == 3
    assert out == ""
    assert err.startswith("ssp gpus: error: NVIDIA driver library (libnvidia-ml.so.1) not found")
    assert "Traceback" not in err


# -- PCI addresses -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bus_id", "lxd"),
    [
        ("00000000:4B:00.0", "0000:4b:00.0"),  # NVML busId / nvidia-smi pci.bus_id
        (b"00000000:4B:00.0", "0000:4b:00.0"),  # older nvidia-ml-py returned bytes
        ("0000:4B:00.0", "0000:4b:00.0"),  # busIdLegacy
        ("0000:4b:00.0", "0000:4b:00.0"),  # already LXD's form
        ("00000000:CA:00.1", "0000:ca:00.1"),
        ("00010000:01:1F.7", "10000:01:1f.7"),  # VMD domains need more than 4 digits
        (" 00000000:1A:00.0\n", "0000:1a:00.0"),
        ("00000000:1A:00.0\x00\x00", "0000:1a:00.0"),
    ],
)
def test_nvml_bus_ids_become_lxd_pci_addresses(bus_id: str | bytes, lxd: str) -> None:
    assert nvml_to_lxd_pci(bus_id) == lxd


@pytest.mark.parametrize(
    "junk",
    [
        "",
        "4B:00.0",
        "00000000:4G:00.0",
        "00000000:4B:00.8",
        "00000000:4B:00",
        "GPU-5b7a",
        "0:4b:0.0",
    ],
)
def test_junk_is_not_a_pci_address(junk: str) -> None:
    with pytest.raises(ValueError, match="not a PCI bus id"):
        nvml_to_lxd_pci(junk)


# -- the inventory through the stand-in --------------------------------------------------


def test_read_gpus_reports_the_seed_servers_four_cards(seed: NvmlStandin) -> None:
    gpus = read_gpus()
    assert [g.index for g in gpus] == [0, 1, 2, 3]
    assert [g.pci for g in gpus] == SEED_PCI
    assert {g.model for g in gpus} == {"NVIDIA GeForce RTX 4090"}
    assert gpus[1].uuid == "GPU-6c8b4c2f-3d5e-4f90-8b1c-2d3e4f5a6b71"
    assert all(g.memory == 24564 * MiB for g in gpus)
    assert gpus[1].memory_used == 18000 * MiB
    assert gpus[1].utilization == 97
    assert gpus[1].processes == (GpuProcess(pid=4242, used_memory=17000 * MiB),)
    assert gpus[0].processes == ()
    # NVML is left as found: initialised once, shut down once
    assert (seed.inits, seed.shutdowns, seed.refcount) == (1, 1, 0)


def test_utilization_not_supported_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    cards = seed_server()
    cards[2].utilization = None
    NvmlStandin(cards).install(monkeypatch)
    assert [g.utilization for g in read_gpus()] == [0, 97, None, 0]


def test_processes_merge_compute_and_graphics_once_per_pid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    card = StandinGpu(
        "NVIDIA GeForce RTX 4090",
        "GPU-5b7a3b1e-2c4d-4e8f-9a0b-1c2d3e4f5a60",
        "00000000:1A:00.0",
        24564 * MiB,
        compute=[(300, 2048 * MiB), (100, None)],
        graphics=[(300, 10 * MiB), (200, 64 * MiB)],
    )
    NvmlStandin([card]).install(monkeypatch)
    (gpu,) = read_gpus()
    assert gpu.processes == (
        GpuProcess(100, None),  # NVML could not tell its memory
        GpuProcess(200, 64 * MiB),
        GpuProcess(300, 2048 * MiB),  # listed by both calls, counted once
    )


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "NVIDIA kernel driver is not loaded"),
        (pynvml.NVML_ERROR_NO_PERMISSION, "no permission to query the GPUs"),
        (pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH, "reboot the host"),
        (pynvml.NVML_ERROR_UNKNOWN, "NVML: Unknown Error (NVMLError_Unknown)"),
    ],
)
def test_init_failures_become_actionable_gpu_errors(
    monkeypatch: pytest.MonkeyPatch, code: int, words: str
) -> None:
    standin = NvmlStandin(seed_server(), init_error=code).install(monkeypatch)
    with pytest.raises(GpuError, match=re.escape(words)):
        read_gpus()
    assert standin.shutdowns == 0  # nothing to shut down after a failed init


def test_a_failure_mid_read_still_shuts_nvml_down(monkeypatch: pytest.MonkeyPatch) -> None:
    cards = seed_server()
    cards[3].memory_error = pynvml.NVML_ERROR_GPU_IS_LOST
    standin = NvmlStandin(cards).install(monkeypatch)
    with pytest.raises(GpuError, match="reading the GPU inventory failed: a GPU fell off the bus"):
        read_gpus()
    assert (standin.shutdowns, standin.refcount) == (1, 0)


# -- device nodes -------------------------------------------------------------------------


def test_missing_device_nodes_lists_what_lxd_could_not_pass_through(tmp_path: Path) -> None:
    assert missing_device_nodes(tmp_path) == ["/dev/nvidiactl", "/dev/nvidia-uvm"]
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "nvidiactl").touch()
    assert missing_device_nodes(tmp_path) == ["/dev/nvidia-uvm"]
    (tmp_path / "dev" / "nvidia-uvm").touch()
    assert missing_device_nodes(tmp_path) == []
    assert set(REQUIRED_NODES) == {"/dev/nvidiactl", "/dev/nvidia-uvm"}


# -- compare_inventory ---------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    index: int
    model: str
    pci: str
    uuid: str | None


def recorded(gpus: list[Gpu]) -> list[Recorded]:
    return [Recorded(g.index, g.model, g.pci, g.uuid) for g in gpus]


def test_a_matching_inventory_is_ok(seed: NvmlStandin) -> None:
    live = read_gpus()
    diff = compare_inventory(live, recorded(live))
    assert diff.ok
    assert diff.lines() == []


def test_inventory_differences_are_named_by_pci(seed: NvmlStandin) -> None:
    live = read_gpus()
    expected = recorded(live)
    # card 0 died, card 3 is new to the file, card 1 was swapped, card 2 renumbered
    expected[1] = Recorded(1, "NVIDIA GeForce RTX 3090", "0000:4b:00.0", "GPU-old")
    expected[2] = Recorded(5, expected[2].model, expected[2].pci, expected[2].uuid)
    expected.pop(3)
    expected.append(Recorded(7, "NVIDIA GeForce RTX 4090", "0000:e1:00.0", None))
    diff = compare_inventory(live, expected)
    assert not diff.ok
    assert diff.missing == (
        "0000:e1:00.0: NVIDIA GeForce RTX 4090 (no UUID recorded, index 7) is in the "
        "inventory but not on the host",
    )
    assert diff.unexpected == (
        "0000:ca:00.0: NVIDIA GeForce RTX 4090 (GPU-8e0d6e41-5f70-4b12-8d3e-4f5a6b7c8d93, "
        "index 3) is on the host but not in the inventory",
    )
    assert diff.changed == (
        "0000:4b:00.0: UUID GPU-6c8b4c2f-3d5e-4f90-8b1c-2d3e4f5a6b71, inventory says GPU-old "
        "(a different card)",
        "0000:4b:00.0: model 'NVIDIA GeForce RTX 4090', inventory says 'NVIDIA GeForce RTX 3090'",
        "0000:b1:00.0: NVML index 2, inventory says 5",
    )


def test_a_card_moved_to_another_slot_is_one_change(seed: NvmlStandin) -> None:
    live = read_gpus()
    expected = recorded(live)
    card = expected[3]
    expected[3] = Recorded(card.index, card.model, "0000:e1:00.0", card.uuid)
    diff = compare_inventory(live, expected)
    assert diff.missing == ()
    assert diff.unexpected == ()
    assert diff.changed == (
        "0000:e1:00.0: GPU-8e0d6e41-5f70-4b12-8d3e-4f5a6b7c8d93 (NVIDIA GeForce RTX 4090) "
        "is now at 0000:ca:00.0; the card was moved to another slot",
    )


def test_inventory_written_in_nvml_form_still_matches(seed: NvmlStandin) -> None:
    live = read_gpus()
    expected = [Recorded(g.index, g.model, f"0000{g.pci.upper()}", g.uuid) for g in live]
    assert compare_inventory(live, expected).ok


# -- ssp gpus ------------------------------------------------------------------------------


def test_ssp_gpus_prints_a_table(seed: NvmlStandin, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "gpus")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "IDX", "MODEL", "PCI", "UUID", "MEMORY", "(USED/TOTAL)", "UTIL", "PROCESSES",
    ]  # fmt: skip
    assert lines[2].split() == [
        "1", "NVIDIA", "GeForce", "RTX", "4090", "0000:4b:00.0",
        "GPU-6c8b4c2f-3d5e-4f90-8b1c-2d3e4f5a6b71", "18000/24564MiB", "97%", "4242", "(17000MiB)",
    ]  # fmt: skip
    assert len(lines) == 5
    # the node warning appears exactly when this machine lacks the nodes
    assert ("warning: " in err) == bool(missing_device_nodes())


def test_ssp_gpus_json(seed: NvmlStandin, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "gpus", "--format", "json")
    assert code == 0
    document = json.loads(out)
    assert [g["pci"] for g in document["gpus"]] == SEED_PCI
    assert document["gpus"][1]["processes"] == [{"pid": 4242, "used_memory": 17000 * MiB}]
    assert document["gpus"][1]["utilization"] == 97
    assert document["missing_device_nodes"] == missing_device_nodes()


# -- ssp gpus --write ----------------------------------------------------------------------

HOSTS = """\
# yaml-language-server: $schema=../schemas/hosts.schema.json
# The GPU server. `ssp gpus --write` rewrites the gpus: lists.

hosts:
  super-server:
    cpu: 64
    memory: 256GiB
    disk: 4TiB
    gpus:
      - index: 0
        model: NVIDIA GeForce RTX 4090
        pci: "0000:1a:00.0"
        uuid: GPU-5b7a3b1e-2c4d-4e8f-9a0b-1c2d3e4f5a60
        memory: 24564MiB
      - index: 1
        model: NVIDIA GeForce RTX 4090
        pci: "0000:4b:00.0"
        uuid: GPU-00000000-0000-4000-8000-000000000000
        memory: 24564MiB
      - index: 2
        model: NVIDIA GeForce RTX 3090
        pci: "0000:e1:00.0"
        uuid: GPU-11111111-1111-4111-8111-111111111111
        memory: 24576MiB
"""

# What the seed server's cards look like once written: the hand-written file's layout.
WRITTEN_GPUS = "".join(
    f"""\
      - index: {i}
        model: NVIDIA GeForce RTX 4090
        pci: "{pci}"
        uuid: {uuid}
        memory: 24564MiB
"""
    for i, (pci, uuid) in enumerate(
        zip(SEED_PCI, [card.uuid for card in seed_server()], strict=True)
    )
)


def make_repo(tmp_path: Path, hosts: str = HOSTS) -> Path:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "hosts.yaml").write_text(hosts, encoding="utf-8")
    return tmp_path


def test_write_records_the_live_gpus_and_keeps_the_rest(
    seed: NvmlStandin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path)
    path = repo / "config" / "hosts.yaml"
    code, out, _ = run_cli(capsys, "gpus", "--repo", str(repo), "--write")
    assert code == 0
    assert out.splitlines()[-5:] == [
        f"{path}: host super-server: GPUs written",
        "  changed 0000:4b:00.0: uuid GPU-00000000-0000-4000-8000-000000000000 -> "
        "GPU-6c8b4c2f-3d5e-4f90-8b1c-2d3e4f5a6b71",
        "  added 0000:b1:00.0: NVIDIA GeForce RTX 4090 (GPU-7d9c5d30-4e6f-4a01-9c2d-3e4f5a6b7c82, "
        "index 2, 24564MiB)",
        "  added 0000:ca:00.0: NVIDIA GeForce RTX 4090 (GPU-8e0d6e41-5f70-4b12-8d3e-4f5a6b7c8d93, "
        "index 3, 24564MiB)",
        "  removed 0000:e1:00.0: NVIDIA GeForce RTX 3090 "
        "(GPU-11111111-1111-4111-8111-111111111111, index 2, 24576MiB)",
    ]
    text = path.read_text(encoding="utf-8")
    assert text == HOSTS[: HOSTS.index("      - index: 0")] + WRITTEN_GPUS
    assert not list(path.parent.glob(".hosts.yaml.*"))  # no temporary file left behind

    # A second run finds nothing to do and leaves the file alone.
    before = path.stat().st_mtime_ns
    code, out, _ = run_cli(capsys, "gpus", "--repo", str(repo), "--write")
    assert code == 0
    assert out.splitlines()[-1] == (
        f"{path}: GPUs of host super-server already match; nothing written"
    )
    assert path.read_text(encoding="utf-8") == text
    assert path.stat().st_mtime_ns == before


def test_written_inventory_satisfies_the_hosts_model(seed: NvmlStandin) -> None:
    models = pytest.importorskip("provisioner.values.models")
    text, _, _, _ = update_hosts_text(HOSTS, None, read_gpus())
    inventory = models.Inventory.model_validate(yaml.safe_load(text))
    # the pydantic entries are what compare_inventory gets on the host
    assert compare_inventory(read_gpus(), inventory.hosts["super-server"].gpus).ok


def test_write_picks_the_named_host_among_several(
    seed: NvmlStandin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    two = HOSTS + "  small-box:\n    cpu: 8\n    memory: 32GiB\n"
    repo = make_repo(tmp_path, two)
    code, _, err = run_cli(capsys, "gpus", "--repo", str(repo), "--write")
    assert code == 2
    assert "several hosts (super-server, small-box) and LXD " in err
    assert err.rstrip().endswith("name one with --host")
    assert (repo / "config" / "hosts.yaml").read_text(encoding="utf-8") == two

    code, _, err = run_cli(capsys, "gpus", "--repo", str(repo), "--write", "--host", "nope")
    assert code == 2
    assert "host 'nope' is not in config/hosts.yaml (hosts: super-server, small-box)" in err

    code, _, _ = run_cli(capsys, "gpus", "--repo", str(repo), "--write", "--host", "small-box")
    assert code == 0
    hosts = yaml.safe_load((repo / "config" / "hosts.yaml").read_text(encoding="utf-8"))["hosts"]
    assert [g["pci"] for g in hosts["small-box"]["gpus"]] == SEED_PCI
    assert hosts["super-server"]["gpus"][2]["pci"] == "0000:e1:00.0"  # the other host untouched


def test_write_without_a_hosts_file_is_a_usage_error(
    seed: NvmlStandin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "gpus", "--repo", str(tmp_path), "--write")
    assert code == 2
    assert "config/hosts.yaml not found: create it with this host's entry" in err


def test_host_without_write_is_a_usage_error(
    seed: NvmlStandin, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "gpus", "--host", "super-server")
    assert (code, out) == (2, "")
    assert "--host only applies with --write" in err


def test_write_warns_when_inline_comments_are_lost(seed: NvmlStandin) -> None:
    commented = HOSTS.replace("cpu: 64", "cpu: 64  # two sockets")
    text, _, _, dropped = update_hosts_text(commented, None, read_gpus())
    assert dropped
    assert "two sockets" not in text
    # a '#' inside a value is not a comment
    _, _, _, dropped = update_hosts_text(
        HOSTS.replace("memory: 256GiB", 'memory: 256GiB\n    note: "rack #3"'), None, read_gpus()
    )
    assert not dropped

"""`ssp gpus --write` in an LXD cluster records every member: the member it runs on from
NVML, each other member from its own LXD's resources API (cards, model, UUID), memory sizes
from the entry the file already has for the same card.

Seen on main: with several servers in config/hosts.yaml, `--write` wrote only the host named
with `--host` (from this machine's NVML), so the other servers' entries went stale.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from nvml_standin import NvmlStandin, seed_server

from provisioner import cli, commands
from provisioner.values.errors import LxdError
from provisioner.values.gpuinventory import Card

SEED_PCI = ["0000:1a:00.0", "0000:4b:00.0", "0000:b1:00.0", "0000:ca:00.0"]
A100 = "NVIDIA A100 80GB PCIe"
U1, U2 = "GPU-0000000a-0000-4000-8000-000000000001", "GPU-0000000a-0000-4000-8000-000000000002"
HOSTS = f"""\
# The lab's two servers.
hosts:
  node1:
    cpu: 64
    memory: 256GiB
  node2:
    cpu: 32
    memory: 128GiB
    gpus:
      - index: 0
        model: {A100}
        pci: "0000:18:00.0"
        uuid: {U1}
        memory: 81920MiB
      - index: 1
        model: {A100}
        pci: "0000:3b:00.0"
        uuid: {U2}
        memory: 81920MiB
"""


class Members:
    """node1 (where it runs) and node2, whose cards LXD lists as `cards`."""

    def __init__(self, cards: tuple[Card, ...], node2: str = "Online") -> None:
        self.cards, self.node2 = cards, node2

    def members(self) -> dict[str, str]:
        return {"node1": "Online", "node2": self.node2}

    def member_name(self) -> str:
        return "node1"

    def gpu_cards(self, member: str = "") -> tuple[Card, ...]:
        assert member == "node2", member  # node1 is read through NVML
        if self.node2 != "Online":
            raise LxdError("Missing event connection with target cluster member")
        return self.cards


def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lxd: Members) -> int:
    """`ssp gpus --write` on node1 (the seed server's four cards) with the hosts file above."""
    NvmlStandin(seed_server()).install(monkeypatch)
    monkeypatch.setattr(commands, "open_lxd", lambda *_a, **_k: lxd)
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "hosts.yaml").write_text(HOSTS, encoding="utf-8")
    return cli.main(["gpus", "--repo", str(tmp_path), "--write"], env={})


def recorded(tmp_path: Path) -> dict[str, list[dict[str, object]]]:
    text = (tmp_path / "config" / "hosts.yaml").read_text(encoding="utf-8")
    return {h: e.get("gpus") or [] for h, e in yaml.safe_load(text)["hosts"].items()}


def test_every_member_is_written_from_its_own_truth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # node2's second A100 was moved to another slot: LXD sees it there, by its UUID.
    moved = (Card("0000:18:00.0", "10de", A100, U1), Card("0000:af:00.0", "10de", A100, U2))
    code = write(tmp_path, monkeypatch, Members(moved))
    out, err = capsys.readouterr()
    assert code == 0, err
    got = recorded(tmp_path)
    assert [g["pci"] for g in got["node1"]] == SEED_PCI  # this machine's NVML
    assert [(g["index"], g["pci"], g["uuid"], g["memory"]) for g in got["node2"]] == [
        (0, "0000:18:00.0", U1, "81920MiB"),
        (1, "0000:af:00.0", U2, "81920MiB"),
    ]
    assert "GPUs written for the cluster's members" in out
    assert "node2: added 0000:af:00.0" in out and "node2: removed 0000:3b:00.0" in out
    assert "node1: added 0000:1a:00.0" in out


@pytest.mark.parametrize(
    ("lxd", "why"),
    [
        (
            Members((Card("0000:18:00.0", "10de", "GA100", None),)),
            "LXD there cannot ask the NVIDIA driver",
        ),
        (
            Members(
                (Card("0000:18:00.0", "10de", A100, "GPU-0000000b-0000-4000-8000-0000000000ff"),)
            ),
            "new card(s) at 0000:18:00.0",
        ),
        (Members((), node2="Offline"), "LXD calls it Offline"),
    ],
)
def test_a_member_that_cannot_be_told_is_left_as_it_was_and_named(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    lxd: Members,
    why: str,
) -> None:
    code = write(tmp_path, monkeypatch, lxd)
    _out, err = capsys.readouterr()
    assert code == 0, err
    assert f"warning: node2: not written ({why}" in err
    assert "run `ssp gpus --write --host node2` there" in err
    got = recorded(tmp_path)
    assert [g["uuid"] for g in got["node2"]] == [U1, U2]  # untouched
    assert [g["pci"] for g in got["node1"]] == SEED_PCI

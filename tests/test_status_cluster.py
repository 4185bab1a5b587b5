"""The status board of a cluster: every server's GPUs, each held by the containers on it.

Seen on main: the board showed the first server's GPUs only, and a container holding a card
on the second server (in the same PCI slot, two servers of one make) was shown holding the
first server's card.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import yaml
from fakelxd import NOW, TODAY, Lab

from provisioner.status import page as statuspage
from provisioner.status.server import Live, ServerStatus, build
from provisioner.values.state import EXPIRES, MANAGED, OWNER, Instance

SLOTS = ("0000:18:00.0", "0000:3b:00.0")


def entries(model: str, tag: int) -> list[dict[str, Any]]:
    return [
        {"index": i, "model": model, "pci": pci, "memory": "24564MiB",
         "uuid": f"GPU-{tag:08x}-0000-4000-8000-{i:012x}"}
        for i, pci in enumerate(SLOTS)
    ]  # fmt: skip


HOSTS = {
    "hosts": {
        "node1": {"cpu": 64, "memory": "256GiB", "gpus": entries("RTX 4090", 1)},
        "node2": {"cpu": 64, "memory": "256GiB", "gpus": entries("A100", 2)},
    }
}


@pytest.fixture(scope="module")
def status() -> ServerStatus:
    lab = replace(Lab.make(), hosts=yaml.safe_dump(HOSTS))
    v = lab.validate(lab.container("carol-y", owner="carol", gpus=1, gpu_model="A100"))
    assert v.config is not None and v.valid, v.problems
    holder = Instance(
        name="carol-y",
        status="Running",
        config={MANAGED: "true", OWNER: "carol", EXPIRES: "2027-01-20"},
        devices={"gpu0": {"type": "gpu", "pci": SLOTS[0]}},
        location="node2",
    )
    return build(
        policy=v.config.policy,
        inventory=v.config.inventory,
        requests=v.valid,
        instances=[holder],
        servers=[],
        now=NOW,
        today=TODAY,
        # The runner's NVML, in a slot both servers have: which server's card is it?
        live={SLOTS[0]: Live(99, 1, 2)},
    )


def test_every_servers_gpus_are_on_the_board_held_where_they_are(status: ServerStatus) -> None:
    board = {(g.server, g.index): (g.model, g.container) for g in status.gpus}
    assert board == {
        ("node1", 0): ("RTX 4090", None),
        ("node1", 1): ("RTX 4090", None),
        ("node2", 0): ("A100", "carol-y"),
        ("node2", 1): ("A100", None),
    }
    assert status.free_labels == ("node1: 0", "node1: 1", "node2: 1")
    assert all(g.live is None for g in status.gpus)  # not put on both servers' slot 0
    assert status.host == "node1, node2"


def test_the_page_names_the_server_of_each_gpu(status: ServerStatus) -> None:
    text = "\n".join(statuspage.text_lines(status))
    assert "GPU node2: 0  A100" in text and "carol-y (carol, until 2027-01-20)" in text
    assert "3 of 4 free (GPUs node1: 0, node1: 1, node2: 1)" in text
    assert "| node2: 0 | A100 | carol\\-y (carol) | 2027-01-20 |" in statuspage.markdown(status)

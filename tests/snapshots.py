"""Snapshots as `ssp publish` makes them, for tests: LXD instances → status → snapshot.json."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from helpers import NOW, ROOT

from provisioner.status import page as statuspage
from provisioner.status import snapshot as snapshots
from provisioner.status.server import PoolUse, build
from provisioner.validation.config import load_config
from provisioner.values import spec as specs
from provisioner.values import state
from provisioner.values.state import Image, Instance

GiB = 2**30
PCI = ("0000:18:00.0", "0000:3b:00.0", "0000:86:00.0", "0000:af:00.0")  # config/hosts.yaml


def container(name: str, owner: str, gpus: tuple[int, ...], port: int, disk: str) -> Instance:
    devices: dict[str, dict[str, str]] = {f"gpu{i}": {"type": "gpu", "pci": PCI[i]} for i in gpus}
    devices[specs.SSH_DEVICE] = specs.proxy_device("0.0.0.0", port, 22)  # noqa: S104
    devices[specs.ROOT_DEVICE] = {"type": "disk", "path": "/", "pool": "default", "size": disk}
    return Instance(
        name=name,
        status="Running",
        config={
            state.MANAGED: "true",
            state.OWNER: owner,
            state.EXPIRES: "2027-06-30",
            specs.IMAGE: "common-server",
            "user.secret-ish": "never published",
        },
        devices=devices,
        ipv4=("10.161.5.23",),
    )


def retired(name: str, owner: str) -> Instance:
    """A container retired on 2026-11-01, kept stopped until retention deletes it."""
    inst = container(name, owner, (), 22050, "50GiB")
    config = {**inst.config, state.RETIRED: "2026-11-01"}
    return Instance(name=name, status="Stopped", config=config, devices=inst.devices)


def account_server(owners: dict[str, str]) -> Instance:
    """The lab's shared server (config/policy.yaml's Common-Server) with ssp's accounts:
    login → the member it was made for, as apply records it."""
    config = {
        state.ACCOUNT + login: json.dumps({"owner": owner, "request": "", "state": "active"})
        for login, owner in owners.items()
    }
    return Instance(name="Common-Server", status="Running", config=config)


def make_snapshot(
    path: Path,
    instances: list[Instance],
    *,
    free_disk: int = 500 * GiB,
    made: datetime | None = None,
    policy_text: str | None = None,
) -> Path:
    """snapshot.json as `ssp publish` writes it, from these LXD instances, with the status
    page (index.html) beside it."""
    text = snapshot_text(instances, free_disk=free_disk, made=made, policy_text=policy_text)
    return write_snapshot(path, text)


# The status page each snapshot text records the digest of, as `ssp publish` writes it beside.
_PAGES: dict[str, str] = {}


def write_snapshot(path: Path, text: str) -> Path:
    """TEXT (from snapshot_text) at PATH, and its status page beside it, as the branch has
    them."""
    path.write_text(text, encoding="utf-8")
    path.with_name(snapshots.PAGE_FILE).write_text(_PAGES[text], encoding="utf-8")
    return path


def snapshot_text(
    instances: list[Instance],
    *,
    servers: tuple[Instance, ...] = (),
    images: tuple[Image, ...] | None = None,
    free_disk: int = 500 * GiB,
    made: datetime | None = None,
    policy_text: str | None = None,
) -> str:
    """The text of snapshot.json as `ssp publish` writes it: these LXD instances, the shared
    servers' instances (their accounts) and ssp's images (None: an older snapshot's)."""
    policy_raw = policy_text.encode() if policy_text else (ROOT / "config/policy.yaml").read_bytes()
    config, problems = load_config(policy_raw, (ROOT / "config/hosts.yaml").read_bytes())
    assert config is not None, problems
    made = made or datetime.fromisoformat(NOW) - timedelta(hours=1)
    status = build(
        policy=config.policy,
        inventory=config.inventory,
        requests=(),
        instances=instances,
        servers=servers,
        now=made,
        today=made.date(),
        pool=PoolUse("default", 4096 * GiB - free_disk, 4096 * GiB),
    )
    taken = snapshots.make(status, instances, config.policy, commit="a" * 40, images=images)
    page = statuspage.html(taken.status)
    text = snapshots.to_json(snapshots.with_page(taken, page))
    _PAGES[text] = page
    return text

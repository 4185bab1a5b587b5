"""What ssp never sends to LXD, whatever a valid request holds (SECURITY.md, "What ssp never
sends to LXD"): for every combination of the fields a member controls, each container the plan
creates carries only the config keys ssp owns, a `raw.idmap` built from the policy's UID, and
devices built from the policy's catalogues: the root disk, catalogue shares, GPUs pinned by
PCI address, proxies to the container's own SSH and RDP ports. No key is named by the request,
and no host path, port or PCI address comes from its text."""

from __future__ import annotations

from typing import Any

import pytest
from fakelxd import TODAY, Lab
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioner.planning.plan import make_plan
from provisioner.values.plandata import Create, Inputs

# Every config key a managed container may be created with, and nothing else.
ALLOWED_KEYS = frozenset(
    {
        "limits.cpu",
        "limits.memory",
        "limits.processes",
        "security.idmap.isolated",
        "security.idmap.base",
        "security.idmap.size",
        "security.protection.delete",
        "boot.autostart",
        "raw.idmap",
        "snapshots.schedule",
        "snapshots.expiry",
        "user.ssp.managed",
        "user.ssp.owner",
        "user.ssp.request",
        "user.ssp.expires",
        "user.ssp.keys",
        "user.ssp.image",
        # gpu_userspace: nvidia-runtime, on GPU containers only, with fixed values (below)
        "nvidia.runtime",
        "nvidia.driver.capabilities",
    }
)
COMPUTE = {"nvidia.driver.capabilities": "compute,utility"}  # no graphics, video or display
NEVER_KEYS = ("security.privileged", "security.nesting", "raw.lxc", "raw.apparmor", "raw.seccomp")
UIDS = {"alice": 1001, "bob": 1002, "carol": 1003}
SHARE = {"source": "/home/user/share", "path": "/home/user/share"}
LISTEN = "0.0.0.0"  # noqa: S104  (the sample policy's ssh.listen, not a bind)
PCI = {"0000:18:00.0", "0000:3b:00.0", "0000:86:00.0", "0000:af:00.0"}
HOSTILE = [
    "/etc/shadow",
    "security.privileged: true",
    "raw.lxc=lxc.apparmor.profile=unconfined",
    "tcp:6.6.6.6:31337",
    "0000:ff:1f.7",
    "$(reboot)",
    "`id`; rm -rf /",
    "训练 ' \" \\ {{ x }}",
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return Lab.make(tmp_path_factory.mktemp("keys"))


requests = st.fixed_dictionaries(
    {
        "owner": st.sampled_from(sorted(UIDS)),
        "gpus": st.one_of(st.integers(0, 2), st.lists(st.integers(0, 3), max_size=2, unique=True)),
        "shares": st.sampled_from([[], ["share"]]),
        "desktop": st.booleans(),
        "snapshots": st.sampled_from(["none", "daily", "weekly"]),
        "cpu": st.integers(1, 16),
        "memory": st.sampled_from(["1GiB", "512MiB", "32GiB"]),
        "disk": st.sampled_from(["10GiB", "100GiB"]),
        "image": st.sampled_from(["common-server", "ubuntu-24.04"]),
        "purpose": st.sampled_from(HOSTILE),
    }
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(requests)
def test_a_valid_request_becomes_only_what_ssp_owns(lab: Lab, fields: dict[str, Any]) -> None:
    owner = fields.pop("owner")
    v = lab.validate(lab.container(f"{owner}-box", owner=owner, **fields))
    assert v.config is not None
    if not v.valid:  # over a quota, say: refused, so nothing is sent at all
        assert v.errors
        return
    plan = make_plan(
        Inputs(
            policy=v.config.policy,
            inventory=v.config.inventory,
            valid=v.valid,
            expired=v.expired,
            observed=(),
            today=TODAY,
            skipped=v.invalid_paths,
            servers=(),
        )
    )
    creates = [a for a in plan.actions if isinstance(a, Create)]
    if not creates:  # not enough free GPUs, say: a refusal, nothing sent
        return
    (create,) = creates
    spec = create.spec
    assert set(spec.config) <= ALLOWED_KEYS, set(spec.config) - ALLOWED_KEYS
    assert not any(k in spec.config for k in NEVER_KEYS)
    nvidia = {k: v for k, v in spec.config.items() if k.startswith("nvidia.")}
    assert nvidia == ({} if not spec.gpus else {"nvidia.runtime": "true", **COMPUTE})
    uid = UIDS[owner]
    assert spec.config.get("raw.idmap", f"both {uid} {uid}") == f"both {uid} {uid}"
    assert spec.source in (
        {"type": "copy", "source": "Common-Server/golden", "project": "default"},
        {"type": "image", "alias": "ubuntu/24.04"},
    )
    for name, device in spec.devices.items():
        kind = device["type"]
        if name == "root":
            assert device.keys() == {"type", "path", "pool", "size"} and device["path"] == "/"
        elif kind == "disk":
            assert {device["source"], device["path"]} <= set(SHARE.values()), device
        elif kind == "gpu":
            assert device == {"type": "gpu", "gputype": "physical", "pci": device["pci"]}
            assert device["pci"] in PCI
        else:
            assert kind == "proxy", device
            assert device["bind"] == "host"
            assert device["connect"] in ("tcp:127.0.0.1:22", "tcp:127.0.0.1:3389")
            host, port = device["listen"].removeprefix("tcp:").rsplit(":", 1)
            assert host == LISTEN and 22001 <= int(port) <= 22999
    # the purpose is the only free text, and it goes to the description only
    texts = [*spec.config.values(), *(v for d in spec.devices.values() for v in d.values())]
    assert not any(fields["purpose"] in t for t in texts)

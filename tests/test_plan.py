"""The pure plan: every action kind, GPU and port allocation, drift, accounts, determinism.

Inputs are built the way `ssp apply` builds them: the sample config/policy.yaml and
config/hosts.yaml plus request files, through `validate_tree`, with real ed25519 keys from
ssh-keygen. Observed instances are what a successful apply leaves behind (`applied`), then
changed the way people and time change them.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import pytest
from fakelxd import TODAY, Lab

from provisioner.planning.plan import make_plan
from provisioner.validation.validate import Validation
from provisioner.values import spec as specs
from provisioner.values.plandata import (
    AccountAction,
    Action,
    Create,
    Inputs,
    Plan,
    Ready,
    Refuse,
    Restore,
    Retire,
    Start,
    Update,
    Wait,
)
from provisioner.values.state import (
    ACCOUNT,
    KEYS,
    MANAGED,
    OWNER,
    RELEASED,
    RESTORED,
    RETIRED,
    SHA,
    STATE,
    Instance,
)

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")

ALICE = "requests/alice/alice-x.yaml"
# The sample inventory: nvidia-smi index → PCI address.
PCI = {0: "0000:18:00.0", 1: "0000:3b:00.0", 2: "0000:86:00.0", 3: "0000:af:00.0"}


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return Lab.make(tmp_path_factory.mktemp("keys"))


# --- helpers ------------------------------------------------------------------------------------


def inputs(
    v: Validation,
    observed: Iterable[Instance] = (),
    servers: Iterable[Instance] = (),
    **extra: Any,
) -> Inputs:
    assert v.config is not None, v.problems
    return Inputs(
        policy=v.config.policy,
        inventory=v.config.inventory,
        valid=v.valid,
        expired=v.expired,
        observed=tuple(observed),
        today=TODAY,
        skipped=v.invalid_paths,
        servers=tuple(servers),
        **extra,
    )


def plan(v: Validation, observed: Iterable[Instance] = (), **extra: Any) -> Plan:
    return make_plan(inputs(v, observed, **extra))


def applied(
    spec: specs.Spec,
    status: str = "Running",
    config: dict[str, str | None] | None = None,
    devices: dict[str, dict[str, str] | None] | None = None,
    description: str | None = None,
) -> Instance:
    """The instance apply leaves for `spec` (with LXD's own keys), with `config`/`devices` edits."""
    have = {
        **spec.config,
        STATE: "ready",
        SHA: "1" * 40,
        "image.os": "Debian",
        "volatile.uuid": "00000000-0000-4000-8000-000000000007",
        "volatile.last_state.power": status.upper(),
    }
    for key, value in (config or {}).items():
        if value is None:
            have.pop(key, None)
        else:
            have[key] = value
    devs: dict[str, dict[str, str]] = {k: dict(v) for k, v in spec.devices.items()}
    for dev, options in (devices or {}).items():
        if options is None:
            devs.pop(dev, None)
        else:
            devs[dev] = options
    return Instance(
        name=spec.name,
        status=status,
        config=have,
        devices=devs,
        description=spec.description if description is None else description,
        profiles=spec.profiles,
        ipv4=("10.23.0.10",) if status == "Running" else (),
    )


def spec_of(lab: Lab, request: tuple[str, bytes]) -> specs.Spec:
    """The spec a lone request is planned with on an empty host."""
    (action,) = plan(lab.validate(request)).actions
    assert isinstance(action, Create), action
    return action.spec


def converged(lab: Lab, *requests: tuple[str, bytes], **extra: Any) -> list[Instance]:
    """The instances a successful apply of `requests` leaves."""
    first = plan(lab.validate(*requests), **extra)
    return [applied(a.spec) for a in first.actions if isinstance(a, Create)]


def by_name(p: Plan) -> dict[str, Action]:
    return {a.name: a for a in p.actions}


def gpu_indices(action: Action) -> tuple[int, ...]:
    assert isinstance(action, Create | Update | Ready | Start), action
    return tuple(sorted(g.index for g in action.spec.gpus))


def unmanaged(name: str, **devices: dict[str, str]) -> Instance:
    return Instance(name, "Running", {"user.note": "the admin's own"}, devices)


def gpu(index: int) -> dict[str, str]:
    return {"type": "gpu", "gputype": "physical", "pci": PCI[index]}


def proxy(port: int) -> dict[str, str]:
    return specs.proxy_device("0.0.0.0", port, 22)  # noqa: S104  (the policy's listen address)


# --- create / start / ready -----------------------------------------------------------------------


def test_a_new_request_is_created_with_its_whole_spec(lab: Lab) -> None:
    v = lab.validate(lab.container("alice-x", gpus=1, shares=["share"], snapshots="daily"))
    (action,) = plan(v).actions
    assert isinstance(action, Create)
    assert not action.replace_half_made
    s = action.spec
    assert s.source == {"type": "copy", "source": "Common-Server/golden", "project": "default"}
    assert s.config["raw.idmap"] == "both 1001 1001"  # alice's UID from the policy
    assert s.config["security.idmap.isolated"] == "true"
    assert s.config["security.protection.delete"] == "true"
    assert s.config["snapshots.schedule"] == "@daily"
    assert s.config[MANAGED] == "true" and s.config[OWNER] == "alice"
    assert "security.privileged" not in s.config
    assert not any(k.startswith("raw.") and k != "raw.idmap" for k in s.config)
    assert s.devices["gpu-0000-18-00-0"] == gpu(0)
    assert s.devices["share-share"]["source"] == "/home/user/share"
    assert s.devices["ssh"]["listen"] == "tcp:0.0.0.0:22001"


def test_a_stopped_managed_instance_is_started(lab: Lab) -> None:
    req = lab.container("alice-x")
    stopped = applied(spec_of(lab, req), status="Stopped")
    p = plan(lab.validate(req), [stopped])
    assert [a.kind for a in p.actions] == ["start"]
    assert p.changes == p.actions


def test_a_converged_instance_is_ready_and_nothing_changes(lab: Lab) -> None:
    req = lab.container("alice-x", gpus=2, shares=["share"], desktop=True)
    observed = converged(lab, req)
    p = plan(lab.validate(req), observed)
    assert [a.kind for a in p.actions] == ["ready"]
    assert p.changes == ()
    assert p.drift == ()


def test_a_half_made_instance_is_made_again(lab: Lab) -> None:
    req = lab.container("alice-x")
    (inst,) = converged(lab, req)
    half = Instance(inst.name, "Stopped", {**inst.config, STATE: "creating"}, inst.devices)
    (action,) = plan(lab.validate(req), [half]).actions
    assert isinstance(action, Create)
    assert action.replace_half_made
    assert "half-made" in action.detail


# --- updates, one reason at a time ---------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    before: dict[str, Any]  # request fields applied before
    after: dict[str, Any]  # request fields now
    reason: str  # in the update's reasons
    config: dict[str, str | None] = field(default_factory=dict)  # the config keys it sets
    devices: bool = False  # the device set is replaced
    restart: bool = False


NVIDIA = {"nvidia.driver.capabilities": "compute,utility", "nvidia.runtime": "true"}
UPDATES = {
    "cpu": Change({}, {"cpu": 4}, "limits.cpu: '8' → '4'", {"limits.cpu": "4"}),
    "memory": Change({}, {"memory": "16GiB"}, "limits.memory", {"limits.memory": "16GiB"}),
    "disk": Change({}, {"disk": "50GiB"}, "devices: ~root", devices=True),
    # the first GPU turns the NVIDIA runtime on, which injects the driver's libraries at start
    "gpu added": Change(
        {}, {"gpus": 1}, "devices: +gpu-0000-18-00-0", dict(NVIDIA), devices=True, restart=True
    ),
    "second gpu added": Change({"gpus": 1}, {"gpus": 2}, "+gpu-0000-3b-00-0", devices=True),
    "gpu removed": Change(
        {"gpus": [2]},
        {},
        "devices: -gpu-0000-86-00-0",
        dict.fromkeys(NVIDIA),
        devices=True,
    ),
    "gpu moved": Change(
        {"gpus": [2]}, {"gpus": [3]}, "devices: +gpu-0000-af-00-0 -gpu-0000-86-00-0", devices=True
    ),
    "share added": Change(
        {}, {"shares": ["share"]}, "+share-share", {"raw.idmap": "both 1001 1001"}, True, True
    ),
    "share removed": Change(
        {"shares": ["share"]}, {}, "-share-share", {"raw.idmap": None}, True, True
    ),
    "snapshots": Change(
        {"snapshots": "weekly"},
        {"snapshots": "daily"},
        "snapshots.schedule: '@weekly' → '@daily'",
        {"snapshots.schedule": "@daily", "snapshots.expiry": "2w"},
    ),
    "snapshots off": Change(
        {},
        {"snapshots": "none"},
        "snapshots.schedule",
        {"snapshots.schedule": None, "snapshots.expiry": None},
    ),
    "desktop": Change({}, {"desktop": True}, "devices: +rdp", devices=True),
    "lease": Change(
        {}, {"expires": date(2027, 9, 1)}, "user.ssp.expires", {"user.ssp.expires": "2027-09-01"}
    ),
    "description": Change({}, {"purpose": "A new purpose"}, "description changed"),
}


@pytest.mark.parametrize("change", UPDATES.values(), ids=UPDATES.keys())
def test_a_changed_request_updates_only_what_changed(lab: Lab, change: Change) -> None:
    observed = converged(lab, lab.container("alice-x", **change.before))
    (action,) = plan(lab.validate(lab.container("alice-x", **change.after)), observed).actions
    assert isinstance(action, Update), action
    assert change.reason in action.detail
    assert dict(action.config) == change.config
    assert action.devices is change.devices
    assert action.restart is change.restart
    assert not action.push_keys


def test_new_ssh_keys_are_pushed(lab: Lab) -> None:
    observed = converged(lab, lab.container("alice-x"))
    req = lab.container("alice-x", ssh_keys=lab.keys["alice"])
    (action,) = plan(lab.validate(req), observed).actions
    assert isinstance(action, Update)
    assert action.push_keys
    assert action.detail == "SSH keys changed"
    assert action.config == {KEYS: specs.keys_hash(tuple(lab.keys["alice"]))}


def test_changed_profiles_are_an_update(lab: Lab) -> None:
    (inst,) = converged(lab, lab.container("alice-x"))
    old = Instance(
        inst.name,
        inst.status,
        inst.config,
        inst.devices,
        description=inst.description,
        profiles=("default", "gpu-lab"),
        ipv4=inst.ipv4,
    )
    (action,) = plan(lab.validate(lab.container("alice-x")), [old]).actions
    assert isinstance(action, Update)
    assert "profiles" in action.detail


# --- drift: hand edits ---------------------------------------------------------------------------


def test_a_hand_set_key_that_is_not_ours_is_reported_and_left(lab: Lab) -> None:
    edited = applied(
        spec_of(lab, lab.container("alice-x")),
        config={"environment.HTTP_PROXY": "http://proxy:3128"},
    )
    p = plan(lab.validate(lab.container("alice-x")), [edited])
    assert [a.kind for a in p.actions] == ["ready"]
    assert [(d.name, d.message) for d in p.drift] == [
        (
            "alice-x",
            "config environment.HTTP_PROXY='http://proxy:3128' was set by hand (left as it is)",
        )
    ]
    # With a real change alongside, the update still leaves the hand-set key out.
    p = plan(lab.validate(lab.container("alice-x", cpu=2)), [edited])
    (action,) = p.actions
    assert isinstance(action, Update)
    assert "environment.HTTP_PROXY" not in action.config
    assert len(p.drift) == 1


@pytest.mark.parametrize(
    ("config", "devices", "expect_config", "reason"),
    [
        ({"security.privileged": "true"}, {}, {"security.privileged": None}, "security.privileged"),
        ({"raw.lxc": "lxc.apparmor.profile=unconfined"}, {}, {"raw.lxc": None}, "raw.lxc"),
        (
            {"security.protection.delete": "false"},
            {},
            {"security.protection.delete": "true"},
            "security.protection.delete",
        ),
        ({"limits.cpu": "64"}, {}, {"limits.cpu": "8"}, "limits.cpu"),
        (
            {},
            {"scratch": {"type": "disk", "source": "/srv", "path": "/srv"}},
            {},
            "devices: -scratch",
        ),
        ({}, {"gpu": {"type": "gpu"}}, {}, "devices: -gpu"),
        ({}, {"ssh": None}, {}, "devices: +ssh"),
    ],
    ids=["privileged", "raw.lxc", "protection", "limits", "disk", "every-gpu", "ssh-removed"],
)
def test_a_hand_edit_of_what_is_ours_is_reverted(
    lab: Lab,
    config: dict[str, str | None],
    devices: dict[str, dict[str, str] | None],
    expect_config: dict[str, str | None],
    reason: str,
) -> None:
    req = lab.container("alice-x")
    spec = spec_of(lab, req)
    p = plan(lab.validate(req), [applied(spec, config=config, devices=devices)])
    (action,) = p.actions
    assert isinstance(action, Update)
    assert dict(action.config) == expect_config
    assert action.devices is bool(devices)
    assert reason in action.detail
    assert p.drift == ()


def test_unmanaged_instances_are_never_touched_nor_reported(lab: Lab) -> None:
    mine = unmanaged("admin-box", ssh=proxy(22500), card=gpu(3))
    p = plan(lab.validate(lab.container("alice-x")), [mine])
    assert [a.name for a in p.actions] == ["alice-x"]
    assert p.drift == ()


# --- retire --------------------------------------------------------------------------------------


def test_a_removed_request_retires_its_instance(lab: Lab) -> None:
    observed = converged(lab, lab.container("alice-x"), lab.container("alice-y"))
    p = plan(lab.validate(lab.container("alice-x")), observed)
    assert [a.kind for a in p.actions] == ["ready", "retire"]
    retire = p.actions[1]
    assert isinstance(retire, Retire)
    assert (retire.name, retire.owner, retire.request_path) == (
        "alice-y",
        "alice",
        "requests/alice/alice-y.yaml",
    )
    assert retire.reason == "its request was removed"
    assert retire.today == TODAY


def test_an_expired_request_retires_its_instance(lab: Lab) -> None:
    observed = converged(lab, lab.container("alice-x"))
    v = lab.validate(lab.container("alice-x", expires=date(2027, 1, 9)))
    assert [p.rule for p in v.problems] == ["lease.expired"]  # a warning: not skipped
    (action,) = plan(v, observed).actions
    assert isinstance(action, Retire)
    assert action.reason == "its lease expired"


def test_a_retired_instance_is_left_alone(lab: Lab) -> None:
    (inst,) = converged(lab, lab.container("alice-y"))
    retired = Instance(inst.name, "Stopped", {**inst.config, RETIRED: "2027-01-01"}, inst.devices)
    assert plan(lab.validate(), [retired]).actions == ()


def test_a_retired_instance_whose_request_comes_back_is_restored(lab: Lab) -> None:
    req = lab.container("alice-x")
    spec = spec_of(lab, req)
    retired = applied(spec, "Stopped", config={RETIRED: "2027-01-01", "boot.autostart": "false"})
    (action,) = plan(lab.validate(req), [retired]).actions
    assert isinstance(action, Update)
    assert action.config == {RETIRED: None, "boot.autostart": "true"}


def test_an_instance_whose_request_is_invalid_now_is_left_alone(lab: Lab) -> None:
    observed = converged(lab, lab.container("alice-x"))
    v = lab.validate(lab.container("alice-x", shares=["no-such-share"]))
    assert v.invalid_paths == {ALICE}
    assert plan(v, observed).actions == ()


# --- refusals ------------------------------------------------------------------------------------


def refusal(p: Plan, name: str) -> str:
    action = by_name(p)[name]
    assert isinstance(action, Refuse), action
    return action.message


def test_the_image_cannot_change_in_place(lab: Lab) -> None:
    observed = converged(lab, lab.container("alice-x"))
    p = plan(lab.validate(lab.container("alice-x", image="ubuntu-24.04")), observed)
    assert "image cannot change in place (common-server → ubuntu-24.04)" in refusal(p, "alice-x")


def test_the_owner_cannot_change(lab: Lab) -> None:
    (bobs,) = converged(lab, lab.container("shared-x", owner="bob"))
    p = plan(lab.validate(lab.container("shared-x", owner="alice")), [bobs])
    assert "'shared-x' belongs to bob" in refusal(p, "shared-x")


def test_an_unmanaged_instance_with_the_same_name_is_refused(lab: Lab) -> None:
    p = plan(lab.validate(lab.container("alice-x")), [unmanaged("alice-x")])
    assert "is not managed by ssp" in refusal(p, "alice-x")


def test_gpus_are_refused_while_the_gpu_stack_is_not_ready(lab: Lab) -> None:
    running = converged(lab, lab.container("alice-old", gpus=1))
    v = lab.validate(
        lab.container("alice-old", gpus=1),
        lab.container("alice-x", gpus=1),
        lab.container("carol-cpu", owner="carol"),
    )
    p = plan(v, running, gpu_refusal="device nodes missing: /dev/nvidia-uvm")
    assert refusal(p, "alice-x") == (
        "GPUs cannot be attached now: device nodes missing: /dev/nvidia-uvm"
    )
    assert isinstance(by_name(p)["carol-cpu"], Create)
    assert isinstance(by_name(p)["alice-old"], Ready)  # nothing is attached to it anew


def test_a_stopped_gpu_container_is_not_started_while_the_gpu_stack_is_not_ready(
    lab: Lab,
) -> None:
    req = lab.container("alice-x", gpus=1)
    spec = spec_of(lab, req)
    p = plan(lab.validate(req), [applied(spec, "Stopped")], gpu_refusal="nvidia-smi fails")
    assert refusal(p, "alice-x") == "GPUs cannot be attached now: nvidia-smi fails"


# --- GPU allocation ------------------------------------------------------------------------------


def test_counts_take_the_lowest_gpus_nobody_pinned(lab: Lab) -> None:
    v = lab.validate(
        lab.container("alice-x", gpus=2), lab.container("carol-y", owner="carol", gpus=[0, 2])
    )
    p = by_name(plan(v))
    assert gpu_indices(p["alice-x"]) == (1, 3)
    assert gpu_indices(p["carol-y"]) == (0, 2)


def test_pinned_gpus_are_exactly_the_listed_pci_addresses(lab: Lab) -> None:
    (action,) = plan(lab.validate(lab.container("carol-y", owner="carol", gpus=[3, 1]))).actions
    assert isinstance(action, Create)
    pcis = {d["pci"] for d in action.spec.devices.values() if d["type"] == "gpu"}
    assert pcis == {PCI[1], PCI[3]}


def test_a_container_keeps_its_gpus_when_lower_ones_become_free(lab: Lab) -> None:
    before = converged(
        lab,
        lab.container("alice-x", gpus=2),
        lab.container("carol-y", owner="carol", gpus=1),
    )
    held = {
        i.name: sorted(d["pci"] for d in i.devices.values() if d["type"] == "gpu") for i in before
    }
    assert held == {"alice-x": [PCI[0], PCI[1]], "carol-y": [PCI[2]]}
    # alice gives her GPUs back; carol's GPU 2 stays hers although 0 and 1 are free now.
    alice_gone = [i for i in before if i.name == "carol-y"]
    p = plan(lab.validate(lab.container("carol-y", owner="carol", gpus=1)), alice_gone)
    assert [a.kind for a in p.actions] == ["ready"]
    assert gpu_indices(p.actions[0]) == (2,)
    # and a new count request gets the lowest free ones around it.
    v = lab.validate(
        lab.container("alice-z", gpus=2), lab.container("carol-y", owner="carol", gpus=1)
    )
    p2 = by_name(plan(v, alice_gone))
    assert gpu_indices(p2["alice-z"]) == (0, 1)
    assert isinstance(p2["carol-y"], Ready)


def test_a_smaller_count_keeps_the_lowest_of_its_gpus(lab: Lab) -> None:
    req = lab.container("carol-y", owner="carol", gpus=2)
    spec = spec_of(lab, req)
    holds_1_3 = applied(
        spec,
        devices={"gpu-0000-18-00-0": None, "gpu-0000-af-00-0": gpu(3)},
    )
    (action,) = plan(
        lab.validate(lab.container("carol-y", owner="carol", gpus=1)), [holds_1_3]
    ).actions
    assert isinstance(action, Update)
    assert gpu_indices(action) == (1,)
    assert action.detail == "devices: -gpu-0000-af-00-0"


def test_a_later_pin_does_not_take_a_gpu_a_count_was_given(lab: Lab) -> None:
    # alice's count got GPU 0 and runs with it; carol then pins GPU 0. Moving alice to
    # GPU 1 would swap the card under her running programs: carol waits for it instead.
    before = converged(lab, lab.container("alice-x", gpus=1))
    v = lab.validate(
        lab.container("alice-x", gpus=1), lab.container("carol-y", owner="carol", gpus=[0])
    )
    p = by_name(plan(v, before))
    assert isinstance(p["alice-x"], Ready)
    assert gpu_indices(p["alice-x"]) == (0,)
    refused = p["carol-y"]
    assert isinstance(refused, Wait)
    assert refused.gpu_holders == ("alice-x",)
    # 1st in line for GPU 0, which frees the day after alice's lease ends
    assert (refused.place, refused.gpus, refused.frees) == (1, (0,), date(2027, 7, 1))
    assert refused.message.startswith(
        f"GPU 0 ({PCI[0]}) is held by container 'alice-x', which was given it for its GPU count"
    )


def test_a_stopped_count_container_keeps_its_gpus_too(lab: Lab) -> None:
    (alice,) = converged(lab, lab.container("alice-x", gpus=2))
    stopped = replace(alice, status="Stopped")
    v = lab.validate(
        lab.container("alice-x", gpus=2), lab.container("carol-y", owner="carol", gpus=[1, 2])
    )
    p = by_name(plan(v, [stopped]))
    assert gpu_indices(p["alice-x"]) == (0, 1)
    assert isinstance(p["alice-x"], Start)
    refused = p["carol-y"]
    assert isinstance(refused, Wait) and refused.gpu_holders == ("alice-x",)


def test_a_pin_gets_the_gpu_a_count_gave_up(lab: Lab) -> None:
    # alice asks for one GPU fewer: she keeps the lowest (0) and GPU 1 is carol's to pin.
    before = converged(lab, lab.container("alice-x", gpus=2))
    v = lab.validate(
        lab.container("alice-x", gpus=1), lab.container("carol-y", owner="carol", gpus=[1])
    )
    p = by_name(plan(v, before))
    assert gpu_indices(p["alice-x"]) == (0,)
    assert isinstance(p["alice-x"], Update)
    assert isinstance(p["carol-y"], Create) and gpu_indices(p["carol-y"]) == (1,)


def test_a_half_made_count_container_holds_no_gpu(lab: Lab) -> None:
    (alice,) = converged(lab, lab.container("alice-x", gpus=1))
    half = replace(alice, status="Stopped", config={**alice.config, STATE: "creating"})
    v = lab.validate(
        lab.container("alice-x", gpus=1), lab.container("carol-y", owner="carol", gpus=[0])
    )
    p = by_name(plan(v, [half]))
    assert gpu_indices(p["carol-y"]) == (0,)
    assert gpu_indices(p["alice-x"]) == (1,)


def test_shared_gpus_may_be_given_to_several_containers(lab: Lab) -> None:
    shared = lab.edited("gpu_sharing: exclusive", "gpu_sharing: shared")
    v = shared.validate(
        shared.container("alice-x", gpus=2),
        shared.container("bob-x", owner="bob", gpus=2),
        shared.container("carol-y", owner="carol", gpus=[0, 1]),
    )
    assert v.ok, v.problems
    p = by_name(plan(v))
    assert gpu_indices(p["alice-x"]) == gpu_indices(p["bob-x"]) == (0, 1)
    assert gpu_indices(p["carol-y"]) == (0, 1)


def test_gpus_of_an_unmanaged_instance_are_not_given_away(lab: Lab) -> None:
    admin = unmanaged("admin-box", card=gpu(0))
    p = by_name(plan(lab.validate(lab.container("alice-x", gpus=1)), [admin]))
    assert gpu_indices(p["alice-x"]) == (1,)


def test_not_enough_free_gpus_makes_the_request_wait(lab: Lab) -> None:
    admin = unmanaged("admin-box", a=gpu(0), b=gpu(1), c=gpu(2))
    v = lab.validate(lab.container("alice-x", gpus=2), lab.container("carol-y", owner="carol"))
    p = plan(v, [admin])
    waits = by_name(p)["alice-x"]
    assert isinstance(waits, Wait) and waits.message == "only 1 of the 2 GPUs asked for are free"
    # held by an instance without a lease: nobody can say when one frees
    assert (waits.place, waits.gpus, waits.frees) == (1, (0, 1, 2), None)
    assert isinstance(by_name(p)["carol-y"], Create)


def test_a_pinned_gpu_in_use_outside_the_requests_waits(lab: Lab) -> None:
    admin = unmanaged("admin-box", card=gpu(2))
    p = plan(lab.validate(lab.container("carol-y", owner="carol", gpus=[2, 3])), [admin])
    waits = by_name(p)["carol-y"]
    assert isinstance(waits, Wait) and waits.gpus == (2,)
    assert "GPU 2" in waits.message and "admin-box" in waits.message


def test_gpus_of_an_instance_whose_request_is_invalid_stay_its_own(lab: Lab) -> None:
    bobs = converged(lab, lab.container("bob-x", owner="bob", gpus=1))
    v = lab.validate(
        lab.container("bob-x", owner="bob", gpus=1, shares=["no-such-share"]),
        lab.container("alice-x", gpus=1),
    )
    p = by_name(plan(v, bobs))
    assert "bob-x" not in p  # skipped, left alone, still running with GPU 0
    assert gpu_indices(p["alice-x"]) == (1,)


# --- ports ---------------------------------------------------------------------------------------


def ssh_port(action: Action) -> int:
    assert isinstance(action, Create | Update | Ready | Start), action
    return action.spec.ssh_port


def test_ports_are_the_lowest_free_in_the_range(lab: Lab) -> None:
    p = by_name(plan(lab.validate(lab.container("alice-x"), lab.container("alice-y"))))
    assert (ssh_port(p["alice-x"]), ssh_port(p["alice-y"])) == (22001, 22002)


def test_ports_skip_those_of_any_instance_and_busy_host_ports(lab: Lab) -> None:
    (old,) = converged(lab, lab.container("alice-old"))  # 22001, retired below
    retired = Instance(old.name, "Stopped", {**old.config, RETIRED: "2027-01-01"}, old.devices)
    admin = unmanaged("admin-box", web=proxy(22002))
    v = lab.validate(lab.container("alice-x"), lab.container("alice-y"))
    p = by_name(plan(v, [retired, admin], busy_ports=frozenset({22003, 80})))
    assert (ssh_port(p["alice-x"]), ssh_port(p["alice-y"])) == (22004, 22005)


def test_a_port_once_given_is_kept(lab: Lab) -> None:
    req = lab.container("alice-x")
    spec = spec_of(lab, req)
    on_22010 = applied(spec, devices={"ssh": proxy(22010)})
    # its own port shows up as busy on the host: the forward is listening there
    p = by_name(
        plan(lab.validate(req, lab.container("alice-y")), [on_22010], busy_ports=frozenset({22010}))
    )
    assert isinstance(p["alice-x"], Ready)
    assert ssh_port(p["alice-x"]) == 22010
    assert ssh_port(p["alice-y"]) == 22001


def test_a_port_outside_a_changed_range_moves_into_it(lab: Lab) -> None:
    observed = converged(lab, lab.container("alice-x"))  # on 22001
    moved = lab.edited("ports: [22001, 22999]", "ports: [23001, 23999]")
    (action,) = plan(moved.validate(moved.container("alice-x")), observed).actions
    assert isinstance(action, Update)
    assert ssh_port(action) == 23001
    assert action.detail == "devices: ~ssh"


def test_no_free_port_is_refused(lab: Lab) -> None:
    small = lab.edited("ports: [22001, 22999]", "ports: [22001, 22002]")
    admin = unmanaged("admin-box", web=proxy(22001))
    v = small.validate(small.container("alice-x"), small.container("alice-y"))
    p = plan(v, [admin])
    assert ssh_port(by_name(p)["alice-x"]) == 22002
    assert refusal(p, "alice-y") == "no free port left in the policy's ssh.ports range"


def test_a_desktop_gets_a_second_port(lab: Lab) -> None:
    (action,) = plan(lab.validate(lab.container("alice-x", desktop=True))).actions
    assert isinstance(action, Create)
    assert action.spec.devices["rdp"] == specs.proxy_device("0.0.0.0", 22002, 3389)  # noqa: S104
    assert action.spec.rdp_port == 22002


# --- accounts ------------------------------------------------------------------------------------


def server(**labels: str) -> Instance:
    return Instance("Common-Server", "Running", {ACCOUNT + k: v for k, v in labels.items()})


def account_spec(lab: Lab, *requests: tuple[str, bytes]) -> dict[str, specs.AccountSpec]:
    p = plan(lab.validate(*requests), servers=[server()])
    return {a.account.name: a.account for a in p.actions if isinstance(a, AccountAction)}


def accounts(p: Plan) -> list[tuple[str, str]]:
    return [(a.account.name, a.verb) for a in p.actions if isinstance(a, AccountAction)]


def test_accounts_are_created_updated_and_locked(lab: Lab) -> None:
    req = lab.account("bob-nb")
    current = account_spec(lab, req)["bob-nb"].label()
    # new
    assert accounts(plan(lab.validate(req), servers=[server()])) == [("bob-nb", "create")]
    # as it should be: reported (for its PR comment), and no change
    p = plan(lab.validate(req), servers=[server(**{"bob-nb": current})])
    assert accounts(p) == [("bob-nb", "keep")]
    assert p.changes == ()
    # new keys, sudo
    for changed in (
        lab.account("bob-nb", ssh_keys=lab.keys["bob"]),
        lab.account("bob-nb", sudo=True),
    ):
        p = plan(lab.validate(changed), servers=[server(**{"bob-nb": current})])
        assert accounts(p) == [("bob-nb", "update")]
    # removed
    p = plan(lab.validate(), servers=[server(**{"bob-nb": current})])
    assert accounts(p) == [("bob-nb", "lock")]
    (lock,) = p.actions
    assert isinstance(lock, AccountAction)
    assert (lock.account.owner, lock.account.request_path) == ("bob", "requests/bob/bob-nb.yaml")
    # already locked
    locked = account_spec(lab, req)["bob-nb"].label("locked")
    assert plan(lab.validate(), servers=[server(**{"bob-nb": locked})]).actions == ()
    # locked, and asked for again
    p = plan(lab.validate(req), servers=[server(**{"bob-nb": locked})])
    assert accounts(p) == [("bob-nb", "update")]


def test_an_expired_account_is_locked(lab: Lab) -> None:
    label = account_spec(lab, lab.account("bob-nb"))["bob-nb"].label()
    v = lab.validate(lab.account("bob-nb", expires=date(2027, 1, 1)))
    assert accounts(plan(v, servers=[server(**{"bob-nb": label})])) == [("bob-nb", "lock")]


def test_an_account_whose_request_is_invalid_now_is_not_locked(lab: Lab) -> None:
    label = account_spec(lab, lab.account("bob-nb"))["bob-nb"].label()
    v = lab.validate(lab.account("bob-nb", server="no-such-server"))
    assert v.invalid_paths == {"requests/bob/bob-nb.yaml"}
    assert plan(v, servers=[server(**{"bob-nb": label})]).actions == ()


# --- determinism ---------------------------------------------------------------------------------


def test_the_plan_is_a_function_of_its_inputs(lab: Lab) -> None:
    requests = (
        lab.container("alice-x", gpus=1, desktop=True),
        lab.container("alice-y"),
        lab.container("carol-y", owner="carol", gpus=2, shares=["share"]),
        lab.container("bob-x", owner="bob", gpus=[3]),
        lab.account("bob-nb"),
    )
    observed = [*converged(lab, requests[1]), unmanaged("admin-box", web=proxy(22003))]
    v = lab.validate(*requests)
    first = make_plan(inputs(v, observed, busy_ports=frozenset({22002})))
    again = make_plan(inputs(v, observed, busy_ports=frozenset({22002})))
    assert first == again
    shuffled = inputs(v, reversed(observed), busy_ports=frozenset({22002}))
    shuffled = Inputs(**{**shuffled.__dict__, "valid": tuple(reversed(v.valid))})
    assert make_plan(shuffled) == first
    assert [a.kind for a in first.actions] == ["create", "ready", "create", "create", "account"]


def test_a_half_made_instance_does_not_keep_a_port_taken_on_the_host(lab: Lab) -> None:
    req = lab.container("alice-x")
    spec = spec_of(lab, req)
    half = applied(spec, "Stopped", config={STATE: "creating"})
    assert half.devices["ssh"]["listen"].endswith(":22001")
    (action,) = plan(lab.validate(req), [half], busy_ports=frozenset({22001})).actions
    assert isinstance(action, Create) and action.replace_half_made
    assert ssh_port(action) == 22002
    # and when its port is free it gets the same one again
    (action,) = plan(lab.validate(req), [half]).actions
    assert ssh_port(action) == 22001


def test_a_running_gpu_container_gets_the_nvidia_runtime_without_a_restart(lab: Lab) -> None:
    # made while the policy had the image carry the userspace, now the lab chose the runtime:
    # the keys are set, and its programs keep running until its next start
    image = lab.edited("gpu_userspace: nvidia-runtime", "gpu_userspace: image")
    before = converged(image, image.container("alice-x", gpus=1))
    assert not [k for k in before[0].config if k.startswith("nvidia.")]
    (action,) = plan(lab.validate(lab.container("alice-x", gpus=1)), before).actions
    assert isinstance(action, Update)
    assert dict(action.config) == NVIDIA
    assert not action.restart and not action.devices


def test_a_gpu_a_count_gives_up_is_detached_before_a_pin_attaches_it(lab: Lab) -> None:
    before = converged(lab, lab.container("carol-y", owner="carol", gpus=2))  # holds 0 and 1
    v = lab.validate(
        lab.container("alice-x", gpus=[1]), lab.container("carol-y", owner="carol", gpus=1)
    )
    p = plan(v, before)
    assert [(a.kind, a.name) for a in p.actions] == [("update", "carol-y"), ("create", "alice-x")]
    assert gpu_indices(p.actions[0]) == (0,)


# --- restore -------------------------------------------------------------------------------------


def test_a_restore_is_planned_once_and_refused_for_a_missing_snapshot(lab: Lab) -> None:
    (inst,) = converged(lab, lab.container("alice-x"))
    snap = replace(inst, snapshots=("before",))
    (action,) = plan(lab.validate(lab.container("alice-x", restore="before")), [snap]).actions
    assert isinstance(action, Restore)
    assert (action.snapshot, action.spec.config[RESTORED]) == ("before", "before")

    done = replace(inst, config={**inst.config, RESTORED: "before"})
    again = plan(lab.validate(lab.container("alice-x", restore="before")), [done]).actions
    assert [a.kind for a in again] == ["ready"]  # applied once: the label says so
    # The line taken out: the label goes, so the same snapshot can be asked for again.
    (cleared,) = plan(lab.validate(lab.container("alice-x")), [done]).actions
    assert isinstance(cleared, Update) and cleared.config == {RESTORED: None}

    (refused,) = plan(lab.validate(lab.container("alice-x", restore="nope")), [snap]).actions
    assert isinstance(refused, Refuse)
    assert refused.message == (
        "restore: 'alice-x' has no snapshot 'nope' (its snapshots: before); nothing was changed"
    )
    (new,) = plan(lab.validate(lab.container("alice-x", restore="before")), []).actions
    assert isinstance(new, Refuse) and "does not exist yet" in new.message


# --- GPUs handed back while the container stays (`/ssp stop`, an idle release) -------------------


def test_a_container_whose_gpus_were_released_keeps_running_without_them(lab: Lab) -> None:
    (alice,) = converged(lab, lab.container("alice-x", gpus=2))
    released = replace(alice, config={**alice.config, RELEASED: "2026-12-01 idle"})
    (action,) = plan(lab.validate(lab.container("alice-x", gpus=2)), [released]).actions
    # Its GPUs come off (no restart: its programs keep running), the mark stays.
    assert isinstance(action, Update), action
    assert not action.restart
    assert gpu_indices(action) == ()
    assert RELEASED not in action.config
    again = applied(action.spec, config={RELEASED: "2026-12-01 idle"})
    (after,) = plan(lab.validate(lab.container("alice-x", gpus=2)), [again]).actions
    assert isinstance(after, Ready), after  # not given them back on the next pass


def test_released_gpus_go_to_the_next_request(lab: Lab) -> None:
    (alice,) = converged(lab, lab.container("alice-x", gpus=2))
    released = replace(alice, config={**alice.config, RELEASED: "2026-12-01 owner"})
    v = lab.validate(
        lab.container("alice-x", gpus=2), lab.container("carol-y", owner="carol", gpus=[0, 1])
    )
    p = by_name(plan(v, [released]))
    assert isinstance(p["carol-y"], Create) and gpu_indices(p["carol-y"]) == (0, 1)
    assert gpu_indices(p["alice-x"]) == ()


def test_a_started_container_asks_for_its_gpus_again(lab: Lab) -> None:
    (alice,) = converged(lab, lab.container("alice-x", gpus=1))
    bare = applied(
        spec_of(lab, lab.container("alice-x", gpus=1)),
        devices={k: None for k, d in alice.devices.items() if d.get("type") == "gpu"},
    )
    (action,) = plan(lab.validate(lab.container("alice-x", gpus=1)), [bare]).actions
    assert isinstance(action, Update) and gpu_indices(action) == (0,)


def test_a_container_its_owner_stopped_stays_stopped_until_started(lab: Lab) -> None:
    # `/ssp stop`: the GPUs came off while it ran, then it was stopped; later passes (the
    # daily upkeep, the next merge) neither start it nor change it, whatever they find.
    (alice,) = converged(lab, lab.container("alice-x", gpus=1))
    bare = applied(
        spec_of(lab, lab.container("alice-x", gpus=1)),
        status="Stopped",
        config={RELEASED: "2026-12-01 owner"},
        devices={k: None for k, d in alice.devices.items() if d.get("type") == "gpu"},
    )
    changed = lab.container("alice-x", gpus=1, cpu=2)
    (action,) = plan(lab.validate(changed), [bare]).actions
    assert isinstance(action, Ready), action
    assert action.detail == "stopped by its owner (/ssp stop); left stopped until /ssp start"
    # released for idleness: a stopped one is started (an update starts it too) without GPUs
    idle = replace(bare, config={**bare.config, RELEASED: "2026-12-01 idle"})
    (started,) = plan(lab.validate(lab.container("alice-x", gpus=1)), [idle]).actions
    assert isinstance(started, Start | Update) and gpu_indices(started) == ()

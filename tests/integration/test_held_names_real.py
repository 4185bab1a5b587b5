"""Names the host has given out stay with their owners, on a real LXD (security findings 7
and 8): a retired container's name cannot be squatted, and its owner's renewal works even
while the squatter's request sits on main; an account on a shared server is never handed to
a newer member whose login equals its name. Apply is judged as the runner runs it: main
validated, then a pass that reads LXD (`run_pass`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from integration.helpers import (
    Adapters,
    LabRepo,
    apply_pass,
    in_instance,
    lxc_query,
    make_key,
    outcomes,
)
from integration.test_ssh_login import make_shared_server
from provisioner.applying.apply import Applier
from provisioner.validation.validate import load_request
from provisioner.values import spec as specs
from provisioner.values import state
from provisioner.values.models import AccountRequest
from provisioner.values.plandata import AccountAction, AccountVerb

pytestmark = pytest.mark.lxd


def _rules(done: object, path: str) -> list[str]:
    return [p.rule for p in done.skipped if p.path == path]  # type: ignore[attr-defined]


def test_a_retired_containers_name_stays_its_owners_and_the_owner_renews_it(
    lab: LabRepo, adapters: Adapters, lxd_project: str, suffix: str
) -> None:
    name = f"kept-{suffix}"
    bobs = lab.container(name, owner="bob", image="busybox")
    assert outcomes(apply_pass(lab, adapters, bobs))[name][:2] == ("created", True)
    gone = apply_pass(lab, adapters)  # bob gives it back: stopped and kept
    assert outcomes(gone)[name][:2] == ("retired", True), outcomes(gone)

    # alice files a request with that name: refused (skipped and reported), nothing changes.
    squat = lab.container(name, owner="alice", image="busybox")
    done = apply_pass(lab, adapters, squat, invalid_ok=True)
    assert _rules(done, squat[0]) == ["name.held"]
    assert "held by bob's container" in done.skipped[0].message
    info = lxc_query(f"/1.0/instances/{name}", lxd_project)
    assert (info["status"], info["config"][state.OWNER]) == ("Stopped", "bob")
    assert state.RETIRED in info["config"]

    # bob renews (re-adds his request) while alice's older one is still on main: his works.
    again = apply_pass(lab, adapters, squat, bobs, invalid_ok=True)
    assert outcomes(again)[name][:2] == ("updated", True), (outcomes(again), again.skipped)
    assert _rules(again, bobs[0]) == []
    assert _rules(again, squat[0]) == ["name.held"]
    info = lxc_query(f"/1.0/instances/{name}", lxd_project)
    assert (info["status"], info["config"][state.OWNER]) == ("Running", "bob")
    assert state.RETIRED not in info["config"]


def test_an_account_stays_with_its_owner_when_a_newer_login_equals_its_name(
    tmp_path: Path, lxd_project: str, lxd_socket: str, suffix: str
) -> None:
    lab = LabRepo.make(tmp_path, lxd_project, suffix, shared_ssh=True)
    make_shared_server(lab)
    adapters = Adapters.make(lxd_project, lxd_socket)
    server, login = lab.shared_server, "bob-nb"
    bobs = lab.account(login)
    first = apply_pass(lab, adapters, bobs)
    assert outcomes(first)[login][:2] == ("created", True)
    keys_file = f"/home/{login}/.ssh/authorized_keys"
    bob_keys = lab.keys["bob"].public + "\n"
    assert in_instance(lxd_project, server, "cat", keys_file).stdout == bob_keys

    # The lab registers a member whose login is bob's account name; they ask for it.
    policy = lab.policy()
    lab.settings["users"] = {**policy["users"], login: {"uid": 1010}}  # a UID nobody has
    lab.keys[login] = make_key(tmp_path / "keys", login)
    theirs = lab.account(login, owner=login)
    done = apply_pass(lab, adapters, bobs, theirs, invalid_ok=True)
    assert "account.held" in _rules(done, theirs[0]), done.skipped
    assert _rules(done, bobs[0]) == []  # bob's own request still names his account
    assert outcomes(done)[login][:2] == ("unchanged", True)
    assert in_instance(lxd_project, server, "cat", keys_file).stdout == bob_keys

    # Apply itself compares the owner the server records, whatever the plan said: an update
    # for the newcomer is refused and changes nothing.
    config = done.validation.config
    assert config is not None
    loaded, _ = load_request(*theirs)
    assert loaded is not None and isinstance(loaded.request, AccountRequest)
    request = loaded.request
    account = specs.account_spec(request, theirs[0], config.policy)
    applier = Applier(adapters.main, config.policy, lambda _i: adapters.shared)
    refused = applier.account(AccountAction(account=account, verb=AccountVerb.UPDATE))
    assert (refused.action, refused.ok) == ("refused", False)
    assert "was made for bob" in refused.message
    assert in_instance(lxd_project, server, "cat", keys_file).stdout == bob_keys
    label = lxc_query(f"/1.0/instances/{server}", lxd_project)["config"][state.ACCOUNT + login]
    assert '"owner":"bob"' in label

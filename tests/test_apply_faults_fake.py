"""What apply says when the world is not as the policy describes, on the in-memory LXD: the
clone source's snapshot gone, and the shared server stopped or gone for an account. The real
daemon's versions of these faults are in tests/faults/ (same messages)."""

from __future__ import annotations

import shutil

import pytest
from fakelxd import BASE, NOW, FakeLxd, Lab

from provisioner.flows.reconcile import Pass, run_pass
from provisioner.validation.validate import blocking

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")


GPUS = ["0000:18:00.0", "0000:3b:00.0", "0000:86:00.0", "0000:af:00.0"]  # the seed's base has one


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return Lab.make(tmp_path_factory.mktemp("keys"))


def apply(lab: Lab, fake: FakeLxd, *requests: tuple[str, bytes]) -> Pass:
    v = lab.validate(*requests)
    assert not blocking(v), v.problems
    return run_pass(v, fake, fake.servers, now=NOW, sha="c0ffee" * 6 + "abcd")


def test_a_clone_whose_snapshot_is_gone_names_the_image_and_the_fix(lab: Lab) -> None:
    fake = FakeLxd.seeded()
    del fake.view("default").record(BASE).snapshots["golden"]
    (o,) = apply(lab, fake, lab.container("alice-x")).result.outcomes
    assert (o.action, o.ok) == ("failed", False)
    assert o.message.startswith(
        f"image common-server is cloned from {BASE}/golden (LXD project default), which does "
        "not exist; restore that snapshot or correct images.common-server in config/policy.yaml"
    ), o.message


def test_an_account_on_a_stopped_shared_server_says_start_it(lab: Lab) -> None:
    fake = FakeLxd.seeded(present_gpus=GPUS)
    fake.view("default").stop(BASE)
    (o,) = apply(lab, fake, lab.account("bob-nb")).result.outcomes
    assert (o.action, o.ok) == ("failed", False)
    assert o.message == (
        f"the shared server {BASE} (common, LXD project default) is stopped, so account bob-nb "
        f"cannot be made; start it (`lxc start {BASE} --project default`) and the next apply "
        "makes it"
    )
    fake.view("default").start(BASE)
    (again,) = apply(lab, fake, lab.account("bob-nb")).result.outcomes
    assert (again.action, again.ok) == ("created", True)

"""Restore by pull request on a real LXD: a container rolled back to one of its snapshots
loses a file written after it, once (a second pass changes nothing), and a snapshot it does
not have is refused with nothing changed. Containers are the busybox test image."""

from __future__ import annotations

import pytest

from integration.helpers import Adapters, LabRepo, apply_pass, in_instance, lxc, outcomes
from provisioner.values.state import RESTORED

pytestmark = pytest.mark.lxd


def test_a_restore_rolls_back_a_later_file_once(
    lab: LabRepo, adapters: Adapters, lxd_project: str, suffix: str
) -> None:
    name = f"back-{suffix}"
    assert apply_pass(lab, adapters, lab.container(name, image="busybox")).result.ok
    in_instance(lxd_project, name, "sh", "-c", "echo kept > /root/kept")
    lxc("snapshot", f"{name}", "before", "--project", lxd_project)
    in_instance(lxd_project, name, "sh", "-c", "echo oops > /root/later")

    asked = lab.container(name, image="busybox", restore="before")
    done = apply_pass(lab, adapters, asked)
    assert outcomes(done)[name][:2] == ("restored", True), outcomes(done)
    assert in_instance(lxd_project, name, "cat", "/root/kept").stdout == "kept\n"
    gone = in_instance(lxd_project, name, "cat", "/root/later", check=False)
    assert gone.returncode != 0
    assert adapters.main.instance(name).config[RESTORED] == "before"

    # Applied once: the request still says `restore: before`, and nothing happens again.
    in_instance(lxd_project, name, "sh", "-c", "echo new > /root/later")
    before = len(adapters.mutations())
    again = apply_pass(lab, adapters, asked)
    assert outcomes(again)[name][0] == "unchanged"
    assert adapters.mutations()[before:] == []
    assert in_instance(lxd_project, name, "cat", "/root/later").stdout == "new\n"

    missing = apply_pass(lab, adapters, lab.container(name, image="busybox", restore="nope"))
    action, ok, message = outcomes(missing)[name]
    assert (action, ok) == ("refused", False)
    assert "has no snapshot 'nope' (its snapshots: before)" in message
    assert adapters.mutations()[before:] == []

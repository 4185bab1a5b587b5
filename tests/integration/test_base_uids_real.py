"""`ssp doctor`'s `images.uids` on a real LXD: the bases' /etc/passwd is read through the
adapter (a stopped instance too) and a member whose UID a base's user holds is named."""

from __future__ import annotations

import pytest
import yaml
from helpers import ROOT

from integration.test_lxd_adapter import make_busybox
from provisioner.doctor.checks import Status
from provisioner.flows.checkup import base_uids
from provisioner.lxd.api import Lxd
from provisioner.values.policymodels import Policy

pytestmark = pytest.mark.lxd


def test_a_member_uid_held_by_a_user_of_the_shared_server_is_found(
    lxd: Lxd, lxd_project: str, lxd_socket: str, suffix: str
) -> None:
    server = f"base-{suffix}"
    make_busybox(lxd, server)  # stopped: the files API reads it all the same
    passwd = b"root:x:0:0:root:/root:/bin/sh\nuser:x:1004:1004::/home/user:/bin/sh\n"
    lxd.push_file(server, "/etc/passwd", passwd, 0o644, 0, 0)
    raw = yaml.safe_load((ROOT / "config" / "policy.yaml").read_text(encoding="utf-8"))
    raw["shared_servers"] = {"common": {"instance": server, "project": lxd_project}}
    policy = Policy.model_validate(raw)
    reader = Lxd(lxd_project, endpoint=lxd_socket)
    found = base_uids(policy, set(), reader)
    assert found.status is Status.PROBLEM
    assert f"lab-admin's UID 1004 is user 'user' in {server} (project {lxd_project})" in (
        found.detail
    )
    # A missing instance is not an error here (images.clones names a missing base).
    gone = base_uids(policy, {"No-Such-Base/golden"}, reader)
    assert "could not read /etc/passwd of No-Such-Base" in gone.detail

"""A requests/ that was not read whole is never acted on, on a real LXD (issue 22, finding 1).

Before, the walk of `main`'s checkout stopped partway through requests/ once it had counted
MAX_ENTRIES files and folders, and apply treated every request it had not reached as removed:
a member's folders (each with an ignored `.gitkeep`) got another member's container retired
(and, past retention, deleted). Now apply, plan and maintain stop before LXD, saying why.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import ENV, run_cli

from integration.helpers import Adapters, LabRepo, apply_pass, lxc_query, outcomes
from provisioner.git import files as gitfiles
from provisioner.values.state import STATE

pytestmark = pytest.mark.lxd


def test_apply_plan_and_maintain_change_nothing_when_requests_is_not_read_whole(
    lab: LabRepo,
    adapters: Adapters,
    lxd_project: str,
    suffix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alice, bob = f"alice-t-{suffix}", f"bob-t-{suffix}"
    req_a = lab.container(alice, image="busybox")
    req_b = lab.container(bob, owner="bob", image="busybox")
    first = apply_pass(lab, adapters, req_a, req_b)
    assert outcomes(first) == {alice: ("created", True, ""), bob: ("created", True, "")}

    # alice adds folders that sort before bob's: a read stopped at the bound never sees bob
    monkeypatch.setattr(gitfiles, "MAX_ENTRIES", 30)
    for i in range(20):
        folder = lab.root / "requests" / "alice" / f"f{i:03}"
        folder.mkdir()
        (folder / ".gitkeep").write_bytes(b"")

    env = {**ENV, "SSP_LOCK": str(tmp_path / "apply.lock")}
    if os.environ.get("LXD_DIR"):
        env["LXD_DIR"] = os.environ["LXD_DIR"]
    for command in (["apply", "--no-comment"], ["plan"], ["maintain"]):
        result = run_cli(command[0], "--repo", str(lab.root), *command[1:], env=env)
        assert "Traceback" not in result.both
        assert result.code == 1, (command, result.both)
        assert "nothing was changed" in result.err
        assert "the rest were not read" in result.err and "[tree.size]" in result.err

    # bob's container is untouched: still running, still ready, never retired
    made = lxc_query(f"/1.0/instances/{bob}", lxd_project)
    assert made["status"] == "Running"
    assert made["config"][STATE] == "ready"

"""Which competing request is newest comes from main's whole history, never from one commit
(issue 22, finding 5).

Before, the maintenance workflow checked out one commit (depth 1): every request then looked
as old as every other, path order replaced merge order, and `ssp maintain` reversed what
`ssp apply` had decided (it made the container apply had refused and refused an older one).
Now a shallow clone is refused with a clear message, and every job that plans fetches the
whole history. Real git repositories; the shallow one made by `git clone --depth 1`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers import ROOT, GitRepo, run_cli, valid_request

from provisioner.commands import clock
from provisioner.flows.checkout import load_main
from provisioner.values.errors import UsageError

ENV = {"SSP_NOW": "2026-11-28T12:00:00+00:00"}
ALICE = "requests/alice/alice-box.yaml"
CAROL_C = "requests/carol/carol-c.yaml"  # merged first
CAROL_B = "requests/carol/carol-b.yaml"  # merged last, but first in path order


def history(root: Path) -> GitRepo:
    """main on a host of 8 cores: alice's and carol's 4-core containers fill it; carol's
    second, merged last, does not fit (and is the one refused)."""
    hosts = (ROOT / "config" / "hosts.yaml").read_text().replace("cpu: 64\n", "cpu: 8\n")
    repo = GitRepo.create(root, {"config/hosts.yaml": hosts, ALICE: valid_request()})
    repo.commit({CAROL_C: valid_request(owner="carol", name="carol-c")}, "carol's first")
    repo.commit({CAROL_B: valid_request(owner="carol", name="carol-b")}, "carol's second")
    return repo


def refused(repo: Path) -> list[str]:
    validation, _sha = load_main(repo, clock(ENV))
    return [p.path for p in validation.errors if p.rule == "capacity.cpu"]


def test_the_full_history_refuses_the_request_merged_last(tmp_path: Path) -> None:
    repo = history(tmp_path / "repo")
    assert refused(repo.root) == [CAROL_B]


def test_a_shallow_clone_is_refused_not_judged_by_path_order(tmp_path: Path) -> None:
    repo = history(tmp_path / "repo")
    shallow = tmp_path / "shallow"
    subprocess.run(
        ["git", "clone", "-q", "--depth", "1", f"file://{repo.root}", str(shallow)], check=True
    )
    # path order would refuse carol's first container, which apply made long ago
    with pytest.raises(UsageError, match="shallow clone"):
        refused(shallow)
    env = {**ENV, "LXD_DIR": str(tmp_path / "no-lxd"), "SSP_LOCK": str(tmp_path / "lock")}
    for command in (["plan"], ["apply", "--dry-run"], ["maintain", "--dry-run"]):
        result = run_cli(command[0], "--repo", str(shallow), *command[1:], env=env)
        assert "Traceback" not in result.both
        assert result.code == 2, (command, result.both)
        assert "is a shallow clone" in result.err
        assert "fetch-depth: 0" in result.err
    # once the whole history is there, the verdict is apply's again
    subprocess.run(["git", "-C", str(shallow), "fetch", "-q", "--unshallow"], check=True)
    assert refused(shallow) == [CAROL_B]

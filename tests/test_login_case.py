"""GitHub logins are case-insensitive: `WangXM` and `wangxm` are one member. The folder, the
request's `owner:`, the policy's `users:` and the PR's author may each spell it their way; ssp
takes the policy's spelling, so a member is never refused, nor counted twice, for a capital."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from helpers import run_cli, sample_repo, valid_request

from provisioner.git import files as gitfiles
from provisioner.validation.validate import validate_tree
from provisioner.values.models import ContainerRequest

NOW = datetime(2027, 1, 10, 4, 0, tzinfo=UTC)


def _policy_with(root: Path, line: str) -> None:
    path = root / "config" / "policy.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("  carol: {uid: 1003", f"{line}\n  carol: {{uid: 1003", 1))


def test_a_folder_and_owner_spelt_otherwise_than_the_policy_are_the_same_member(
    tmp_path: Path,
) -> None:
    text = valid_request(owner="WangXM", name="wang-box", gpus="0")
    repo = sample_repo(tmp_path / "repo", {"requests/WangXM/wang-box.yaml": text})
    _policy_with(repo, "  wangxm: {uid: 1010}")
    result = run_cli("validate", "--repo", str(repo), "--author", "WangXM")
    assert result.code == 0, result.both
    assert "owner.unknown" not in result.both and "owner.folder" not in result.both

    validation = validate_tree(gitfiles.worktree(repo), NOW)
    (item,) = validation.valid
    assert isinstance(item.request, ContainerRequest)
    assert item.request.owner == "wangxm"  # the policy's spelling, for labels and quotas


def test_an_owner_in_another_case_than_its_folder_is_fine_but_another_login_is_not(
    tmp_path: Path,
) -> None:
    mixed = valid_request(owner="Alice", name="alice-box", gpus="0")
    other = valid_request(owner="bob", name="bob-box", gpus="0")
    repo = sample_repo(
        tmp_path / "repo",
        {"requests/alice/alice-box.yaml": mixed, "requests/alice/bob-box.yaml": other},
    )
    result = run_cli("validate", "--repo", str(repo), "--author", "ALICE")
    assert result.code == 1
    assert "requests/alice/alice-box.yaml" not in result.out
    assert "requests/alice/bob-box.yaml:4:8: error: owner 'bob' must equal the folder" in (
        result.out
    )

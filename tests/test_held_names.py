"""What the host holds, at PR time: the published snapshot tells the check which names,
logins and images are taken and by whom (security findings 3, 7, 8). Through the real
`ssp validate` on real git repositories; the apply side runs on a real LXD in
tests/integration/test_held_names_real.py and test_member_images_real.py."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from helpers import NOW, GitRepo, valid_request, validate
from snapshots import account_server, retired, snapshot_text, write_snapshot

from provisioner.status import snapshot as snapshots
from provisioner.values import state
from provisioner.values.state import Image

SQUAT = "requests/alice/bob-box.yaml"
BOBS = "requests/bob/bob-box.yaml"


def _snapshot(tmp_path: Path, text: str) -> str:
    return str(write_snapshot(tmp_path / "snapshot.json", text))


def test_the_owner_renews_a_retired_container_while_a_squatters_request_is_on_main(
    tmp_path: Path,
) -> None:
    """bob's container bob-box is retired (kept); alice's request for the name reached main
    first. bob's PR re-adding his request passes; without the snapshot it is the newer
    request and fails name.duplicate, as every check did before."""
    squat = valid_request(owner="alice", name="bob-box", gpus="0")
    renewal = valid_request(owner="bob", name="bob-box", gpus="0")
    git = GitRepo.pull_request(tmp_path / "repo", {SQUAT: squat}, {BOBS: renewal})
    held = _snapshot(tmp_path, snapshot_text([retired("bob-box", "bob")]))
    args = ("--base", "main", "--author", "bob")

    judged = validate(git.root, *args, "--snapshot", held)
    assert judged.code == 0, judged.both
    assert "[name.duplicate]" not in judged.out
    assert "already before this PR" in judged.both and "[name.held]" in judged.both

    blind = validate(git.root, *args)
    assert blind.code == 1 and f"{BOBS}:3:7: error: " in blind.out
    assert "[name.duplicate]" in blind.out


def test_a_squatters_pr_fails_on_the_name_whatever_its_age(tmp_path: Path) -> None:
    squat = valid_request(owner="alice", name="bob-box", gpus="0")
    git = GitRepo.pull_request(tmp_path / "repo", {}, {SQUAT: squat})
    held = _snapshot(tmp_path, snapshot_text([retired("bob-box", "bob")]))
    judged = validate(git.root, "--base", "main", "--author", "alice", "--snapshot", held)
    assert judged.code == 1, judged.both
    assert f"{SQUAT}:3:7: error: name 'bob-box' is held by bob's container" in judged.out


def test_an_account_name_stays_with_its_holder_when_a_member_with_that_login_arrives(
    tmp_path: Path,
) -> None:
    """bob's account bob-nb on common; the lab registers bob-nb. The newcomer's request for
    it fails on its name; bob's own request (which the longest-login rule now gives to
    bob-nb) stays valid, since the server records the account as his."""
    bobs = valid_request("account", owner="bob", name="bob-nb")
    theirs = valid_request("account", owner="bob-nb", name="bob-nb")
    policy = (Path(__file__).parents[1] / "config" / "policy.yaml").read_text()
    policy = policy.replace("  carol: {uid: 1003", "  bob-nb: {uid: 1005}\n  carol: {uid: 1003", 1)
    base = {"config/policy.yaml": policy, "requests/bob/bob-nb.yaml": bobs}
    path = "requests/bob-nb/bob-nb.yaml"
    git = GitRepo.pull_request(tmp_path / "repo", base, {path: theirs})
    held = _snapshot(tmp_path, snapshot_text([], servers=(account_server({"bob-nb": "bob"}),)))
    judged = validate(git.root, "--base", "main", "--author", "bob-nb", "--snapshot", held)
    assert judged.code == 1, judged.both
    assert f"{path}:3:7: error: account 'bob-nb' on 'common' was made for bob" in judged.out
    assert "requests/bob/bob-nb.yaml:" not in judged.out  # bob's own request is fine
    blind = validate(git.root, "--base", "main", "--author", "bob-nb")
    assert "[account.held]" not in blind.out


def _image(alias: str, managed: bool) -> Image:
    props = {state.IMAGE_MANAGED: "true", state.IMAGE_OWNER: "alice"} if managed else {}
    return Image(fingerprint=alias.replace("/", "") * 4, aliases=(alias,), properties=props)


def test_the_snapshot_lists_ssps_images_only_and_an_old_snapshot_judges_none(
    tmp_path: Path,
) -> None:
    text = snapshot_text([], images=(_image("alice/base", True), _image("alice/backup", False)))
    now = datetime.fromisoformat(NOW)
    read = snapshots.parse(text.encode(), now, timedelta(hours=48))
    assert read.images is not None
    assert [(i.alias, i.owner) for i in read.images] == [("alice/base", "alice")]
    assert snapshots.held(read).images == {"alice/base": "alice"}

    uses = valid_request(image="alice/backup", gpus="0")
    git = GitRepo.pull_request(tmp_path / "repo", {}, {"requests/alice/alice-box.yaml": uses})
    args = ("--base", "main", "--author", "alice", "--snapshot")
    judged = validate(git.root, *args, _snapshot(tmp_path, text))
    assert judged.code == 1 and "[image.not_ssp]" in judged.out
    # A snapshot written before images were listed says nothing about them: no finding.
    older = _snapshot(tmp_path, snapshot_text([], images=None))
    assert "[image.not_ssp]" not in validate(git.root, *args, older).out

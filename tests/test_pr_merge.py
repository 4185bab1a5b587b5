"""The PR check judges what the merge would make, from every merge base, on real git histories.

A criss-cross history gives a PR and its base two merge bases. `git merge` builds the result
from both; a check that diffs the head against only one of them can be shown a PR that
touches nothing but its author's own file while the merge re-adds what an admin removed.
These tests build such histories with real git and run `ssp validate --base main` as the
workflow does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ROOT, GitRepo, key, valid_request, validate

from provisioner.git import files as gitfiles
from provisioner.git import history as gitrepo

ENV = {"SSP_NOW": "2026-11-28T12:00:00+00:00"}
POLICY = "config/policy.yaml"
ALICE = "requests/alice/alice-box.yaml"
BOB = "requests/bob/bob-common.yaml"
POLICY_TEXT = (ROOT / POLICY).read_text(encoding="utf-8")
WITH_ALICE = POLICY_TEXT.replace("admins: [lab-admin]", "admins: [lab-admin, alice]")


def criss_cross(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    start: dict[str, str],
    theirs: dict[str, str],
    hidden: dict[str, str],
) -> GitRepo:
    """`main` and branch `pr` with two merge bases P and Q.

    From a common start, P (someone else's change, `theirs`) and Q (alice's own new request)
    are made side by side. `main` merges Q into P. The PR branch merges P into Q, but its
    merge commit puts back `hidden` (the files as they were before P): diffed against Q, that
    merge commit changes nothing, so the PR shows only alice's own file."""
    # Commit dates one minute apart, so that git's choice among merge bases is repeatable.
    with dated(monkeypatch, 0):
        repo = GitRepo.create(tmp_path / "repo", start)
    root = repo.git("rev-parse", "HEAD").strip()
    with dated(monkeypatch, P_FIRST):
        repo.branch("p")
        p = repo.commit(dict(theirs), "someone else's change")
    with dated(monkeypatch, 3 - P_FIRST):
        repo.git("checkout", "-q", "-b", "q", root)
        q = repo.commit({"requests/alice/alice-two.yaml": two()}, "alice: a second box")
    with dated(monkeypatch, 4):
        repo.git("checkout", "-q", "-B", "main", p)
        repo.git("merge", "-q", "--no-ff", "-m", "merge alice's box", q)
    with dated(monkeypatch, 5):
        repo.git("checkout", "-q", "-b", "pr", q)
        repo.git("merge", "-q", "--no-ff", "--no-commit", p)
        repo.commit(dict(hidden), "merge main")
    return repo


P_FIRST = 1


@contextlib.contextmanager
def dated(monkeypatch: pytest.MonkeyPatch, minute: int) -> Iterator[None]:
    stamp = f"2026-11-27T09:{minute:02d}:00+00:00"
    with monkeypatch.context() as m:
        m.setenv("GIT_AUTHOR_DATE", stamp)
        m.setenv("GIT_COMMITTER_DATE", stamp)
        yield


def two() -> str:
    return valid_request(name="alice-two", gpus="0")


def check(repo: GitRepo, author: str = "alice") -> tuple[int, str]:
    result = validate(repo.root, "--base", "main", "--author", author, env=ENV)
    assert "Traceback" not in result.both
    return result.code, result.out


def test_the_history_really_has_two_merge_bases_and_one_hides_the_change(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    repo = criss_cross(
        monkeypatch, tmp_path, {POLICY: WITH_ALICE}, {POLICY: POLICY_TEXT}, {POLICY: WITH_ALICE}
    )
    bases = gitrepo.merge_bases(repo.root, "main")
    assert len(bases) == 2
    # against one of the two merge bases the PR seems to touch nothing but its own commits
    hiding = [b for b in bases if not any(c.path == POLICY for c in gitrepo.changes(repo.root, b))]
    assert hiding, "the test history must hide the policy change from one merge base"


def test_re_adding_oneself_to_admins_through_a_second_merge_base_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # an admin removed alice from the admins (P); alice's merge of main puts her back
    repo = criss_cross(
        monkeypatch, tmp_path, {POLICY: WITH_ALICE}, {POLICY: POLICY_TEXT}, {POLICY: WITH_ALICE}
    )
    code, out = check(repo)
    assert code == 1, out
    assert f"{POLICY}:1:1: error:" in out
    assert "[authz.infra]" in out
    assert "alice is not an admin" in out
    assert "2 merge bases" in out


def test_restoring_a_key_another_member_revoked_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    both_keys = valid_request("account", ssh_keys=[key("bob"), key("bob-laptop")])
    revoked = valid_request("account")  # bob's laptop key only was revoked
    repo = criss_cross(monkeypatch, tmp_path, {BOB: both_keys}, {BOB: revoked}, {BOB: both_keys})
    code, out = check(repo)
    assert code == 1, out
    assert f"{BOB}:1:1: error: alice may not change bob's request" in out


def test_a_clean_criss_cross_merge_of_ones_own_change_passes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # the same history with an honest merge: only alice's own file changes on main
    both_keys = valid_request("account", ssh_keys=[key("bob"), key("bob-laptop")])
    revoked = valid_request("account")
    repo = criss_cross(monkeypatch, tmp_path, {BOB: both_keys}, {BOB: revoked}, {})
    code, out = check(repo)
    assert code == 0, out


def test_a_pr_that_conflicts_with_its_base_is_a_finding_on_the_file(tmp_path: Path) -> None:
    repo = GitRepo.create(tmp_path / "repo", {ALICE: valid_request()})
    repo.branch("pr")
    repo.commit({ALICE: valid_request(cpu="8")}, "alice: more cores")
    repo.checkout("main")
    repo.commit({ALICE: valid_request(cpu="2")}, "alice: fewer cores, on main")
    repo.checkout("pr")
    code, out = check(repo)
    assert code == 1, out
    assert f"{ALICE}:1:1: error:" in out
    assert "[merge.conflict]" in out


def test_the_merge_is_what_is_judged_not_the_head(tmp_path: Path) -> None:
    # main gained bob's 2-GPU box after the PR branched; the head alone is within bounds,
    # the merge is what will be on main, and the summary and rules see main's requests too
    repo = GitRepo.create(tmp_path / "repo", {ALICE: valid_request()})
    repo.branch("pr")
    repo.commit({"requests/alice/alice-two.yaml": two()}, "alice: second box")
    repo.checkout("main")
    repo.commit({BOB: valid_request("account")}, "bob's account")
    repo.checkout("pr")
    merged = gitrepo.merge(repo.root, "main")
    assert merged.conflicts == ()
    files = gitfiles.revision(repo.root, merged.tree).files
    assert BOB in files and "requests/alice/alice-two.yaml" in files
    changed = [c.path for c in gitrepo.changes(repo.root, "main", merged.tree)]
    assert changed == ["requests/alice/alice-two.yaml"]
    code, out = check(repo)
    assert code == 0, out


def test_an_old_git_merges_in_a_temporary_worktree_with_the_same_result(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    repo = criss_cross(
        monkeypatch, tmp_path, {POLICY: WITH_ALICE}, {POLICY: POLICY_TEXT}, {POLICY: WITH_ALICE}
    )
    fast = gitrepo.merge(repo.root, "main")
    slow = gitrepo._merge_in_worktree(repo.root, "main", "HEAD")
    assert slow == fast
    # nothing is left behind: no worktree, the checkout untouched
    assert repo.git("worktree", "list").count("\n") == 1
    assert repo.git("status", "--porcelain") == ""

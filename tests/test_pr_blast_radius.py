"""A pull request may not hurt anyone else: the tree after it is judged against the tree
before it, on real git repositories, the way the workflow runs `ssp validate --base main`.

The PR's files are the newest requests, so where they compete with others' requests for a
GPU, a quota or the host, the finding is on the PR's own file and names the request it would
break; problems already on `main` before the PR are notes. `validate_pull` is also called
directly for a problem that appears in a file the PR does not list (the base moved on).
"""

from __future__ import annotations

from pathlib import Path

from helpers import GitRepo, sample, valid_request, validate

from provisioner.commands import clock
from provisioner.git import files as gitfiles
from provisioner.validation.validate import validate_pull
from provisioner.values.changes import FileChange

ENV = {"SSP_NOW": "2026-11-28T12:00:00+00:00"}
BOB_BOX = "requests/bob/bob-box.yaml"
CAROL_PIN = "requests/carol/carol-pin.yaml"


def check(repo: GitRepo, author: str) -> tuple[int, str]:
    result = validate(repo.root, "--base", "main", "--author", author, env=ENV)
    assert "Traceback" not in result.both
    return result.code, result.out


def errors(out: str) -> list[str]:
    return [
        line for line in out.splitlines() if ": error: " in line and not line.startswith("note")
    ]


def test_pinning_gpus_that_another_members_count_needs_fails_on_the_prs_file(
    tmp_path: Path,
) -> None:
    # bob holds a count of 2 of the host's 4 GPUs; carol (quota: 4 GPUs) pins three of them
    base = {BOB_BOX: valid_request(owner="bob", gpus="2", shares=None)}
    repo = GitRepo.pull_request(
        tmp_path / "repo",
        base,
        {CAROL_PIN: valid_request(owner="carol", name="carol-pin", gpus="[0, 1, 2]")},
    )
    code, out = check(repo, "carol")
    assert code == 1, out
    (line,) = errors(out)
    assert line.startswith(f"{CAROL_PIN}:7:7: error: gpus: super-server has 4 GPUs")
    assert f"older requests take 2 ({BOB_BOX}: 2)" in line
    assert "GPUs 0, 1, 2 pinned here do not fit beside them [gpus.capacity]" in line
    # bob's untouched file is not where the finding is: he did nothing
    assert not any(line.startswith(BOB_BOX) for line in out.splitlines())
    # the same pins without bob's request pass
    alone = GitRepo.pull_request(
        tmp_path / "alone",
        {},
        {CAROL_PIN: valid_request(owner="carol", name="carol-pin", gpus="[0, 1, 2]")},
    )
    assert check(alone, "carol") == (0, "")


def test_a_count_that_no_longer_fits_beside_anothers_pins_fails_on_the_prs_file(
    tmp_path: Path,
) -> None:
    base = {CAROL_PIN: valid_request(owner="carol", name="carol-pin", gpus="[0, 1, 2]")}
    repo = GitRepo.pull_request(
        tmp_path / "repo", base, {BOB_BOX: valid_request(owner="bob", gpus="2", shares=None)}
    )
    code, out = check(repo, "bob")
    assert code == 1
    (line,) = errors(out)
    assert line.startswith(f"{BOB_BOX}:7:7: error: gpus: super-server has 4 GPUs")
    assert f"({CAROL_PIN}: GPU 0, 1, 2); the 2 asked for here do not fit" in line


def test_pinning_a_gpu_someone_already_pinned_fails_on_the_prs_file(tmp_path: Path) -> None:
    base = {CAROL_PIN: valid_request(owner="carol", name="carol-pin", gpus="[2]")}
    new = "requests/alice/alice-box.yaml"
    repo = GitRepo.pull_request(tmp_path / "repo", base, {new: valid_request(gpus="[1, 2]")})
    code, out = check(repo, "alice")
    assert code == 1
    assert errors(out) == [
        f"{new}:7:11: error: GPU 2 is already pinned by {CAROL_PIN} [gpus.double_booked]"
    ]


def test_a_request_the_host_cannot_hold_beside_the_others_fails_on_the_prs_file(
    tmp_path: Path,
) -> None:
    # carol (staff: 48 cores) holds 40 of the host's 64 cores; alice's 16 + bob's 16 fit
    # her quota and theirs, but not the host
    base = {
        "requests/carol/carol-big.yaml": valid_request(
            owner="carol", name="carol-big", cpu="40", gpus="0"
        ),
        BOB_BOX: valid_request(owner="bob", cpu="16", gpus="0", shares=None),
    }
    new = "requests/alice/alice-box.yaml"
    repo = GitRepo.pull_request(tmp_path / "repo", base, {new: valid_request(cpu="16", gpus="0")})
    code, out = check(repo, "alice")
    assert code == 1
    (line,) = errors(out)
    assert line.startswith(
        f"{new}:8:6: error: cpu: requests on super-server would need 72, the host has 64; "
        "older requests hold 56 (requests/bob/bob-box.yaml: 16, requests/carol/carol-big.yaml: 40)"
    )


def test_a_problem_already_on_main_is_a_note_and_the_pr_that_does_not_add_to_it_passes(
    tmp_path: Path,
) -> None:
    # an admin merged two pins of GPU 3; bob's PR asks for an account, nothing else
    base = {
        "requests/alice/alice-box.yaml": valid_request(gpus="[3]"),
        CAROL_PIN: valid_request(owner="carol", name="carol-pin", gpus="[3]"),
    }
    bob_nb = "requests/bob/bob-nb.yaml"
    repo = GitRepo.pull_request(
        tmp_path / "repo", base, {bob_nb: valid_request("account", name="bob-nb")}
    )
    code, out = check(repo, "bob")
    assert code == 0, out
    assert errors(out) == []
    assert (
        f"note: already before this PR, not blamed on it: {CAROL_PIN}:7:8: error: GPU 3 is "
        "already pinned by requests/alice/alice-box.yaml [gpus.double_booked]"
    ) in out


def test_a_pr_that_adds_to_a_problem_already_on_main_fails(tmp_path: Path) -> None:
    # the host is already over: carol's two 40-core requests; alice adds 4 more cores
    policy = sample("config/policy.yaml").replace(
        "  staff: {containers: 4, gpus: 4, cpu: 48", "  staff: {containers: 4, gpus: 4, cpu: 96"
    )
    base = {
        "config/policy.yaml": policy,
        "requests/carol/carol-a.yaml": valid_request(owner="carol", name="carol-a", cpu="40"),
        "requests/carol/carol-b.yaml": valid_request(owner="carol", name="carol-b", cpu="40"),
    }
    new = "requests/alice/alice-box.yaml"
    repo = GitRepo.pull_request(tmp_path / "repo", base, {new: valid_request(cpu="4")})
    code, out = check(repo, "alice")
    assert code == 1
    assert [line.split(": error: ")[0] for line in errors(out)] == [f"{new}:8:6"]
    # carol's second request was already over before: a note, not the PR's fault
    assert "note: already before this PR, not blamed on it: requests/carol/carol-b.yaml:8:6" in out


def test_an_infra_change_that_breaks_requests_says_so_in_place(tmp_path: Path) -> None:
    # lab-admin lowers the student quota to one GPU: alice's untouched request breaks
    base = {"requests/alice/alice-box.yaml": valid_request(gpus="2")}
    policy = sample("config/policy.yaml").replace(
        "  student: {containers: 2, gpus: 2", "  student: {containers: 2, gpus: 1"
    )
    repo = GitRepo.pull_request(tmp_path / "repo", base, {"config/policy.yaml": policy})
    code, out = check(repo, "lab-admin")
    assert code == 1
    assert [line.rsplit(" ", 1)[-1] for line in errors(out)] == ["[quota.gpus]"]
    assert errors(out)[0].startswith("requests/alice/alice-box.yaml:7:7: error: gpus: 2")


def test_a_new_problem_in_a_file_the_pr_does_not_list_is_pinned_on_the_prs_file(
    tmp_path: Path,
) -> None:
    # The base moved on between the trees compared (bob's file differs, the PR does not
    # list it): whatever is new is still the PR's to answer for, said on its own file.
    before = GitRepo.create(tmp_path / "before", {BOB_BOX: valid_request(owner="bob", gpus="1")})
    after = GitRepo.create(
        tmp_path / "after",
        {
            BOB_BOX: valid_request(owner="bob", gpus="1", shares="[gone]"),
            CAROL_PIN: valid_request(owner="carol", name="carol-pin", gpus="0"),
        },
    )
    result = validate_pull(
        gitfiles.revision(after.root, "HEAD"),
        [FileChange("A", CAROL_PIN)],
        "carol",
        frozenset({"lab-admin"}),
        clock(ENV),
        before=gitfiles.revision(before.root, "HEAD"),
    )
    assert not result.ok
    (problem,) = result.errors
    assert (problem.path, problem.line, problem.rule) == (CAROL_PIN, 1, "share.unknown")
    assert problem.message.startswith(f"this pull request breaks {BOB_BOX} (line 11): share")


def test_an_account_named_after_another_member_fails_the_pr(tmp_path: Path) -> None:
    mine = "requests/alice/bob.yaml"
    repo = GitRepo.pull_request(
        tmp_path / "repo", {}, {mine: valid_request("account", owner="alice", name="bob")}
    )
    code, out = check(repo, "alice")
    assert code == 1
    (line,) = errors(out)
    assert line.startswith(f"{mine}:3:7: error: an account on a shared server is named after")
    assert line.endswith("not 'bob'; 'bob' is another member's login [account.name_owner]")
    # named after herself, it passes
    own = "requests/alice/alice-common.yaml"
    fine = GitRepo.pull_request(
        tmp_path / "fine", {}, {own: valid_request("account", owner="alice", name="alice-common")}
    )
    assert check(fine, "alice") == (0, "")

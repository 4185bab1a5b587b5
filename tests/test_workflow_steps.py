"""validate.yml's own steps, run on a pull request event in a real git repository.

The repository holds this working tree's code (tests/workflowrun.py `project_files`) on
`main`; a PR branch adds a request file; the event payload is GitHub's shape (built from the
fake GitHub's state and validated against the webhook schema, no server involved). The job
then runs as on a runner: both checkouts, the venv and `pip install ./base` (offline, from a
wheelhouse built once), and `ssp validate` with the annotations and the job summary.

The first half tests the harness itself on small inputs, without installing anything.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import workflowrun
from fakegithub import FAKE_REPO, FakeGitHub
from fakegithub.events import pull_request_event, push_event
from fakegithub.state import GitHubState
from helpers import GitRepo, line_of, request_path, valid_request
from snapshots import container, make_snapshot
from workflowrun import WORKFLOWS, Annotation, Runner, Unsupported

from provisioner.github.statebranch import StateBranch

# --- the harness -------------------------------------------------------------------------------


def test_expressions_read_the_context_and_refuse_what_they_cannot_evaluate() -> None:
    context = {
        "github": {"sha": "abc", "event": {"pull_request": {"number": 7, "draft": False}}},
        "secrets": {"GITHUB_TOKEN": "t0k"},
    }
    assert workflowrun.evaluate("${{ github.sha }}", context) == "abc"
    text = "n=${{github.event.pull_request.number}} d=${{ github.event.pull_request.draft }}"
    assert workflowrun.evaluate(text, context) == "n=7 d=false"
    assert workflowrun.evaluate("${{ secrets.GITHUB_TOKEN }}", context) == "t0k"
    assert workflowrun.evaluate("${{ secrets.MISSING }}", context) == ""
    assert workflowrun.evaluate("${{ 'it''s' }}", context) == "it's"
    for expr in ("github.sha == 'x'", "format('{0}', github.sha)", "github.event['x']"):
        with pytest.raises(Unsupported):
            workflowrun.evaluate(f"${{{{ {expr} }}}}", context)


def test_annotations_are_decoded_like_the_runner_does() -> None:
    output = (
        "plain line\n"
        "::error file=requests/a%2Cb.yaml,line=7,col=3,title=quota.gpus::too many%0Asecond line\n"
        "::warning::no properties 100%25\n"
    )
    assert workflowrun.parse_annotations(output) == [
        Annotation("error", "too many\nsecond line", "requests/a,b.yaml", 7, 3, "quota.gpus"),
        Annotation("warning", "no properties 100%"),
    ]


def test_file_commands_read_plain_and_multiline_values(tmp_path: Path) -> None:
    path = tmp_path / "out"
    path.write_text("a=1\nb<<EOF\nline 1\nline=2\nEOF\nc=x=y\n", encoding="utf-8")
    assert workflowrun._read_file_commands(path) == {"a": "1", "b": "line 1\nline=2", "c": "x=y"}


def test_a_workflow_only_runs_for_its_own_triggers(tmp_path: Path) -> None:
    state = GitHubState()
    repo = state.add_repo(FAKE_REPO)
    push = push_event(repo, before="1" * 40, after="2" * 40)
    runner = Runner(source=tmp_path, work=tmp_path)
    with pytest.raises(ValueError, match="does not run on 'push'"):
        runner.run_job(
            WORKFLOWS / "validate.yml", "push", push, sha="2" * 40, ref="refs/heads/main"
        )
    with pytest.raises(ValueError, match="does not match branches"):
        runner.run_job(WORKFLOWS / "apply.yml", "push", push, sha="2" * 40, ref="refs/heads/dev")
    pull = state.add_pull(FAKE_REPO, author="alice", title="x")
    event = pull_request_event("opened", pull)
    with pytest.raises(ValueError, match="does not run on 'pull_request'"):
        runner.run_job(WORKFLOWS / "apply.yml", "pull_request", event, sha="2" * 40, ref="x")


def test_steps_run_in_order_with_bash_pipefail_env_and_file_commands(tmp_path: Path) -> None:
    workflow = tmp_path / "w.yml"
    workflow.write_text(
        """
on: push
env:
  FROM_WORKFLOW: ${{ github.sha }}
defaults:
  run:
    shell: bash
jobs:
  one:
    runs-on: ubuntu-24.04
    steps:
      - name: first
        run: |
          echo "GREETING=hello" >>"$GITHUB_ENV"
          echo "### summary of first" >>"$GITHUB_STEP_SUMMARY"
          echo "answer=42" >>"$GITHUB_OUTPUT"
        id: first
      - name: second
        env:
          ANSWER: ${{ steps.first.outputs.answer }}
          TOKEN: ${{ secrets.GITHUB_TOKEN }}
          FLAG: false
        run: |
          echo "$GREETING $ANSWER $FROM_WORKFLOW $GITHUB_ACTIONS $TOKEN $FLAG"
          test -d "$RUNNER_TEMP" && test "$PWD" = "$GITHUB_WORKSPACE"
          false | true
      - name: third
        run: echo never
""",
        encoding="utf-8",
    )
    state = GitHubState()
    push = push_event(state.add_repo(FAKE_REPO), before="1" * 40, after="2" * 40)
    runner = Runner(source=tmp_path, work=tmp_path, secrets={"GITHUB_TOKEN": "sekret"})

    run = runner.run_job(workflow, "push", push, sha="2" * 40, ref="refs/heads/main")

    # `false | true` fails under pipefail, so the third step never runs
    assert [s.returncode for s in run.steps] == [0, 1]
    assert run.skipped == ["third"]
    assert run.step("second").output.startswith(f"hello 42 {'2' * 40} true sekret false\n")
    assert run.summary == "### summary of first\n"
    assert run.step("first").outputs == {"answer": "42"}


def test_checkout_fetches_like_the_action_and_keeps_the_token_only_when_asked(
    tmp_path: Path,
) -> None:
    origin = GitRepo.create(tmp_path / "origin")
    first = origin.git("rev-parse", "HEAD").strip()
    second = origin.commit({"README.md": "two"}, "second")
    workflow = tmp_path / "w.yml"
    workflow.write_text(
        f"""
on: push
jobs:
  one:
    runs-on: ubuntu-24.04
    steps:
      - uses: actions/checkout@{"0" * 40}
        with:
          path: shallow
          persist-credentials: false
      - uses: actions/checkout@{"0" * 40}
        with:
          path: whole
          ref: {first}
          fetch-depth: 0
""",
        encoding="utf-8",
    )
    push = push_event(GitHubState().add_repo(FAKE_REPO), before=first, after=second)
    runner = Runner(source=origin.root, work=tmp_path / "w", secrets={"GITHUB_TOKEN": "sekret"})

    run = runner.run_job(workflow, "push", push, sha=second, ref="refs/heads/main")

    assert run.ok, run.log()
    shallow, whole = run.workspace / "shallow", run.workspace / "whole"
    assert head_of(shallow) == second  # no ref: the event's commit
    assert (shallow / ".git" / "shallow").exists()
    assert "sekret" not in (shallow / ".git" / "config").read_text(encoding="utf-8")
    assert head_of(whole) == first
    assert not (whole / ".git" / "shallow").exists()
    assert "sekret" in (whole / ".git" / "config").read_text(encoding="utf-8")  # the default


# --- validate.yml ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def wheels() -> Path:
    return workflowrun.wheelhouse()


@pytest.fixture
def origin(tmp_path: Path) -> GitRepo:
    """The lab's repository: this project's code and config on `main`, no requests yet."""
    return GitRepo.create(tmp_path / "origin", workflowrun.project_files())


def open_pull_request(
    origin: GitRepo, author: str, files: dict[str, str], gh: FakeGitHub | None = None
) -> tuple[Any, str]:
    """A PR branch with FILES; its event payload and GitHub's test-merge commit. The pull
    request (and who wrote its one commit) is on GH, the fake GitHub the job reads."""
    base = origin.git("rev-parse", "HEAD").strip()
    branch = f"{author}/request"
    origin.branch(branch)
    head = origin.commit(dict(files), f"{author}: request")
    # GitHub runs pull_request workflows on refs/pull/N/merge, the PR merged into its base
    origin.git("checkout", "-q", "--detach", base)
    origin.git("merge", "-q", "--no-ff", "-m", "Merge pull request", head)
    merge = origin.git("rev-parse", "HEAD").strip()
    origin.checkout("main")
    state = gh if gh is not None else GitHubState()
    if gh is None:
        state.add_repo(FAKE_REPO)
    pull = state.add_pull(
        FAKE_REPO,
        author=author,
        title=f"Request by {author}",
        head_sha=head,
        head_ref=branch,
        base_sha=base,
        files=list(files),
        commits=[(head, author, author)],
    )
    origin.git("update-ref", f"refs/pull/{pull.number}/merge", merge)
    return pull_request_event("opened", pull), merge


def run_validate(
    origin: GitRepo, wheels: Path, tmp_path: Path, event: Any, merge: str, gh: FakeGitHub
) -> Any:
    runner = Runner(
        source=origin.root,
        work=tmp_path,
        repository=FAKE_REPO,
        wheels=wheels,
        api_url=gh.url,
        secrets={"GITHUB_TOKEN": gh.token},
    )
    ref = f"refs/pull/{event['number']}/merge"
    return runner.run_job(WORKFLOWS / "validate.yml", "pull_request", event, sha=merge, ref=ref)


def head_of(checkout: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.mark.slow
def test_a_good_pull_request_passes_and_summarises(
    origin: GitRepo, wheels: Path, tmp_path: Path, fake_github: FakeGitHub
) -> None:
    text = valid_request(name="alice-thesis")
    event, merge = open_pull_request(origin, "alice", {request_path(text): text}, fake_github)

    run = run_validate(origin, wheels, tmp_path / "runner", event, merge, fake_github)

    assert run.ok, run.log()
    assert [s.name for s in run.steps] == [
        "Check out the base commit (the validator's code)",
        "Check out the PR head (data only, full history for git merge-base)",
        "Install ssp from the base commit",
        "Fetch the host's published state (data for the plan preview)",
        "Validate the PR's changes",
    ]
    # the code came from the base commit, the data from the head
    assert head_of(run.workspace / "base") == event["pull_request"]["base"]["sha"]
    assert head_of(run.workspace / "head") == event["pull_request"]["head"]["sha"]
    assert [a for a in run.annotations if a.level == "error"] == []
    summary = run.step("Validate the PR's changes").summary
    assert summary.startswith("## ✅ Request check passed")
    assert "`requests/alice/alice-thesis.yaml`" in summary
    assert "Next: an admin reviews and merges" in summary
    # nothing published yet: the preview says so, the check is whole without it
    assert "**No preview of GPUs, ports and disk:** no state snapshot was found" in summary


@pytest.mark.slow
def test_a_pull_request_that_breaks_a_rule_fails_with_an_annotation_on_its_line(
    origin: GitRepo, wheels: Path, tmp_path: Path, fake_github: FakeGitHub
) -> None:
    text = valid_request(name="alice-thesis", gpus="3")  # alice's quota is 2 GPUs
    path = request_path(text)
    event, merge = open_pull_request(origin, "alice", {path: text}, fake_github)

    run = run_validate(origin, wheels, tmp_path / "runner", event, merge, fake_github)

    assert not run.ok
    assert run.steps[-1].name == "Validate the PR's changes"
    assert run.steps[-1].returncode == 1
    errors = [a for a in run.annotations if a.level == "error"]
    assert errors, run.log()
    (error,) = errors
    # the path GitHub matches against the PR's files, and the line of `gpus: 3`
    assert (error.file, error.line) == (path, line_of(text, "gpus: 3"))
    assert error.title is not None and error.title.startswith("quota")
    assert "## ❌ Request check failed" in run.summary
    assert f"| `{path}` | {error.line} |" in run.summary


@pytest.mark.slow
def test_the_event_payload_the_steps_read_is_the_one_given(
    origin: GitRepo, wheels: Path, tmp_path: Path, fake_github: FakeGitHub
) -> None:
    # bob may not change alice's folder: who asked comes from the event, not from the file
    text = valid_request(name="alice-thesis")
    event, merge = open_pull_request(origin, "bob", {request_path(text): text}, fake_github)

    run = run_validate(origin, wheels, tmp_path / "runner", event, merge, fake_github)

    assert not run.ok
    (error,) = [a for a in run.annotations if a.level == "error"]
    assert error.file == request_path(text)
    assert "bob" in error.message
    event_file = json.loads((run.workspace.parent / "temp" / "event.json").read_text("utf-8"))
    assert event_file["pull_request"]["user"]["login"] == "bob"


def publish_state(origin: GitRepo, gh: FakeGitHub, snapshot: Path) -> None:
    """What the maintenance run leaves on GitHub: `ssp publish`'s commit on ssp-state, made
    through the fake's git database and then held by the repository the runner fetches from
    (the fake's objects carry git's own ids, so the same files make the same tree)."""
    files = {
        name: (snapshot.parent / name).read_text(encoding="utf-8")
        for name in ("snapshot.json", "index.html")
    }
    publisher = StateBranch(repository=FAKE_REPO, token=gh.token, api_url=gh.url)
    sha = publisher.publish("ssp-state", files, "ssp state")
    db = gh.git[FAKE_REPO.lower()]
    origin.git("checkout", "-q", "--orphan", "ssp-state")
    origin.git("rm", "-q", "-rf", ".")
    for name, text in files.items():
        (origin.root / name).write_text(text, encoding="utf-8")
    origin.git("add", "-A")
    assert origin.git("write-tree").strip() == db.objects[sha].data["tree"]
    origin.git("commit", "-q", "-m", "ssp state")
    origin.checkout("main")


@pytest.mark.slow
def test_with_a_published_snapshot_the_summary_previews_and_flags_what_would_not_fit(
    origin: GitRepo, wheels: Path, tmp_path: Path, fake_github: FakeGitHub
) -> None:
    # an instance no request manages holds three of the four GPUs; alice asks for two
    snap = make_snapshot(
        tmp_path / "snapshot.json",
        [container("old-box", "carol", (0, 1, 2), 22001, "50GiB")],
        made=datetime.now(UTC) - timedelta(hours=1),
    )
    publish_state(origin, fake_github, snap)
    text = valid_request(name="alice-thesis", gpus="2")
    path = request_path(text)
    event, merge = open_pull_request(origin, "alice", {path: text}, fake_github)

    run = run_validate(origin, wheels, tmp_path / "runner", event, merge, fake_github)

    assert run.ok, run.log()  # a warning, not a failure
    (warning,) = [a for a in run.annotations if a.level == "warning"]
    assert (warning.file, warning.line, warning.title) == (
        path,
        line_of(text, "gpus:"),
        "preview.fit",
    )
    summary = run.step("Validate the PR's changes").summary
    assert "### Plan preview" in summary
    assert "⚠️ **1 request(s) would not fit on the host now**" in summary
    assert "only 1 of the 2 GPUs asked for are free" in summary
    assert "Free GPUs now: **3**" in summary


@pytest.mark.parametrize(
    ("workflow", "job"),
    [("apply", "apply"), ("maintenance", "maintain"), ("maintenance", "publish")],
)
def test_a_dispatch_on_another_branch_runs_nothing_on_the_gpu_host(
    tmp_path: Path, workflow: str, job: str
) -> None:
    # a member dispatches the workflow on their branch, whose ssp they changed: skipped
    runner = Runner(source=tmp_path, work=tmp_path)
    path = WORKFLOWS / f"{workflow}.yml"
    run = runner.run_job(
        path, "workflow_dispatch", {}, sha="2" * 40, ref="refs/heads/evil", job=job
    )
    assert run.condition_false
    assert run.steps == [] and run.skipped == []


def test_a_job_after_another_runs_as_github_decides_from_the_results_it_needs(
    tmp_path: Path,
) -> None:
    # apply.yml's publish job: after the apply job whether it passed or failed, not after a
    # cancelled run; a job given results other than those it needs is refused.
    doc = workflowrun.load(WORKFLOWS / "apply.yml")
    condition = str(doc["jobs"]["publish"]["if"])
    main = {"github": {"ref": "refs/heads/main"}}
    assert workflowrun._job_condition(condition, main, {"apply": "success"})
    assert workflowrun._job_condition(condition, main, {"apply": "failure"})
    assert not workflowrun._job_condition(condition, main, {"apply": "cancelled"})
    assert not workflowrun._job_condition(condition, {"github": {"ref": "refs/heads/x"}}, {})
    # without a status function, only after every needed job succeeded
    plain = "github.ref == 'refs/heads/main'"
    assert not workflowrun._job_condition(plain, main, {"apply": "failure"})
    runner = Runner(source=tmp_path, work=tmp_path)
    push = push_event(GitHubState().add_repo(FAKE_REPO), before="1" * 40, after="2" * 40)
    with pytest.raises(workflowrun.Unsupported, match="needs"):
        runner.run_job(
            WORKFLOWS / "apply.yml", "push", push, sha="2" * 40, ref="refs/heads/main", job="pages"
        )
    skipped = runner.run_job(
        WORKFLOWS / "apply.yml",
        "push",
        push,
        sha="2" * 40,
        ref="refs/heads/main",
        job="publish",
        needs={"apply": "cancelled"},
    )
    assert skipped.condition_false and skipped.steps == []

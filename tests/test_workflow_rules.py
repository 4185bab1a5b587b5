"""The "GitHub Actions" rules of SECURITY.md, asserted on the workflow files' structure.

The linters (tests/test_workflows_lint.py) catch generic mistakes; these tests pin down our
own trust model: which events may start which workflow, who runs where with which token,
and that the PR's code is never executed. They also check the governance files that go with
it (CODEOWNERS, the pre-commit hook). One test per rule, so a failure names the rule.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"
NAMES = ("validate", "apply", "maintenance", "commands")
SELF_HOSTED = ("apply", "maintenance", "commands")
# The self-hosted workflows that run for pushes to main, a schedule or a dispatch: they check
# out exactly the commit that started them. commands.yml runs for a comment and checks out
# main by name (test_commands_check_out_main_never_the_commented_pull_request).
ON_MAIN = ("apply", "maintenance")
RUNNER_LABELS = ["self-hosted", "linux", "x64", "gpu-host"]
ADMINS = "@super-server-lab/admins"
# The jobs of the self-hosted workflows that are not on the GPU host: each deploys the status
# page its publish job uploaded to GitHub Pages, on a GitHub-hosted runner (issue 22, finding
# 4); apply.yml publishes after every apply, maintenance.yml daily (issue 25).
PAGES_JOBS = (("maintenance", "pages"), ("apply", "pages"), ("commands", "pages"))
PUBLISH_JOBS = (("maintenance", "publish"), ("apply", "publish"), ("commands", "publish"))
# apply.yml's publish job runs after the apply job whatever its exit status (a failed request
# is news for the page too), never when the run was cancelled; and only for main.
AFTER_APPLY = "${{ !cancelled() && github.ref == 'refs/heads/main' }}"

# `uses: owner/repo[/path]@<40 hex> # vX.Y.Z` on one line: the comment is how a human (and
# Dependabot) knows which release the SHA is
PINNED_USES = re.compile(
    r"^\s*(?:-\s+)?uses:\s+(?P<action>[\w.-]+/[\w./-]+)@(?P<sha>[0-9a-f]{40})"
    r"\s+#\s+v\d+\.\d+\.\d+\s*$"
)
ANY_USES = re.compile(r"^\s*(?:-\s+)?uses:")


def load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((WORKFLOWS / f"{name}.yml").read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    # PyYAML follows YAML 1.1, where the bare key `on` is the boolean True
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def jobs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return list(doc["jobs"].values())


def host_jobs(name: str) -> list[dict[str, Any]]:
    """The jobs of workflow NAME that run on the GPU host (all but the Pages deployment)."""
    return [job for job_id, job in load(name)["jobs"].items() if (name, job_id) not in PAGES_JOBS]


def steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in jobs(doc) for step in job.get("steps", [])]


def checkouts(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in steps(doc) if str(s.get("uses", "")).startswith("actions/checkout@")]


def triggers(doc: dict[str, Any]) -> dict[str, Any]:
    on = doc["on"]
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    assert isinstance(on, dict)
    return on


@pytest.fixture(params=NAMES)
def workflow(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param, load(request.param)


def test_only_our_four_workflows_exist() -> None:
    # a fifth workflow would not be held to the rules below
    assert sorted(p.stem for p in WORKFLOWS.iterdir()) == sorted(NAMES)


def test_triggers_are_the_allowed_ones() -> None:
    validate = triggers(load("validate"))
    assert set(validate) == {"pull_request"}
    # no paths/branches filter: an infrastructure-only PR must be validated too
    assert not validate["pull_request"]

    apply = triggers(load("apply"))
    assert set(apply) == {"push", "workflow_dispatch"}
    assert apply["push"] == {"branches": ["main"]}

    maintenance = triggers(load("maintenance"))
    assert set(maintenance) == {"schedule", "workflow_dispatch"}
    assert all(set(entry) == {"cron"} for entry in maintenance["schedule"])

    # a new comment only: an edited one would let a command be run again by editing it
    assert triggers(load("commands")) == {"issue_comment": {"types": ["created"]}}


def test_no_workflow_runs_on_pr_content_with_privileges() -> None:
    # pull_request_target and workflow_run nowhere; issue_comment only in commands.yml, whose
    # file and checkout are main's and whose gate the commands tests below pin down
    for name in NAMES:
        found = set(triggers(load(name)))
        assert not {"pull_request_target", "workflow_run"} & found, name
        assert ("issue_comment" in found) == (name == "commands"), name


def test_top_level_permissions_are_empty(workflow: tuple[str, dict[str, Any]]) -> None:
    _, doc = workflow
    assert doc["permissions"] == {}


def test_each_job_asks_for_exactly_its_permissions() -> None:
    expected = {
        "validate": {"contents": "read", "pull-requests": "read"},
        # PR comments go through the issues API, which takes `pull-requests: write` for a PR
        "apply": {"contents": "read", "pull-requests": "write"},
        # maintain writes the lease notices and the sticky comment of a PR whose request it
        # made after the request waited in line; publish writes the ssp-state branch
        "maintenance": {"contents": "read", "issues": "write", "pull-requests": "write"},
        "maintenance.publish": {"contents": "write"},
        "apply.publish": {"contents": "write"},
        # deploys the page publish uploaded: Pages, and the OIDC token deploy-pages shows it
        "maintenance.pages": {"pages": "write", "id-token": "write"},
        "apply.pages": {"pages": "write", "id-token": "write"},
        "commands.publish": {"contents": "write"},
        "commands.pages": {"pages": "write", "id-token": "write"},
        # reacts to the command and answers it, on a lease issue or a merged pull request
        "commands": {"contents": "read", "issues": "write", "pull-requests": "write"},
    }
    for name in NAMES:
        for job_id, job in load(name)["jobs"].items():
            wanted = expected.get(f"{name}.{job_id}", expected[name])
            assert job["permissions"] == wanted, (name, job_id)


@pytest.mark.parametrize("name", SELF_HOSTED)
def test_only_the_publishing_step_holds_a_token_that_can_write_contents(name: str) -> None:
    (job,) = [j for j in jobs(load(name)) if j["permissions"].get("contents") == "write"]
    with_token = [s for s in job["steps"] if "secrets." in str(s)]
    assert [s["name"] for s in with_token] == [
        "Publish the snapshot and the status page to ssp-state"
    ]
    words = shlex.split(str(with_token[0]["run"]).splitlines()[2])
    assert words[:2] == ["$RUNNER_TEMP/ssp-venv/bin/ssp", "publish"]


def test_every_action_is_pinned_to_a_commit_with_a_version_comment(
    workflow: tuple[str, dict[str, Any]],
) -> None:
    name, doc = workflow
    lines = (WORKFLOWS / f"{name}.yml").read_text(encoding="utf-8").splitlines()
    uses_lines = [line for line in lines if ANY_USES.match(line)]
    assert uses_lines, "each workflow checks out code"
    for line in uses_lines:
        assert PINNED_USES.match(line), line
    # the raw-text scan saw every `uses:` that YAML sees (none hidden in flow style)
    assert len(uses_lines) == sum("uses" in s for s in steps(doc))


def test_one_action_one_sha_across_workflows() -> None:
    # two SHAs for the same action mean one of the pins was not updated
    seen: dict[str, set[str]] = {}
    for name in NAMES:
        for line in (WORKFLOWS / f"{name}.yml").read_text(encoding="utf-8").splitlines():
            if match := PINNED_USES.match(line):
                seen.setdefault(match["action"], set()).add(match["sha"])
    assert seen
    assert all(len(shas) == 1 for shas in seen.values()), seen


def test_no_expressions_inside_run_scripts(workflow: tuple[str, dict[str, Any]]) -> None:
    # stricter than "no ${{ github.event.* }}": every value reaches the shell through env:
    _, doc = workflow
    scripts = [s["run"] for s in steps(doc) if "run" in s]
    assert scripts
    for script in scripts:
        assert "${{" not in script, script
        assert "github.event" not in script, script


def test_every_checkout_drops_its_credentials(workflow: tuple[str, dict[str, Any]]) -> None:
    _, doc = workflow
    assert checkouts(doc)
    for step in checkouts(doc):
        assert step["with"]["persist-credentials"] is False, step


def test_every_job_has_a_timeout(workflow: tuple[str, dict[str, Any]]) -> None:
    _, doc = workflow
    for job in jobs(doc):
        assert 0 < job["timeout-minutes"] <= 120


@pytest.mark.parametrize(
    ("name", "group"),
    [
        ("apply", "ssp-apply"),
        ("maintenance", "ssp-maintenance"),
        # one queue per thread: GitHub's one pending run per group never drops a command on
        # another container's thread; the host lock orders them all
        ("commands", "ssp-commands-${{ github.event.issue.number }}"),
    ],
)
def test_self_hosted_workflows_have_their_own_uncancelled_concurrency_group(
    name: str, group: str
) -> None:
    # Separate groups: GitHub keeps one pending run per group, so a shared group would let a
    # pending maintenance run replace a pending apply. The host lock keeps their changes apart.
    doc = load(name)
    assert doc["concurrency"] == {"group": group, "cancel-in-progress": False}
    for job in jobs(doc):
        # a job-level group would make a second, independent queue
        assert "concurrency" not in job


@pytest.mark.parametrize("name", SELF_HOSTED)
def test_self_hosted_jobs_run_on_the_gpu_host_in_production(name: str) -> None:
    for job in host_jobs(name):
        assert job["runs-on"] == RUNNER_LABELS
        assert job["environment"] == "production"


@pytest.mark.parametrize("name", SELF_HOSTED)
def test_self_hosted_jobs_run_only_for_main(name: str) -> None:
    # workflow_dispatch runs a workflow from any branch, installing that branch's ssp: the
    # job's own condition keeps it off the GPU host, besides the environment's branch policy
    # (which `ssp doctor --github` checks as github.environment)
    for job_id, job in load(name)["jobs"].items():
        if (name, job_id) in PAGES_JOBS:
            continue
        if (name, job_id) == ("apply", "publish"):
            assert job["if"] == AFTER_APPLY, job["name"]
        else:
            assert job["if"].split(" && ")[0] == "github.ref == 'refs/heads/main'", job["name"]


@pytest.mark.parametrize("name", SELF_HOSTED)
def test_privileged_workflows_use_no_caches_or_artifacts(name: str) -> None:
    # Nothing a privileged job reads comes from a cache or an artifact. The one artifact is the
    # status page the publish job uploads for Pages: written, never read back on the host.
    for job_id, job in load(name)["jobs"].items():
        actions = {str(s["uses"]).split("@")[0] for s in job["steps"] if "uses" in s}
        allowed = {"actions/checkout"}
        if (name, job_id) in PUBLISH_JOBS:
            allowed = {"actions/checkout", "actions/upload-pages-artifact"}
        elif (name, job_id) in PAGES_JOBS:
            allowed = {"actions/deploy-pages"}
        assert actions == allowed, (name, job_id)
    text = (WORKFLOWS / f"{name}.yml").read_text(encoding="utf-8")
    for word in ("actions/cache", "upload-artifact", "download-artifact", "cache:"):
        assert word not in text


def test_pages_serve_only_the_page_the_publish_job_generated() -> None:
    """The Pages site is an artifact of the page `ssp publish` wrote in this run, never the
    ssp-state branch (which members can push); its deployment runs nothing else."""
    doc = load("maintenance")
    publish, pages = doc["jobs"]["publish"], doc["jobs"]["pages"]
    step_names = [s.get("name") for s in publish["steps"]]
    upload = publish["steps"][-1]
    assert str(upload["uses"]).startswith("actions/upload-pages-artifact@")
    assert upload["with"] == {"path": "${{ runner.temp }}/ssp-site"}
    assert step_names.index(upload["name"]) == len(step_names) - 1
    script = str(publish["steps"][-2]["run"])
    assert '"$RUNNER_TEMP/ssp-venv/bin/ssp" publish --repo . --output "$out"' in script
    # the site folder holds the page this run wrote, and nothing fetched
    assert 'cp "$out/index.html" "$RUNNER_TEMP/ssp-site/index.html"' in script
    assert "git " not in script and "curl" not in script
    assert pages["needs"] == "publish"
    assert pages["runs-on"] == "ubuntu-24.04"
    assert pages["environment"]["name"] == "github-pages"
    (deploy,) = pages["steps"]
    assert str(deploy["uses"]).startswith("actions/deploy-pages@") and "with" not in deploy
    assert "pages" not in str(doc["on"]) and "push" not in triggers(doc)


def test_apply_publishes_the_page_after_every_apply_with_maintenances_own_jobs() -> None:
    """After each apply (issue 25) the page is published as the daily run does: the same
    steps and permissions, in jobs of their own after the apply job, so the apply job never
    holds `contents: write` and a failed publish never fails the apply."""
    apply, daily = load("apply")["jobs"], load("maintenance")["jobs"]
    assert list(apply) == ["apply", "publish", "pages"]
    publish = dict(apply["publish"])
    assert (publish.pop("needs"), publish.pop("if")) == ("apply", AFTER_APPLY)
    ours = [{k: v for k, v in s.items() if k != "name"} for s in publish.pop("steps")]
    theirs = dict(daily["publish"])
    theirs.pop("if")
    assert ours == [{k: v for k, v in s.items() if k != "name"} for s in theirs.pop("steps")]
    assert publish == theirs
    assert apply["pages"] == daily["pages"]


def test_validate_runs_on_a_github_hosted_runner() -> None:
    for job in jobs(load("validate")):
        assert job["runs-on"] == "ubuntu-24.04"
        assert "environment" not in job


def test_validate_installs_the_validator_from_the_base_commit_only() -> None:
    doc = load("validate")
    by_path = {step["with"]["path"]: step["with"] for step in checkouts(doc)}
    assert set(by_path) == {"base", "head"}
    assert by_path["base"]["ref"] == "${{ github.event.pull_request.base.sha }}"
    assert by_path["head"]["ref"] == "${{ github.event.pull_request.head.sha }}"
    # the head needs its full history for `git merge-base` against the base commit
    assert by_path["head"]["fetch-depth"] == 0

    installs = []
    for step in steps(doc):
        assert "working-directory" not in step
        script = str(step.get("run", "")).replace("\\\n", " ")
        for line in script.splitlines():
            words = shlex.split(line)
            if "pip" in " ".join(words) and "install" in words:
                targets = [w for w in words[words.index("install") + 1 :] if w[0] != "-"]
                installs.append(targets)
            # the head checkout is only ever named as the data to validate
            assert len(re.findall(r"\bhead\b", line)) == line.count("--repo head"), line
    assert installs == [["./base"]]


def test_validate_passes_event_values_through_env() -> None:
    (step,) = [s for s in steps(load("validate")) if 'ssp" validate' in str(s.get("run"))]
    assert step["env"] == {
        "BASE_SHA": "${{ github.event.pull_request.base.sha }}",
        "AUTHOR": "${{ github.event.pull_request.user.login }}",
        "PUSHER": "${{ github.event.sender.login }}",
        "PULL": "${{ github.event.pull_request.number }}",
        "GITHUB_TOKEN": "${{ secrets.GITHUB_TOKEN }}",
    }
    words = shlex.split(step["run"])
    assert words[0] == "$RUNNER_TEMP/ssp-venv/bin/ssp"
    assert words[1:] == [
        "validate",
        "--repo",
        "head",
        "--base",
        "$BASE_SHA",
        "--author",
        "$AUTHOR",
        "--pusher",
        "$PUSHER",
        "--pull",
        "$PULL",
        "--format",
        "github",
        "--snapshot",
        "$RUNNER_TEMP/ssp-state/snapshot.json",
    ]


def test_validate_fetches_the_published_state_as_data_with_its_read_only_token() -> None:
    doc = load("validate")
    (step,) = [
        s for s in steps(doc) if "ssp-state" in str(s.get("run")) and "fetch" in str(s.get("run"))
    ]
    assert step["env"] == {"GITHUB_TOKEN": "${{ secrets.GITHUB_TOKEN }}"}
    script = str(step["run"])
    assert "git -C base fetch" in script and "--depth=1" in script
    # the branch's content is only ever read out as a file for ssp, never run or installed
    assert "git -C base show refs/ssp-state:snapshot.json" in script
    # and the status page, to check against the digest the snapshot records
    assert "git -C base show refs/ssp-state:index.html" in script
    assert "checkout" not in script and "pip" not in script
    (job,) = jobs(doc)
    assert job["permissions"]["contents"] == "read"


@pytest.mark.parametrize("name", ON_MAIN)
def test_self_hosted_workflows_check_out_exactly_github_sha(name: str) -> None:
    for job in host_jobs(name):
        (step,) = [
            s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/checkout@")
        ]
        assert step["with"]["ref"] == "${{ github.sha }}"
        assert "path" not in step["with"]


@pytest.mark.parametrize("name", SELF_HOSTED)
def test_every_job_that_plans_fetches_main_s_whole_history(name: str) -> None:
    # Which competing request is newest is merge order on main: from one commit, path order
    # decided and the daily job reversed apply's refusals (issue 22, finding 5). ssp also
    # refuses a shallow clone (test_shallow_history.py).
    for job in host_jobs(name):
        (step,) = [
            s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/checkout@")
        ]
        assert step["with"]["fetch-depth"] == 0, job["name"]


@pytest.mark.parametrize(("name", "command"), [("apply", "apply"), ("maintenance", "maintain")])
def test_self_hosted_workflows_run_ssp_from_a_fresh_venv_and_summarise(
    name: str, command: str
) -> None:
    for job in host_jobs(name):
        runs = [str(s["run"]) for s in job["steps"] if "run" in s]
        each = "\n".join(runs).replace("\\\n", " ")
        assert 'python3 -m venv --clear "$RUNNER_TEMP/ssp-venv"' in each
        # dependencies from the hashed lock only, then ssp itself without dependencies
        installs = [line.split() for line in each.splitlines() if 'bin/pip" install' in line]
        assert len(installs) == 2
        first, second = installs
        assert {"--require-hashes", "--only-binary", "--no-deps"} <= set(first)
        assert first[-2:] == ["-r", "requirements.lock"]
        assert {"--no-deps", "--no-build-isolation"} <= set(second)
        assert second[-1] == "."
    runs = [str(s["run"]) for s in steps(load(name)) if "run" in s]
    script = "\n".join(runs).replace("\\\n", " ")
    assert f'"$RUNNER_TEMP/ssp-venv/bin/ssp" {command} --repo . --format markdown' in script
    assert '>>"$GITHUB_STEP_SUMMARY"' in script
    # the step still fails when ssp fails, after the summary is written
    assert 'exit "$rc"' in script


def test_apply_gets_the_token_through_env_only() -> None:
    doc = load("apply")
    (step,) = [s for s in steps(doc) if 'ssp-venv/bin/ssp" apply' in str(s.get("run"))]
    assert step["env"] == {"GITHUB_TOKEN": "${{ secrets.GITHUB_TOKEN }}"}
    (published,) = [s for s in steps(doc) if 'ssp-venv/bin/ssp" publish' in str(s.get("run"))]
    assert published["env"] == {"GITHUB_TOKEN": "${{ secrets.GITHUB_TOKEN }}"}
    # no other secret: frpc's admin password, for one, is read on the host (tunnel section)
    text = (WORKFLOWS / "apply.yml").read_text(encoding="utf-8")
    assert text.count("secrets.") == 2 == text.count("secrets.GITHUB_TOKEN")


def codeowners() -> dict[str, list[str]]:
    rules: dict[str, list[str]] = {}
    for line in (REPO / ".github" / "CODEOWNERS").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            pattern, *owners = line.split()
            rules[pattern] = owners
    return rules


def test_codeowners_gives_admins_every_infrastructure_path_and_the_requests() -> None:
    rules = codeowners()
    for path in (
        "*",
        "/.github/",
        "/config/",
        "/schemas/",
        "/provisioner/",
        "/runner/",
        "/tests/",
        "/bench/",
        "/.ci/",
        "/pyproject.toml",
        "/Makefile",
        "/requests/",
    ):
        assert rules.get(path) == [ADMINS], path
    assert all(owners == [ADMINS] for owners in rules.values())
    # the catch-all must come first: in CODEOWNERS the last matching line wins
    assert next(iter(rules)) == "*"


def test_pre_commit_hook_runs_ssp_validate_on_request_files() -> None:
    (hook,) = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert hook["id"] == "ssp-validate"
    assert hook["language"] == "python"
    assert hook["entry"] == "ssp validate"
    assert hook["pass_filenames"] is False
    files = re.compile(hook["files"])
    assert files.search("requests/alice/alice-thesis.yaml")
    assert files.search("requests/alice/alice-thesis.yml")
    assert not files.search("config/policy.yaml")
    assert not files.search("docs/requests/example.yaml")

    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    local = {
        h["id"]: h for repo in config["repos"] if repo["repo"] == "local" for h in repo["hooks"]
    }
    assert local["ssp-validate"]["entry"] == "ssp validate --repo ."
    assert local["ssp-validate"]["files"] == hook["files"]
    assert {"ruff-check", "ruff-format"} <= set(local)


# --- commands.yml: the one workflow a comment starts -------------------------------------------


def test_commands_admit_only_ssp_comments_by_the_repository_s_people() -> None:
    # A stranger's comment, or any comment not starting with "/ssp ", never takes the runner:
    # the job is skipped before a step (tests/test_comment_commands.py runs this gate).
    job = load("commands")["jobs"]["command"]
    assert job["if"] == (
        "github.ref == 'refs/heads/main' && startsWith(github.event.comment.body, '/ssp ') && "
        'contains(fromJSON(\'["OWNER","MEMBER","COLLABORATOR"]\'), '
        "github.event.comment.author_association)"
    )


def test_commands_check_out_main_never_the_commented_pull_request() -> None:
    # the command and the publish after it
    steps = checkouts(load("commands"))
    assert len(steps) == 2
    for step in steps:
        assert step["with"] == {"ref": "main", "fetch-depth": 0, "persist-credentials": False}


def test_commands_read_the_comment_only_from_the_event_file() -> None:
    # the comment's text is in no script and no env value: `ssp comment` reads the event file
    doc = load("commands")
    job = doc["jobs"]["command"]
    text = yaml.safe_dump([step for j in jobs(doc) for step in j["steps"]])
    assert "github.event" not in text
    (step,) = [s for s in job["steps"] if 'ssp" comment' in str(s.get("run", ""))]
    assert step["env"] == {"GITHUB_TOKEN": "${{ secrets.GITHUB_TOKEN }}"}
    words = shlex.split(str(step["run"]).replace("\\\n", " ").splitlines()[2])
    assert words == [
        "$RUNNER_TEMP/ssp-venv/bin/ssp",
        "comment",
        "--repo",
        ".",
        "--event",
        "$GITHUB_EVENT_PATH",
        "--format",
        "markdown",
        ">$report",
        "||",
        "rc=$?",
    ]
    # this step's token, and the publish job's (contents: write, for ssp-state only)
    assert (WORKFLOWS / "commands.yml").read_text(encoding="utf-8").count("secrets.") == 2


def test_commands_run_ssp_from_a_fresh_venv_of_main() -> None:
    job = load("commands")["jobs"]["command"]
    each = "\n".join(str(s["run"]) for s in job["steps"] if "run" in s).replace("\\\n", " ")
    installs = [line.split() for line in each.splitlines() if 'bin/pip" install' in line]
    assert len(installs) == 2
    assert {"--require-hashes", "--only-binary", "--no-deps"} <= set(installs[0])
    assert installs[0][-2:] == ["-r", "requirements.lock"]
    assert installs[1][-1] == "."
    assert '>>"$GITHUB_STEP_SUMMARY"' in each and 'exit "$rc"' in each


def test_a_command_is_followed_by_the_page_published_as_after_an_apply() -> None:
    """After each comment command (issue 25) the page is published by apply.yml's own jobs,
    step for step, only after a command that ran: a skipped one (a stranger's comment) never
    takes the runner, and a refused one changed nothing."""
    ours, apply = load("commands")["jobs"], load("apply")["jobs"]
    assert list(ours) == ["command", "publish", "pages"]
    publish, theirs = dict(ours["publish"]), dict(apply["publish"])
    assert (publish.pop("needs"), publish.pop("if")) == (
        "command",
        "github.ref == 'refs/heads/main'",
    )
    theirs.pop("needs"), theirs.pop("if")
    strip = [
        {k: v for k, v in step.items() if k not in ("name", "with")}
        for step in publish.pop("steps")
    ]
    assert strip == [
        {k: v for k, v in step.items() if k not in ("name", "with")} for step in theirs.pop("steps")
    ]
    assert publish == theirs
    assert ours["pages"] == apply["pages"]

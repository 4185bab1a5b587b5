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
NAMES = ("validate", "apply", "maintenance")
SELF_HOSTED = ("apply", "maintenance")
RUNNER_LABELS = ["self-hosted", "linux", "x64", "gpu-host"]
ADMINS = "@super-server-lab/admins"
# The one job of a self-hosted workflow that is not on the GPU host: it deploys the status page
# the publish job uploaded to GitHub Pages, on a GitHub-hosted runner (issue 22, finding 4).
PAGES_JOB = ("maintenance", "pages")

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
    return [job for job_id, job in load(name)["jobs"].items() if (name, job_id) != PAGES_JOB]


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


def test_only_our_three_workflows_exist() -> None:
    # a fourth workflow would not be held to the rules below
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


def test_no_workflow_runs_on_pr_content_with_privileges() -> None:
    dangerous = {"pull_request_target", "workflow_run", "issue_comment"}
    for name in NAMES:
        assert not dangerous & set(triggers(load(name))), name


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
        # deploys the page publish uploaded: Pages, and the OIDC token deploy-pages shows it
        "maintenance.pages": {"pages": "write", "id-token": "write"},
    }
    for name in NAMES:
        for job_id, job in load(name)["jobs"].items():
            wanted = expected.get(f"{name}.{job_id}", expected[name])
            assert job["permissions"] == wanted, (name, job_id)


def test_only_the_publishing_step_holds_a_token_that_can_write_contents() -> None:
    (job,) = [j for j in jobs(load("maintenance")) if j["permissions"].get("contents") == "write"]
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
    ("name", "group"), [("apply", "ssp-apply"), ("maintenance", "ssp-maintenance")]
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
    for job in host_jobs(name):
        assert job["if"] == "github.ref == 'refs/heads/main'", job["name"]


@pytest.mark.parametrize("name", SELF_HOSTED)
def test_privileged_workflows_use_no_caches_or_artifacts(name: str) -> None:
    # Nothing a privileged job reads comes from a cache or an artifact. The one artifact is the
    # status page the publish job uploads for Pages: written, never read back on the host.
    for job_id, job in load(name)["jobs"].items():
        actions = {str(s["uses"]).split("@")[0] for s in job["steps"] if "uses" in s}
        allowed = {
            ("maintenance", "publish"): {"actions/checkout", "actions/upload-pages-artifact"},
            PAGES_JOB: {"actions/deploy-pages"},
        }.get((name, job_id), {"actions/checkout"})
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


@pytest.mark.parametrize("name", SELF_HOSTED)
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
    text = (WORKFLOWS / "apply.yml").read_text(encoding="utf-8")
    assert text.count("secrets.") == 1


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

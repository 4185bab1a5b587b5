"""Run the workflow linters (zizmor, actionlint, SchemaStore's schema, pre-commit's own
checks) on `.github/` and require them to report nothing.

The tools come from the dev extras, so they are looked up next to the interpreter running
the tests; a missing tool fails the test instead of skipping it. A canary copy of the
workflows with known mistakes proves that the linters and our configs still catch them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"
WORKFLOW_FILES = sorted(WORKFLOWS.glob("*.yml"))
# sys.executable is the venv's python; the console scripts sit beside it (do not resolve the
# symlink: that would lead to the base interpreter's bin)
VENV_BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    found = shutil.which(name, path=str(VENV_BIN))
    assert found, f"{name} is not installed next to {sys.executable}; pip install -e '.[dev]'"
    return found


def run(argv: list[str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["NO_COLOR"] = "1"
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_four_workflows_are_there() -> None:
    assert [p.name for p in WORKFLOW_FILES] == [
        "apply.yml",
        "commands.yml",
        "maintenance.yml",
        "validate.yml",
    ]


@pytest.mark.parametrize(
    "persona",
    [[], ["--pedantic"], ["--persona", "auditor"]],
    ids=["regular", "pedantic", "auditor"],
)
def test_zizmor_reports_nothing(persona: list[str]) -> None:
    result = run([tool("zizmor"), "--offline", *persona, str(WORKFLOWS)])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "No findings to report" in result.stdout, output


def test_actionlint_reports_nothing_with_shellcheck_enabled() -> None:
    # name shellcheck explicitly: without it on PATH actionlint silently skips `run:` scripts
    result = run([tool("actionlint"), "-shellcheck", tool("shellcheck"), "-pyflakes", ""])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("workflow", WORKFLOW_FILES, ids=lambda p: p.name)
def test_workflow_matches_schemastore_schema(workflow: Path) -> None:
    result = run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(workflow)]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok -- validation done" in result.stdout


def test_pre_commit_config_and_hook_manifest_are_valid() -> None:
    pre_commit = tool("pre-commit")
    config = run([pre_commit, "validate-config", ".pre-commit-config.yaml"])
    assert config.returncode == 0, config.stdout + config.stderr
    manifest = run([pre_commit, "validate-manifest", ".pre-commit-hooks.yaml"])
    assert manifest.returncode == 0, manifest.stdout + manifest.stderr


@pytest.fixture
def broken_copy(tmp_path: Path) -> Path:
    """A git checkout holding our `.github/` (configs included) with three planted mistakes."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    shutil.copytree(REPO / ".github", tmp_path / ".github")
    flows = tmp_path / ".github" / "workflows"
    validate = flows / "validate.yml"
    text = validate.read_text(encoding="utf-8")
    planted = text.replace(
        "--format github", '--format github; echo "${{ github.event.pull_request.title }}"'
    )
    assert planted != text
    validate.write_text(planted, encoding="utf-8")
    apply = flows / "apply.yml"
    text = apply.read_text(encoding="utf-8")
    planted = re.sub(
        r"actions/checkout@[0-9a-f]{40} # v[0-9.]+", "actions/checkout@v5", text, count=1
    )
    planted = planted.replace("gpu-host]", "gpu-hots]", 1)
    assert planted.count("actions/checkout@v5") == 1
    assert "gpu-hots" in planted
    apply.write_text(planted, encoding="utf-8")
    return tmp_path


def test_linters_still_catch_planted_mistakes(broken_copy: Path) -> None:
    zizmor = run(
        [tool("zizmor"), "--offline", "--pedantic", str(broken_copy / ".github" / "workflows")],
        cwd=broken_copy,
    )
    assert zizmor.returncode != 0
    assert "template-injection" in zizmor.stdout
    assert "unpinned-uses" in zizmor.stdout

    actionlint = run([tool("actionlint"), "-shellcheck", tool("shellcheck")], cwd=broken_copy)
    assert actionlint.returncode != 0
    assert '"github.event.pull_request.title" is potentially untrusted' in actionlint.stdout
    assert 'label "gpu-hots" is unknown' in actionlint.stdout

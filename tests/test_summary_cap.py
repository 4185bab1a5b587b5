"""Step summaries stay under GitHub's 1 MiB per step (a bigger one is dropped whole): a huge
report is cut at a line, with a note saying so. validate's summary is capped by ssp itself;
apply.yml's and maintenance.yml's steps cut ssp's Markdown report in their own script, run
here as written in the workflow, with a stand-in `ssp` printing a 2 MB report.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import ROOT

from provisioner.reporting.validationreport import SUMMARY_LIMIT, capped

MIB = 1024 * 1024


def test_a_short_summary_is_left_alone() -> None:
    assert capped("## ok\n") == "## ok\n"


def test_a_huge_summary_is_cut_at_a_line_with_a_note() -> None:
    text = "".join(f"| `requests/alice/f{i}.yaml` | 1 | ünïcode problem |\n" for i in range(40_000))
    out = capped(text)
    assert len(out.encode("utf-8")) <= SUMMARY_LIMIT < MIB
    body, note = out.split("\n\n> **Cut here:**")
    assert text.startswith(body) and body.endswith("|\n")
    assert f"this summary is {len(text.encode())} bytes" in note


def step_script(workflow: str, command: str) -> str:
    doc = yaml.safe_load((ROOT / ".github" / "workflows" / workflow).read_text(encoding="utf-8"))
    steps = [s for job in doc["jobs"].values() for s in job["steps"]]
    (script,) = [s["run"] for s in steps if f'bin/ssp" {command}' in s.get("run", "")]
    return str(script)


@pytest.mark.parametrize(
    ("workflow", "command"), [("apply.yml", "apply"), ("maintenance.yml", "maintain")]
)
@pytest.mark.parametrize("size", [1000, 2_000_000])
def test_the_self_hosted_steps_cap_the_summary(
    tmp_path: Path, workflow: str, command: str, size: int
) -> None:
    venv = tmp_path / "temp" / "ssp-venv" / "bin"
    venv.mkdir(parents=True)
    fake = venv / "ssp"
    # a report of SIZE bytes in lines of 100 (with a 2-byte character), then exit 1
    fake.write_text(
        "#!/usr/bin/env python3\nimport sys\n"
        f"sys.stdout.write(('é' * 10 + 'x' * 88 + '\\n') * ({size} // 100))\nsys.exit(1)\n",
        encoding="utf-8",
    )
    fake.chmod(0o755)
    summary = tmp_path / "summary.md"
    done = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", step_script(workflow, command)],
        cwd=tmp_path,
        env={
            **os.environ,
            "RUNNER_TEMP": str(tmp_path / "temp"),
            "GITHUB_STEP_SUMMARY": str(summary),
        },
        capture_output=True,
        check=False,
    )
    assert done.returncode == 1  # ssp's status, after the summary is written
    assert len(done.stdout) >= size // 100 * 100  # the whole report is in the log
    text = summary.read_bytes()
    assert len(text) < MIB
    text.decode("utf-8")  # never half a character
    if size < MIB:
        assert b"Cut here" not in text
    else:
        assert b"> **Cut here:** the report is" in text

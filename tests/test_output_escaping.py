"""File names and values reach every output channel escaped (provisioner/reporting/escape.py):
the CI log, annotations, the job summary, PR comments and the terminal.

Before, a top-level file named like a workflow command was echoed as one by
`ssp validate --format github` (the runner would have run it), and a file name with a
backtick, `|` or CR broke out of its code span or split the summary's table rows.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import GitRepo, valid_request, validate
from workflowrun import parse_annotations

from provisioner.reporting.escape import code, command_property, log_line, md, one_line
from provisioner.reporting.render import render

ENV = {"SSP_NOW": "2026-11-28T12:00:00+00:00"}
ALICE = "requests/alice/alice-box.yaml"
# What the runner takes as a command: `::` or `##[` at the start of a line, after blanks.
COMMAND = re.compile(r"^\s*(::|##\[)")


def github_check(tmp_path: Path, files: dict[str, str]) -> tuple[int, str, str]:
    """`ssp validate --base main --format github` on a PR by alice adding FILES: the exit
    status, the log and the job summary."""
    repo = GitRepo.pull_request(tmp_path / "repo", {ALICE: valid_request()}, files)
    summary = tmp_path / "summary.md"
    result = validate(
        repo.root,
        "--base",
        "main",
        "--author",
        "alice",
        "--format",
        "github",
        env={**ENV, "GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert "Traceback" not in result.both
    return result.code, result.out, summary.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "name", ["::add-mask::hunter2", "  ::stop-commands::tok", "##[warning]fake", "::error::x"]
)
def test_a_file_named_like_a_workflow_command_is_never_echoed_as_one(
    tmp_path: Path, name: str
) -> None:
    code_, out, _ = github_check(tmp_path, {name: "x\n"})
    assert code_ == 1
    commands = [line for line in out.splitlines() if COMMAND.match(line)]
    # the only commands are ssp's own annotation, on the file, as the runner decodes it
    assert all(line.startswith("::error file=") for line in commands), commands
    (annotation,) = parse_annotations(out)
    assert annotation.file == name
    assert annotation.title == "authz.infra"
    # the human-readable line still names the file, escaped at its start
    assert any(name.strip()[1:] in line and "[authz.infra]" in line for line in out.splitlines())


NASTY = "requests/alice/a`b``<img src=x onerror=alert(1)>|[x](javascript:alert)\rc.yaml"


def table_cells(row: str) -> list[str]:
    """A GFM table row split on its unescaped pipes, as GitHub does."""
    return re.split(r"(?<!\\)\|", row.strip())[1:-1]


def test_file_names_with_backticks_pipes_and_cr_keep_the_summary_table_whole(
    tmp_path: Path,
) -> None:
    code_, out, summary = github_check(tmp_path, {NASTY: valid_request(name="alice-x")})
    assert code_ == 1
    assert "\r" not in summary
    rows = [line for line in summary.splitlines() if line.startswith("| ") and "a`b" in line]
    assert rows, summary
    for row in rows:
        cells = table_cells(row)
        assert len(cells) in (3, 4), row  # the errors table, or "what this PR would do"
        file_cell = cells[0] if len(cells) == 3 else cells[1]
        assert file_cell.strip() == code(NASTY)
    # the code span's fence is longer than any backtick run in the name: nothing ends it early
    assert code(NASTY).startswith("```") and code(NASTY).endswith("```")
    # the log line shows the CR as an escape, on one line
    assert any(re.search(r"\\rc\.yaml:\d+:\d+: error:", line) for line in out.splitlines())


def test_escape_functions_cover_each_channel() -> None:
    assert one_line("a\rb\nc\u202ed") == "a\\rb\\nc\\u202ed"
    assert log_line("::add-mask::x") == "\\x3a:add-mask::x"
    assert log_line("  ##[group]x") == "  \\x23#[group]x"
    assert log_line("requests/a::b") == "requests/a::b"  # only at the start of a line
    assert command_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"
    assert code("plain") == "`plain`"
    assert code("a|b") == "`a\\|b`"
    assert code("``x") == "``` ``x ```"
    assert md("<b>@bob|[x](y)") == "&lt;b&gt;@\u200bbob\\|\\[x\\]\\(y\\)"


def test_pr_comments_escape_through_the_same_filters() -> None:
    # the comment templates use the same `md`/`code` filters as the job summary
    text = render("validate_summary.md.j2", **summary_args(NASTY))
    row = next(line for line in text.splitlines() if line.startswith("| `"))
    assert len(table_cells(row)) == 3
    # the name's `<img …>` stays inside its code span (literal text there), nowhere else
    assert "<img" not in text.replace(code(NASTY), "")


def summary_args(path: str) -> dict[str, object]:
    from provisioner.values.problems import Position, Problem  # noqa: PLC0415

    problem = Problem(path, Position(1, 1), "path.layout", "bad <b>name</b> | here")
    return {
        "ok": False,
        "errors": [problem],
        "warnings": [],
        "notes": [],
        "changes": [],
        "members": [],
        "hosts": [],
        "renewals": [],
    }


# GitHub autolinks a bare `https://…` or `www.…` in Markdown with no punctuation to escape:
# before, member text reached job summaries and PR comments as a live link (issue 22, #11).
AUTOLINK = re.compile(r"(?i)(?:https?|ftp)://|www\.")


def test_bare_urls_in_member_text_never_become_links_in_the_job_summary(tmp_path: Path) -> None:
    request = valid_request(image='"https://evil.example/login"') + "www.evil.example: 1\n"
    code_, _log, summary = github_check(tmp_path, {ALICE: request})
    assert code_ == 1
    # both values are shown, each with a zero-width joiner where GitHub would start a link
    assert "https:\u200d//evil.example/login" in summary
    assert "www\u200d.evil.example" in summary
    assert not AUTOLINK.search(summary), summary


@pytest.mark.parametrize(
    "text",
    [
        "https://evil.example/x",
        "HTTP://evil.example",
        "ftp://f.example",
        "www.evil.example",
        "WWW.Evil.example",
        "_www.evil.example_",
        "(www.evil.example)",
    ],
)
def test_md_breaks_every_autolink_github_would_make(text: str) -> None:
    shown = md(f"see {text} now")
    assert not AUTOLINK.search(shown), ascii(shown)
    assert shown.replace("\u200d", "").replace("\\", "") == f"see {text} now"

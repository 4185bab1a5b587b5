"""GitHub failing at comment time: 500s, a primary rate limit (403), a secondary rate limit
(403 without Retry-After, 429 with it), and a comment created although GitHub answered 500.

The host work is done first and stands: every run exits 0 (the requests were applied), says
on stderr that the comment was not posted and that a re-run posts it, and the comment is
posted by the next run, once, then edited in place, never doubled. `ssp apply` comments
through the fake GitHub (held to GitHub's OpenAPI description) as apply.yml has it do.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from fakegithub import FAKE_REPO, FakeGitHub
from integration.helpers import LabRepo

from faults.helpers import managed, ssp_apply, ssp_env, status_of
from provisioner.reporting.mergecomment import MARKER

pytestmark = [pytest.mark.lxd, pytest.mark.slow]

MERGE = "9c1d" * 10


def test_github_failing_at_comment_time_never_undoes_host_work_nor_doubles_the_comment(
    lab: LabRepo,
    lxd_socket: str,
    suffix: str,
    fake_github: FakeGitHub,
    record: Callable[..., None],
) -> None:
    name = f"alice-g-{suffix}"
    request = lab.container(name, image="busybox")
    lab.write(request)
    pull = fake_github.add_pull(FAKE_REPO, author="alice", title="Add", files=[request[0]])
    fake_github.merge_pull(FAKE_REPO, pull.number, merge_commit_sha=MERGE, merged_by="lab-admin")
    env = ssp_env(
        lab,
        lxd_socket,
        GITHUB_TOKEN=fake_github.token,
        GITHUB_REPOSITORY=FAKE_REPO,
        GITHUB_SHA=MERGE,
        GITHUB_API_URL=fake_github.url,
    )
    comments = f"/repos/{FAKE_REPO}/issues/"
    seen = {}

    # 500 on every try (4, backing off 1, 2, 4 s): the container is made all the same.
    fake_github.fail_next(4, 500, path_prefix=comments)
    run = ssp_apply(lab, lxd_socket, env=env)
    assert run.code == 0, run.err
    assert run.line(name).startswith("created")
    assert status_of(lab.project, name) == "Running"
    seen[500] = warning(run.err, pull.number)
    assert "500 Server Error (after 4 attempts)" in seen[500]

    # A primary rate limit (403, X-RateLimit-Remaining 0, reset in 60 s): no waiting that long.
    fake_github.fail_next(1, 403, path_prefix=comments)
    run = ssp_apply(lab, lxd_socket, env=env)
    assert run.code == 0 and run.line(name).startswith("unchanged"), run.out + run.err
    seen[403] = warning(run.err, pull.number)
    assert "403 API rate limit exceeded" in seen[403]

    # A secondary rate limit as a 403 without Retry-After (GitHub: wait at least a minute).
    fake_github.fail_next(1, 403, path_prefix=comments, secondary=True)
    run = ssp_apply(lab, lxd_socket, env=env)
    assert run.code == 0, run.err
    seen["403 secondary"] = warning(run.err, pull.number)
    assert "403 You have exceeded a secondary rate limit" in seen["403 secondary"]
    assert fake_github.comments_on(FAKE_REPO, pull.number) == []

    # A secondary rate limit as a 429 asking for 1 s: waited for, then posted.
    fake_github.fail_next(1, 429, retry_after=1, path_prefix=comments, secondary=True)
    began = time.monotonic()
    run = ssp_apply(lab, lxd_socket, env=env)
    posted_s = time.monotonic() - began
    assert run.code == 0, run.err
    assert f"ssp apply: commented on #{pull.number}" in run.err, run.err
    (comment,) = fake_github.comments_on(FAKE_REPO, pull.number)
    assert comment.body.startswith(MARKER) and name in comment.body

    # The edit reaches GitHub but the answer is a 500: tried again, still one comment.
    fake_github.fail_next(1, 500, path_prefix=comments, method="PATCH", after_processing=True)
    run = ssp_apply(lab, lxd_socket, env=env)
    assert run.code == 0, run.err
    assert f"ssp apply: updated the comment on #{pull.number}" in run.err, run.err
    assert [c.id for c in fake_github.comments_on(FAKE_REPO, pull.number)] == [comment.id]
    assert [q.status for q in fake_github.requests_matching("POST", comments)] == [201]
    assert managed(lab.project) == [name]
    record(
        fault="GitHub 500 / 403 rate limit / secondary rate limit at comment time",
        seen=" | ".join(f"{k}: {v}" for k, v in seen.items()),
        exit=0,
        converge_s=round(posted_s, 1),
    )


def test_a_comment_created_although_github_answered_500_is_not_doubled(
    lab: LabRepo, lxd_socket: str, suffix: str, fake_github: FakeGitHub
) -> None:
    name = f"bob-g-{suffix}"
    request = lab.container(name, owner="bob", image="busybox")
    lab.write(request)
    pull = fake_github.add_pull(FAKE_REPO, author="bob", title="Add", files=[request[0]])
    fake_github.merge_pull(FAKE_REPO, pull.number, merge_commit_sha=MERGE, merged_by="lab-admin")
    env = ssp_env(
        lab,
        lxd_socket,
        GITHUB_TOKEN=fake_github.token,
        GITHUB_REPOSITORY=FAKE_REPO,
        GITHUB_SHA=MERGE,
        GITHUB_API_URL=fake_github.url,
    )
    comments = f"/repos/{FAKE_REPO}/issues/"
    fake_github.fail_next(1, 500, path_prefix=comments, method="POST", after_processing=True)
    run = ssp_apply(lab, lxd_socket, env=env)
    assert run.code == 0, run.err
    assert run.line(name).startswith("created")
    (comment,) = fake_github.comments_on(FAKE_REPO, pull.number)
    assert name in comment.body
    again = ssp_apply(lab, lxd_socket, env=env)
    assert again.code == 0, again.err
    assert [c.id for c in fake_github.comments_on(FAKE_REPO, pull.number)] == [comment.id]


def warning(err: str, number: int) -> str:
    """The one warning line about the comment on #number (no token in it)."""
    found = [line for line in err.splitlines() if "warning:" in line]
    assert len(found) == 1, err
    (line,) = found
    assert f"could not comment on #{number}" in line, line
    assert line.endswith(
        "re-run the apply for this commit to post it (the host is not affected)"
    ), line
    return line.removeprefix("ssp apply: warning: ")

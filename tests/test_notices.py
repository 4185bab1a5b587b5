"""Lease notices through the real GitHub adapter (PyGithub) against the fake GitHub: one
sticky issue per container mentioning its owner, one comment per notice, nothing doubled on
reruns, closed when renewed or gone, and a GitHub failure recorded, never raised."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest
from fakegithub import FAKE_REPO, FakeGitHub
from test_leases import LAST, container, policy

from provisioner.github.issues import IssuesClient
from provisioner.planning.leases import Lease, Stage, review
from provisioner.reporting import notices
from provisioner.values import state

pytest_plugins = ["fakegithub.fixtures"]


@pytest.fixture
def client(fake_github: FakeGitHub, github_sleeps: list[float]) -> IssuesClient:
    return IssuesClient(
        repository=FAKE_REPO,
        token=fake_github.token,
        api_url=fake_github.url,
        sleep=github_sleeps.append,
    )


def leases_on(day: date, **labels: str) -> tuple[Lease, ...]:
    return review([container(**labels)], policy(), day)


def notice_comments(gh: FakeGitHub) -> list[str]:
    return [
        c.body
        for issue in gh.issues_of(FAKE_REPO)
        for c in gh.comments_on(FAKE_REPO, issue.number)
        if "ssp:lease-notice" in c.body
    ]


@pytest.mark.slow  # a whole lease's notices through the fake GitHub (about 5 s)
def test_each_reminder_and_the_expiry_is_one_comment_on_one_issue(
    fake_github: FakeGitHub, client: IssuesClient
) -> None:
    p = policy()
    for left in range(16, -3, -1):  # daily runs, twice a day
        for _ in range(2):
            sent = notices.send(client, leases_on(LAST - timedelta(days=left)), p)
            assert all(not s.error for s in sent), sent

    (issue,) = fake_github.issues_of(FAKE_REPO)
    assert issue.state == "open"
    assert [lb.name for lb in issue.labels] == [notices.LABEL]
    assert "@alice" in (issue.body or "")
    bodies = notice_comments(fake_github)
    assert len(bodies) == 3
    assert all(b.count("@alice") == 1 for b in bodies)
    assert f"ends with **{LAST}**" in bodies[0] and f"ends with **{LAST}**" in bodies[1]
    assert f"ended with {LAST}" in bodies[2]
    # Each notice was posted once; reruns found it and changed nothing.
    posts = fake_github.requests_matching("POST", f"/repos/{FAKE_REPO}/issues/")
    assert len(posts) == 3
    assert len(fake_github.requests_matching("POST", f"/repos/{FAKE_REPO}/issues")) == 4


def test_a_renewal_closes_the_issue_and_a_later_end_reopens_it(
    fake_github: FakeGitHub, client: IssuesClient
) -> None:
    p = policy()
    notices.send(client, leases_on(LAST - timedelta(days=2)), p)
    later = LAST + timedelta(days=60)
    renewed = leases_on(LAST - timedelta(days=1), **{state.EXPIRES: later.isoformat()})
    assert renewed[0].stage is Stage.ACTIVE

    (closed,) = notices.send(client, renewed, p)
    assert closed.closed == "renewed"
    (issue,) = fake_github.issues_of(FAKE_REPO)
    assert issue.state == "closed" and "renewed" in (issue.body or "")
    assert notices.send(client, renewed, p) == []  # nothing more to say

    notices.send(client, leases_on(later, **{state.EXPIRES: later.isoformat()}), p)
    (again,) = fake_github.issues_of(FAKE_REPO)
    assert again.number == issue.number and again.state == "open"
    assert len(notice_comments(fake_github)) == 2


def test_a_vanished_container_closes_its_issue(
    fake_github: FakeGitHub, client: IssuesClient
) -> None:
    notices.send(client, leases_on(LAST + timedelta(days=1)), policy())
    (sent,) = notices.send(client, (), policy())
    assert sent.closed == "gone"
    (issue,) = fake_github.issues_of(FAKE_REPO)
    assert issue.state == "closed" and "no longer exists" in (issue.body or "")


def test_issues_others_wrote_are_never_taken_for_ours(
    fake_github: FakeGitHub, client: IssuesClient
) -> None:
    forged = fake_github.add_issue(
        FAKE_REPO,
        author="mallory",
        title="x",
        body=notices.issue_marker("alice-thesis"),
        labels=(notices.LABEL,),
    )
    notices.send(client, leases_on(LAST), policy())
    mine = [i for i in fake_github.issues_of(FAKE_REPO) if i.number != forged.number]
    assert len(mine) == 1
    assert fake_github.comments_on(FAKE_REPO, forged.number) == []
    assert forged.body == notices.issue_marker("alice-thesis")


def test_the_final_notice_names_the_deletion_day_and_the_export(
    fake_github: FakeGitHub, client: IssuesClient
) -> None:
    retired = LAST + timedelta(days=1)
    p = policy(
        retention_days=30,
        retention={"delete": True, "final_notice_days": 3, "export_dir": "/var/backups/ssp"},
    )
    day = retired + timedelta(days=27)
    (lease,) = review([container(retired=retired)], p, day)
    (sent,) = notices.send(client, [lease], p)
    assert sent.new and not sent.error
    (body,) = notice_comments(fake_github)
    assert "**last notice.**" in body
    assert f"on or after **{retired + timedelta(days=30)}**" in body
    assert "export" in body


def test_the_final_notice_for_a_given_back_container_says_to_add_its_file_back(
    fake_github: FakeGitHub, client: IssuesClient
) -> None:
    """Its request was removed (retired before its lease ended): there is no `expires:` left
    to change, so the notice says how to bring it back instead."""
    retired = LAST - timedelta(days=60)
    p = policy(retention_days=30, retention={"delete": True, "final_notice_days": 3})
    (lease,) = review([container(retired=retired)], p, retired + timedelta(days=27))
    assert lease.stage is Stage.FINAL_NOTICE and lease.given_back
    notices.send(client, [lease], p)
    (body,) = notice_comments(fake_github)
    assert "adds `requests/alice/alice-thesis.yaml` back" in body
    assert "changes `expires:`" not in body


def test_github_failing_is_recorded_per_container_and_never_raised(
    fake_github: FakeGitHub, client: IssuesClient
) -> None:
    fake_github.fail_next(4, 500, path_prefix=f"/repos/{FAKE_REPO}/issues")  # every try
    sent = notices.send(client, leases_on(LAST), policy())
    assert [(s.name, bool(s.error)) for s in sent] == [("alice-thesis", True)]
    assert "500" in sent[0].error
    # Once GitHub is back, the rerun delivers it: one issue, one notice.
    notices.send(client, leases_on(LAST), policy())
    assert len(fake_github.issues_of(FAKE_REPO)) == 1
    assert len(notice_comments(fake_github)) == 1


def test_a_lost_answer_to_a_create_does_not_make_a_second_issue(
    fake_github: FakeGitHub, client: IssuesClient
) -> None:
    # GitHub made the issue, but the answer was a 502: the retry finds it by its marker.
    fake_github.fail_next(
        1, 502, path_prefix=f"/repos/{FAKE_REPO}/issues", method="POST", after_processing=True
    )
    (sent,) = notices.send(client, leases_on(LAST), policy())
    assert not sent.error, sent
    assert len(fake_github.issues_of(FAKE_REPO)) == 1


def test_no_mention_for_a_login_that_is_not_one() -> None:
    lease = replace(leases_on(LAST)[0], owner="evil\n@everyone")
    text = notices.notice_text(lease, policy())
    assert "@everyone" not in text and "the owner" in text


def test_the_lease_issue_and_each_notice_say_where_the_status_page_is(
    fake_github: FakeGitHub, client: IssuesClient
) -> None:
    page = "https://lab.github.io/super-server/"
    p = policy()
    p = p.model_copy(update={"snapshot": p.snapshot.model_copy(update={"page_url": page})})
    notices.send(client, leases_on(LAST - timedelta(days=2)), p)
    line = f"The lab's status page: [{page}]({page})"
    (issue,) = fake_github.issues_of(FAKE_REPO)
    assert (issue.body or "").rstrip().endswith(line)
    (notice,) = notice_comments(fake_github)
    assert notice.rstrip().endswith(line)
    # The container gone: the closed issue keeps the page's line, last.
    notices.send(client, (), p)
    (closed,) = fake_github.issues_of(FAKE_REPO)
    assert closed.state == "closed"
    assert "no longer exists" in (closed.body or "")
    assert (closed.body or "").rstrip().endswith(line)
    # Without page_url in the policy, no such line.
    assert "status page" not in notices.issue_body(leases_on(LAST)[0], policy())

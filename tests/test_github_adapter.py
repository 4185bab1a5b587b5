"""The GitHub adapter against the fake GitHub: what it reads, what it writes, how it fails."""

from __future__ import annotations

import time
import traceback
from email.utils import formatdate

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fakegithub import FAKE_REPO, FakeGitHub

from provisioner.github.client import AppCredentials, GitHubClient, PullRef
from provisioner.github.failures import retry_after_seconds
from provisioner.values.errors import GithubError, UsageError

# fake_github, github_client, github_sleeps
pytest_plugins = ["fakegithub.fixtures"]

MARK = "<!-- ssp:apply -->"
COMMENTS = f"/repos/{FAKE_REPO}/issues/1/comments"


def client_for(gh: FakeGitHub, sleeps: list[float] | None = None, **kw: object) -> GitHubClient:
    record = sleeps if sleeps is not None else []
    args: dict[str, object] = {"token": gh.token, "api_url": gh.url, "sleep": record.append}
    args |= kw
    return GitHubClient(repository=FAKE_REPO, **args)  # type: ignore[arg-type]


def add_pull(gh: FakeGitHub) -> int:
    return gh.add_pull(FAKE_REPO, author="alice", title="Add alice-thesis").number


# ---- reading pull requests ----------------------------------------------------------------


def test_merged_pulls_for_commit_lists_only_the_merged_ones(
    fake_github: FakeGitHub, github_client: GitHubClient
) -> None:
    merged = fake_github.add_pull(FAKE_REPO, author="alice", title="Add alice-thesis")
    fake_github.merge_pull(FAKE_REPO, merged.number, merged_by="admin")
    still_open = fake_github.add_pull(FAKE_REPO, author="bob", title="Add bob-gpu")
    assert merged.merge_commit_sha is not None
    fake_github.link_commit(FAKE_REPO, merged.merge_commit_sha, still_open.number)

    found = github_client.merged_pulls_for_commit(merged.merge_commit_sha)

    assert found == [
        PullRef(
            number=merged.number,
            author="alice",
            title="Add alice-thesis",
            head_sha=merged.head_sha,
            merged=True,
            url=f"https://github.com/{FAKE_REPO}/pull/{merged.number}",
        )
    ]
    # One request: the list's items are used as they come, not fetched again one by one.
    assert [(q.method, q.path) for q in fake_github.requests] == [
        ("GET", f"/repos/{FAKE_REPO}/commits/{merged.merge_commit_sha}/pulls")
    ]


def test_a_direct_push_has_no_pull_requests(github_client: GitHubClient) -> None:
    assert github_client.merged_pulls_for_commit("f" * 40) == []


def test_pull_reads_author_head_and_merge_state(
    fake_github: FakeGitHub, github_client: GitHubClient
) -> None:
    pull = fake_github.add_pull(FAKE_REPO, author="carol", title="Remove carol-old")
    assert github_client.pull(pull.number).merged is False
    fake_github.merge_pull(FAKE_REPO, pull.number)

    ref = github_client.pull(pull.number)

    assert (ref.number, ref.author, ref.head_sha, ref.merged) == (
        pull.number,
        "carol",
        pull.head_sha,
        True,
    )


def test_pull_is_one_request(fake_github: FakeGitHub, github_client: GitHubClient) -> None:
    pull = fake_github.add_pull(FAKE_REPO, author="carol", title="t")
    github_client.pull(pull.number)
    assert [(q.method, q.path) for q in fake_github.requests] == [
        ("GET", f"/repos/{FAKE_REPO}/pulls/{pull.number}")
    ]


def test_a_missing_pull_request_is_a_github_error(github_client: GitHubClient) -> None:
    with pytest.raises(GithubError, match="404 Not Found") as caught:
        github_client.pull(404)
    assert "get pull request #404" in str(caught.value)


# ---- the sticky comment ---------------------------------------------------------------------


def test_upsert_creates_then_edits_one_comment(
    fake_github: FakeGitHub, github_client: GitHubClient
) -> None:
    number = add_pull(fake_github)

    first = github_client.upsert_comment(number, "Provisioning alice-thesis…", MARK)
    second = github_client.upsert_comment(number, "alice-thesis is ready: ssh -p 22001", MARK)

    comments = fake_github.comments_on(FAKE_REPO, number)
    assert len(comments) == 1
    assert comments[0].body == f"{MARK}\nalice-thesis is ready: ssh -p 22001"
    assert first.created and not second.created
    assert first.id == second.id == comments[0].id
    assert second.url == f"https://github.com/{FAKE_REPO}/pull/{number}#issuecomment-{first.id}"
    assert len(fake_github.requests_matching("POST")) == 1
    assert len(fake_github.requests_matching("PATCH")) == 1


def test_upsert_with_the_same_text_writes_nothing(
    fake_github: FakeGitHub, github_client: GitHubClient
) -> None:
    number = add_pull(fake_github)
    github_client.upsert_comment(number, "ready", MARK)
    writes_before = [q for q in fake_github.requests if q.method != "GET"]

    again = github_client.upsert_comment(number, "ready", MARK)

    assert not again.created
    assert [q for q in fake_github.requests if q.method != "GET"] == writes_before


def test_upsert_keeps_a_marker_the_body_already_has(
    fake_github: FakeGitHub, github_client: GitHubClient
) -> None:
    number = add_pull(fake_github)
    github_client.upsert_comment(number, f"## Applied\n{MARK}\nall good", MARK)
    assert fake_github.comments_on(FAKE_REPO, number)[0].body == f"## Applied\n{MARK}\nall good"


def test_upsert_leaves_other_peoples_comments_with_the_marker_alone(
    fake_github: FakeGitHub, github_client: GitHubClient
) -> None:
    number = add_pull(fake_github)
    quoted = fake_github.add_comment(FAKE_REPO, number, f"{MARK} spoofed", author="mallory")

    made = github_client.upsert_comment(number, "real status", MARK)

    assert made.created
    assert fake_github.comments_on(FAKE_REPO, number)[0].body == f"{MARK} spoofed"
    assert [c.id for c in fake_github.comments_on(FAKE_REPO, number)] == [quoted.id, made.id]


def test_upsert_finds_its_comment_on_the_second_page(
    fake_github: FakeGitHub, github_client: GitHubClient
) -> None:
    number = add_pull(fake_github)
    for i in range(149):
        fake_github.add_comment(FAKE_REPO, number, f"discussion {i}", author="alice")
    ours = fake_github.add_comment(FAKE_REPO, number, f"{MARK}\nold status")

    ref = github_client.upsert_comment(number, "new status", MARK)

    assert (ref.id, ref.created) == (ours.id, False)
    assert len(fake_github.comments_on(FAKE_REPO, number)) == 150
    pages = [q.query.get("page", ["1"]) for q in fake_github.requests_matching("GET", COMMENTS)]
    assert pages == [["1"], ["2"]]
    assert fake_github.comments_on(FAKE_REPO, number)[-1].body == f"{MARK}\nnew status"


def test_a_comment_github_refuses_as_too_long_is_an_error(
    fake_github: FakeGitHub, github_client: GitHubClient, github_sleeps: list[float]
) -> None:
    number = add_pull(fake_github)
    with pytest.raises(GithubError, match="422 Validation Failed"):
        github_client.upsert_comment(number, "x" * 70_000, MARK)
    assert github_sleeps == []  # a refusal is not retried


def test_the_marker_must_be_hidden(github_client: GitHubClient) -> None:
    with pytest.raises(ValueError, match="hidden HTML comment"):
        github_client.upsert_comment(1, "text", "ssp:apply")


# ---- retries ------------------------------------------------------------------------------


def test_two_server_errors_then_success(
    fake_github: FakeGitHub, github_client: GitHubClient, github_sleeps: list[float]
) -> None:
    number = add_pull(fake_github)
    fake_github.fail_next(2, status=500, path_prefix=COMMENTS)

    ref = github_client.upsert_comment(number, "ready", MARK)

    assert ref.created
    assert github_sleeps == [1.0, 2.0]
    assert [q.status for q in fake_github.requests_matching("GET", COMMENTS)] == [500, 500, 200]
    assert len(fake_github.comments_on(FAKE_REPO, number)) == 1


def test_server_errors_forever_give_up_after_max_attempts(
    fake_github: FakeGitHub, github_client: GitHubClient, github_sleeps: list[float]
) -> None:
    pull = fake_github.add_pull(FAKE_REPO, author="alice", title="t")
    fake_github.fail_next(1000, status=503, retry_after=3)

    with pytest.raises(GithubError, match=r"503 Service Unavailable \(after 4 attempts\)"):
        github_client.pull(pull.number)

    assert github_sleeps == [3.0, 3.0, 3.0]  # Retry-After honoured, between 4 attempts
    assert len(fake_github.requests) == 4


def test_a_retry_after_beyond_the_limit_gives_up_without_waiting(
    fake_github: FakeGitHub, github_client: GitHubClient, github_sleeps: list[float]
) -> None:
    pull = fake_github.add_pull(FAKE_REPO, author="alice", title="t")
    fake_github.fail_next(1, status=429, retry_after=120)

    with pytest.raises(GithubError, match=r"429 .*wait of 120 s, beyond the limit of 30 s"):
        github_client.pull(pull.number)

    assert github_sleeps == []
    assert len(fake_github.requests) == 1


def test_the_waits_of_one_call_add_up_to_at_most_max_wait_s(fake_github: FakeGitHub) -> None:
    pull = fake_github.add_pull(FAKE_REPO, author="alice", title="t")
    fake_github.fail_next(1000, status=500, retry_after=10)
    sleeps: list[float] = []

    with pytest.raises(GithubError, match=r"\(after 3 attempts\); retrying needs a wait of 10 s"):
        client_for(fake_github, sleeps, max_wait_s=25, max_attempts=10).pull(pull.number)

    assert sleeps == [10.0, 10.0]


def test_retry_after_as_an_http_date(fake_github: FakeGitHub) -> None:
    pull = fake_github.add_pull(FAKE_REPO, author="alice", title="t")
    now = 1_800_000_000.0
    sleeps: list[float] = []
    client = client_for(fake_github, sleeps, clock=lambda: now)
    fake_github.fail_next(1, status=502, retry_after=formatdate(now + 7, usegmt=True))

    assert client.pull(pull.number).number == pull.number
    assert sleeps == [7.0]


def test_a_primary_rate_limit_waits_for_the_reset(fake_github: FakeGitHub) -> None:
    pull = fake_github.add_pull(FAKE_REPO, author="alice", title="t")
    fake_github.fail_next(1, status=403)  # X-RateLimit-Remaining: 0, reset in 60 s
    sleeps: list[float] = []
    patient = client_for(fake_github, sleeps, max_wait_s=120)

    assert patient.pull(pull.number).number == pull.number
    assert len(sleeps) == 1
    assert 57 <= sleeps[0] <= 61

    fake_github.fail_next(1, status=403)
    with pytest.raises(GithubError, match="403 API rate limit exceeded"):
        client_for(fake_github, max_wait_s=30).pull(pull.number)


def test_a_create_that_reached_github_is_not_doubled(
    fake_github: FakeGitHub, github_client: GitHubClient, github_sleeps: list[float]
) -> None:
    number = add_pull(fake_github)
    # The comment is made, but the client sees a 500.
    fake_github.fail_next(1, status=500, path_prefix=COMMENTS, method="POST", after_processing=True)

    ref = github_client.upsert_comment(number, "ready", MARK)

    assert ref.created
    assert len(fake_github.comments_on(FAKE_REPO, number)) == 1
    assert len(fake_github.requests_matching("POST")) == 1
    assert github_sleeps == [1.0]


def test_a_failed_edit_is_retried(
    fake_github: FakeGitHub, github_client: GitHubClient, github_sleeps: list[float]
) -> None:
    number = add_pull(fake_github)
    github_client.upsert_comment(number, "provisioning", MARK)
    fake_github.fail_next(1, status=502, method="PATCH")

    github_client.upsert_comment(number, "ready", MARK)

    assert fake_github.comments_on(FAKE_REPO, number)[0].body == f"{MARK}\nready"
    assert [q.status for q in fake_github.requests_matching("PATCH")] == [502, 200]
    assert github_sleeps == [1.0]


def test_an_unreachable_github_gives_up_after_max_attempts(fake_github: FakeGitHub) -> None:
    sleeps: list[float] = []
    client = client_for(fake_github, sleeps, api_url="http://127.0.0.1:9", timeout_s=2)

    with pytest.raises(GithubError, match=r"cannot reach GitHub .*\(after 4 attempts\)"):
        client.pull(1)

    assert sleeps == [1.0, 2.0, 4.0]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("0", 0.0),
        ("120", 120.0),
        ("Fri, 15 Jan 2027 08:00:10 GMT", 10.0),
        ("Fri, 15 Jan 2027 07:59:00 GMT", 0.0),  # already past
        # an offset of -0000 is UTC too, whatever this machine's time zone (issue 22)
        ("Fri, 15 Jan 2027 08:00:10 -0000", 10.0),
        ("soon", None),
        (None, None),
    ],
)
def test_retry_after_values(
    header: str | None, expected: float | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = 1_800_000_000.0  # 2027-01-15T08:00:00Z
    monkeypatch.setenv("TZ", "Asia/Shanghai")  # a naive date would be read as 8 hours off
    time.tzset()
    try:
        assert retry_after_seconds(header, now) == expected
    finally:
        monkeypatch.undo()
        time.tzset()


# ---- credentials --------------------------------------------------------------------------


def test_bad_credentials_are_an_error_that_does_not_show_the_token(
    fake_github: FakeGitHub, github_sleeps: list[float]
) -> None:
    secret = "ghp_DoNotPrintMe0123456789abcdefghijkl"
    client = client_for(fake_github, github_sleeps, token=secret)

    with pytest.raises(GithubError, match="401 Bad credentials") as caught:
        client.upsert_comment(1, "x", MARK)

    whole = "".join(traceback.format_exception(caught.value))
    assert secret not in whole
    assert github_sleeps == []
    assert len(fake_github.requests) == 1


def test_the_client_needs_exactly_one_kind_of_credentials() -> None:
    with pytest.raises(UsageError):
        GitHubClient(repository=FAKE_REPO)
    with pytest.raises(UsageError, match="not a repository name"):
        GitHubClient(repository="no-slash", token="t")


def test_github_enterprise_base_url() -> None:
    with FakeGitHub(prefix="/api/v3") as gh:
        gh.add_repo(FAKE_REPO)
        number = add_pull(gh)
        client = client_for(gh)
        assert client.upsert_comment(number, "ready", MARK).created
        assert client.pull(number).number == number
        gh.assert_no_violations()


# ---- GitHub App installation tokens ---------------------------------------------------------


def rsa_pem_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def test_app_installation_token_flow(fake_github: FakeGitHub) -> None:
    private, public = rsa_pem_pair()
    fake_github.add_app(4242, public, slug="ssp-provisioner")
    fake_github.install_app(4242, FAKE_REPO, installation_id=77)
    number = add_pull(fake_github)
    client = GitHubClient(
        repository=FAKE_REPO,
        app=AppCredentials(app_id=4242, private_key_pem=private),
        api_url=fake_github.url,
        sleep=lambda s: None,
    )

    first = client.upsert_comment(number, "provisioning", MARK)
    second = client.upsert_comment(number, "ready", MARK)

    (comment,) = fake_github.comments_on(FAKE_REPO, number)
    assert comment.author.login == "ssp-provisioner[bot]"
    assert (first.created, second.created, comment.id) == (True, False, first.id)
    assert [(q.method, q.path, q.auth) for q in fake_github.requests[:2]] == [
        ("GET", f"/repos/{FAKE_REPO}/installation", "bearer"),
        ("POST", "/app/installations/77/access_tokens", "bearer"),
    ]
    assert {q.auth for q in fake_github.requests[2:]} == {"token"}
    # The installation token is fetched once and reused; GET /user is never tried for an App.
    assert len(fake_github.requests_matching("POST", "/app/")) == 1
    assert fake_github.requests_matching("GET", "/user") == []


def test_an_actions_token_finds_its_comment_without_get_user(fake_github: FakeGitHub) -> None:
    # Actions' GITHUB_TOKEN is an installation token: GET /user answers 403, and the comment
    # author is a "[bot]" account.
    fake_github.add_app(15368, rsa_pem_pair()[1], slug="github-actions")
    fake_github.install_app(15368, FAKE_REPO, installation_id=99)
    token = fake_github.installation_token(15368, 99)
    number = add_pull(fake_github)
    client = client_for(fake_github, token=token)

    first = client.upsert_comment(number, "provisioning", MARK)
    second = client.upsert_comment(number, "ready", MARK)

    (comment,) = fake_github.comments_on(FAKE_REPO, number)
    assert (comment.author.login, comment.body) == ("github-actions[bot]", f"{MARK}\nready")
    assert (first.created, second.created) == (True, False)
    assert [q.status for q in fake_github.requests_matching("GET", "/user")] == [403]


def test_app_with_a_known_installation_skips_the_lookup(fake_github: FakeGitHub) -> None:
    private, public = rsa_pem_pair()
    fake_github.add_app(4242, public)
    fake_github.install_app(4242, FAKE_REPO, installation_id=77)
    pull = fake_github.add_pull(FAKE_REPO, author="alice", title="t")
    client = GitHubClient(
        repository=FAKE_REPO,
        app=AppCredentials(app_id=4242, private_key_pem=private, installation_id=77),
        api_url=fake_github.url,
    )

    assert client.pull(pull.number).author == "alice"
    assert fake_github.requests_matching("GET", f"/repos/{FAKE_REPO}/installation") == []


def test_app_signed_with_the_wrong_key_is_refused(fake_github: FakeGitHub) -> None:
    _, public = rsa_pem_pair()
    other_private, _ = rsa_pem_pair()
    fake_github.add_app(4242, public)
    fake_github.install_app(4242, FAKE_REPO, installation_id=77)
    client = GitHubClient(
        repository=FAKE_REPO,
        app=AppCredentials(app_id=4242, private_key_pem=other_private),
        api_url=fake_github.url,
    )

    with pytest.raises(GithubError, match="401 A JSON web token could not be decoded"):
        client.pull(1)


def test_an_unusable_app_key_is_refused_before_any_request() -> None:
    with pytest.raises(UsageError, match="private key is not usable"):
        GitHubClient(
            repository=FAKE_REPO,
            app=AppCredentials(app_id=1, private_key_pem="-----BEGIN nothing-----"),
        )

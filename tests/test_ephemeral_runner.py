"""runner/ephemeral-runner.sh, the loop that registers an ephemeral runner again before every
job, and runner/registration-token.sh, the registration helper that alone holds the credential
which creates registration tokens (issue 22, finding 10).

Both run for real against the fake GitHub (its registration-token endpoint, held to GitHub's
OpenAPI description). The helper runs as systemd runs it from ssp-runner-token.socket
(Accept=yes): once per connection to a Unix socket, the connection its standard input and
output; a small acceptor in the test stands in for systemd. The runner's `config.sh` and
`run.sh` are stand-ins: tiny scripts that record their arguments, their environment, who they
ran as, every command line on the machine while they ran, and what the runner's user can
reach (the credential file, the helper's socket), then exit (or, for the stop test, wait for
SIGTERM). As root the loop drops to `nobody` exactly as on the GPU host; as anyone else it runs
them as that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fakegithub import FAKE_REPO, FakeGitHub

ROOT = Path(__file__).resolve().parents[1]
LOOP = ROOT / "runner" / "ephemeral-runner.sh"
HELPER = ROOT / "runner" / "registration-token.sh"
BASH = shutil.which("bash") or "/bin/bash"
URL = f"https://github.com/{FAKE_REPO}"
TOKEN_PATH = f"/repos/{FAKE_REPO}/actions/runners/registration-token"
SERVICE_SECRET = "service-environment-secret-0042"  # must not reach config.sh or the job

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="the loop calls curl")

# What the runner's user can reach: the credential file, and a token from the helper's socket.
REACH = """
if cat @PAT@ >>"$rec/reached" 2>/dev/null; then echo "read the credential" >>"$rec/reached"; fi
if curl -s --max-time 5 --unix-socket @SOCKET@ http://localhost/ >>"$rec/reached" 2>/dev/null
then echo "asked the helper" >>"$rec/reached"; fi
"""

CONFIG_SH = (
    """#!/bin/bash
set -eu
rec=@REC@
[ ! -e .runner ] || echo "stale registration left" >>"$rec/problems"
printf '%s\\n' "$*" >>"$rec/config.args"
printf '%s\\n' "${ACTIONS_RUNNER_INPUT_TOKEN:-}" >>"$rec/config.tokens"
id -u >>"$rec/config.uid"
for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' <"$f" 2>/dev/null || true; echo; done >>"$rec/ps.txt"
touch .runner
"""
    + REACH
)

RUN_SH = (
    """#!/bin/bash
set -eu
rec=@REC@
[ -e .runner ] || echo "run.sh without a registration" >>"$rec/problems"
id -u >>"$rec/run.uid"
{ env; echo --; } >>"$rec/run.env"
"""
    + REACH
)

WAITING_RUN_SH = """#!/bin/bash
rec=@REC@
trap 'echo TERM >>"$rec/run.signals"; kill "$nap"; exit 0' TERM
sleep 60 </dev/null >/dev/null 2>&1 &
nap=$!
touch "$rec/run.started"
wait
"""


class Acceptor:
    """systemd's ssp-runner-token.socket with Accept=yes: one helper per connection, the
    connection its standard input and output, its standard error the journal."""

    def __init__(self, path: Path, pat_file: Path, gh: FakeGitHub) -> None:
        self.path, self.pat_file, self.gh = path, pat_file, gh
        self.journal: list[str] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        path.chmod(0o600)  # SocketMode=0600, SocketUser=root
        self.server.listen(4)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                done = subprocess.run(
                    [BASH, str(HELPER), "--url", URL, "--api-url", self.gh.url,
                     "--pat-file", str(self.pat_file)],
                    stdin=conn.fileno(), stdout=conn.fileno(), stderr=subprocess.PIPE,
                    env={"PATH": os.environ["PATH"], "LANG": "C.UTF-8"},
                    text=True, check=False, timeout=60,
                )  # fmt: skip
                self.journal.append(done.stderr)

    def close(self) -> None:
        self.server.close()


@dataclass
class Host:
    """A stand-in runner folder, the helper's credential file and socket, and where the
    stand-ins record."""

    runner: Path
    rec: Path
    pat_file: Path
    socket: Path
    user: str
    acceptors: list[Acceptor] = field(default_factory=list)

    def stand_ins(self, run_sh: str = RUN_SH) -> None:
        places = {"@REC@": self.rec, "@PAT@": self.pat_file, "@SOCKET@": self.socket}
        for name, template in (("config.sh", CONFIG_SH), ("run.sh", run_sh)):
            path = self.runner / name
            text = template
            for mark, value in places.items():
                text = text.replace(mark, str(value))
            path.write_text(text, encoding="utf-8")
            path.chmod(0o755)

    def read(self, name: str) -> str:
        path = self.rec / name
        return path.read_text(encoding="utf-8") if path.exists() else ""

    def helper(self, gh: FakeGitHub) -> Acceptor:
        acceptor = Acceptor(self.socket, self.pat_file, gh)
        self.acceptors.append(acceptor)
        return acceptor

    def args(self, gh: FakeGitHub, *extra: str) -> list[str]:
        return [
            BASH,
            str(LOOP),
            *("--url", URL, "--token-socket", str(self.socket)),
            *("--dir", str(self.runner), "--user", self.user, "--name", "gpu-1-ssp"),
            *extra,
        ]


def loop_env() -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "SSP_SERVICE_SECRET": SERVICE_SECRET}


@pytest.fixture
def host() -> Iterator[Host]:
    # Not under pytest's tmp_path: its parents are private to root, and as root the stand-ins
    # run as nobody, who must reach them.
    base = Path(tempfile.mkdtemp(prefix="ssp-ephemeral-"))
    made = None
    try:
        base.chmod(0o755)
        runner, rec, secret = base / "runner", base / "rec", base / "etc-ssp-runner"
        runner.mkdir()
        rec.mkdir()
        rec.chmod(0o777)
        secret.mkdir(mode=0o700)  # /etc/ssp-runner: root's
        user = "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        shutil.chown(runner, user)
        (runner / ".runner").write_text("{}", encoding="utf-8")  # an earlier registration
        pat_file = secret / "github-pat"
        pat_file.write_text("\n", encoding="utf-8")
        pat_file.chmod(0o600)
        made = Host(runner, rec, pat_file, base / "ssp-runner-token.sock", user)
        yield made
    finally:
        for acceptor in made.acceptors if made else ():
            acceptor.close()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def gh(fake_github: FakeGitHub) -> FakeGitHub:
    return fake_github  # with FAKE_REPO; fails the test on any contract violation


def give_credential(host: Host, gh: FakeGitHub) -> Acceptor:
    """The credential in the helper's file, and the helper listening."""
    host.pat_file.write_text(gh.token + "\n", encoding="utf-8")
    return host.helper(gh)


def run_loop(host: Host, gh: FakeGitHub, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        host.args(gh, *extra),
        env=loop_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_each_round_fetches_a_new_token_and_only_config_sh_sees_it(
    host: Host, gh: FakeGitHub
) -> None:
    give_credential(host, gh)
    host.stand_ins()
    done = run_loop(host, gh, "--rounds", "2")
    assert done.returncode == 0, done.stderr
    issued = gh.settings_of(FAKE_REPO).registration_tokens
    assert len(issued) == 2 and issued[0] != issued[1]
    posts = gh.requests_matching("POST", TOKEN_PATH)
    assert [(q.status, q.auth) for q in posts] == [(201, "bearer"), (201, "bearer")]
    # config.sh got each round's token in its environment, and registered for one job
    assert host.read("config.tokens").split() == issued
    for line in host.read("config.args").splitlines():
        assert line.split() == [
            *("--unattended", "--ephemeral", "--replace", "--url", URL),
            *("--name", "gpu-1-ssp", "--labels", "gpu-host", "--work", "_work"),
        ]
    assert host.read("problems") == ""  # the old registration was forgotten every round
    # ... as the runner's user, in both rounds
    uid = str(pwd.getpwnam(host.user).pw_uid)
    assert host.read("config.uid").split() == [uid, uid]
    assert host.read("run.uid").split() == [uid, uid]
    # no command line on the machine showed a secret while config.sh ran
    secrets = [gh.token, *issued]
    ps = host.read("ps.txt")
    assert "config.sh --unattended" in ps  # the snapshot did see the processes
    assert not [s for s in secrets if s in ps]
    # the job's environment holds neither secret, nor what the service was given
    job_env = host.read("run.env")
    assert "RUNNER_MANUALLY_TRAP_SIG=1" in job_env
    assert not [s for s in [*secrets, SERVICE_SECRET] if s in job_env]
    assert "ACTIONS_RUNNER_INPUT_TOKEN" not in job_env
    # and the journal does not show them either
    assert not [s for s in secrets if s in done.stdout + done.stderr]
    assert "2 round(s) done" in done.stderr


@pytest.mark.slow  # waits out the real back-off between token requests (about 5 s)
def test_a_refused_or_failed_token_request_is_retried_with_a_bounded_delay(
    host: Host, gh: FakeGitHub
) -> None:
    give_credential(host, gh)
    host.stand_ins()
    gh.fail_next(1, 503, path_prefix=TOKEN_PATH)
    gh.fail_next(1, 401, path_prefix=TOKEN_PATH, message="Bad credentials")
    gh.fail_next(1, 500, path_prefix=TOKEN_PATH)
    done = run_loop(host, gh, "--rounds", "1", "--retry-delay", "1", "--max-retry-delay", "2")
    assert done.returncode == 0, done.stderr
    statuses = [q.status for q in gh.requests_matching("POST", TOKEN_PATH)]
    assert statuses == [503, 401, 500, 201]
    log = done.stderr
    # the helper's reason reaches the runner's journal
    assert "the registration helper has no token: GitHub answered 503" in log
    assert "refused the credential" in log and "401" in log and "Bad credentials" in log
    assert "GitHub answered 500" in log
    waits = [
        line.rsplit("trying again in ", 1)[1].split()[0]
        for line in log.splitlines()
        if "trying again in" in line
    ]
    assert waits == ["1s", "2s", "2s"]  # doubling, bounded by --max-retry-delay
    # the round that finally got a token registered with it, once
    assert host.read("config.tokens").split() == gh.settings_of(FAKE_REPO).registration_tokens


def test_a_credential_others_can_read_is_not_used(host: Host, gh: FakeGitHub) -> None:
    give_credential(host, gh)
    host.pat_file.chmod(0o644)
    host.stand_ins()
    loop = subprocess.Popen(
        host.args(gh, "--retry-delay", "30"),
        env=loop_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    assert loop.stderr is not None
    said = loop.stderr.readline() + loop.stderr.readline()
    loop.send_signal(signal.SIGTERM)
    try:
        _, rest = loop.communicate(timeout=10)  # it stops during its 30 s back-off, at once
    finally:
        if loop.poll() is None:
            loop.kill()
            loop.communicate()
    assert "readable by nobody else" in said and "chmod 600" in said
    assert loop.returncode == 0, rest
    assert gh.requests_matching("POST", TOKEN_PATH) == []


def test_sigterm_stops_the_runner_and_then_the_loop(host: Host, gh: FakeGitHub) -> None:
    give_credential(host, gh)
    host.stand_ins(WAITING_RUN_SH)
    loop = subprocess.Popen(
        host.args(gh), env=loop_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while not (host.rec / "run.started").exists():
            assert loop.poll() is None, loop.communicate()
            assert time.monotonic() < deadline, "run.sh never started"
            time.sleep(0.05)
        loop.send_signal(signal.SIGTERM)
        _, err = loop.communicate(timeout=20)
    finally:
        if loop.poll() is None:
            loop.kill()
    assert loop.returncode == 0, err
    assert host.read("run.signals").split() == ["TERM"]  # run.sh was told, and stopped
    assert err.rstrip().endswith("stopped")
    assert len(gh.requests_matching("POST", TOKEN_PATH)) == 1  # no new round after the stop


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--token-socket", "/x"), "--url must be https://HOST/OWNER/REPO"),
        (("--url", "https://github.com/lab"), "--url must be https://HOST/OWNER/REPO"),
        (("--url", URL), "--token-socket is required"),
        (("--url", URL, "--token-socket", "x.sock"), "--token-socket must be an absolute path"),
        (("--url", URL, "--token-socket", "/x", "--retry-delay", "soon"), "not a whole number"),
        (("--url", URL, "--token-socket", "/x", "--bogus"), "unknown argument: --bogus"),
        # the credential is the helper's business: the loop refuses to be given it
        (("--url", URL, "--pat-file", "/x"), "--pat-file belongs to the registration helper"),
    ],
)
def test_bad_arguments_are_a_usage_error(args: tuple[str, ...], says: str) -> None:
    done = subprocess.run(
        [BASH, str(LOOP), *args], capture_output=True, text=True, check=False, timeout=30
    )
    assert done.returncode == 2
    assert done.stderr.startswith("usage: ephemeral-runner.sh --url")
    assert says in done.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--url", "https://github.com/lab", "--pat-file", "/x"), "--url must be"),
        (("--url", URL), "--pat-file is required"),
        (("--url", URL, "--pat-file", "/x", "--api-url", "http://example.com"), "--api-url must"),
    ],
)
def test_the_helpers_bad_arguments_are_a_usage_error(args: tuple[str, ...], says: str) -> None:
    done = subprocess.run(
        [BASH, str(HELPER), *args], capture_output=True, text=True, check=False, timeout=30
    )
    assert done.returncode == 2
    assert done.stderr.startswith("usage: registration-token.sh --url")
    assert says in done.stderr


def ask(path: Path) -> str:
    """One request to the helper's socket, as the loop makes it; the whole answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(30)
        conn.connect(str(path))
        conn.sendall(b"GET /registration-token HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = b""
        while chunk := conn.recv(4096):
            answer += chunk
    return answer.decode("utf-8")


def test_the_helper_answers_each_connection_with_a_registration_token_and_nothing_else(
    host: Host, gh: FakeGitHub
) -> None:
    acceptor = give_credential(host, gh)
    first, second = ask(host.socket), ask(host.socket)
    issued = gh.settings_of(FAKE_REPO).registration_tokens
    assert len(issued) == 2
    for answer, token in zip((first, second), issued, strict=True):
        head, _, body = answer.partition("\r\n\r\n")
        assert head.startswith("HTTP/1.0 200 OK")
        assert body == token + "\n"  # the token, and not the credential
        assert gh.token not in answer
    # the helper's journal says what it did, never with a secret
    journal = "".join(acceptor.journal)
    assert "handed out a registration token" in journal
    assert not [x for x in [gh.token, *issued] if x in journal]
    host.pat_file.chmod(0o640)
    refused = ask(host.socket)
    assert refused.startswith("HTTP/1.0 503") and "readable by nobody else" in refused
    assert len(gh.settings_of(FAKE_REPO).registration_tokens) == 2  # GitHub was not asked


@pytest.mark.skipif(os.geteuid() != 0, reason="the runner's user and a private mount need root")
def test_the_runner_and_its_jobs_never_reach_the_credential_only_a_token(
    host: Host, gh: FakeGitHub
) -> None:
    """Issue 22, finding 10: the loop runs, as on the GPU host, with the credential's folder
    hidden from it (ssp-runner.service's InaccessiblePaths=, here a private mount), and still
    registers before every job: only the helper reads the credential. The runner's user
    (config.sh, and the job) can neither read the file nor ask the helper's socket, and the
    credential is in no environment, command line, file or log the runner's side has."""
    give_credential(host, gh)
    host.stand_ins()
    hidden = host.pat_file.parent
    script = 'mount -t tmpfs -o mode=000 none "$1" && shift && exec "$@"'
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(hidden),
         *host.args(gh, "--rounds", "2")],
        env=loop_env(), capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    issued = gh.settings_of(FAKE_REPO).registration_tokens
    assert len(issued) == 2 and host.read("config.tokens").split() == issued
    assert host.read("config.uid").split() == [str(pwd.getpwnam(host.user).pw_uid)] * 2
    # what the runner's user reached: nothing (no credential read, no answer from the socket)
    assert host.read("reached") == ""
    # the credential is nowhere on the runner's side: environment, command lines, its files
    on_runner_side = [host.read("run.env"), host.read("ps.txt"), done.stdout + done.stderr]
    on_runner_side += [p.read_text("utf-8", "replace") for p in host.runner.rglob("*")
                       if p.is_file()]  # fmt: skip
    assert not [text for text in on_runner_side if gh.token in text]
    # and no registration token reached the job
    assert not [t for t in issued if t in host.read("run.env")]

"""runner/ephemeral-runner.sh: the loop that registers an ephemeral runner again before every job.

It runs for real against the fake GitHub (its registration-token endpoint, held to GitHub's
OpenAPI description) with stand-ins for the runner's `config.sh` and `run.sh`: tiny scripts
that record their arguments, their environment, who they ran as and every command line on
the machine while they ran, then exit (or, for the stop test, wait for SIGTERM). As root the
loop drops to `nobody` exactly as on the GPU host; as anyone else it runs them as that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fakegithub import FAKE_REPO, FakeGitHub

ROOT = Path(__file__).resolve().parents[1]
LOOP = ROOT / "runner" / "ephemeral-runner.sh"
BASH = shutil.which("bash") or "/bin/bash"
URL = f"https://github.com/{FAKE_REPO}"
TOKEN_PATH = f"/repos/{FAKE_REPO}/actions/runners/registration-token"
SERVICE_SECRET = "service-environment-secret-0042"  # must not reach config.sh or the job

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="the loop calls curl")

CONFIG_SH = """#!/bin/bash
set -eu
rec=@REC@
[ ! -e .runner ] || echo "stale registration left" >>"$rec/problems"
printf '%s\\n' "$*" >>"$rec/config.args"
printf '%s\\n' "${ACTIONS_RUNNER_INPUT_TOKEN:-}" >>"$rec/config.tokens"
id -u >>"$rec/config.uid"
for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' <"$f" 2>/dev/null || true; echo; done >>"$rec/ps.txt"
touch .runner
"""

RUN_SH = """#!/bin/bash
set -eu
rec=@REC@
[ -e .runner ] || echo "run.sh without a registration" >>"$rec/problems"
id -u >>"$rec/run.uid"
{ env; echo --; } >>"$rec/run.env"
"""

WAITING_RUN_SH = """#!/bin/bash
rec=@REC@
trap 'echo TERM >>"$rec/run.signals"; kill "$nap"; exit 0' TERM
sleep 60 </dev/null >/dev/null 2>&1 &
nap=$!
touch "$rec/run.started"
wait
"""


@dataclass
class Host:
    """A stand-in runner folder, the loop's credential file and where the stand-ins record."""

    runner: Path
    rec: Path
    pat_file: Path
    user: str

    def stand_ins(self, run_sh: str = RUN_SH) -> None:
        for name, text in (("config.sh", CONFIG_SH), ("run.sh", run_sh)):
            path = self.runner / name
            path.write_text(text.replace("@REC@", str(self.rec)), encoding="utf-8")
            path.chmod(0o755)

    def read(self, name: str) -> str:
        path = self.rec / name
        return path.read_text(encoding="utf-8") if path.exists() else ""

    def args(self, gh: FakeGitHub, *extra: str) -> list[str]:
        return [
            BASH,
            str(LOOP),
            *("--url", URL, "--api-url", gh.url, "--pat-file", str(self.pat_file)),
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
    try:
        base.chmod(0o755)
        runner, rec = base / "runner", base / "rec"
        runner.mkdir()
        rec.mkdir()
        rec.chmod(0o777)
        user = "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        shutil.chown(runner, user)
        (runner / ".runner").write_text("{}", encoding="utf-8")  # an earlier registration
        pat_file = base / "github-pat"
        pat_file.write_text("\n", encoding="utf-8")
        pat_file.chmod(0o600)
        yield Host(runner, rec, pat_file, user)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def gh(fake_github: FakeGitHub) -> FakeGitHub:
    return fake_github  # with FAKE_REPO; fails the test on any contract violation


def give_credential(host: Host, gh: FakeGitHub) -> None:
    host.pat_file.write_text(gh.token + "\n", encoding="utf-8")


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
    assert "GitHub answered 503" in log
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
        (("--pat-file", "/x"), "--url must be https://HOST/OWNER/REPO"),
        (("--url", "https://github.com/lab"), "--url must be https://HOST/OWNER/REPO"),
        (("--url", URL), "--pat-file is required"),
        (("--url", URL, "--pat-file", "/x", "--api-url", "http://example.com"), "--api-url must"),
        (("--url", URL, "--pat-file", "/x", "--retry-delay", "soon"), "not a whole number"),
        (("--url", URL, "--pat-file", "/x", "--bogus"), "unknown argument: --bogus"),
    ],
)
def test_bad_arguments_are_a_usage_error(args: tuple[str, ...], says: str) -> None:
    done = subprocess.run(
        [BASH, str(LOOP), *args], capture_output=True, text=True, check=False, timeout=30
    )
    assert done.returncode == 2
    assert done.stderr.startswith("usage: ephemeral-runner.sh --url")
    assert says in done.stderr

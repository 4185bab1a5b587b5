"""A GPU host installed from zero, as the admin guide's "from zero" chapter (section 1a) says.

A Debian 12 system container with systemd as init (the `ssp-debian` image of
runner/dev-lxd.sh, booted with LXD nesting in the test's throwaway project) plays the host,
and the chapter's shell blocks run in it as written, each in a new root shell: Debian's
packages (Python, git, curl, LXD), `lxd init`, ssp cloned and installed from the hashed lock,
the base container and its snapshot, `ssp host init`, the GPU boot unit, the sampler's timer,
the runner's install with its registration helper, and the final check. Then the test looks at
what an admin would: every unit enabled and started, the GPU unit skipped with its reason (no
GPU here), one sampler pass succeeding, the runner registered through the helper and waiting
for a job as `ssp-runner` (reaching LXD, not the credential), `ssp doctor` healthy. Last, the
host reboots (section 6's power cut, beyond the chapter): the GPU unit is skipped again at
boot and the runner's units come up and register anew by themselves.

Replaced in the blocks, and visible there as placeholders (tests/guidechapter.py):
`OWNER/REPO` by the fake GitHub's repository, `<hex>` by the stand-in runner's SHA-256,
`https://api.github.com` by the fake GitHub's address inside the container, the pasted token
by the fake's, `images:debian/12` by the `ssp-busybox` test image (the container cannot reach
images.linuxcontainers.org).

What stands in, because this machine cannot reach it, and how:
- GitHub: the fake GitHub (tests/fakegithub, held to GitHub's published contract) on this
  machine's 127.0.0.1, reached from the container's own 127.0.0.1 through an LXD proxy device
  (plain http only to localhost is what the helper accepts).
- The repository: the working tree, committed into a bundle that `git clone
  https://github.com/lab/super-server` reaches through git's `url.<base>.insteadOf`.
- PyPI: the container's TLS does not trust this machine's egress proxy, so the wheels of
  requirements.lock are downloaded here (`pip download`, cached by the lock's hash) and the
  blocks run with PIP_NO_INDEX=1 and PIP_FIND_LINKS, the guide's own way for a host without
  PyPI.
- The GitHub Actions runner (not downloadable here): a tarball with `config.sh` and `run.sh`
  stand-ins, what runner/install-runner.sh and runner/ephemeral-runner.sh need of it. They
  record what the real ones are given (arguments, token, user) and what a job would meet,
  then run.sh waits, as a runner waits for a job.

Two things this machine needs for LXD inside a container, done before the chapter and not in
it, because a real Debian 12 host needs neither: the container holds 10,000,001 IDs and
Debian's lxd package delegates root 100000:10000001 (beyond them), so /etc/subuid and
/etc/subgid are written with a range that fits; and this kernel mounts cpu and cpuacct as
separate cgroup v1 hierarchies, which LXC shows the container as links to a `cpu,cpuacct`
that is never mounted, so a unit of the test's (ssp-test-cgroups.service) mounts the two
where the links were, at every boot before LXD starts.

Apt reaches Debian's mirror over plain http from the container (the bridge has NAT).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from fakegithub import FAKE_REPO, FakeGitHub
from guidechapter import GUIDES, PLACEHOLDERS, TOKEN_BLOCK, shell_blocks

pytestmark = [pytest.mark.lxd, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
RUNNER_TARBALL = "/root/actions-runner-linux-x64-2.329.0.tar.gz"
BASE_ALIAS = "ssp-base-image"
ENV = {
    "DEBIAN_FRONTEND": "noninteractive",
    "PIP_NO_INDEX": "1",
    "PIP_FIND_LINKS": "/root/wheels",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
}
SUBIDS = "root:100000:1000000\n_lxd:100000:1000000\n"

CONFIG_SH = """#!/bin/bash
# Stand-in for the GitHub Actions runner's config.sh: records what the real one is given.
set -eu
{
  printf 'args: %s\\n' "$*"
  printf 'token: %s\\n' "${ACTIONS_RUNNER_INPUT_TOKEN:-}"
  printf 'user: %s\\n' "$(id -un)"
} >standin-config.log
touch .runner
"""

RUN_SH = """#!/bin/bash
# Stand-in for the runner's run.sh: what a job would meet, then a wait for a job.
{
  printf 'user: %s\\n' "$(id -un)"
  if cat /etc/ssp-runner/github-pat >/dev/null 2>&1; then
    echo 'credential: readable'
  else
    echo 'credential: unreadable'
  fi
  if lxc query /1.0 >/dev/null 2>&1; then echo 'lxd: reachable'; else echo 'lxd: unreachable'; fi
  printf 'token in environment: %s\\n' "${ACTIONS_RUNNER_INPUT_TOKEN:+yes}"
} >standin-run.log.part
mv standin-run.log.part standin-run.log
exec sleep infinity
"""

# This machine's cgroup v1 layout, repaired inside the container at every boot before LXD
# starts (see the top): a unit of the test's, not of the chapter's.
CGROUPS = """#!/bin/bash
cd /sys/fs/cgroup
for c in cpu cpuacct; do
  if [ -L "$c" ] && ! mountpoint -q "$(readlink -f "$c")"; then
    mount -o remount,rw /sys/fs/cgroup
    rm "$c"
    mkdir "$c"
    mount -t cgroup -o "$c" cgroup "$c"
  fi
done
if [ -d cpu,cpuacct ] && ! mountpoint -q cpu,cpuacct; then rmdir cpu,cpuacct; fi
"""
CGROUPS_UNIT = """[Unit]
Description=This test machine only: mount the cgroup v1 cpu and cpuacct LXC links elsewhere
DefaultDependencies=no
After=local-fs.target
Before=lxd.socket lxd.service lxd-containers.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/bash /usr/local/sbin/ssp-test-cgroups

[Install]
WantedBy=sysinit.target
"""


def _lxc(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["lxc", *args], input=stdin or "", capture_output=True, text=True, check=False, timeout=900
    )


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"{done.args}: exit {done.returncode}\n{done.stdout}{done.stderr}"
    return done.stdout


EXEC_NOT_STARTED = "Failed to retrieve PID of executing child process"


class Host:
    """The system container that plays the GPU host."""

    def __init__(self, project: str, name: str) -> None:
        self.project, self.name = project, name

    def sh(
        self, script: str, stdin: str | None = None, env: Mapping[str, str] = ENV
    ) -> subprocess.CompletedProcess[str]:
        """`script` in a new root login-less bash, as a block of the guide runs."""
        pairs = [a for k, v in env.items() for a in ("--env", f"{k}={v}")]
        for _ in range(3):
            done = _lxc(
                "exec", self.name, "--project", self.project, *pairs, "--",
                "bash", "-euo", "pipefail", "-c", script, stdin=stdin,
            )  # fmt: skip
            # LXD 5.0.2 under load sometimes fails to start the command at all (seen in a
            # fresh-clone run, on the doctor's block): it could not read the command's PID,
            # the command never started, and it is run again.
            if not (done.returncode == 255 and EXEC_NOT_STARTED in done.stderr):
                break
            time.sleep(1)
        return done

    def push(self, source: Path, target: str, mode: str = "0644") -> None:
        target = f"{self.name}{target}"
        _ok(_lxc(*f"file push -p --mode {mode} {source} {target} --project {self.project}".split()))

    def unit(self, name: str, *props: str) -> dict[str, str]:
        shown = _ok(self.sh(f"systemctl show {name} -p {','.join(props)}"))
        return dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)

    def booted(self) -> str:
        """systemd's state once the boot is done (running, or degraded: a unit failed)."""
        deadline = time.monotonic() + 120
        while True:  # right after a start, LXD may not run a command in it yet
            done = self.sh("systemctl is-system-running --wait || true")
            if done.returncode == 0 and done.stdout.strip():
                return done.stdout.strip()
            assert time.monotonic() < deadline, f"no boot: {done.stderr}"
            time.sleep(1)

    def wait_for(self, path: str, seconds: float) -> str:
        deadline = time.monotonic() + seconds
        while True:
            done = self.sh(f"cat {path}")
            if done.returncode == 0:
                return done.stdout
            assert time.monotonic() < deadline, f"{path} never appeared"
            time.sleep(1)


def _wheels(cache: Path) -> Path:
    """The lock's wheels for this machine's Python, downloaded once per lock (by its hash)."""
    lock = ROOT / "requirements.lock"
    folder = cache / "ssp-wheels" / hashlib.sha256(lock.read_bytes()).hexdigest()[:16]
    if not (folder / ".complete").exists():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--require-hashes",
             "--only-binary", ":all:", "--no-deps", "-r", str(lock), "-d", str(folder)],
            check=True, timeout=600,
        )  # fmt: skip
        (folder / ".complete").touch()
    return folder


def _bundle(folder: Path) -> Path:
    """The working tree (tracked and untracked files git does not ignore) as one commit."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, check=True,
    ).stdout.decode()  # fmt: skip
    repo = folder / "lab"
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            target = repo / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
            target.chmod(source.stat().st_mode & 0o777)
    git = ["git", "-C", str(repo), "-c", "user.name=ssp test", "-c", "user.email=test@ssp"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "lab"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    bundle = folder / "lab.bundle"
    subprocess.run([*git, "bundle", "create", "-q", str(bundle), "--all"], check=True)
    return bundle


def _runner_tarball(folder: Path) -> Path:
    path = folder / "actions-runner.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in (("./config.sh", CONFIG_SH), ("./run.sh", RUN_SH)):
            info = tarfile.TarInfo(name)
            data = text.encode()
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return path


def _nvidia_gpu_on_this_bus() -> bool:
    for device in Path("/sys/bus/pci/devices").glob("*"):
        try:
            vendor = (device / "vendor").read_text().strip()
            klass = (device / "class").read_text().strip()
        except OSError:
            continue
        if vendor == "0x10de" and klass.startswith("0x03"):
            return True
    return False


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as gh:
        gh.add_repo(FAKE_REPO)
        yield gh
    gh.assert_no_violations()


@pytest.fixture
def host(lxd_project: str, suffix: str, github: FakeGitHub, tmp_path: Path) -> Host:
    """The booted system container, with what stands in for the outside world pushed in."""
    if _nvidia_gpu_on_this_bus():
        pytest.skip(
            "this machine has an NVIDIA GPU, which the container sees on the PCI bus: the GPU "
            "unit would run (and fail without the driver in the container) instead of skipping"
        )
    name = f"gpuhost-{suffix}"
    port = github.url.rsplit(":", 1)[1]
    nesting = "security.nesting=true"
    intercept = (
        "-c security.syscalls.intercept.mknod=true -c security.syscalls.intercept.setxattr=true"
    )
    _ok(_lxc(*f"init ssp-debian {name} --project {lxd_project} -c {nesting} {intercept}".split()))
    ends = f"listen=tcp:127.0.0.1:{port} connect=tcp:127.0.0.1:{port} bind=instance"
    _ok(_lxc(*f"config device add {name} github proxy --project {lxd_project} {ends}".split()))
    _ok(_lxc("start", name, "--project", lxd_project))
    machine = Host(lxd_project, name)
    assert machine.booted() in {"running", "degraded"}
    (tmp_path / "cgroups").write_text(CGROUPS, encoding="ascii")
    (tmp_path / "cgroups.service").write_text(CGROUPS_UNIT, encoding="ascii")
    machine.push(tmp_path / "cgroups", "/usr/local/sbin/ssp-test-cgroups", mode="0755")
    machine.push(tmp_path / "cgroups.service", "/etc/systemd/system/ssp-test-cgroups.service")
    _ok(machine.sh("systemctl daemon-reload && systemctl enable --now ssp-test-cgroups.service"))
    _ok(machine.sh(f"printf '{SUBIDS}' | tee /etc/subuid >/etc/subgid"))
    # git reads /etc/gitconfig once the chapter installs it.
    _ok(
        machine.sh(
            "printf '[url \"/root/lab.bundle\"]\\n\\tinsteadOf = https://github.com/%s\\n' "
            f"{FAKE_REPO} >/etc/gitconfig"
        )
    )
    machine.push(_bundle(tmp_path), "/root/lab.bundle")
    machine.push(_runner_tarball(tmp_path), RUNNER_TARBALL)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    wheels = sorted(_wheels(cache).glob("*.whl"))
    target = f"{name}/root/wheels/"
    _ok(_lxc("file", "push", "-p", *map(str, wheels), target, "--project", lxd_project))
    _ok(_lxc("image", "export", "ssp-busybox", str(tmp_path / "base"), "--project", "default"))
    machine.push(next(tmp_path.glob("base*.tar.gz")), "/root/base-image.tar.gz")
    return machine


def test_the_guides_from_zero_chapter_installs_a_working_host(
    host: Host, github: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = shell_blocks(GUIDES["en"])
    text = "\n".join(blocks)
    for placeholder in PLACEHOLDERS:
        assert placeholder in text, placeholder
    api = f"http://127.0.0.1:{github.url.rsplit(':', 1)[1]}"
    sha = hashlib.sha256((tmp_path / "actions-runner.tar.gz").read_bytes()).hexdigest()
    swap = {
        "OWNER/REPO": FAKE_REPO,
        "<hex>": sha,
        "https://api.github.com": api,
        "images:debian/12": BASE_ALIAS,
    }

    timings, last = [], ""
    for block in blocks:
        script = block
        for placeholder, value in swap.items():
            script = script.replace(placeholder, value)
        if BASE_ALIAS in script:  # the image the placeholder names, in the host's LXD
            _ok(host.sh(f"lxc image import /root/base-image.tar.gz --alias {BASE_ALIAS}"))
        began = time.monotonic()
        stdin = github.token + "\n" if TOKEN_BLOCK in block else None
        done = host.sh(script, stdin=stdin)
        timings.append((round(time.monotonic() - began, 1), block.splitlines()[0]))
        assert done.returncode == 0, (
            f"the guide's block failed:\n{script}\n{done.stdout}{done.stderr}"
        )
        last = done.stdout
    with capsys.disabled():
        print("\nfrom zero, seconds per block:", timings)

    # The check block: every unit enabled and running, the doctor healthy, GPUs n/a.
    lines = last.splitlines()
    assert lines[:6] == ["enabled"] * 6, last
    assert lines[6:10] == ["active"] * 4, last
    assert lines[-1] == "ssp doctor: healthy", last
    assert re.search(r"^n/a\s+gpu\.nvml\s+no NVIDIA GPU on this host", last, re.M), last
    assert not re.search(r"^(PROBLEM|skipped)\s", last, re.M), last

    # The GPU unit was skipped by its condition, not failed, and the journal says why.
    gpu = host.unit("nvidia-devices.service", "ActiveState", "Result", "ConditionResult")
    assert gpu == {"ActiveState": "inactive", "Result": "exec-condition", "ConditionResult": "no"}
    journal = _ok(host.sh("journalctl -u nvidia-devices.service --no-pager -o cat"))
    assert "skipped: no NVIDIA GPU on this host's PCI bus" in journal

    # One pass of the sampler, as the timer starts it: a host without GPUs records nothing.
    _ok(host.sh("systemctl start ssp-sample.service"))
    sample = host.unit("ssp-sample.service", "Result", "ExecMainStatus")
    assert sample == {"Result": "success", "ExecMainStatus": "0"}

    # The runner: registered through the helper with a token the fake made, as ssp-runner.
    config = host.wait_for("/opt/ssp-runner/standin-config.log", 60)
    tokens = github.settings_of(FAKE_REPO).registration_tokens
    assert tokens and f"token: {tokens[-1]}" in config.splitlines(), config
    assert "user: ssp-runner" in config
    args = re.search(r"^args: (.*)$", config, re.M)
    assert args and "--ephemeral" in args[1] and "--labels gpu-host" in args[1]
    assert f"--url https://github.com/{FAKE_REPO}" in args[1]
    asked = github.requests_matching("POST", f"/repos/{FAKE_REPO}/actions/runners/registration")
    assert asked and {(r.status, r.auth) for r in asked} == {(201, "bearer")}
    job = host.wait_for("/opt/ssp-runner/standin-run.log", 60).splitlines()
    assert job == [
        "user: ssp-runner",
        "credential: unreadable",
        "lxd: reachable",
        "token in environment: ",
    ]
    assert host.unit("ssp-runner.service", "ActiveState")["ActiveState"] == "active"
    kept = _ok(host.sh("stat -c '%U %a' /etc/ssp-runner/github-pat; ls /root"))
    assert kept.splitlines()[0] == "root 600"
    assert "github-pat" not in kept.split()  # shredded

    # A reboot (the power cut of section 6): the units come up by themselves, the GPU unit is
    # skipped again at boot, and the runner registers anew with a fresh token.
    registered = len(tokens)
    began = time.monotonic()
    _ok(_lxc("restart", host.name, "--project", host.project, "--timeout", "120"))
    assert host.booted() in {"running", "degraded"}
    # systemd-binfmt fails in any container (binfmt_misc cannot be mounted): nothing of ours may
    failed = _ok(host.sh("systemctl --failed --plain --no-legend | awk '{print $1}'")).split()
    assert set(failed) <= {"systemd-binfmt.service"}, failed
    rebooted = round(time.monotonic() - began, 1)
    gpu = host.unit("nvidia-devices.service", "ActiveState", "Result", "ConditionResult")
    assert gpu == {"ActiveState": "inactive", "Result": "exec-condition", "ConditionResult": "no"}
    journal = _ok(host.sh("journalctl -b -u nvidia-devices.service --no-pager -o cat"))
    assert "skipped: no NVIDIA GPU on this host's PCI bus" in journal
    for unit in ("ssp-runner.service", "ssp-runner-token.socket", "ssp-sample.timer"):
        assert host.unit(unit, "ActiveState")["ActiveState"] == "active", unit
    deadline = time.monotonic() + 60
    while len(tokens) == registered:
        assert time.monotonic() < deadline, "the runner did not register again after the reboot"
        time.sleep(1)
    # LXD started again with the host, and with it the shared server: the doctor is content.
    doctor = host.sh("/opt/ssp/venv/bin/ssp --repo /opt/ssp/repo doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert doctor.stdout.splitlines()[-1] == "ssp doctor: healthy"
    with capsys.disabled():
        print(f"from zero: rebooted and running in {rebooted} s")

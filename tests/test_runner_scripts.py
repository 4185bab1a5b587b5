"""runner/install-runner.sh, and what every script in runner/ promises (shellcheck, usage).

The installer runs for real with `--dry-run` against a stand-in runner tarball (config.sh and
bin/runsvc.sh only: the real one comes from GitHub, which this machine cannot reach). A dry
run must change nothing, so running it twice gives the same plan; an already-installed runner
shows every step unchanged. Its real run needs systemd and root on the GPU host.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "runner"
INSTALL = RUNNER / "install-runner.sh"
BASH = shutil.which("bash") or "/bin/bash"
URL = "https://github.com/super-server-lab/super-server-platform"
SCRIPTS = sorted(p for p in RUNNER.glob("*.sh") if p.name != "lib.sh")  # lib.sh is sourced


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_is_clean_on_every_runner_script() -> None:
    done = subprocess.run(
        ["shellcheck", *map(str, sorted(RUNNER.glob("*.sh")))],
        capture_output=True,
        text=True,
        check=False,
        cwd=RUNNER,
    )
    assert done.returncode == 0, done.stdout


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_script_is_strict_and_has_a_usage_line(script: Path) -> None:
    text = script.read_text(encoding="utf-8")
    assert "set -euo pipefail" in text
    assert re.search(r"^#? ?[Uu]sage:", text, re.MULTILINE) or "USAGE=" in text


def fake_runner(where: Path) -> Path:
    """A tarball laid out like actions-runner-linux-x64-*.tar.gz (entries under ./)."""
    src = where / "runner-src"
    (src / "bin").mkdir(parents=True)
    (src / "config.sh").write_text("#!/bin/bash\ntouch .runner\n", encoding="utf-8")
    (src / "bin" / "runsvc.sh").write_text("#!/bin/bash\n", encoding="utf-8")
    tarball = where / "actions-runner-linux-x64-2.329.0.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(src, arcname=".")
    return tarball


def install(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BASH, str(INSTALL), *args], capture_output=True, text=True, check=False, timeout=60
    )


@pytest.fixture
def tarball(tmp_path: Path) -> Path:
    return fake_runner(tmp_path)


@pytest.fixture
def token(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("AAAREGISTRATIONTOKEN\n", encoding="utf-8")
    return path


def test_a_dry_run_plans_every_step_changes_nothing_and_says_the_same_twice(
    tmp_path: Path, tarball: Path, token: Path
) -> None:
    target = tmp_path / "opt" / "ssp-runner"
    args = [*("--url", URL, "--runner", str(tarball), "--token-file", str(token))]
    args += ["--dir", str(target), "--user", "ssp-runner-test", "--lxd-group", "lxd", "--dry-run"]
    first, second = install(*args), install(*args)
    assert first.returncode == 0, first.stderr
    assert (first.stdout, first.stderr) == (second.stdout, second.stderr)
    plan = first.stdout
    assert "would create system user ssp-runner-test" in plan
    assert "would add ssp-runner-test to group lxd" in plan
    assert f"would unpack {tarball} into {target}" in plan
    assert "would register runner" in plan and f"at {URL}" in plan
    assert "would write /etc/systemd/system/ssp-runner.service" in plan
    assert "dry run: 6 change(s) would be made, nothing was changed" in plan
    assert "AAAREGISTRATIONTOKEN" not in first.stdout + first.stderr
    assert not target.exists()


def test_the_labels_are_the_ones_the_self_hosted_workflows_ask_for(
    tmp_path: Path, tarball: Path, token: Path
) -> None:
    done = install(
        *("--url", URL, "--runner", str(tarball), "--token-file", str(token)),
        *("--dir", str(tmp_path / "r"), "--lxd-group", "lxd", "--dry-run"),
    )
    labels = re.search(r"\(labels ([^)]+)\)", done.stdout)
    assert labels, done.stdout
    for workflow in ("apply.yml", "maintenance.yml"):
        doc = yaml.safe_load((ROOT / ".github" / "workflows" / workflow).read_text("utf-8"))
        for job_id, job in doc["jobs"].items():
            if job_id == "pages":
                continue  # deploys the status page to Pages from a GitHub-hosted runner
            assert job["runs-on"] == labels.group(1).split(","), workflow


def test_an_installed_runner_is_left_alone(tmp_path: Path, tarball: Path) -> None:
    # nobody's own group stands in for the LXD socket's group it is already in
    target = tmp_path / "runner"
    (target / "bin").mkdir(parents=True)
    for name in ("config.sh", "runsvc.sh", "bin/runsvc.sh", ".runner"):
        (target / name).write_text("#!/bin/bash\n", encoding="utf-8")
        (target / name).chmod(0o755)
    done = install(
        *("--url", URL, "--runner", str(tarball), "--dir", str(target)),
        *("--user", "nobody", "--lxd-group", "nogroup", "--dry-run"),
    )
    assert done.returncode == 0, done.stderr
    assert "unchanged: user nobody exists" in done.stdout
    assert "unchanged: nobody is in group nogroup" in done.stdout
    assert f"unchanged: runner already unpacked in {target}" in done.stdout
    assert "unchanged: runner already registered" in done.stdout  # no token was needed


def test_ephemeral_and_an_organisation_runner_group(
    tmp_path: Path, tarball: Path, token: Path
) -> None:
    done = install(
        *("--url", "https://github.com/super-server-lab", "--group", "gpu-host"),
        *("--runner", str(tarball), "--token-file", str(token), "--ephemeral"),
        *("--dir", str(tmp_path / "r"), "--lxd-group", "lxd", "--dry-run"),
    )
    assert done.returncode == 0, done.stderr
    assert "runner group gpu-host, ephemeral)" in done.stdout


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        ((), 2, "--url is required"),
        (("--url", URL), 2, "--runner is required"),
        (("--url", "http://github.com/x/y", "--runner", "r"), 2, "--url must be"),
        (
            ("--url", URL, "--runner", "r", "--group", "g"),
            2,
            "runner groups belong to organisations",
        ),
        (("--url", URL, "--runner", "/nonexistent.tar.gz"), 1, "download actions-runner-linux-x64"),
        (("--url", URL, "--bogus"), 2, "unknown argument: --bogus"),
    ],
)
def test_bad_arguments_say_what_is_wrong(args: tuple[str, ...], code: int, says: str) -> None:
    done = install(*args, "--lxd-group", "lxd", "--dry-run")
    assert done.returncode == code
    assert says in done.stderr
    if code == 2:
        assert done.stderr.startswith("usage: install-runner.sh --url URL --runner")


def test_a_tarball_is_checked_before_anything_happens(tmp_path: Path, tarball: Path) -> None:
    wrong = install(
        *("--url", URL, "--runner", str(tarball), "--sha256", "0" * 64),
        *("--lxd-group", "lxd", "--dry-run"),
    )
    assert wrong.returncode == 1
    assert "not " + "0" * 64 in wrong.stderr
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tarball")
    done = install("--url", URL, "--runner", str(junk), "--lxd-group", "lxd", "--dry-run")
    assert done.returncode == 1
    assert "is not an actions runner tarball" in done.stderr


def test_registering_needs_a_token(tmp_path: Path, tarball: Path) -> None:
    done = install(
        *("--url", URL, "--runner", str(tarball), "--dir", str(tmp_path / "r")),
        *("--lxd-group", "lxd", "--dry-run"),
    )
    assert done.returncode == 1
    assert "give a registration token with --token-file" in done.stderr


def credential_plan(tmp_path: Path, tarball: Path) -> subprocess.CompletedProcess[str]:
    """The dry run of an ephemeral runner kept registered with a credential."""
    pat = tmp_path / "pat"
    pat.write_text("github_pat_SECRETSECRET\n", encoding="utf-8")
    pat.chmod(0o600)
    target = tmp_path / "opt" / "ssp-runner"
    args = [*("--url", URL, "--runner", str(tarball), "--ephemeral", "--pat-file", str(pat))]
    args += ["--dir", str(target), "--user", "ssp-runner-test", "--lxd-group", "lxd", "--dry-run"]
    first, second = install(*args), install(*args)
    assert first.returncode == 0, first.stderr
    assert (first.stdout, first.stderr) == (second.stdout, second.stderr)
    assert not target.exists()
    return first


def units(plan: str) -> dict[str, list[str]]:
    """The unit files a dry run shows, by name (they are shown in the order written)."""
    shown = [line.removeprefix("    | ") for line in plan.splitlines() if line.startswith("    | ")]
    found: dict[str, list[str]] = {}
    names = iter(["ssp-runner-token.socket", "ssp-runner-token@.service", "ssp-runner.service"])
    for line in shown:
        if line.startswith("# Written by runner/install-runner.sh"):
            current = found.setdefault(next(names), [])
        current.append(line)
    return found


def test_an_ephemeral_runner_with_a_credential_registers_itself_before_every_job(
    tmp_path: Path, tarball: Path
) -> None:
    done = credential_plan(tmp_path, tarball)
    plan = done.stdout
    assert "github_pat_SECRETSECRET" not in plan + done.stderr
    # no registration token needed now: the service fetches one before every job
    assert "registration: the service registers" in plan and "ephemeral) before every job" in plan
    pat = tmp_path / "pat"
    assert f"would copy the credential in {pat} to /etc/ssp-runner/github-pat" in plan
    assert (
        "would install ephemeral-runner.sh, registration-token.sh and lib.sh into "
        "/usr/local/lib/ssp-runner" in plan
    )
    unit = units(plan)["ssp-runner.service"]
    loop = "/usr/local/lib/ssp-runner/ephemeral-runner.sh"
    assert f"ExecStart={loop} --url {URL} --token-socket /run/ssp-runner-token.sock" in "\n".join(
        unit
    )
    assert {"User=root", "Restart=always", "KillMode=mixed"} <= set(unit)
    assert "would enable and start ssp-runner-token.socket" in plan
    assert "dry run: 9 change(s) would be made, nothing was changed" in plan


def test_only_the_registration_helper_can_reach_the_credential(
    tmp_path: Path, tarball: Path
) -> None:
    """Issue 22, finding 10: the credential is read by a root-only helper in a unit of its own;
    the runner's unit (the loop, config.sh, every job) never names it and cannot see its folder,
    and only root may ask the helper's socket for a token."""
    found = units(credential_plan(tmp_path, tarball).stdout)
    runner, helper, sock = (
        found["ssp-runner.service"],
        found["ssp-runner-token@.service"],
        found["ssp-runner-token.socket"],
    )
    text = "\n".join(runner)
    assert "--pat-file" not in text and "github-pat" not in text
    assert "InaccessiblePaths=-/etc/ssp-runner" in runner
    assert "Wants=network-online.target ssp-runner-token.socket" in runner
    # the helper: root, one process per connection on the socket, the credential its argument
    assert "User=root" in helper
    assert (
        "ExecStart=/usr/local/lib/ssp-runner/registration-token.sh --url "
        f"{URL} --pat-file /etc/ssp-runner/github-pat" in helper
    )
    assert {"StandardInput=socket", "StandardOutput=socket", "NoNewPrivileges=yes"} <= set(helper)
    assert "InaccessiblePaths=-/var/lib/lxd -/var/snap/lxd" in helper  # it has no use for LXD
    # the socket: root's alone, so a job (as the runner's user) cannot ask it for a token
    assert {"SocketUser=root", "SocketGroup=root", "SocketMode=0600", "Accept=yes"} <= set(sock)
    assert "ListenStream=/run/ssp-runner-token.sock" in sock


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_units_are_ones_systemd_accepts(tmp_path: Path, tarball: Path) -> None:
    found = units(credential_plan(tmp_path, tarball).stdout)
    folder = tmp_path / "units"
    folder.mkdir()
    for name, lines in found.items():
        # the scripts as they will be installed, from this checkout (verify wants them to exist)
        text = "\n".join(lines).replace("/usr/local/lib/ssp-runner/", f"{RUNNER}/") + "\n"
        (folder / name).write_text(text, encoding="utf-8")
        if "@." in name:  # and one instance of the template, as a connection makes it
            (folder / name.replace("@.", "@0.")).write_text(text, encoding="utf-8")
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no",
         *sorted(str(p) for p in folder.iterdir() if "@." not in p.name)],
        capture_output=True, text=True, check=False, timeout=60, cwd=folder,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == ""  # not even an unknown key


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--pat-file", "p"), "--pat-file keeps an ephemeral runner registered: add --ephemeral"),
        (("--ephemeral", "--pat-file", "p", "--token-file", "t"), "drop --token-file"),
        (("--api-url", "https://ghe.example/api/v3"), "--api-url goes with --pat-file"),
    ],
)
def test_the_credential_options_say_what_they_need(args: tuple[str, ...], says: str) -> None:
    done = install("--url", URL, "--runner", "r", *args, "--lxd-group", "lxd", "--dry-run")
    assert done.returncode == 2
    assert says in done.stderr


def test_a_credential_is_for_repository_runners_only(tarball: Path) -> None:
    done = install(
        *("--url", "https://github.com/super-server-lab", "--group", "gpu-host"),
        *("--runner", str(tarball), "--ephemeral", "--pat-file", "p", "--dry-run"),
    )
    assert done.returncode == 2
    assert "--pat-file registers repository runners" in done.stderr


def test_help_explains_every_option_and_exits_0() -> None:
    """`--help` printed the one usage line; it now says what each option does."""
    done = subprocess.run(
        [BASH, str(INSTALL), "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and done.stderr == ""
    usage = re.search(r'^USAGE="(.*)"$', INSTALL.read_text(encoding="utf-8"), re.MULTILINE)
    assert usage is not None
    options = set(re.findall(r"--[a-z0-9-]+", usage.group(1)))
    explained = set(re.findall(r"^  (--[a-z0-9-]+)", done.stdout, re.MULTILINE))
    assert options <= explained, sorted(options - explained)
    assert "Administration: Read and write" in done.stdout
    assert not any(line.startswith("#") for line in done.stdout.splitlines())
    assert "set -euo" not in done.stdout


@pytest.mark.parametrize(
    ("api_url", "accepted"),
    [
        ("http://127.0.0.1:8123", True),  # a test's stand-in for GitHub, as the helper allows
        ("http://localhost:8123/api/v3", True),
        ("https://ghe.example/api/v3", True),
        ("http://ghe.example/api/v3", False),  # a credential never crosses a network in clear
        ("http://10.0.0.5:8123", False),
    ],
)
def test_the_api_url_is_https_or_plain_http_to_this_machine_only(
    tmp_path: Path, tarball: Path, api_url: str, accepted: bool
) -> None:
    pat = tmp_path / "pat"
    pat.write_text("github_pat_SECRETSECRET\n", encoding="utf-8")
    pat.chmod(0o600)
    done = install(
        *("--url", URL, "--runner", str(tarball), "--ephemeral", "--pat-file", str(pat)),
        *("--api-url", api_url, "--dir", str(tmp_path / "r"), "--user", "ssp-runner-test"),
        *("--lxd-group", "lxd", "--dry-run"),
    )
    if accepted:
        assert done.returncode == 0, done.stderr
        assert f"--api-url {api_url}" in done.stdout  # written into the helper's unit
    else:
        assert done.returncode == 2
        assert "--api-url must be https://HOST[/PATH] (http only to localhost)" in done.stderr

"""`ssp new`: the file it writes passes `ssp validate` unchanged, or nothing is written.

Runs the real CLI in-process against a temporary copy of the repository's policy, inventory
and example requests, with real keys made by ssh-keygen.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioner.cli import main
from provisioner.validation.rules import PLACEHOLDERS
from provisioner.validation.sources import load

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")

ROOT = Path(__file__).resolve().parents[1]
# 20:00 UTC on New Year's Eve is already 2027-01-01 in the policy's zone (Asia/Shanghai).
NOW = "2026-12-31T20:00:00+00:00"
SCHEMA_LINE = "# yaml-language-server: $schema=../../schemas/request.schema.json\n"


def keygen(path: Path, key_type: str = "ed25519", comment: str = "me@laptop") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )
    return path.with_name(path.name + ".pub")


def make_repo(where: Path) -> Path:
    for part in ("config", "requests"):
        shutil.copytree(ROOT / part, where / part)
    return where


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    keygen(tmp_path / "home" / ".ssh" / "id_ed25519")
    return tmp_path / "home"


PURPOSE = "Experiments for my thesis"


def ssp(*argv: str, home: Path, purpose: str | None = PURPOSE) -> tuple[int, str, str]:
    """`ssp ARGV`; `ssp new` gets `--purpose PURPOSE` unless ARGV gives one or purpose is None."""
    if argv[:1] == ("new",) and purpose and not any(a.startswith("--purpose") for a in argv):
        argv = (*argv, "--purpose", purpose)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(argv), {"HOME": str(home), "SSP_NOW": NOW})
        except SystemExit as e:  # argparse refusing the command line
            code = int(e.code or 0)
    return code, out.getvalue(), err.getvalue()


def read(repo: Path, rel: str) -> dict[str, Any]:
    doc, problems = load((repo / rel).read_bytes(), rel)
    assert doc is not None, problems
    assert isinstance(doc.data, dict)
    return doc.data


def test_container_and_account_pass_validate_unchanged(repo: Path, tmp_path: Path) -> None:
    alice = keygen(tmp_path / "keys" / "alice", comment="alice@laptop")
    carol = keygen(tmp_path / "keys" / "carol", comment="carol@lab")
    runs = [
        ("container", "alice", "alice-new", []),
        ("container", "carol", "carol-gpu", ["--gpus", "2"]),
        ("account", "alice", "alice-common", []),
    ]
    for kind, owner, name, extra in runs:
        key = alice if owner == "alice" else carol
        code, out, err = ssp(
            "new", kind, "--owner", owner, "--name", name, "--ssh-key", str(key),
            "--repo", str(repo), *extra, home=tmp_path,
        )  # fmt: skip
        assert (code, err) == (0, ""), err
        assert f"wrote requests/{owner}/{name}.yaml" in out
    assert ssp("validate", "--repo", str(repo), home=tmp_path)[0] == 0

    text = (repo / "requests/alice/alice-new.yaml").read_text(encoding="utf-8")
    assert text.startswith(SCHEMA_LINE)
    assert read(repo, "requests/alice/alice-new.yaml") == {
        "kind": "container",
        "name": "alice-new",
        "owner": "alice",
        "purpose": PURPOSE,
        # the policy's defaults
        "image": "common-server",
        "gpus": 0,
        "cpu": 8,
        "memory": "32GiB",
        "disk": "100GiB",
        "shares": ["share"],  # the policy's catalogue
        "ssh_keys": [alice.read_text(encoding="utf-8").strip()],
        "desktop": False,
        "snapshots": "weekly",
        # 90 days after the lab's today (2027-01-01), not after UTC's (2026-12-31)
        "expires": "2027-04-01",
    }
    assert read(repo, "requests/carol/carol-gpu.yaml")["gpus"] == 2
    account = read(repo, "requests/alice/alice-common.yaml")
    assert account["server"] == "common"  # the only shared server in the policy
    assert set(account) == {"kind", "name", "owner", "purpose", "server", "ssh_keys", "sudo",
                            "expires"}  # fmt: skip
    # every field the member may edit is explained right above it
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith(("#", " ")):
            assert lines[i - 1].startswith("#"), f"no comment above {line!r}"


def test_unknown_owner_is_refused_with_the_validators_finding(repo: Path, home: Path) -> None:
    code, out, err = ssp("new", "container", "--owner", "mallory", "--name", "box",
                         "--repo", str(repo), home=home)  # fmt: skip
    assert code == 1
    assert "not a registered member" in err
    assert "[owner.unknown]" in err
    assert "nothing written" in err
    assert "Traceback" not in out + err
    assert not (repo / "requests/mallory").exists()


def test_quota_is_checked_against_the_other_requests(repo: Path, home: Path) -> None:
    # alice-thesis already holds both of alice's GPUs
    code, _, err = ssp("new", "container", "--owner", "alice", "--name", "alice-more",
                       "--gpus", "1", "--repo", str(repo), home=home)  # fmt: skip
    assert code == 1
    assert "[quota.gpus]" in err
    assert not (repo / "requests/alice/alice-more.yaml").exists()


def test_existing_file_needs_force(repo: Path, home: Path) -> None:
    path = repo / "requests/alice/alice-thesis.yaml"
    before = path.read_bytes()
    argv = ("new", "container", "--owner", "alice", "--name", "alice-thesis", "--repo", str(repo))
    code, _, err = ssp(*argv, home=home)
    assert code == 2
    assert "--force" in err
    assert path.read_bytes() == before
    code, _, err = ssp(*argv, "--force", home=home)
    assert (code, err) == (0, "")
    assert read(repo, "requests/alice/alice-thesis.yaml")["gpus"] == 0


def test_key_is_found_in_home_or_how_to_make_one_is_said(repo: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    ecdsa = keygen(home / ".ssh" / "id_ecdsa", "ecdsa")
    keygen(home / ".ssh" / "id_rsa_src")
    shutil.copy(home / ".ssh" / "id_rsa_src.pub", home / ".ssh" / "id_rsa.pub")
    argv = ("new", "account", "--owner", "carol", "--name", "carol-common", "--repo", str(repo))
    assert ssp(*argv, home=home)[0] == 0
    keys = read(repo, "requests/carol/carol-common.yaml")["ssh_keys"]
    assert keys == [ecdsa.read_text(encoding="utf-8").strip()]  # ecdsa comes before rsa

    code, out, err = ssp(*argv, "--force", home=tmp_path / "nobody")
    assert code == 2
    assert "ssh-keygen -t ed25519" in err
    assert "Traceback" not in out + err


def test_private_key_is_refused_and_not_echoed(repo: Path, home: Path) -> None:
    private = home / ".ssh" / "id_ed25519"
    code, out, err = ssp("new", "container", "--owner", "carol", "--name", "carol-box",
                         "--ssh-key", str(private), "--repo", str(repo), home=home)  # fmt: skip
    assert code == 2
    assert "PRIVATE" in err
    body = private.read_text(encoding="utf-8").splitlines()[1:-1]
    assert not any(line in out + err for line in body)
    assert not (repo / "requests/carol/carol-box.yaml").exists()


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", ""])
def test_names_cannot_leave_the_requests_folder(repo: Path, home: Path, name: str) -> None:
    code, _, err = ssp("new", "container", "--owner", "alice", "--name", name,
                       "--repo", str(repo), home=home)  # fmt: skip
    assert code == 2, err
    assert sorted(p.name for p in (repo / "requests").iterdir()) == ["alice", "bob", "carol"]
    assert sorted(p.name for p in (repo / "requests/alice").iterdir()) == ["alice-thesis.yaml"]


@pytest.mark.parametrize(
    "purpose",
    [
        'key: value # not a comment "quoted" \\ back',
        "null",
        "yes",
        "0755",
        "- a list?",
        "-starts-with-a-dash",
        "[a, b]",
        "{a: 1}",
        "*alias &anchor !tag",
        "@mention `code` %percent",
        "  spaces around  ",
        "训练扩散模型，写毕业论文",
    ],
)
def test_purpose_reads_back_exactly(repo: Path, home: Path, purpose: str) -> None:
    code, _, err = ssp("new", "container", "--owner", "carol", "--name", "carol-box",
                       f"--purpose={purpose}", "--repo", str(repo), home=home)  # fmt: skip
    assert (code, err) == (0, "")
    assert read(repo, "requests/carol/carol-box.yaml")["purpose"] == purpose
    assert ssp("validate", "--repo", str(repo), home=home)[0] == 0


@pytest.mark.parametrize(
    "bad",
    [
        "two\nlines",
        "tab\there",
        "rtl \u202e trick",
        "\u2028sep",
        "nel\x85",
        "red \x1b[31m text",
        "odd \uffff char",
        "zero\u200bwidth",
    ],
)
def test_hidden_characters_in_purpose_are_refused(repo: Path, home: Path, bad: str) -> None:
    code, out, err = ssp("new", "container", "--owner", "carol", "--name", "carol-box",
                         "--purpose", bad, "--repo", str(repo), home=home)  # fmt: skip
    assert code == 2
    assert "--purpose" in err
    assert "Traceback" not in out + err
    assert not (repo / "requests/carol/carol-box.yaml").exists()


def test_a_purpose_of_digits_stays_text(repo: Path, home: Path) -> None:
    """Digits only: longer than a number may be, it is written quoted and reads back as text."""
    purpose = "9" * 150
    code, _, err = ssp("new", "container", "--owner", "carol", "--name", "carol-box",
                       f"--purpose={purpose}", "--repo", str(repo), home=home)  # fmt: skip
    assert (code, err) == (0, "")
    assert read(repo, "requests/carol/carol-box.yaml")["purpose"] == purpose


def test_a_purpose_of_thousands_of_digits_is_a_finding_not_a_crash(repo: Path, home: Path) -> None:
    code, out, err = ssp("new", "container", "--owner", "carol", "--name", "carol-box",
                         f"--purpose={'9' * 5000}", "--repo", str(repo), home=home)  # fmt: skip
    assert code == 1, out + err
    assert "purpose: must be at most 200 characters [schema.length]" in out + err
    assert "unexpected error" not in out + err
    assert not (repo / "requests/carol/carol-box.yaml").exists()


# Printable text of any script: what a member could type as a purpose.
PRINTABLE = st.characters(exclude_categories=["Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    purpose=st.text(PRINTABLE, min_size=3, max_size=200).filter(
        lambda p: len(p.strip()) >= 3 and p.strip().casefold() not in PLACEHOLDERS
    )
)
def test_any_printable_purpose_is_written_faithfully(
    tmp_path_factory: pytest.TempPathFactory, purpose: str
) -> None:
    base = tmp_path_factory.mktemp("fuzz")
    repo, home = make_repo(base / "repo"), base / "home"
    keygen(home / ".ssh" / "id_ed25519")
    code, _, err = ssp("new", "container", "--owner", "carol", "--name", "carol-box",
                         f"--purpose={purpose}", "--repo", str(repo), home=home)  # fmt: skip
    assert (code, err) == (0, "")
    assert read(repo, "requests/carol/carol-box.yaml")["purpose"] == purpose
    assert ssp("validate", "--repo", str(repo), home=home)[0] == 0


def test_a_purpose_is_required_and_a_placeholder_refused(repo: Path, home: Path) -> None:
    argv = ("new", "container", "--owner", "carol", "--name", "carol-box", "--repo", str(repo))
    code, _, err = ssp(*argv, home=home, purpose=None)
    assert code == 2
    assert "the following arguments are required: --purpose" in err
    for empty in ("TODO", "test", " tbd ", "carol-box", "待定", "  x  "):
        code, _, err = ssp(*argv, "--purpose", empty, home=home)
        assert code == 2, empty
        assert "does not say what it is for" in err
    assert not (repo / "requests/carol/carol-box.yaml").exists()


def test_shares_default_to_the_catalogue_and_can_be_chosen(repo: Path, home: Path) -> None:
    policy = repo / "config/policy.yaml"
    text = policy.read_text(encoding="utf-8")
    more = "  scratch:\n    source: /srv/scratch\n    path: /scratch\n    description: Fast disk\n"
    policy.write_text(text.replace("\nshared_servers:", more + "\nshared_servers:"), "utf-8")
    argv = ("new", "container", "--owner", "carol", "--repo", str(repo))
    assert ssp(*argv, "--name", "carol-all", home=home)[0] == 0
    assert read(repo, "requests/carol/carol-all.yaml")["shares"] == ["scratch", "share"]
    assert ssp(*argv, "--name", "carol-one", "--share", "scratch", home=home)[0] == 0
    assert read(repo, "requests/carol/carol-one.yaml")["shares"] == ["scratch"]
    code, _, err = ssp(*argv, "--name", "carol-bad", "--share", "nope", home=home)
    assert code == 1
    assert "[share.unknown]" in err


def test_asking_for_gpus_tells_how_they_are_numbered_inside(repo: Path, home: Path) -> None:
    argv = ("new", "container", "--owner", "carol", "--name", "carol-gpu", "--repo", str(repo))
    code, out, _ = ssp(*argv, "--gpus", "2", home=home)
    assert code == 0
    assert "inside your container nvidia-smi and CUDA number yours from 0" in out
    text = (repo / "requests/carol/carol-gpu.yaml").read_text(encoding="utf-8")
    assert "Inside the container they are numbered from 0" in text
    code, out, _ = ssp(*argv[:5], "carol-cpu", *argv[6:], home=home)
    assert code == 0
    assert "nvidia-smi" not in out


# --- ssp new image (issue 26) ------------------------------------------------------------------


def _git_clone_of(repo: Path, login: str) -> None:
    """`repo` as a member's clone: git knows their GitHub login, as `ssp validate` reads it."""
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "config", "github.user", login], check=True)


IMAGE = "requests/alice/base.yaml"


def test_an_image_request_infers_owner_and_container_and_passes_validate(
    repo: Path, home: Path
) -> None:
    _git_clone_of(repo, "alice")
    code, out, err = ssp("new", "image", "--name", "base", "--repo", str(repo), home=home)
    assert code == 0, err
    assert "owner alice (from git config" in err
    assert "from alice-thesis (your only container" in err
    assert f"wrote {IMAGE}" in out
    assert "`image: alice/base`" in out
    text = (repo / IMAGE).read_text(encoding="utf-8")
    assert text.startswith(SCHEMA_LINE)
    assert read(repo, IMAGE) == {
        "kind": "image",
        "name": "base",
        "owner": "alice",
        "purpose": PURPOSE,
        "from": "alice-thesis",
        "expires": "2027-04-01",  # 90 days after the lab's today
    }
    assert ssp("validate", "--all", "--repo", str(repo), home=home)[0] == 0
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith(("#", " ")):
            assert lines[i - 1].startswith("#"), f"no comment above {line!r}"


def test_an_image_from_a_named_snapshot(repo: Path, home: Path) -> None:
    argv = ("--owner", "carol", "--name", "ci-base", "--from", "carol-ci", "--snapshot", "snap3")
    code, _, err = ssp("new", "image", *argv, "--repo", str(repo), home=home)
    assert code == 0, err
    data = read(repo, "requests/carol/ci-base.yaml")
    assert (data["from"], data["snapshot"]) == ("carol-ci", "snap3")
    assert ssp("validate", "--all", "--repo", str(repo), home=home)[0] == 0


@pytest.mark.parametrize(
    ("extra", "code", "said"),
    [
        (("--from", "bob-common"), 1, "[image.from]"),  # not one of alice's containers
        (("--snapshot", "snap 3!"), 1, "[image.snapshot]"),
        (("--gpus", "1"), 2, "--gpus is not for an image"),
        (("--ssh-key", "k.pub"), 2, "--ssh-key is not for an image"),
        (("--purpose", "TODO"), 2, "does not say what it is for"),
        (("--expires", "someday"), 2, "write a date as YYYY-MM-DD"),
        (("--from", "alice-thesis\nsnapshot: x"), 2, "--from holds"),  # no key slips in
        (("--snapshot", "snap3\nexpires: 2099-01-01"), 2, "--snapshot holds"),
    ],
    ids=[
        "not-her-container",
        "bad-snapshot",
        "gpus",
        "ssh-key",
        "placeholder",
        "bad-date",
        "newline-from",
        "newline-snapshot",
    ],
)
def test_a_bad_image_request_is_refused_and_nothing_written(
    repo: Path, home: Path, extra: tuple[str, ...], code: int, said: str
) -> None:
    done = ssp("new", "image", "--owner", "alice", "--name", "base", *extra,
               "--repo", str(repo), home=home)  # fmt: skip
    assert done[0] == code, done
    assert said in done[2]
    assert "Traceback" not in done[1] + done[2]
    assert not (repo / IMAGE).exists()


def test_which_container_to_publish_is_asked_when_it_is_not_clear(repo: Path, home: Path) -> None:
    argv = ("new", "image", "--name", "base", "--repo", str(repo))
    code, _, err = ssp(*argv, "--owner", "bob", home=home)  # bob has only an account
    assert code == 2
    assert "requests/bob/ holds no container request" in err
    assert ssp("new", "container", "--owner", "alice", "--name", "alice-cpu", "--gpus", "0",
               "--repo", str(repo), home=home)[0] == 0  # fmt: skip
    code, _, err = ssp(*argv, "--owner", "alice", home=home)
    assert code == 2
    assert "say which container to publish with --from (alice-cpu, alice-thesis)" in err
    assert not (repo / IMAGE).exists()


def test_image_options_are_refused_for_a_container(repo: Path, home: Path) -> None:
    code, _, err = ssp("new", "container", "--owner", "alice", "--name", "alice-cpu",
                       "--snapshot", "snap3", "--repo", str(repo), home=home)  # fmt: skip
    assert code == 2
    assert "--snapshot is for `ssp new image`" in err

"""`ssp publish` on a real LXD, and the PR check's plan preview made from what it published.

The lab of test_status_real.py (alice's running container, carol's expired one, carol's
retired one, bob's account on a stand-in shared server), observed by `ssp publish` as the
maintenance run does: it writes snapshot.json and the status page to a folder and, through
the fake GitHub's git database, as the one commit of the ssp-state branch. LXD gave alice's
container an address; the snapshot and the page must not carry it (the policy does not allow
addresses), nor any config value. Then alice's PR moving her lease is checked with that
snapshot: the preview shows the diff and the port her container really has, kept.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from fakegithub import FAKE_REPO, FakeGitHub
from helpers import GitRepo, run_cli

from integration.helpers import LabRepo
from integration.test_status_real import LATER, lab_made, ssp_status  # noqa: F401 (a fixture)
from provisioner import cli
from provisioner.status import snapshot as snapshots

pytestmark = [pytest.mark.lxd, pytest.mark.slow]


def env_for(socket: str, gh: FakeGitHub | None = None) -> dict[str, str]:
    env = {
        "SSP_NOW": LATER.isoformat(),
        "SSP_GPU_CHECK": "off",
        "LXD_DIR": str(Path(socket).parent),
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }
    if gh is not None:
        env |= {"GITHUB_TOKEN": gh.token, "GITHUB_REPOSITORY": FAKE_REPO, "GITHUB_API_URL": gh.url}
    return env


def test_publish_redacts_the_real_hosts_state_and_the_preview_reads_it(
    lab_made: LabRepo,  # noqa: F811
    lxd_socket: str,
    suffix: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = ssp_status(lab_made, lxd_socket, "--format", "json")
    assert code == 0
    live = {c["name"]: c for c in json.loads(out.read_text())["containers"]}
    alice = f"alice-s-{suffix}"
    (address,) = live[alice]["ipv4"]  # what LXD reports, and what must stay on the host

    folder = tmp_path / "state"
    with FakeGitHub() as gh:
        gh.add_repo(FAKE_REPO)
        code = cli.main(
            ["publish", "--repo", str(lab_made.root), "--output", str(folder)],
            env=env_for(lxd_socket, gh),
        )
        assert code == 0, capsys.readouterr().err
        gh.assert_no_violations()
        db = gh.git[FAKE_REPO.lower()]
        on_branch = db.files(db.objects[db.refs["refs/heads/ssp-state"]].data["tree"])

    raw = (folder / "snapshot.json").read_bytes()
    page = (folder / "index.html").read_bytes()
    assert on_branch == {"snapshot.json": raw, "index.html": page}
    assert address.encode() not in raw and address.encode() not in page
    assert b"user.ssp" not in raw and b"ssh-ed25519" not in raw
    snap = snapshots.parse(raw, LATER, timedelta(hours=1))
    assert snap.addresses is False
    rows = {c.name: c for c in snap.status.containers}
    assert rows[alice].ipv4 == () and rows[alice].state == "running"
    assert rows[f"carol-s-{suffix}"].state == "expired"
    seen = {i.name: i for i in snap.instances}
    assert seen[alice].owner == "alice" and seen[alice].managed
    assert seen[alice].ssh_port == live[alice]["ssh_port"]
    assert seen[f"carol-g-{suffix}"].lifecycle == "retired"
    # ssp's images are listed (none of the daemon's other aliases), and the retired
    # container's name is carol's to keep: what the PR check judges names against.
    assert snap.images is not None and "ssp-busybox" not in {i.alias for i in snap.images}
    assert snapshots.held(snap).names[f"carol-g-{suffix}"] == "carol"
    assert b"alice-s-" in page and b"gpu-board" in page

    # alice's PR moves her lease; the check previews it against what was published
    repo = GitRepo(lab_made.root)
    repo.git("init", "-q", "-b", "main")
    (lab_made.root / ".gitignore").write_text("/keys/\n/share/\n/status.*\n/state/\n")
    repo.git("add", ".gitignore", "config", "requests")
    repo.git("commit", "-q", "-m", "main")
    path = f"requests/alice/{alice}.yaml"
    doc = yaml.safe_load((lab_made.root / path).read_text())
    repo.branch("pr")
    doc["expires"] = "2027-09-30"
    repo.commit({path: yaml.safe_dump(doc, sort_keys=False)}, "alice: a longer lease")
    done = run_cli(
        "validate", "--repo", str(lab_made.root), "--base", "main", "--author", "alice",
        "--snapshot", str(folder / "snapshot.json"), "--format", "json",
        env=env_for(lxd_socket),
    )  # fmt: skip
    assert done.code == 0, done.err
    (row,) = json.loads(done.out)["preview"]["rows"]
    assert row["diff"] == ["expires: 2027-06-30 → 2027-09-30"]
    assert row["port"] == f"{live[alice]['ssh_port']} (kept)"
    assert row["gpus"] == "none" and row["flags"] == []

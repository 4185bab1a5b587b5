"""Publishing the host's state right after the host changed (flows/publish.py): `ssp publish`
as apply.yml's (and commands.yml's) publish job runs it, and the flow beneath it.

In-process on a git checkout with the commands' `connect` pointed at the in-memory LXD
(tests/fakelxd.py) and GITHUB_* at the fake GitHub (held to GitHub's OpenAPI description).
The workflow's own steps on the real LXD are in tests/integration/test_e2e_github.py.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from fakegithub import FAKE_REPO, FakeGitHub
from fakelxd import NOW, FakeLxd, Lab
from test_comments import PCI, commit, skip_without_tools, ssp_apply

from provisioner.cli import main
from provisioner.commands import apply as apply_command
from provisioner.commands import publish as publish_command
from provisioner.flows.publish import Published, publish_state
from provisioner.github.statebranch import StateBranch
from provisioner.values.state import LxdApi


@pytest.fixture
def fake_lxd(monkeypatch: pytest.MonkeyPatch) -> FakeLxd:
    lxd = FakeLxd.seeded(present_gpus=PCI)

    def connect(_policy: object, _env: Mapping[str, str]) -> tuple[LxdApi, object]:
        return lxd, lxd.servers

    monkeypatch.setattr(apply_command, "connect", connect)
    monkeypatch.setattr(publish_command, "connect", connect)
    return lxd


def env_for(gh: FakeGitHub) -> dict[str, str]:
    return {
        "SSP_NOW": NOW.isoformat(),
        "SSP_GPU_CHECK": "off",
        "GITHUB_TOKEN": gh.token,
        "GITHUB_REPOSITORY": FAKE_REPO,
        "GITHUB_API_URL": gh.url,
    }


def _publish(repo: Path, gh: FakeGitHub, lxd: FakeLxd) -> Published:
    """What the publish job's `ssp publish` does, as the flow's own result."""
    client = publish_command.github_client(env_for(gh), StateBranch, needed_for="the test")
    return publish_state(repo, NOW, lambda _policy: (lxd, lxd.servers), client=client)  # type: ignore[arg-type, return-value]


def branch_files(gh: FakeGitHub) -> dict[str, bytes]:
    db = gh.git[FAKE_REPO.lower()]
    return dict(db.files(db.objects[db.refs["refs/heads/ssp-state"]].data["tree"]))


@skip_without_tools
def test_a_new_container_is_on_the_page_as_soon_as_the_host_changed(
    fake_lxd: FakeLxd, fake_github: FakeGitHub, tmp_path: Path
) -> None:
    (tmp_path / "keys").mkdir()
    lab = Lab.make(tmp_path / "keys")
    repo = tmp_path / "repo"
    sha = commit(lab, repo, lab.container("alice-thesis", gpus=1))
    code, _out, err = ssp_apply(repo, fake_github, sha, tmp_path, "--no-comment")
    assert code == 0, err

    done = _publish(repo, fake_github, fake_lxd)

    assert (done.ok, done.error) == (True, "")
    files = branch_files(fake_github)
    assert sorted(files) == ["index.html", "snapshot.json"]
    assert b"alice-thesis" in files["index.html"] and b'"alice-thesis"' in files["snapshot.json"]
    assert done.branch_sha == fake_github.git[FAKE_REPO.lower()].refs["refs/heads/ssp-state"]


@skip_without_tools
def test_a_failed_publish_is_reported_never_raised_and_changes_nothing_on_the_host(
    fake_lxd: FakeLxd, fake_github: FakeGitHub, tmp_path: Path
) -> None:
    (tmp_path / "keys").mkdir()
    lab = Lab.make(tmp_path / "keys")
    repo = tmp_path / "repo"
    sha = commit(lab, repo, lab.container("alice-thesis", gpus=1))
    assert ssp_apply(repo, fake_github, sha, tmp_path, "--no-comment")[0] == 0
    mutations = len(fake_lxd.mutations)
    # a token without contents: write (GitHub: 403, not retried)
    fake_github.fail_next(20, 403, path_prefix=f"/repos/{FAKE_REPO}/git/")

    done = _publish(repo, fake_github, fake_lxd)

    assert not done.ok and "cannot push ssp-state" in done.error and "403" in done.error
    assert fake_github.token not in done.error
    assert "alice-thesis" in done.files["index.html"]  # made, only not pushed
    assert len(fake_lxd.mutations) == mutations

    # `ssp publish` (apply.yml's publish job) says so and exits 3; the files it could write
    # are written for the Pages artifact.
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(
            ["publish", "--repo", str(repo), "--output", str(tmp_path / "site")],
            env_for(fake_github),
        )
    assert code == 3
    assert "ssp publish: error: cannot push ssp-state" in err.getvalue()
    assert "Traceback" not in err.getvalue()
    assert (tmp_path / "site" / "index.html").exists()

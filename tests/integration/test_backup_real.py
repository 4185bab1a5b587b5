"""Backups off the host on a real LXD: `ssp maintain` exports the containers the policy picks
into its target (a folder standing in for a mounted NAS), one failure never blocks the others
and is retried on the next pass, only the newest `keep` stay; `ssp backup restore` brings a
container back onto a clean project with the files written before the backup.

Each maintenance pass is `Lab.day` of test_leases_real (the reconcile, then
`maintain.maintain`, with the clock pinned); containers are the busybox test image.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from fakegithub import FakeGitHub
from helpers import ENV, run_cli

from integration.conftest import throwaway_project
from integration.helpers import LabRepo, in_instance
from integration.test_leases_real import LAST, Lab, noon
from provisioner.flows import maintain
from provisioner.lxd.api import Lxd
from provisioner.planning.backups import file_name
from provisioner.values import state
from provisioner.values.idranges import overlaps

pytestmark = [pytest.mark.lxd, pytest.mark.slow]

DAY = LAST - timedelta(days=60)


@pytest.fixture
def world(lab: LabRepo, lxd_project: str, lxd_socket: str, fake_github: FakeGitHub) -> Lab:
    return Lab(lab, lxd_project, lxd_socket, fake_github)


def test_backups_go_off_the_host_a_failure_is_retried_and_a_restore_brings_the_files_back(
    world: Lab, suffix: str, lxd_socket: str, tmp_path: Path
) -> None:
    kept, other, never = f"thesis-{suffix}", f"data-{suffix}", f"scratch-{suffix}"
    nas = tmp_path / "nas"  # not there yet: the backup disk is not mounted
    world.requests = {
        kept: world.lab.container(kept, image="busybox", backup=True),
        other: world.lab.container(other, owner="bob", image="busybox", backup=True),
        never: world.lab.container(never, image="busybox"),
    }
    world.day(DAY)
    in_instance(world.project, kept, "sh", "-c", "echo chapter-3 > /root/thesis.txt")
    backup = {"target": str(nas), "containers": "opted-in", "every_days": 1, "keep": 2}
    world.policy_changes = {"backup": backup}

    # The target is missing: every due backup fails, is said so, and nothing is written
    # anywhere else (ssp never creates the folder of an unmounted disk).
    done = world.day(DAY)
    assert not done.ok
    assert [(b.name, b.action) for b in done.backups] == [(other, "failed"), (kept, "failed")]
    assert "is the backup disk mounted?" in done.backups[0].message
    assert "retried on the next pass" in done.backups[0].message
    assert not nas.exists()

    # The disk is there, but one container's export fails (its file is taken): the other
    # is backed up all the same, and the failed one is tried again the next day.
    nas.mkdir()
    day1 = DAY + timedelta(days=1)
    (nas / (file_name(kept, noon(day1)) + ".partial")).write_bytes(b"in the way")
    done = world.day(day1)
    actions = {b.name: b.action for b in done.backups}
    assert actions == {kept: "failed", other: "backed up"}
    assert not done.ok
    (nas / (file_name(kept, noon(day1)) + ".partial")).unlink()
    day2 = day1 + timedelta(days=1)
    done = world.day(day2)
    assert {b.name: b.action for b in done.backups} == {kept: "backed up", other: "backed up"}
    assert done.ok
    # The report says it where the admin looks: the log, the job summary, the JSON.
    config = done.applied.validation.config
    assert config is not None
    assert any(line.startswith(f"backup {kept}") for line in maintain.text_lines(done))
    assert "### Backups" in maintain.markdown(done, config.policy)
    assert json.loads(maintain.to_json(done, config.policy))["backups"][0]["ok"] is True
    # Not due again the same day; the third day's backup drops the oldest (keep: 2).
    assert world.day(day2).backups == ()
    world.day(day2 + timedelta(days=1))
    files = sorted(p.name for p in nas.iterdir())
    assert files == sorted(
        [
            file_name(kept, noon(day2)),
            file_name(kept, noon(day2 + timedelta(days=1))),
            file_name(other, noon(day2)),
            file_name(other, noon(day2 + timedelta(days=1))),
        ]
    )
    assert all(p.stat().st_mode & 0o077 == 0 for p in nas.iterdir())
    assert not any(never in f for f in files)  # not opted in

    # The drill: the newest backup restored with `ssp backup restore` into a clean project.
    world.lxd.stop(kept)  # the bridge's DNS names are shared: one of them runs at a time
    with throwaway_project(lxd_socket, "ssp-r") as clean:
        world.lab.settings["lxd"] = {"project": clean, "profiles": ["default"], "pool": "default"}
        world.write_policy()
        env = {**ENV, "SSP_LOCK": str(tmp_path / "lock"), "SSP_NOW": noon(day2).isoformat()}
        listed = run_cli("backup", "list", kept, "--repo", str(world.lab.root), env=env)
        assert listed.code == 0, listed.both
        assert listed.out.split() == [
            str(nas / file_name(kept, noon(day2 + timedelta(days=1)))),
            str(nas / file_name(kept, noon(day2))),
        ]
        restored = run_cli("backup", "restore", kept, "--repo", str(world.lab.root), env=env)
        assert restored.code == 0, restored.both
        back = Lxd(clean, endpoint=lxd_socket)
        assert back.instance(kept).config[state.OWNER] == "alice"
        # The original still holds the backup's host IDs: the restored one gets its own.
        assert f"'{kept}': its host IDs were " in restored.out, restored.out
        assert not [o.describe() for o in overlaps(back.id_maps()) if kept in o.describe()]
        back.start(kept)
        # read with the lxc client, as it was written: pylxd's exec lost the output of a
        # command run right after this start once (a busy host, "Broken pipe" in ws4py)
        assert in_instance(clean, kept, "cat", "/root/thesis.txt").stdout == "chapter-3\n"

        # A copy beside it is the admin's: ssp's labels are gone; the name must be free.
        copy = run_cli(
            "backup",
            "restore",
            kept,
            "--as",
            f"copy-{suffix}",
            "--repo",
            str(world.lab.root),
            env=env,
        )
        assert copy.code == 0, copy.both
        assert state.MANAGED not in back.instance(f"copy-{suffix}").config
        assert f"'copy-{suffix}': its host IDs were " in copy.out, copy.out
        clashes = [o.describe() for o in overlaps(back.id_maps()) if suffix in o.describe()]
        assert clashes == []  # root in the copy is nobody else's root on the host
        again = run_cli("backup", "restore", kept, "--repo", str(world.lab.root), env=env)
        assert again.code == 2
        assert "exists already" in again.err
        back.stop(kept)

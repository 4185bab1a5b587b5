"""Helpers of the fault suite: `ssp apply` as the runner calls it (a process of its own, which
a test may kill), and the estate whose survival every case checks.

The estate is made with busybox containers (seconds each): `keep-*` runs with the share
mounted, alice's file in the share and a note in root's home inside, and a snapshot its owner
took by hand; `old-*` is a retired container (stopped, with its retirement snapshot).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from integration.helpers import (
    NOW,
    UIDS,
    Adapters,
    LabRepo,
    apply_pass,
    in_instance,
    lxc,
    lxc_query,
    outcomes,
)

RETIRED_SNAPSHOT = f"retired-{NOW:%Y%m%d}"
OWNERS_SNAPSHOT = "before-the-fault"
SHARE_FILE = "results.csv"
HOME_NOTE = "/root/notes.txt"


def ssp_env(lab: LabRepo, socket: str, **extra: str) -> dict[str, str]:
    """The environment the runner gives `ssp apply` (no GPUs on this machine)."""
    return {
        "SSP_NOW": NOW.isoformat(),
        "SSP_LOCK": str(lab.root / "apply.lock"),
        "SSP_GPU_CHECK": "off",
        "LXD_DIR": str(Path(socket).parent),
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        **extra,
    }


def ssp_argv(lab: LabRepo, *options: str) -> list[str]:
    return [sys.executable, "-m", "provisioner.cli", "apply", "--repo", str(lab.root), *options]


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str
    seconds: float

    def line(self, name: str) -> str:
        """The report line about `name` (exactly one)."""
        (found,) = [line for line in self.out.splitlines() if f" {name}" in line]
        return found


def ssp_apply(lab: LabRepo, socket: str, *options: str, env: dict[str, str] | None = None) -> Run:
    """`ssp apply` in a process of its own; its status, output and duration.

    Without `env` it does not comment (--no-comment); with it, the environment decides.
    """
    began = time.monotonic()
    done = subprocess.run(
        ssp_argv(lab, *([] if env else ["--no-comment"]), *options),
        env=env or ssp_env(lab, socket),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr, time.monotonic() - began)


def converge(lab: LabRepo, socket: str) -> Run:
    """The plain `ssp apply` after the fault is mended: it must converge (exit 0)."""
    run = ssp_apply(lab, socket)
    assert run.code == 0, run.out + run.err
    return run


def survived(
    estate: Estate, record: Callable[..., None], converged: Run, *, fault: str, seen: str, exit: int
) -> None:
    """Nothing of the estate lost, and the case's figures written for the README's table."""
    estate.intact()
    record(fault=fault, seen=seen, exit=exit, converge_s=round(converged.seconds, 1))


def start_apply(lab: LabRepo, socket: str, *options: str) -> subprocess.Popen[str]:
    """`ssp apply` started in the background (stderr is its progress log, line by line)."""
    return subprocess.Popen(
        ssp_argv(lab, "--no-comment", *options),
        env=ssp_env(lab, socket),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(proc: subprocess.Popen[str], needle: str, timeout_s: float = 120) -> list[str]:
    """Read the process's stderr until a line holds `needle`; the lines read so far."""
    assert proc.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return seen
    raise AssertionError(f"no {needle!r} from ssp apply; it said: {''.join(seen)}")


def config_of(project: str, name: str) -> dict[str, str]:
    found = lxc_query(f"/1.0/instances/{name}", project)
    return dict(found["config"])


def status_of(project: str, name: str) -> str:
    return str(lxc_query(f"/1.0/instances/{name}", project)["status"])


def snapshots_of(project: str, name: str) -> list[str]:
    found = lxc_query(f"/1.0/instances/{name}/snapshots", project)
    return sorted(s.rsplit("/", 1)[-1].split("?")[0] for s in found)


def managed(project: str) -> list[str]:
    found = lxc_query("/1.0/instances?recursion=1", project)
    return sorted(i["name"] for i in found if i["config"].get("user.ssp.managed") == "true")


@dataclass(frozen=True)
class Estate:
    """What was there before the fault; `intact()` checks none of it was lost."""

    lab: LabRepo
    keep: str
    old: str
    request: tuple[str, bytes]
    share_text: str
    note_text: str

    def intact(self, running: bool = True) -> None:
        project = self.lab.project
        share_file = self.lab.share / SHARE_FILE
        assert share_file.read_text() == self.share_text
        assert share_file.stat().st_uid == UIDS["alice"]
        assert config_of(project, self.keep)["user.ssp.state"] == "ready"
        if running:
            assert status_of(project, self.keep) == "Running"
            note = in_instance(project, self.keep, "cat", HOME_NOTE).stdout
            assert note == self.note_text
        assert OWNERS_SNAPSHOT in snapshots_of(project, self.keep)
        assert status_of(project, self.old) == "Stopped"
        assert snapshots_of(project, self.old) == [RETIRED_SNAPSHOT]
        assert config_of(project, self.old)["user.ssp.retired"] == NOW.date().isoformat()


def make_estate(lab: LabRepo, adapters: Adapters, suffix: str) -> Estate:
    keep, old = f"alice-keep-{suffix}", f"bob-old-{suffix}"
    req_keep = lab.container(keep, image="busybox", shares=["share"])
    req_old = lab.container(old, owner="bob", image="busybox")
    first = apply_pass(lab, adapters, req_keep, req_old)
    assert {n: o[:2] for n, o in outcomes(first).items()} == {
        keep: ("created", True),
        old: ("created", True),
    }, outcomes(first)
    project = lab.project
    share_text = "epoch,loss\n1,0.93\n2,0.41\n"
    escaped = share_text.replace("\n", "\\n")
    write = f"printf '{escaped}' > /home/user/share/{SHARE_FILE}"
    in_instance(project, keep, "sh", "-c", write, uid=UIDS["alice"])
    note_text = "the run of 28 November used seed 7\n"
    in_instance(project, keep, "sh", "-c", f"echo '{note_text.strip()}' > {HOME_NOTE}")
    lxc("snapshot", "--project", project, keep, OWNERS_SNAPSHOT)
    second = apply_pass(lab, adapters, req_keep)
    assert outcomes(second)[old][:2] == ("retired", True), outcomes(second)
    estate = Estate(lab, keep, old, req_keep, share_text, note_text)
    estate.intact()
    return estate

"""Publishing the host's state: observe it as `ssp status` does, make the snapshot (what the PR
check previews against) and the status page from the same redacted state, write them to a
folder and push them as the one commit of the `ssp-state` branch.

One function, `publish_state`, for every caller that changed the host: `ssp publish` (after an
apply, in apply.yml, and daily, in maintenance.yml) and the comment commands. It never raises:
the host work it follows is done, so a failed publish is a `Published` whose `error` says
why, to be reported, never a reason to fail that work.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from provisioner.flows.observe import Connect, observe_status
from provisioner.status import page as statuspage
from provisioner.status import snapshot as snapshots
from provisioner.status.server import ServerStatus
from provisioner.status.usage import Chart
from provisioner.validation.validate import Validation
from provisioner.values.errors import SspError
from provisioner.values.policymodels import Policy


class StatePusher(Protocol):
    """What publishing needs from GitHub (provisioner.github.statebranch.StateBranch)."""

    def publish(self, branch: str, files: Mapping[str, str], message: str) -> str: ...


@dataclass(frozen=True)
class Published:
    files: Mapping[str, str] = field(default_factory=dict)  # name → text; empty: none made
    branch_sha: str = ""  # the branch's new commit, when pushed
    when: str = ""  # the snapshot's time, as the commit message says it
    error: str = ""  # why it was not (all) done
    validation: Validation | None = None  # set when config/ is not valid (nothing observed)

    @property
    def ok(self) -> bool:
        return not self.error


def publish_state(
    repo: Path,
    now: datetime,
    connect: Connect,
    *,
    client: StatePusher | None,
    repo_url: str = "",
    busy_ports: Callable[[], frozenset[int]] = frozenset,
    read_gpus: bool = True,
    output: Path | None = None,
    branch: str = snapshots.BRANCH,
    chart: Callable[[Policy, ServerStatus], Chart | None] = lambda _policy, _status: None,
) -> Published:
    """Observe the host against REPO's main, write the files to OUTPUT (when given) and push
    them to BRANCH (when CLIENT is given). Never raises."""
    try:
        found, validation = observe_status(repo, now, connect, read_gpus=read_gpus, images=True)
    except (SspError, OSError) as e:
        return Published(error=f"cannot observe the host: {e}")
    if found is None:
        return Published(error="config/ is not valid", validation=validation)
    snap = snapshots.make(
        found.status,
        found.instances,
        found.policy,
        commit=found.sha,
        busy_ports=busy_ports(),
        images=found.images,
    )
    page = statuspage.html(
        snap.status, found.policy.timezone, repo_url, chart(found.policy, found.status)
    )
    # The snapshot records the page's SHA-256: a reader of the branch can tell the page is ours.
    snap = snapshots.with_page(snap, page)
    files = {snapshots.SNAPSHOT_FILE: snapshots.to_json(snap), snapshots.PAGE_FILE: page}
    when = f"{snap.generated_at:%Y-%m-%d %H:%M %Z}"
    if output is not None:
        try:
            output.mkdir(parents=True, exist_ok=True)
            for name, text in files.items():
                (output / name).write_text(text, encoding="utf-8")
        except OSError as e:
            return Published(files, when=when, error=f"cannot write {output}: {e.strerror or e}")
    if client is None:
        return Published(files, when=when)
    main = f", main at {found.sha[:12]}" if found.sha else ""
    message = f"ssp state of {found.status.host} at {when}{main}"
    try:
        sha = client.publish(branch, files, message)
    except (SspError, ValueError, OSError) as e:
        return Published(files, when=when, error=f"cannot push {branch}: {e}")
    return Published(files, sha, when)

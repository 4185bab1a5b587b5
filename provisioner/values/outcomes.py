"""What happened to each request in an apply: the values every report is rendered from.

`apply` produces them; the terminal text, the job summary, the JSON, the PR comment and the
maintenance run only read them, so they live here, below all of those, and import nothing
that talks to LXD or GitHub.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from provisioner.values import spec as specs
from provisioner.values.plandata import (
    AccountAction,
    Action,
    Create,
    Drift,
    ImageReady,
    Publish,
    Ready,
    Refuse,
    Restore,
    Retire,
    Start,
    Unpublish,
    Update,
    Wait,
)
from provisioner.values.requestpaths import request_owner


class Subject(StrEnum):
    """What a request asks for."""

    CONTAINER = "container"
    ACCOUNT = "account"
    IMAGE = "image"


class Done(StrEnum):
    """What apply did about one request (or, in a dry run, would do)."""

    CREATED = "created"
    UPDATED = "updated"
    STARTED = "started"
    UNCHANGED = "unchanged"
    RETIRED = "retired"
    RESTORED = "restored"
    LOCKED = "locked"
    PUBLISHED = "published"
    DELETED = "deleted"  # a member's image whose request is gone
    REFUSED = "refused"
    WAITING = "waiting"  # for GPUs that are taken, in line (not a failure)
    FAILED = "failed"
    MEMBER_DOWN = "member down"
    WOULD_CREATE = "would create"
    WOULD_UPDATE = "would update"
    WOULD_START = "would start"
    WOULD_RETIRE = "would retire"
    WOULD_RESTORE = "would restore"
    WOULD_CHANGE_ACCOUNT = "would change account"
    WOULD_PUBLISH = "would publish"
    WOULD_DELETE = "would delete"


# Outcomes whose request gave something back: no login to show, nothing to ssh into.
GIVEN_BACK = frozenset({Done.RETIRED, Done.LOCKED, Done.DELETED})


@dataclass(frozen=True)
class GpuInfo:
    index: int
    model: str
    pci: str


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What happened to one request: the data the PR comment is rendered from."""

    name: str
    owner: str
    request_path: str
    kind: Subject
    action: Done
    ok: bool
    message: str = ""
    login: str = ""
    ipv4: tuple[str, ...] = ()
    ssh_port: int | None = None
    rdp_port: int | None = None
    gpus: tuple[GpuInfo, ...] = ()
    shares: tuple[specs.Share, ...] = ()
    expires: date | None = None
    snapshots: str = ""
    server: str = ""
    sudo: bool = False
    image: str = ""  # a member's image: its alias, what later requests write as `image:`
    host: str = ""  # the server the container is on, as members reach it ("": the policy's)
    # Its ports that the lab's tunnel is known to carry (frpc reported the proxy running).
    tunnel_ports: frozenset[int] = frozenset()
    # Waiting for GPUs: its place in line (1: first), the GPUs it waits for, the first of
    # them to come free first, and the day that one frees (from its holder's lease).
    place: int = 0
    waits_for: tuple[int, ...] = ()
    frees: date | None = None
    exists: bool = False  # waiting with its container running as it is (see plandata.Wait)


@dataclass(frozen=True, kw_only=True)
class ApplyResult:
    outcomes: tuple[Outcome, ...]
    drift: tuple[Drift, ...] = ()
    sha: str = ""
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes)


def container_outcome(
    spec: specs.Spec,
    action: Done,
    *,
    ipv4: tuple[str, ...] = (),
    ok: bool = True,
    message: str = "",
) -> Outcome:
    """A container request's outcome, with everything its owner needs to log in."""
    return Outcome(
        name=spec.name,
        owner=spec.owner,
        request_path=spec.request_path,
        kind=Subject.CONTAINER,
        action=action,
        ok=ok,
        message=message,
        login=spec.login,
        ipv4=ipv4,
        ssh_port=spec.ssh_port,
        rdp_port=spec.rdp_port,
        gpus=tuple(GpuInfo(g.index, g.model, g.pci) for g in spec.gpus),
        shares=spec.shares,
        expires=spec.expires,
        snapshots=spec.snapshots,
        host=spec.host,
    )


def account_result(acc: specs.AccountSpec, done: Done, *, ok: bool, message: str) -> Outcome:
    """An account request's outcome that has no login to show (locked, refused, failed)."""
    return Outcome(
        name=acc.name,
        owner=acc.owner,
        request_path=acc.request_path,
        kind=Subject.ACCOUNT,
        action=done,
        ok=ok,
        message=message,
        login=acc.name,
        server=acc.server,
    )


def retire_result(action: Retire, done: Done, *, ok: bool, message: str) -> Outcome:
    return Outcome(
        name=action.name,
        owner=action.owner,
        request_path=action.request_path,
        kind=Subject.CONTAINER,
        action=done,
        ok=ok,
        message=message,
    )


def image_result(
    action: Publish | Unpublish | ImageReady, done: Done, *, ok: bool = True, message: str = ""
) -> Outcome:
    """An image request's outcome: the alias later requests start containers from."""
    return Outcome(
        name=action.name,
        owner=action.owner,
        request_path=action.request_path,
        kind=Subject.IMAGE,
        action=done,
        ok=ok,
        message=message,
        image=action.alias,
    )


def failed(action: Action, error: Exception) -> Outcome:
    """The outcome of an action that raised: its request failed, with LXD's reason."""
    if isinstance(action, Create | Update | Start | Ready | Restore):
        return container_outcome(action.spec, Done.FAILED, ok=False, message=str(error))
    if isinstance(action, AccountAction):
        return account_result(action.account, Done.FAILED, ok=False, message=str(error))
    if isinstance(action, Retire):
        return retire_result(action, Done.FAILED, ok=False, message=str(error))
    if isinstance(action, Publish | Unpublish | ImageReady):
        return image_result(action, Done.FAILED, ok=False, message=str(error))
    return refused(action)


def refused(action: Refuse | Wait) -> Outcome:
    """A request the plan would not carry out (or not yet: it waits in line for GPUs); its
    owner is its folder under requests/."""
    if isinstance(action, Wait):
        return Outcome(
            name=action.name,
            owner=request_owner(action.request_path),
            request_path=action.request_path,
            kind=Subject.CONTAINER,
            action=Done.WAITING,
            ok=True,  # nothing failed: the first pass that finds its GPUs free makes it
            message=action.message,
            place=action.place,
            waits_for=action.gpus,
            frees=action.frees,
            exists=action.exists,
        )
    return Outcome(
        name=action.name,
        owner=request_owner(action.request_path),
        request_path=action.request_path,
        kind=Subject.CONTAINER,
        action=Done.MEMBER_DOWN if action.member_down else Done.REFUSED,
        ok=False,
        message=action.message,
    )

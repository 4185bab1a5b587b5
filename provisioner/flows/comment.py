"""One comment command, from GitHub's event to ssp's answer in the thread.

1. A comment that does not start with `/ssp ` is not for ssp: nothing happens. Any other gets
   the `eyes` reaction at once, so the member sees it was picked up.
2. The verb (`validation.commands.parse_verb`); a comment that is none of the four is answered
   with the commands ssp knows (`confused`).
3. The container: on a lease issue, the one its marker names; on a pull request, only a
   merged one, and the container whose request file it added or changed (one on main now). A
   comment on an unmerged pull request refers to nothing: its files are not on main.
4. Who: the commenter must be the request's owner on main or one of main's policy admins, and
   GitHub must associate them with the repository.
5. Under the host lock: the rate limit (the ledger on the host), then the command, on the one
   container, with nothing from the comment but the verb.
   - restart: stop (cleanly, forced after a timeout) and start.
   - stop: mark the GPUs handed back (`user.ssp.released` "<today> owner"), reconcile (the
     plan takes its GPUs off, and a request waiting for them gets them), then stop.
   - start: clear the mark, start, reconcile (it gets its GPUs back, or waits for them).
   - snapshot: a snapshot named by ssp; beyond `commands.snapshots` of them, the oldest of
     `/ssp snapshot`'s own goes.
6. The answer in the thread and a reaction: `+1` done, `confused` refused, `-1` failed.

GitHub failures never stop host work: each is kept in `Done.github_errors` for the job's log.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from provisioner.host import commandlog
from provisioner.reporting import commandreplies as replies
from provisioner.reporting.notices import CommentLike
from provisioner.validation import commands as judge
from provisioner.validation.validate import Validation, today_for
from provisioner.values import state
from provisioner.values.errors import GithubError, LedgerError, LockHeldError, LxdError
from provisioner.values.loaded import Loaded
from provisioner.values.models import ContainerRequest
from provisioner.values.state import Instance


class CommandLxd(Protocol):
    """What a command does to LXD (provisioner.lxd.api.Lxd has it)."""

    def instance(self, name: str) -> Instance: ...

    def start(self, name: str) -> None: ...

    def stop(self, name: str, timeout_s: int = 60) -> None: ...

    def set_config(self, name: str, changes: dict[str, str | None]) -> None: ...

    def snapshot(self, name: str, snapshot: str) -> None: ...

    def delete_snapshot(self, name: str, snapshot: str) -> None: ...


class PullLike(Protocol):
    @property
    def merged(self) -> bool: ...


class CommandGitHub(Protocol):
    """What a command needs from GitHub (provisioner.github.commands.CommandsClient)."""

    def react(self, comment_id: int, content: str) -> None: ...

    def answer(self, number: int, comment_id: int, body: str) -> CommentLike: ...

    def pull(self, number: int) -> PullLike: ...

    def pull_files(self, number: int) -> list[str]: ...


@dataclass
class Done:
    """What became of one comment."""

    verb: str | None
    container: str = ""
    outcome: str = "ignored"  # ignored | done | refused | failed
    message: str = ""  # the answer posted in the thread
    answer_url: str = ""
    error: str = ""  # the host's failure in full, for the job's log
    github_errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Not a host failure (a refusal is an answer, not an error)."""
        return self.outcome != "failed"


class _Refused(Exception):  # noqa: N818 - control flow: "refused, and why"
    def __init__(self, why: str, name: str = "") -> None:
        super().__init__(why)
        self.name = name


@dataclass(frozen=True, kw_only=True)
class Host:
    """What the command module hands in: LXD, the host lock, the ledger, a reconcile pass."""

    lxd: CommandLxd
    lock: Callable[[], AbstractContextManager[object]]
    ledger: Path
    reconcile: Callable[[], object]


def run_command(
    event: judge.CommentEvent,
    validation: Validation,
    github: CommandGitHub,
    host: Host,
    *,
    now: datetime,
) -> Done:
    """Do what EVENT's comment asks, if it is a command its author may give; answer it."""
    done = Done(event.verb)
    if not event.addressed:
        return done
    config = validation.config
    page = config.policy.snapshot.page_url if config else ""
    _github(done, lambda: github.react(event.comment_id, "eyes"))
    try:
        if event.verb is None:
            done.outcome, done.message = "refused", replies.unknown(page)
        else:
            item = _target(event, validation, github)
            done.container = item.request.name
            detail = _run(event.verb, event, item, validation, host, now)
            done.outcome = "done"
            done.message = replies.done(event.verb, done.container, detail, page)
    except _Refused as r:
        done.container = done.container or r.name
        done.outcome, done.message = "refused", replies.refused(event.verb, str(r), page)
    except LxdError as e:
        done.outcome, done.error = "failed", str(e)
        done.message = replies.failed(event.verb or "", done.container, str(e), page)
    except (LedgerError, LockHeldError) as e:  # the host's own files: for the admins' eyes
        done.outcome, done.error = "failed", str(e)
        busy = "the host is busy with an apply or maintenance run; try again in a few minutes"
        why = busy if isinstance(e, LockHeldError) else "the host could not count commands"
        done.message = replies.failed(event.verb or "", done.container, why, page)
    except GithubError as e:  # the pull request could not be read: say so, change nothing
        done.github_errors.append(str(e))
        done.outcome = "failed"
        done.message = replies.failed(
            event.verb or "", done.container, "GitHub did not answer", page
        )
    reaction = {"done": "+1", "refused": "confused"}.get(done.outcome, "-1")
    _github(done, lambda: github.react(event.comment_id, reaction))

    def answer() -> None:
        done.answer_url = github.answer(event.number, event.comment_id, done.message).url

    _github(done, answer)
    return done


def _github(done: Done, call: Callable[[], None]) -> None:
    try:
        call()
    except GithubError as e:
        done.github_errors.append(str(e))


def _containers(validation: Validation) -> dict[str, Loaded]:
    return {
        item.path: item for item in validation.valid if isinstance(item.request, ContainerRequest)
    }


def _target(event: judge.CommentEvent, validation: Validation, github: CommandGitHub) -> Loaded:
    """The container request on main the comment is about, or _Refused."""
    containers = _containers(validation)
    if event.on_pull:
        if not github.pull(event.number).merged:
            raise _Refused(
                "this pull request is not merged, so it names no container yet; comment on "
                "the container's lease issue or on the pull request that made it, once merged"
            )
        names = judge.pull_container(
            github.pull_files(event.number),
            {path: item.request.name for path, item in containers.items()},
        )
        if len(names) > 1:
            listed = ", ".join(f"`{n}`" for n in names)
            raise _Refused(
                f"this pull request made several containers ({listed}); comment on the lease "
                "issue of the one you mean"
            )
        name = names[0] if names else None
        if name is None:
            raise _Refused("no container on main now came from this pull request")
    else:
        name = judge.lease_container(event)
        if name is None:
            raise _Refused(
                "this issue is not a container's lease issue (ssp's issue labelled `ssp-lease`)"
            )
    found = [item for item in containers.values() if item.request.name == name]
    if not found:
        raise _Refused(
            f"container `{name}` has no live request on main (its lease ended or it was given "
            "back); a pull request renewing it comes first",
            name,
        )
    return found[0]


def _run(
    verb: str,
    event: judge.CommentEvent,
    item: Loaded,
    validation: Validation,
    host: Host,
    now: datetime,
) -> str:
    config = validation.config
    assert config is not None  # noqa: S101  (a valid request implies a valid config)
    policy = config.policy
    request = item.request
    why = judge.refusal(event, request.owner, policy.admins)
    if why is not None:
        raise _Refused(why)
    with host.lock():
        ledger = commandlog.read(host.ledger)
        stamp = now.timestamp()
        earlier = judge.recent(ledger.get(request.name, []), stamp)
        if (too_many := judge.rate_refusal(earlier, stamp, policy.commands.per_hour)) is not None:
            raise _Refused(too_many)
        inst = host.lxd.instance(request.name)
        if not inst.managed or inst.label(state.OWNER) != request.owner:
            raise _Refused(f"`{request.name}` on this host is not the container ssp made for it")
        if inst.label(state.STATE) in (state.RETIRED_STATE, state.EXPIRED_STATE):
            raise _Refused(f"`{request.name}` is retired; a renewal by pull request restarts it")
        if verb == "snapshot" and policy.commands.snapshots == 0:
            raise _Refused(
                "the lab's policy takes no snapshots by command (`commands.snapshots: 0`)"
            )
        ledger[request.name] = [*earlier, stamp]
        commandlog.write(host.ledger, ledger)
        return _act(verb, item, inst, validation, host, now)


def _act(
    verb: str, item: Loaded, inst: Instance, validation: Validation, host: Host, now: datetime
) -> str:
    config = validation.config
    assert config is not None  # noqa: S101
    assert isinstance(item.request, ContainerRequest)  # noqa: S101  (_target finds containers)
    lxd, name, asked = host.lxd, item.request.name, item.request.gpus
    wanted = asked if isinstance(asked, int) else len(asked)
    if verb == "restart":
        lxd.stop(name)
        lxd.start(name)
        return "It was stopped and started again."
    if verb == "stop":
        today = today_for(config, now)
        lxd.set_config(name, {state.RELEASED: f"{today.isoformat()} owner"})
        host.reconcile()  # its GPUs come off now, and go to whoever waits for them
        lxd.stop(name)
        return (
            "It is stopped and its GPUs went back to the pool; the lease and its files stay. "
            "`/ssp start` starts it again and queues it for GPUs."
        )
    if verb == "start":
        if inst.label(state.RELEASED) is not None:
            lxd.set_config(name, {state.RELEASED: None})
        if not inst.running:  # as read under the lock a moment ago
            lxd.start(name)
        host.reconcile()  # asks for its GPUs again: it gets them, or waits for them
        return _gpus_now(_gpu_count(lxd.instance(name)), wanted)
    snapshot = judge.snapshot_name(now)
    dropped = judge.snapshots_to_drop(inst.snapshots, config.policy.commands.snapshots)
    lxd.snapshot(name, snapshot)
    for old in dropped:
        lxd.delete_snapshot(name, old)
    gone = (
        f" To keep {config.policy.commands.snapshots}, {_names(dropped)} went." if dropped else ""
    )
    return f"Snapshot `{snapshot}` was taken.{gone}"


def _gpu_count(inst: Instance) -> int:
    return sum(1 for d in inst.devices.values() if d.get("type") == "gpu")


def _gpus_now(has: int, wanted: int) -> str:
    if has >= wanted:
        return (
            f"It is running with {has} GPU{'' if has == 1 else 's'}." if has else "It is running."
        )
    return (
        f"It is running with {has} of its {wanted} GPUs for now: the others are in use; an "
        "apply gives them to it as soon as they are free."
    )


def _names(snapshots: Sequence[str]) -> str:
    return ", ".join(f"`{s}`" for s in snapshots)

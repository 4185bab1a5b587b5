"""The plan preview on a pull request: what apply would do with the PR's requests, now.

The PR check runs far from the GPU host, so it plans against the published snapshot
(`provisioner.status.snapshot`): the snapshot's instances are rebuilt as LXD state and the very
`make_plan` that apply runs decides which GPUs a count becomes and which port a container
gets. For each request the PR adds, changes or removes, a row says: the GPUs it would get if
applied now, its SSH port, its disk against the pool's free space, its owner's quota after
the merge, and for a change what changes (`expires: 2027-03-31 → 2027-09-30`).

A request that would not fit now (the GPUs it asks for are not free, its disk is more than
the pool has free, or apply would refuse it) gets a WARNING on its line: the snapshot may be
a day old and GPUs come free, so it does not fail the check, but an admin sees it in the
summary's first lines and on the file before merging. One whose GPUs are taken "would wait:
2nd in line; GPU 3 frees on 2027-01-20": merged, it waits in line behind the requests the
snapshot shows waiting (`ServerStatus.waiting`), and the first pass that finds its GPUs free
makes it. One refusal is an ERROR, not a warning: a pinned GPU the
snapshot shows held by a container of a count request. GPUs never move under a container, so
that pin cannot be had until the holder is given back, however long the PR waits. Without a
usable snapshot the rows keep the diff, say why nothing else is shown, a newly pinned GPU gets
a warning that nobody could check who holds it, and the check validates as always. Pure:
values in, values out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from provisioner.planning import plan as plans
from provisioner.reporting.escape import one_line
from provisioner.status import snapshot as snapshots
from provisioner.status.snapshot import Snapshot
from provisioner.validation.validate import Validation, today_for
from provisioner.values import plandata
from provisioner.values.changes import FileChange
from provisioner.values.loaded import Loaded, resources
from provisioner.values.models import AccountRequest, AnyRequest, ContainerRequest, ImageRequest
from provisioner.values.problems import Problem, Severity
from provisioner.values.requestpaths import REQUEST_PATH
from provisioner.values.sizes import format_size

_VERBS = {"A": "create", "M": "change", "D": "retire"}
WOULD_WAIT = "would wait:"
_SHOWN_CHARS = 60  # a purpose in a diff line is cut here


@dataclass(frozen=True)
class Row:
    verb: str  # create | change | retire
    path: str
    owner: str
    what: str  # "container alice-thesis" / "account bob on common"
    gpus: str = "—"
    port: str = "—"
    disk: str = "—"
    quota: str = "—"
    diff: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()  # why it would not fit now


@dataclass(frozen=True)
class Preview:
    source: str  # where the numbers come from, or why there are none
    usable: bool  # a snapshot was read and used
    rows: tuple[Row, ...]
    free_gpus: str = "—"
    pool: str = "—"
    problems: tuple[Problem, ...] = ()

    @property
    def flagged(self) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if r.flags)


def _value(field: str, value: Any) -> str:
    if value is None:
        return "(default)"
    if field == "ssh_keys":
        return f"{len(value)} key{'s' if len(value) != 1 else ''}"
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    text = one_line(str(value))
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


def diff(old: AnyRequest, new: AnyRequest) -> tuple[str, ...]:
    """`field: old → new` for each field that differs (keys by count, never their text)."""
    lines = []
    before, after = old.model_dump(), new.model_dump()
    for field in type(new).model_fields:
        if before.get(field) == after.get(field):
            continue
        if field == "ssh_keys" and len(before[field]) == len(after[field]):
            lines.append(f"ssh_keys: {_value(field, after[field])}, changed")
            continue
        lines.append(f"{field}: {_value(field, before.get(field))} → {_value(field, after[field])}")
    return tuple(lines)


def _what(request: AnyRequest) -> str:
    if isinstance(request, ImageRequest):
        return f"image {request.owner}/{request.name} from {request.source}"
    if isinstance(request, AccountRequest):
        return f"account {request.name} on {request.server}"
    return f"container {request.name}"


def _gpu_list(indices: Sequence[int]) -> str:
    return ", ".join(map(str, indices)) if indices else "none"


def _human(n: int) -> str:
    return format_size(n) if n > 0 else "0"


class _Planner:
    """The plan of the merged tree against the snapshot, read per request path."""

    def __init__(
        self, result: Validation, snapshot: Snapshot, now: datetime, focus: frozenset[str]
    ) -> None:
        config = result.config
        assert config is not None  # noqa: S101  (callers check)
        self.config = config
        self.snapshot = snapshot
        self.by_name = {i.name: i for i in snapshot.instances}
        made = plans.make_plan(
            plandata.Inputs(
                policy=config.policy,
                inventory=config.inventory,
                valid=result.valid,
                expired=result.expired,
                observed=snapshots.instances(snapshot, config.policy.ssh.listen),
                today=today_for(config, now),
                busy_ports=frozenset(snapshot.busy_ports),
                # Host ID blocks are the host's business; the preview does not plan them.
                pin_ids=False,
                merged=_line(result, snapshot, focus),
            )
        )
        self.actions = {
            getattr(a, "request_path", None)
            or getattr(getattr(a, "spec", None), "request_path", ""): a
            for a in made.actions
        }
        pool = snapshot.status.pool
        self.free_disk = None if pool is None else max(pool.total - pool.used, 0)
        self.disk_asked = 0
        # request path → the containers the snapshot shows holding the GPUs it pins
        self.held: dict[str, tuple[str, ...]] = {}

    def container(
        self, item: Loaded, old: ContainerRequest | None
    ) -> tuple[str, str, str, list[str]]:
        """GPUs, port, disk and the flags of one container request."""
        req = item.request
        assert isinstance(req, ContainerRequest)  # noqa: S101
        flags: list[str] = []
        action = self.actions.get(item.path)
        gpus = port = "—"
        if isinstance(action, plandata.Wait):
            # Merged now, it would wait in line for its GPUs (place by merge order: behind
            # every request on main that waits, since this PR is merged last).
            flags.append(f"{WOULD_WAIT} {action.line} ({action.message})")
            if action.gpu_holders:
                self.held[item.path] = action.gpu_holders
        elif isinstance(action, plandata.Refuse):
            flags.append(action.message)
            if action.gpu_holders:
                self.held[item.path] = action.gpu_holders
        elif action is not None and hasattr(action, "spec"):
            spec = action.spec
            gpus = _gpu_list([g.index for g in spec.gpus])
            held = self.by_name.get(req.name)
            kept = held is not None and held.ssh_port == spec.ssh_port
            port = f"{spec.ssh_port}{' (kept)' if kept else ''}"
            if spec.rdp_port is not None:
                port += f", RDP {spec.rdp_port}"
        res = resources(req, self.config.policy, self.config.inventory)
        held = self.by_name.get(req.name)
        had = held.disk if held is not None and held.disk is not None else None
        if had is None and old is not None:
            had = resources(old, self.config.policy, self.config.inventory).disk
        grows = max(res.disk - (had or 0), 0)
        disk = f"{format_size(res.disk)}"
        if had is not None and had != res.disk:
            disk = f"{_human(had)} → {format_size(res.disk)}"
        if self.free_disk is not None:
            self.disk_asked += grows
            disk += f" (+{_human(grows)}; pool has {_human(self.free_disk)} free)"
            if self.disk_asked > self.free_disk:
                flags.append(
                    f"its disk needs {_human(grows)} more and the pool has "
                    f"{_human(self.free_disk)} free"
                    + (" after the PR's other requests" if self.disk_asked > grows else "")
                )
        return gpus, port, disk, flags


def _line(result: Validation, snapshot: Snapshot, focus: frozenset[str]) -> dict[str, int]:
    """The waitlist's order as the snapshot knows it: those with a container first (they
    hold what they have), then those waiting on the host in their place in line, then main's
    requests merged after the snapshot, and the PR's own files last (not in the map)."""
    made = {i.name for i in snapshot.instances}
    waiting = {w.request_path: w.place for w in snapshot.status.waiting}
    later = len(waiting) + 1
    merged = {
        i.path: 0 if i.request.name in made else later for i in result.valid if i.path not in focus
    }
    return merged | waiting


def _problems(item: Loaded, flags: Sequence[str], held: bool = False) -> list[Problem]:
    data = item.doc.data if isinstance(item.doc.data, dict) else {}
    out = []
    for flag in flags:
        waits = flag.startswith(WOULD_WAIT)
        message = flag if waits else f"would not fit on the host now: {flag}"
        if held and not flag.startswith("its disk"):
            # Not a day-old guess: a count's GPUs stay with its container until it is given
            # back, so this pin cannot be had however long the PR waits.
            where = ("gpus",) if "gpus" in data else ()
            out.append(item.problem(where, "preview.gpu_held", flag))
        elif flag.startswith("its disk"):
            where = ("disk",) if "disk" in data else ()
            out.append(item.problem(where, "preview.disk", message, Severity.WARNING))
        else:
            where = ("gpus",) if "gpus" in data else ()
            out.append(item.problem(where, "preview.fit", message, Severity.WARNING))
    return out


def _unchecked_pins(item: Loaded, old: AnyRequest | None) -> list[Problem]:
    """Without a snapshot nobody can say whether a container holds the GPUs a PR newly pins."""
    req = item.request
    assert isinstance(req, ContainerRequest)  # noqa: S101
    if not isinstance(req.gpus, list) or not req.gpus:
        return []
    if isinstance(old, ContainerRequest) and old.gpus == req.gpus:
        return []  # the pins did not change: they were judged when they were made
    pins = ", ".join(map(str, req.gpus))
    return [
        item.problem(
            ("gpus",),
            "preview.gpu_unchecked",
            f"no usable state snapshot, so whether a container already holds GPU {pins} "
            "could not be checked; if one does, apply refuses this request (GPUs never move "
            "under a container)",
            Severity.WARNING,
        )
    ]


def build(
    result: Validation,
    changes: Sequence[FileChange],
    before: Mapping[str, Loaded],
    snapshot: Snapshot | None,
    source: str,
    quotas: Mapping[str, str],
    now: datetime,
) -> Preview:
    """The preview of CHANGES (the PR's) on the merged RESULT, BEFORE the base's requests.

    SOURCE says where the snapshot came from, or why there is none (then SNAPSHOT is None).
    QUOTAS: each member's quota use after the merge, as the summary words it.
    """
    planner = None
    if snapshot is not None and result.config is not None:
        planner = _Planner(result, snapshot, now, frozenset(c.path for c in changes))
    after = {i.path: i for i in result.valid}
    rows: list[Row] = []
    problems: list[Problem] = []
    for change in sorted(changes, key=lambda c: c.path):
        match = REQUEST_PATH.match(change.path)
        if not match:
            continue
        verb = _VERBS.get(change.status, "change")
        old = before.get(change.path)
        new = after.get(change.path)
        if verb == "retire" or new is None:
            rows.append(_retire_row(change.path, match["owner"], old, verb, planner))
            continue
        old_req = old.request if old is not None else None
        row = Row(
            verb="change" if old_req is not None else "create",
            path=change.path,
            owner=new.request.owner,
            what=_what(new.request),
            quota=quotas.get(new.request.owner, "—"),
            diff=diff(old_req, new.request) if old_req is not None else (),
        )
        if planner is not None and isinstance(new.request, ContainerRequest):
            was = old_req if isinstance(old_req, ContainerRequest) else None
            gpus, port, disk, flags = planner.container(new, was)
            row = replace(row, gpus=gpus, port=port, disk=disk, flags=tuple(flags))
            problems += _problems(new, flags, held=new.path in planner.held)
        elif planner is None and isinstance(new.request, ContainerRequest):
            problems += _unchecked_pins(new, old_req)
        rows.append(row)
    if planner is None:
        return Preview(source=source, usable=False, rows=tuple(rows), problems=tuple(problems))
    assert snapshot is not None  # noqa: S101
    status = snapshot.status
    pool = status.pool
    return Preview(
        source=source,
        usable=True,
        rows=tuple(rows),
        free_gpus=_gpu_list(status.free_gpus),
        pool="—"
        if pool is None
        else f"{pool.name}: {_human(max(pool.total - pool.used, 0))} free of {_human(pool.total)}",
        problems=tuple(problems),
    )


def _retire_row(
    path: str, owner: str, old: Loaded | None, verb: str, planner: _Planner | None
) -> Row:
    if old is None:  # not valid after the PR: the check's problems say why
        return Row(verb=verb, path=path, owner=owner, what="(not valid: see the problems above)")
    row = Row(verb="retire", path=path, owner=owner, what=_what(old.request))
    held = planner.by_name.get(old.request.name) if planner is not None else None
    if held is None or planner is None:
        return row
    index = {g.pci: g.index for g in planner.snapshot.status.gpus}
    freed = sorted(index[p] for p in held.gpus if p in index)
    return replace(
        row,
        gpus=f"frees {_gpu_list(freed)}",
        port=f"frees {held.ssh_port}" if held.ssh_port else "—",
        disk=f"frees {_human(held.disk)}" if held.disk else "—",
    )


def describe(snapshot: Snapshot, origin: str, now: datetime) -> str:
    """Where the preview's numbers come from, for the summary."""
    hours = snapshot.age(now).total_seconds() / 3600
    commit = f", main at {snapshot.commit[:12]}" if snapshot.commit else ""
    return (
        f"the host as published {snapshot.generated_at:%Y-%m-%d %H:%M %Z} "
        f"({hours:.1f} hours ago{commit}) in {origin}"
    )


def to_dict(preview: Preview) -> dict[str, Any]:
    """The preview for `ssp validate --format json`."""
    return {
        "usable": preview.usable,
        "source": preview.source,
        "free_gpus": preview.free_gpus,
        "pool": preview.pool,
        "rows": [
            {
                "verb": r.verb,
                "path": r.path,
                "owner": r.owner,
                "what": r.what,
                "gpus": r.gpus,
                "port": r.port,
                "disk": r.disk,
                "quota": r.quota,
                "diff": list(r.diff),
                "flags": list(r.flags),
            }
            for r in preview.rows
        ],
    }


def markdown(preview: Preview) -> str:
    """The preview's section of the PR check's job summary."""
    # jinja2 loads only for a step summary: a member's `ssp validate` never needs it.
    from provisioner.reporting.render import render  # noqa: PLC0415

    return render("preview.md.j2", p=preview)


def text_lines(preview: Preview) -> list[str]:
    """The preview for a terminal: one line per request, then its changes, indented."""
    lines = [
        f"preview: based on {preview.source}"
        if preview.usable
        else f"preview: no GPUs, ports or disk shown: {preview.source}"
    ]
    if preview.usable:
        lines.append(f"preview: free GPUs now: {preview.free_gpus}; pool {preview.pool}")
    for r in preview.rows:
        lines.append(
            f"preview: {r.verb} {r.path} ({r.what}): GPUs {r.gpus}; port {r.port}; "
            f"disk {r.disk}; quota after merge {r.quota}"
        )
        lines += [f"preview:   {line}" for line in r.diff]
        lines += [f"preview:   WOULD NOT FIT NOW: {flag}" for flag in r.flags]
    return lines

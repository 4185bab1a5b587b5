"""One reconcile pass: re-validate main, observe LXD, plan, and (unless dry-run) apply.

Level-triggered: every pass looks at all of main and all managed instances. A request that
is invalid on main is skipped and reported, and its instance is left alone; so is one that
does not fit beside older requests (a GPU, a quota, the host's capacity: newest refused
first); one whose GPUs are taken waits in line (merge order), and a pass that retires a
holder while someone waits plans again at once, so the first in line is made in that run. A
name LXD holds (a container, even retired or expired, or a login on a shared
server) stays its owner's: main is judged again with what was observed before planning. Only
a broken config, which every request needs, stops the pass before anything changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from provisioner.applying.apply import DEFAULT_JOBS, Applier, apply_plan
from provisioner.planning.cluster import members_seen
from provisioner.planning.plan import make_plan
from provisioner.validation.config import Config
from provisioner.validation.validate import Validation, today_for, with_held
from provisioner.values import held, idranges
from provisioner.values.idranges import IdMapUse, IdRange
from provisioner.values.outcomes import ApplyResult, Done
from provisioner.values.plandata import Inputs, Plan, Retire, Wait
from provisioner.values.problems import Problem, Severity
from provisioner.values.state import Image, Instance, LxdApi


@dataclass(frozen=True)
class Pass:
    validation: Validation
    plan: Plan
    result: ApplyResult
    skipped: tuple[Problem, ...]


@dataclass(frozen=True)
class Observed:
    instances: tuple[Instance, ...]
    servers: tuple[Instance, ...]
    id_maps: tuple[IdMapUse, ...] = ()  # every instance's host IDs, all projects
    images: tuple[Image, ...] = ()  # ssp's images (members' `kind: image`)
    members: Mapping[str, str] = field(default_factory=dict)  # cluster member → status

    def by_name(self) -> dict[str, Instance]:
        return {i.name: i for i in self.instances}


def observe(config: Config, lxd: LxdApi, *, id_maps: bool = True, members: bool = True) -> Observed:
    """What a pass reads of LXD, in one listing of every project's instances with their
    state: the project's own, each shared server's instance (in its project) and the host ID
    blocks of every instance on the host; then, in a cluster, its members (one request;
    without `members`, those the listing shows instead: see `run_pass`) and ssp's images (one
    request; only planning needs them). Connecting adds what the adapter needs; a shared
    server's project is not connected to."""
    everything = lxd.all_instances()
    cluster = lxd.members() if members else members_seen(everything)
    instances = tuple(everything.get(lxd.project, ()))
    found = tuple(
        i
        for shared in config.policy.shared_servers.values()
        for i in everything.get(shared.project, ())
        if i.name == shared.instance
    )
    if not id_maps:
        return Observed(instances, found, members=cluster)
    uses = tuple(
        idranges.use_of(project, i.name, i.config)
        for project, listed in everything.items()
        for i in listed
    )
    return Observed(instances, found, uses, tuple(lxd.images()), cluster)


def plan_for(
    validation: Validation,
    observed: Observed,
    *,
    now: datetime,
    sha: str,
    busy_ports: frozenset[int],
    gpu_refusal: str | None,
    id_spans: tuple[IdRange, ...] = idranges.LXD_DEFAULT_SPANS,
    pin_ids: bool = True,
    merged: Mapping[str, int] | None = None,
) -> Plan:
    config = validation.config
    assert config is not None  # noqa: S101  (callers check `blocking` first)
    return make_plan(
        Inputs(
            policy=config.policy,
            inventory=config.inventory,
            valid=validation.valid,
            expired=validation.expired,
            observed=observed.instances,
            servers=observed.servers,
            images=observed.images,
            today=today_for(config, now),
            sha=sha,
            busy_ports=busy_ports,
            gpu_refusal=gpu_refusal,
            skipped=validation.invalid_paths,
            id_spans=id_spans,
            id_maps=observed.id_maps,
            pin_ids=pin_ids,
            members=observed.members,
            merged=merged or {},
        )
    )


def run_pass(
    validation: Validation,
    lxd: LxdApi,
    servers: Callable[[str], LxdApi],
    *,
    now: datetime,
    sha: str,
    busy_ports: frozenset[int] = frozenset(),
    gpu_refusal: str | None = None,
    id_spans: tuple[IdRange, ...] = idranges.LXD_DEFAULT_SPANS,
    pin_ids: bool = True,
    dry_run: bool = False,
    log: Callable[[str], None] = lambda _l: None,
    ipv4_timeout_s: float = 60.0,
    jobs: int = DEFAULT_JOBS,
    merged: Mapping[str, int] | None = None,
) -> Pass:
    """One pass; `merged`: the waitlist's merge order (`MainCheckout.merged`).

    When the pass retired a container while a request waited in line for GPUs, a second
    pass follows at once: the retirement is done (stopped, its GPUs free), so the first in
    line is made now rather than by the next apply, which may be a day away. A retirement
    that failed leaves its container holding its GPUs, so nobody is given them twice.
    """
    config = validation.config
    assert config is not None  # noqa: S101  (callers check `blocking` first)
    args: dict[str, Any] = {
        "now": now,
        "sha": sha,
        "busy_ports": busy_ports,
        "gpu_refusal": gpu_refusal,
        "id_spans": id_spans,
        "pin_ids": pin_ids,
        "merged": merged,
    }
    first = _one_pass(validation, lxd, servers, args, dry_run, log, ipv4_timeout_s, jobs)
    freed = any(o.action == Done.RETIRED and o.ok for o in first.result.outcomes)
    if dry_run or not freed or not any(isinstance(a, Wait) for a in first.plan.actions):
        return first
    log("a retirement freed GPUs that a request waits for: planning again")
    again = _one_pass(validation, lxd, servers, args, dry_run, log, ipv4_timeout_s, jobs)
    # The retirements were the first pass's; everything else is as the second found it.
    done = {o.request_path for o in again.result.outcomes}
    earlier = tuple(o for o in first.result.outcomes if o.request_path not in done)
    kept = tuple(a for a in first.plan.actions if isinstance(a, Retire))
    return Pass(
        again.validation,
        replace(again.plan, actions=kept + again.plan.actions),
        replace(again.result, outcomes=earlier + again.result.outcomes),
        again.skipped,
    )


def _one_pass(
    validation: Validation,
    lxd: LxdApi,
    servers: Callable[[str], LxdApi],
    args: Mapping[str, Any],
    dry_run: bool,
    log: Callable[[str], None],
    ipv4_timeout_s: float,
    jobs: int,
) -> Pass:
    config = validation.config
    assert config is not None  # noqa: S101  (run_pass checks)
    sha = str(args["sha"])
    observed = observe(config, lxd, members=False)
    # Names and logins LXD holds stay their owners': main is judged again knowing them.
    validation = with_held(
        validation, held.from_lxd(observed.instances, observed.servers, config.policy)
    )
    plan = plan_for(validation, observed, **args)
    if plan.changes or plan.drift:
        # Something to do or to report: in a cluster the members' own states decide where a
        # new container goes and which member is out (one request; none on a single server).
        # A pass with nothing to do is planned from the members its listing shows.
        members = lxd.members()
        if members != observed.members:
            observed = replace(observed, members=members)
            plan = plan_for(validation, observed, **args)
    applier = Applier(lxd, config.policy, servers, sha=sha, ipv4_timeout_s=ipv4_timeout_s, log=log)
    result = apply_plan(plan, applier, observed.by_name(), dry_run=dry_run, jobs=jobs)
    skipped = tuple(p for p in validation.problems if p.severity is Severity.ERROR)
    return Pass(validation, plan, result, skipped)

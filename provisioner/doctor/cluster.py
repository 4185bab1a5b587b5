"""`ssp doctor`'s checks of an LXD cluster: every member online and in the inventory, and
each member's storage pool. Pure: `provisioner.flows.checkup` observes, these judge.

On a single server (LXD not clustered, one host in config/hosts.yaml) both are n/a.
"""

from __future__ import annotations

from collections.abc import Mapping

from provisioner.doctor.checks import Check, not_applicable, passed, problem_found
from provisioner.values.models import Inventory
from provisioner.values.sizes import human_size
from provisioner.values.state import Pool

ONLINE = "Online"
POOL_FULL = 0.9
GUIDE = "see the admin guide, 'Add a second server to the lab'"


def check_members(
    members: Mapping[str, str], inventory: Inventory, silent: Mapping[str, str] | None = None
) -> Check:
    """cluster.members: the cluster's members are the inventory's servers, all online and
    answering. `silent`: members LXD still calls Online whose requests fail (member → the
    error): a member going away, before the others notice."""
    name = "cluster.members"
    hosts = sorted(inventory.hosts)
    if not members:
        if len(hosts) > 1:
            return problem_found(
                name,
                f"config/hosts.yaml lists {len(hosts)} servers ({', '.join(hosts)}) but LXD "
                "here is not clustered: nothing can be placed on the others",
                f"join them into one LXD cluster named as in config/hosts.yaml ({GUIDE})",
            )
        return not_applicable(name, "a single server: LXD is not clustered")
    problems = []
    down = sorted(m for m, status in members.items() if status != ONLINE)
    if down:
        states = ", ".join(f"{m} is {members[m]}" for m in down)
        problems.append(f"{states}: its containers' requests are reported 'member down'")
    for member, error in sorted((silent or {}).items()):
        problems.append(
            f"{member} is listed Online but does not answer ({error}): it is going away or "
            "down; its containers' requests are reported 'member down'"
        )
    unlisted = sorted(set(members) - set(hosts))
    if unlisted:
        problems.append(
            f"member(s) {', '.join(unlisted)} not in config/hosts.yaml: nothing is placed there"
        )
    absent = sorted(set(hosts) - set(members))
    if absent:
        problems.append(
            f"config/hosts.yaml lists {', '.join(absent)}, which the cluster does not have"
        )
    if problems:
        return problem_found(
            name,
            "; ".join(problems),
            "start LXD on a member that is down (`systemctl start lxd.service`) and check its "
            f"network; name each member as in config/hosts.yaml ({GUIDE})",
        )
    return passed(
        name, f"{len(members)} members online, each in config/hosts.yaml: {', '.join(hosts)}"
    )


def check_member_pools(pool: str, found: Mapping[str, Pool | None]) -> Check:
    """pool.members: the policy's pool on every member that answers, none nearly full."""
    name = "pool.members"
    if not found:
        return not_applicable(name, "a single server: see pool.space")
    missing = sorted(m for m, p in found.items() if p is None)
    full = sorted(
        m for m, p in found.items() if p is not None and p.total and p.used >= POOL_FULL * p.total
    )
    shown = ", ".join(
        f"{m}: {human_size(p.free)} free of {human_size(p.total)}"
        for m, p in sorted(found.items())
        if p is not None
    )
    if missing or full:
        parts = [f"no pool {pool!r} on {m}" for m in missing]
        parts += [f"pool {pool!r} on {m} is over {int(POOL_FULL * 100)}% full" for m in full]
        return problem_found(
            name,
            f"{'; '.join(parts)} ({shown or 'no member reports space'})",
            "free space on that member (retired containers, old snapshots) or grow its pool; "
            "a member without the pool needs it created when it joins",
        )
    return passed(name, f"pool {pool!r} on every member that answers: {shown}")

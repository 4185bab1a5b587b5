"""Idle-GPU notices: a comment in the container's lease issue telling its owner that a GPU
it holds has done (next to) nothing for the policy's `usage.idle_days`.

The issue is the one `provisioner.reporting.notices` keeps per container (found by its
marker; created, open and saying "running", when there is none yet). One comment per idle
stretch: its marker names the container, the GPU and the day the stretch began, so reruns
find it and never post it twice, and a GPU that is used and then left idle again gets a new
one. A closed issue is not reopened: the mention in the comment still reaches the owner.
Only a notice: releasing the GPU is an admin's decision.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from provisioner.planning.leases import Lease, Stage
from provisioner.reporting.notices import (
    LABEL,
    NoticeClient,
    Sent,
    _by_name,
    _mention,
    issue_body,
    issue_marker,
    issue_title,
    page_line,
)
from provisioner.values.errors import GithubError
from provisioner.values.policymodels import Policy
from provisioner.values.requestpaths import under_requests
from provisioner.values.usage import IdleGpu


def idle_marker(gpu: IdleGpu, policy: Policy) -> str:
    return f"<!-- ssp:idle-notice {gpu.container} {gpu.pci} {gpu.since_day(policy.timezone)} -->"


def idle_text(gpu: IdleGpu, lease: Lease, policy: Policy) -> str:
    usage = policy.usage
    where = f"`{lease.request_path}`" if under_requests(lease.request_path) else "its request"
    return (
        f"{_mention(lease.owner)}: the GPU at `{gpu.pci}` attached to container "
        f"`{gpu.container}` has been idle since **{gpu.since_day(policy.timezone)}** "
        f"({policy.timezone}): its utilisation never rose above {usage.idle_utilization} % "
        f"(at most {gpu.peak} %) for {usage.idle_days} days or more. GPUs are scarce here: if "
        f"you no longer need it, give it back by lowering `gpus:` in {where}. If you do, "
        "nothing needs to be done; this notice is not repeated while it stays idle.\n"
    )


def watched(idle: Sequence[IdleGpu], leases: Sequence[Lease]) -> set[str]:
    """The containers an idle notice is due on: running leases (not ended ones)."""
    running = {lease.name for lease in leases if lease.stage in (Stage.ACTIVE, Stage.REMINDER)}
    return {gpu.container for gpu in idle if gpu.container in running}


def send_idle(
    client: NoticeClient,
    idle: Sequence[IdleGpu],
    leases: Sequence[Lease],
    policy: Policy,
    log: Callable[[str], None] = lambda _line: None,
) -> list[Sent]:
    """Post a notice for each idle GPU of a running lease; GitHub failures are recorded."""
    by_name = {lease.name: lease for lease in leases}
    due = [gpu for gpu in idle if gpu.container in watched(idle, leases)]
    if not due:
        return []
    try:
        issues = _by_name(client.our_issues(LABEL))
    except GithubError as e:
        return [Sent(g.container, f"idle {g.pci}", error=str(e)) for g in due]
    done: list[Sent] = []
    for gpu in due:
        lease = by_name[gpu.container]
        try:
            issue = issues.get(lease.name)
            if issue is None:
                body = issue_body(lease, policy)
                issue = client.create_issue(
                    issue_title(lease), body, LABEL, issue_marker(lease.name)
                )
                issues[lease.name] = issue
            text = idle_text(gpu, lease, policy) + page_line(policy)
            posted = client.upsert_comment(issue.number, text, idle_marker(gpu, policy))
            if posted.created:
                log(f"{lease.name}: GPU {gpu.pci} idle; told {lease.owner} in #{issue.number}")
            done.append(
                Sent(lease.name, f"idle {gpu.pci}", issue.number, posted.url, posted.created)
            )
        except GithubError as e:
            done.append(Sent(lease.name, f"idle {gpu.pci}", error=str(e)))
    return done

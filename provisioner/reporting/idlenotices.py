"""Idle-GPU notices: a comment in the container's lease issue telling its owner that a GPU
it holds has done (next to) nothing for the policy's `usage.idle_days`.

The issue is the one `provisioner.reporting.notices` keeps per container (found by its
marker; created, open and saying "running", when there is none yet). One comment per idle
stretch: its marker names the container, the GPU and the day the stretch began, so reruns
find it and never post it twice, and a GPU that is used and then left idle again gets a new
one. A closed issue is not reopened: the mention in the comment still reaches the owner.

Where the policy consents to releasing idle GPUs (`usage.idle_action: release`, decided in
provisioner.status.idlerelease), two more comments follow in the same issue: the final notice,
naming the day of the release (one per idle stretch: its marker names the container and the
day the stretch began), and, on that day, the release itself. Without that consent the notice
is all that happens.
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
from provisioner.values.usage import IdleGpu, IdleHold


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
        + _consent(policy)
    )


def _consent(policy: Policy) -> str:
    if policy.usage.idle_action != "release":
        return ""
    return (
        "\nThis lab releases GPUs that stay idle: if it is still idle on the next maintenance "
        "pass, a final notice here names the day its GPUs are taken off the container "
        f"({policy.usage.idle_grace_days} days later). Your container and data stay.\n"
    )


def final_marker(hold: IdleHold) -> str:
    return f"<!-- ssp:idle-final {hold.container} {hold.since} -->"


def released_marker(hold: IdleHold) -> str:
    return f"<!-- ssp:idle-released {hold.container} {hold.since} -->"


def _gpu_list(hold: IdleHold) -> str:
    return ", ".join(f"`{pci}`" for pci in hold.pcis) or "its GPUs"


def final_text(hold: IdleHold, lease: Lease, policy: Policy) -> str:
    """The final notice: the day the GPUs go unless they are used before it."""
    return (
        f"{_mention(lease.owner)}: **final notice.** The GPUs of container `{hold.container}` "
        f"({_gpu_list(hold)}) have been idle since {hold.since} ({policy.timezone}). Unless "
        f"they are used before then, they will be **released on {hold.release_on}**: taken "
        "off the container, which keeps running with your data, and given to the next "
        "request. Using a GPU again (above "
        f"{policy.usage.idle_utilization} % utilisation) cancels this.\n"
    )


def released_text(hold: IdleHold, lease: Lease, policy: Policy) -> str:
    return (
        f"{_mention(lease.owner)}: the GPUs of container `{hold.container}` "
        f"({_gpu_list(hold)}) were released for idleness on {hold.release_on}, as the final "
        f"notice of {hold.final_on} said. The container keeps running without them, your data "
        "untouched. To get GPUs back, comment `/ssp start` on its pull request or renew its "
        "lease (a pull request that changes `expires:`); it then waits for free GPUs like a "
        "new request.\n"
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
    due = []
    for gpu in (g for g in idle if g.container in watched(idle, leases)):
        lease = by_name[gpu.container]
        text, marker = idle_text(gpu, lease, policy), idle_marker(gpu, policy)
        due.append((lease, f"idle {gpu.pci}", text, marker))
    return _post(client, due, policy, log)


def send_final(
    client: NoticeClient,
    holds: Sequence[IdleHold],
    leases: Sequence[Lease],
    policy: Policy,
    log: Callable[[str], None] = lambda _line: None,
) -> list[Sent]:
    """Post the final notice of each hold due one, and the release's comment of each released
    now, in the container's lease issue. `Sent.new` is False when the comment was there."""
    by_name = {lease.name: lease for lease in leases}
    due = []
    for hold in (h for h in holds if h.container in by_name):
        lease = by_name[hold.container]
        if hold.due == "final":
            due.append((lease, "idle-final", final_text(hold, lease, policy), final_marker(hold)))
        elif hold.due == "release":
            text, marker = released_text(hold, lease, policy), released_marker(hold)
            due.append((lease, "idle-release", text, marker))
    return _post(client, due, policy, log)


def _post(
    client: NoticeClient,
    due: Sequence[tuple[Lease, str, str, str]],
    policy: Policy,
    log: Callable[[str], None],
) -> list[Sent]:
    """Each (lease, notice, text, marker) as one comment in the lease's issue (made when there
    is none yet); a GitHub failure is recorded in its `Sent`, and the others go on."""
    if not due:
        return []
    try:
        issues = _by_name(client.our_issues(LABEL))
    except GithubError as e:
        return [Sent(lease.name, notice, error=str(e)) for lease, notice, _, _ in due]
    done: list[Sent] = []
    for lease, notice, text, marker in due:
        try:
            issue = issues.get(lease.name)
            if issue is None:
                body = issue_body(lease, policy)
                issue = client.create_issue(
                    issue_title(lease), body, LABEL, issue_marker(lease.name)
                )
                issues[lease.name] = issue
            posted = client.upsert_comment(issue.number, text + page_line(policy), marker)
            if posted.created:
                log(f"{lease.name}: {notice}; told {lease.owner} in #{issue.number}")
            done.append(Sent(lease.name, notice, issue.number, posted.url, posted.created))
        except GithubError as e:
            done.append(Sent(lease.name, notice, error=str(e)))
    return done

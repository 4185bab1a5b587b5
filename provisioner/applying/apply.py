"""Apply walks a Plan against LXD and says, per request, what happened.

Every step of a new container follows the same order: create stopped (labelled
`creating`), replace its config and devices with exactly ours (a clone inherits the base's
devices and security settings), give it its own identity, verify, start, wait for an IPv4,
create the owner's user and keys inside, then mark it `ready` and protected. A failure on
one request is recorded and the others go on; a half-made instance keeps its `creating`
label and is removed and made again on the next run. A new container the plan gave a warm
clone claims it instead of being created (provisioner.applying.warm). Nothing from a request
reaches a shell: commands are argv lists and files are pushed as bytes.

Changes to existing instances run one at a time, in the plan's order; new containers are
then made a few at a time (`jobs`), since each mostly waits on LXD. The `LxdApi` given must
therefore be safe to call from several threads (the real adapter and the fake are).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from provisioner.applying import inside, warm
from provisioner.applying.accounts import apply_account
from provisioner.applying.failures import source_failure, start_failure
from provisioner.applying.images import member_refusal, publish, remove_members, unpublish
from provisioner.values import idranges, state
from provisioner.values import spec as specs
from provisioner.values.errors import LxdError
from provisioner.values.outcomes import (
    ApplyResult,
    Done,
    Outcome,
    container_outcome,
    failed,
    image_result,
    refused,
    retire_result,
)
from provisioner.values.plandata import (
    AccountAction,
    Action,
    Create,
    ImageReady,
    Kind,
    Plan,
    Publish,
    Ready,
    Refuse,
    Restore,
    Retire,
    Start,
    Unpublish,
    Update,
    Wait,
    unchanged,
)
from provisioner.values.policymodels import Policy
from provisioner.values.state import Instance, LxdApi

IPV4_TIMEOUT_S = 60.0
# New containers made at once. Each spends most of its time waiting on LXD (the copy's I/O,
# the start's idmap shift and proxy set-up), so a few overlap well even on two cores.
DEFAULT_JOBS = 4
CREATE_TRIES = 3
# New containers whose host IDs LXD chooses are created one at a time (see Applier.create).
_CREATE_LOCK = threading.Lock()


@dataclass
class Applier:
    """Walks one plan. `servers` gives the LXD API of a shared server's project."""

    lxd: LxdApi
    policy: Policy
    servers: Callable[[str], LxdApi]
    sha: str = ""
    ipv4_timeout_s: float = IPV4_TIMEOUT_S
    log: Callable[[str], None] = field(default=lambda _line: None)

    def _config(self, spec: specs.Spec, keep: Mapping[str, str], status: str) -> dict[str, str]:
        """Our keys, the not-ours keys found (reported as drift), a GPU release's labels."""
        config = {
            k: v
            for k, v in keep.items()
            if k in specs.KEPT_LABELS or not (specs.ours(k, spec) or specs.lxd_managed(k))
        }
        config.update(spec.config)
        config[state.STATE] = status
        config[state.SHA] = self.sha
        if status != "ready":  # deletable until it is finished
            config["security.protection.delete"] = "false"
        return config

    def create(self, action: Create) -> Outcome:
        spec = action.spec
        if action.replace_half_made:
            self.log(f"{spec.name}: removing a half-made instance from an earlier run")
            self._remove(spec.name)
        refusal = member_refusal(self.lxd, spec, self.policy)
        if refusal:
            self.log(f"{spec.name}: refused: {refusal}")
            return container_outcome(spec, Done.REFUSED, ok=False, message=refusal)
        self.log(f"{spec.name}: creating from {spec.image}")
        labels = {
            state.MANAGED: "true",
            state.OWNER: spec.owner,
            state.REQUEST: spec.request_path,
            state.STATE: "creating",
            "security.protection.delete": "false",
        }
        config = self._config(spec, {}, "creating")
        shifted = False
        if action.warm:  # made ahead: its copy and re-own are already paid (applying.warm)
            self.log(f"{spec.name}: claiming warm clone {action.warm}")
            try:
                shifted = warm.claim(self.lxd, spec, action.warm, config)
            except LxdError as e:
                raise start_failure(spec, e) from e
        elif idranges.BASE in spec.config:
            self._make(spec, labels, config)
        else:
            self._make_in_lxds_block(spec, labels, config)
        inside.give_identity(self.lxd, spec.name)
        made = self._verify(spec, config)
        if shifted:
            warm.mark_shifted(self.lxd, made, self.log)
        self._start(spec)
        # The owner is set up while the container boots: only the desktop needs the network.
        removed = ""
        if spec.users:
            removed = remove_members(self.lxd, spec, self.policy)  # a publisher's login, say
            inside.setup_owner(self.lxd, spec)
        ipv4 = self.lxd.wait_ipv4(spec.name, self.ipv4_timeout_s)
        if spec.users and spec.desktop:
            self._install_desktop(spec, ipv4)
        self.lxd.set_config(spec.name, {state.STATE: "ready", "security.protection.delete": "true"})
        message = "; ".join(n for n in ("" if ipv4 else "no IPv4 address yet", removed) if n)
        return container_outcome(spec, Done.CREATED, ipv4=ipv4, message=message)

    def _make(self, spec: specs.Spec, labels: Mapping[str, str], config: Mapping[str, str]) -> None:
        try:
            self.lxd.create(
                spec.name,
                spec.source,
                labels,
                {},
                spec.profiles,
                spec.description,
                target=spec.member,
            )
        except LxdError as e:
            raise source_failure(spec, e) from e
        # A clone carries the base's devices and security keys: replace them all with ours.
        try:  # LXD checks the NVIDIA runtime's tools here already
            self.lxd.replace(spec.name, config, spec.devices, spec.profiles, spec.description)
        except LxdError as e:
            raise start_failure(spec, e) from e

    def _make_in_lxds_block(
        self, spec: specs.Spec, labels: Mapping[str, str], config: Mapping[str, str]
    ) -> None:
        """Make it where LXD chooses the host ID block (the project forbids ssp's choice).

        LXD picks the block when the instance first becomes isolated: at the create (from
        the project's profile) or at the replace (from our config). It gave two instances
        doing that at once the same block (5.0.2), so both steps go one container at a time,
        and the block is checked against every instance on the host, since someone else may
        have made one at that moment. A clash is removed (never started, nothing in it) and
        made again.
        """
        with _CREATE_LOCK:
            clash = ""
            for _attempt in range(CREATE_TRIES):
                self._make(spec, labels, config)
                clash = idranges.shared_with(self.lxd.id_maps(), self.policy.lxd.project, spec.name)
                if not clash:
                    return
                self.log(f"{spec.name}: LXD gave it host IDs {clash}; making it again")
                self._remove(spec.name)
        raise LxdError(
            f"LXD gave {spec.name} host IDs that another instance has ({clash}) "
            f"{CREATE_TRIES} times; it was removed: see `ssp doctor` (idmaps.overlap)"
        )

    def _remove(self, name: str) -> None:
        # A half-made clone of a privileged base refuses every config change, the unprotect
        # included; it was created unprotected, so only touch the key when it is set.
        if self.lxd.instance(name).config.get("security.protection.delete") == "true":
            self.lxd.set_config(name, {"security.protection.delete": "false"})
        self.lxd.stop(name)
        self.lxd.delete(name)

    def _verify(self, spec: specs.Spec, sent: Mapping[str, str]) -> Instance:
        """The instance as LXD holds it, with exactly the config and devices sent (or LxdError)."""
        inst = self.lxd.instance(spec.name)
        # LXD stores no empty values (setting "" removes a key), e.g. the sha of a checkout
        # that is not a git repository: absent is what was asked for then.
        wrong = sorted(k for k, v in sent.items() if inst.config.get(k, "") != v)
        # A key of ours that we did not send (an inherited security.privileged or raw.lxc)
        # is as wrong as one LXD dropped.
        wrong += sorted(k for k in inst.config if specs.ours(k, spec) and k not in sent)
        if state.plain_devices(inst.devices) != state.plain_devices(spec.devices):
            wrong.append("devices")
        if wrong:
            raise LxdError(f"LXD did not keep the configuration asked for: {', '.join(wrong)}")
        return inst

    def _start(self, spec: specs.Spec) -> None:
        try:
            self.lxd.start(spec.name)
        except LxdError as e:
            raise start_failure(spec, e) from e

    def _install_desktop(self, spec: specs.Spec, ipv4: tuple[str, ...]) -> None:
        if not ipv4:
            raise LxdError(
                f"{spec.name} got no IPv4 address within {self.ipv4_timeout_s:.0f} s, so the "
                "desktop (xrdp, xfce) could not be installed; the next apply makes it again"
            )
        inside.install_desktop(self.lxd, spec)

    def update(self, action: Update, current: Instance) -> Outcome:
        spec = action.spec
        self.log(f"{spec.name}: updating ({'; '.join(action.reasons)})")
        try:  # devices added to a running container are attached (and can fail) right away
            self.lxd.replace(
                spec.name,
                self._config(spec, current.config, "ready"),
                spec.devices,
                spec.profiles,
                spec.description,
            )
        except LxdError as e:
            raise start_failure(spec, e) from e
        if action.restart and current.running:
            self.lxd.stop(spec.name)
        if action.restart or not current.running:
            self._start(spec)
        # Commands run only in a running container: keys are pushed once it is up.
        if action.push_keys and spec.users:
            inside.push_keys(
                self.lxd, spec.name, login=spec.login, keys=spec.keys, uid=spec.uid, gid=spec.uid
            )
        ipv4 = self.lxd.wait_ipv4(spec.name, self.ipv4_timeout_s)
        return container_outcome(spec, Done.UPDATED, ipv4=ipv4, message="; ".join(action.reasons))

    def start(self, action: Start) -> Outcome:
        self.log(f"{action.spec.name}: starting (found stopped)")
        self._start(action.spec)
        ipv4 = self.lxd.wait_ipv4(action.spec.name, self.ipv4_timeout_s)
        return container_outcome(action.spec, Done.STARTED, ipv4=ipv4)

    def restore(self, action: Restore) -> Outcome:
        """Stop, roll back, make it ours again, start: the snapshot brought back its old config
        (and authorized_keys) too, so the spec is put back, the restore recorded in it."""
        spec, snapshot = action.spec, action.snapshot
        self.log(f"{spec.name}: rolling back to snapshot {snapshot}")
        self.lxd.stop(spec.name)
        self.lxd.restore_snapshot(spec.name, snapshot)
        back = self.lxd.instance(spec.name)
        self.lxd.replace(
            spec.name,
            self._config(spec, back.config, "ready"),
            spec.devices,
            spec.profiles,
            spec.description,
        )
        self._start(spec)
        if spec.users:
            inside.push_keys(
                self.lxd, spec.name, login=spec.login, keys=spec.keys, uid=spec.uid, gid=spec.uid
            )
        ipv4 = self.lxd.wait_ipv4(spec.name, self.ipv4_timeout_s)
        message = f"rolled back to snapshot {snapshot}; files written since then are gone"
        return container_outcome(spec, Done.RESTORED, ipv4=ipv4, message=message)

    def retire(self, action: Retire) -> Outcome:
        self.log(f"{action.name}: retiring ({action.reason})")
        self.lxd.stop(action.name)
        snapshot = f"retired-{action.today:%Y%m%d}"
        inst = self.lxd.instance(action.name)
        if snapshot not in inst.snapshots:
            self.lxd.snapshot(action.name, snapshot)
        # Protected again in case it was retired half-made (those are still deletable).
        self.lxd.set_config(
            action.name,
            {
                state.RETIRED: action.today.isoformat(),
                state.STATE: state.EXPIRED_STATE if action.expired else state.RETIRED_STATE,
                "boot.autostart": "false",
                "security.protection.delete": "true",
            },
        )
        keep = self.policy.retention_days
        again = (
            "; a renewal (a later `expires` in its request) starts it again with its data"
            if action.expired
            else "; an admin can restore it until then"
        )
        return retire_result(
            action,
            Done.RETIRED,
            ok=True,
            message=f"{action.reason}: stopped and kept as snapshot {snapshot} for "
            f"{keep} days{again}",
        )

    def account(self, action: AccountAction) -> Outcome:
        return apply_account(action, policy=self.policy, servers=self.servers, log=self.log)

    # --- the walk -----------------------------------------------------------------------------

    def step(self, action: Action, observed: Mapping[str, Instance]) -> Outcome:
        if isinstance(action, Create):
            return self.create(action)
        if isinstance(action, Update):
            return self.update(action, observed[action.spec.name])
        if isinstance(action, Start):
            return self.start(action)
        if isinstance(action, Ready):
            ipv4 = observed[action.spec.name].ipv4
            return container_outcome(action.spec, Done.UNCHANGED, ipv4=ipv4)
        if isinstance(action, Restore):
            return self.restore(action)
        if isinstance(action, Retire):
            return self.retire(action)
        if isinstance(action, AccountAction):
            return self.account(action)
        if isinstance(action, Publish):
            return publish(self.lxd, action, sha=self.sha, log=self.log)
        if isinstance(action, Unpublish):
            return unpublish(self.lxd, action, log=self.log)
        if isinstance(action, ImageReady):
            return image_result(action, Done.UNCHANGED)
        return refused(action)


def apply_plan(
    plan: Plan,
    applier: Applier,
    observed: Mapping[str, Instance],
    *,
    dry_run: bool = False,
    jobs: int = DEFAULT_JOBS,
) -> ApplyResult:
    """Walk the plan; one request's failure is recorded and the others still run.

    What already exists is changed first, one action at a time in the plan's order, so a
    retirement has freed its GPUs and port before anything new starts. Then new containers
    are made, up to `jobs` at a time. Outcomes come back in the plan's order either way.
    """
    if dry_run:
        return ApplyResult(
            outcomes=tuple(_planned(a, observed, applier) for a in plan.actions),
            drift=plan.drift,
            sha=plan.sha,
            dry_run=True,
        )

    def attempt(action: Action) -> Outcome:
        try:
            return applier.step(action, observed)
        except LxdError as e:
            applier.log(f"{action.name}: failed: {e}")
            return failed(action, e)

    outcomes: dict[int, Outcome] = {}
    new = {i: a for i, a in enumerate(plan.actions) if isinstance(a, Create)}
    for i, action in enumerate(plan.actions):
        if i not in new:
            outcomes[i] = attempt(action)
    if jobs <= 1 or len(new) <= 1:
        outcomes.update({i: attempt(a) for i, a in new.items()})
    else:
        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="ssp-create") as pool:
            outcomes.update(zip(new, pool.map(attempt, new.values()), strict=True))
    return ApplyResult(
        outcomes=tuple(outcomes[i] for i in sorted(outcomes)), drift=plan.drift, sha=plan.sha
    )


def _planned(action: Action, observed: Mapping[str, Instance], applier: Applier) -> Outcome:
    if isinstance(action, Refuse | Wait):
        return failed(action, LxdError(action.message))
    if unchanged(action):
        return applier.step(action, observed)  # nothing to change: no request either
    word = {
        Kind.CREATE: Done.WOULD_CREATE,
        Kind.UPDATE: Done.WOULD_UPDATE,
        Kind.START: Done.WOULD_START,
        Kind.RETIRE: Done.WOULD_RETIRE,
        Kind.RESTORE: Done.WOULD_RESTORE,
        Kind.ACCOUNT: Done.WOULD_CHANGE_ACCOUNT,
        Kind.PUBLISH: Done.WOULD_PUBLISH,
        Kind.UNPUBLISH: Done.WOULD_DELETE,
    }[action.kind]
    return dataclasses.replace(failed(action, LxdError("")), action=word, ok=True, message="")

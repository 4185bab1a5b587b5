"""Apply walks a Plan against LXD and says, per request, what happened.

Every step of a new container follows the same order: create stopped (labelled
`creating`), replace its config and devices with exactly ours (a clone inherits the base's
devices and security settings), give it its own identity, verify, start, wait for an IPv4,
create the owner's user and keys inside, then mark it `ready` and protected. A failure on
one request is recorded and the others go on; a half-made instance keeps its `creating`
label and is removed and made again on the next run. Nothing from a request reaches a
shell: commands are argv lists and files are pushed as bytes.

Changes to existing instances run one at a time, in the plan's order; new containers are
then made a few at a time (`jobs`), since each mostly waits on LXD. The `LxdApi` given must
therefore be safe to call from several threads (the real adapter and the fake are).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date

from provisioner import idranges, state, subids
from provisioner import spec as specs
from provisioner.errors import LxdError
from provisioner.hostports import listening_ports
from provisioner.identity import HOST_KEY, OLD_HOST_KEYS, new_identity
from provisioner.models import Policy
from provisioner.plan import (
    AccountAction,
    Action,
    Create,
    Drift,
    Plan,
    Ready,
    Refuse,
    Retire,
    Start,
    Update,
    unchanged,
)
from provisioner.state import Instance, LxdApi

IPV4_TIMEOUT_S = 60.0
# New containers made at once. Each spends most of its time waiting on LXD (the copy's I/O,
# the start's idmap shift and proxy set-up), so a few overlap well even on two cores.
DEFAULT_JOBS = 4
DESKTOP_PACKAGES = ("xrdp", "xfce4", "xfce4-terminal", "dbus-x11")
USER_EXISTS = 9  # useradd's exit status for "user already exists"
READ_TRIES = 3
CREATE_TRIES = 3
# New containers whose host IDs LXD chooses are created one at a time (see Applier.create).
_CREATE_LOCK = threading.Lock()


@dataclass(frozen=True)
class GpuInfo:
    index: int
    model: str
    pci: str


@dataclass(frozen=True)
class Outcome:
    """What happened to one request: the data the PR comment is rendered from."""

    name: str
    owner: str
    request_path: str
    kind: str  # container | account
    action: str  # created, updated, started, unchanged, retired, refused, failed, locked
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


@dataclass(frozen=True)
class ApplyResult:
    outcomes: tuple[Outcome, ...]
    drift: tuple[Drift, ...] = ()
    sha: str = ""
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes)


def container_outcome(
    spec: specs.Spec, action: str, ipv4: tuple[str, ...] = (), ok: bool = True, message: str = ""
) -> Outcome:
    return Outcome(
        name=spec.name,
        owner=spec.owner,
        request_path=spec.request_path,
        kind="container",
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
    )


@dataclass
class Applier:
    """Walks one plan. `servers` gives the LXD API of a shared server's project."""

    lxd: LxdApi
    policy: Policy
    servers: Callable[[str], LxdApi]
    sha: str = ""
    ipv4_timeout_s: float = IPV4_TIMEOUT_S
    log: Callable[[str], None] = field(default=lambda _line: None)

    # --- containers ---------------------------------------------------------------------------

    def _config(self, spec: specs.Spec, keep: Mapping[str, str], status: str) -> dict[str, str]:
        """Our keys, plus the not-ours keys found on the instance (reported as drift)."""
        config = {k: v for k, v in keep.items() if not specs.owned(k) and not specs.lxd_managed(k)}
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
        self.log(f"{spec.name}: creating from {spec.image}")
        labels = {
            state.MANAGED: "true",
            state.OWNER: spec.owner,
            state.REQUEST: spec.request_path,
            state.STATE: "creating",
            "security.protection.delete": "false",
        }
        config = self._config(spec, {}, "creating")
        if idranges.BASE in spec.config:
            self._make(spec, labels, config)
        else:
            self._make_in_lxds_block(spec, labels, config)
        self._new_identity(spec.name)
        self._verify(spec, config)
        self._start(spec)
        # The owner is set up while the container boots: only the desktop needs the network.
        if spec.users:
            self._setup_owner(spec)
        ipv4 = self.lxd.wait_ipv4(spec.name, self.ipv4_timeout_s)
        if spec.users and spec.desktop:
            self._install_desktop(spec, ipv4)
        self.lxd.set_config(spec.name, {state.STATE: "ready", "security.protection.delete": "true"})
        if not ipv4:
            return container_outcome(spec, "created", ipv4, message="no IPv4 address yet")
        return container_outcome(spec, "created", ipv4)

    def _make(self, spec: specs.Spec, labels: Mapping[str, str], config: Mapping[str, str]) -> None:
        try:
            self.lxd.create(spec.name, spec.source, labels, {}, spec.profiles, spec.description)
        except LxdError as e:
            raise _source_explained(spec, e) from e
        # A clone carries the base's devices and security keys: replace them all with ours.
        self.lxd.replace(spec.name, config, spec.devices, spec.profiles, spec.description)

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
                clash = self._shared_block(spec.name)
                if not clash:
                    return
                self.log(f"{spec.name}: LXD gave it host IDs {clash}; making it again")
                self._remove(spec.name)
        raise LxdError(
            f"LXD gave {spec.name} host IDs that another instance has ({clash}) "
            f"{CREATE_TRIES} times; it was removed: see `ssp doctor` (idmaps.overlap)"
        )

    def _shared_block(self, name: str) -> str:
        """Which other instance's host IDs the new instance's overlap ("" for none)."""
        project = self.policy.lxd.project
        for o in idranges.overlaps(self.lxd.id_maps()):
            ends = {(o.first.project, o.first.name), (o.second.project, o.second.name)}
            if (project, name) in ends:
                other = o.second if (o.first.project, o.first.name) == (project, name) else o.first
                return f"{other.label}'s, around {o.range}"
        return ""

    def _remove(self, name: str) -> None:
        # A half-made clone of a privileged base refuses every config change, the unprotect
        # included; it was created unprotected, so only touch the key when it is set.
        if self.lxd.instance(name).config.get("security.protection.delete") == "true":
            self.lxd.set_config(name, {"security.protection.delete": "false"})
        self.lxd.stop(name)
        self.lxd.delete(name)

    def _new_identity(self, name: str) -> None:
        ident = new_identity(name)
        self.lxd.push_file(name, "/etc/machine-id", ident.machine_id, 0o444, 0, 0)
        for path in OLD_HOST_KEYS:
            if path not in (HOST_KEY, HOST_KEY + ".pub"):  # those two are overwritten below
                self.lxd.delete_file(name, path)
        self.lxd.make_dir(name, "/etc/ssh", 0o755, 0, 0)  # minimal images have none
        self.lxd.push_file(name, HOST_KEY, ident.host_key, 0o600, 0, 0)
        self.lxd.push_file(name, HOST_KEY + ".pub", ident.host_key_pub, 0o644, 0, 0)

    def _verify(self, spec: specs.Spec, sent: Mapping[str, str]) -> None:
        """LXD holds exactly the config and devices sent: nothing dropped, nothing inherited."""
        inst = self.lxd.instance(spec.name)
        # LXD stores no empty values (setting "" removes a key), e.g. the sha of a checkout
        # that is not a git repository: absent is what was asked for then.
        wrong = sorted(k for k, v in sent.items() if inst.config.get(k, "") != v)
        # A key of ours that we did not send (an inherited security.privileged or raw.lxc)
        # is as wrong as one LXD dropped.
        wrong += sorted(k for k in inst.config if specs.owned(k) and k not in sent)
        if _plain(inst.devices) != _plain(spec.devices):
            wrong.append("devices")
        if wrong:
            raise LxdError(f"LXD did not keep the configuration asked for: {', '.join(wrong)}")

    def _start(self, spec: specs.Spec) -> None:
        try:
            self.lxd.start(spec.name)
        except LxdError as e:
            raise _explained(spec, e) from e

    def _run(self, api: LxdApi, name: str, argv: list[str], ok: tuple[int, ...] = (0,)) -> str:
        result = api.execute(name, argv)
        if result.exit_code not in ok:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise LxdError(
                f"`{' '.join(argv[:2])}` failed in {name} (exit {result.exit_code})"
                + (f": {detail[-1]}" if detail else "")
            )
        return result.stdout

    def _number(self, api: LxdApi, name: str, argv: list[str]) -> int:
        """A command's one-number output. Under load pylxd has lost an exec's output while
        the command succeeded (ws4py: "Broken pipe"): the read is asked again then."""
        out = ""
        for attempt in range(1, READ_TRIES + 1):
            out = self._run(api, name, argv).strip()
            if out.isdigit():
                return int(out)
            time.sleep(0.2 * attempt)
        raise LxdError(f"`{' '.join(argv[:2])}` in {name} printed {out!r}, not a number")

    def _setup_owner(self, spec: specs.Spec) -> None:
        """The owner's user with the policy's UID (so the share's files are theirs), and keys.

        Two commands and three file requests: each `exec` costs a round of websockets, so
        "already there" is taken from the tools' own exit statuses rather than asked first.
        """
        uid, login, name = str(spec.uid), spec.login, spec.name
        self._run(self.lxd, name, ["groupadd", "--force", "--gid", uid, login])
        useradd = ["useradd", "--create-home", "--uid", uid, "--gid", uid, "--shell", "/bin/bash"]
        # 9: the base already has this user (as a clone of a used Common-Server may).
        self._run(self.lxd, name, [*useradd, login], ok=(0, USER_EXISTS))
        self.lxd.push_file(
            name,
            f"/etc/sudoers.d/ssp-{login}",
            f"{login} ALL=(ALL) NOPASSWD:ALL\n".encode(),
            0o440,
            0,
            0,
        )
        # A new home has no ~/.ssh (Debian's /etc/skel holds none): make it through the file
        # API, which sets owner and mode in the same request.
        self.lxd.make_dir(name, f"/home/{login}/.ssh", 0o700, spec.uid, spec.uid)
        self._write_keys(self.lxd, name, login, spec.keys, spec.uid, spec.uid)

    def _install_desktop(self, spec: specs.Spec, ipv4: tuple[str, ...]) -> None:
        if not ipv4:
            raise LxdError(
                f"{spec.name} got no IPv4 address within {self.ipv4_timeout_s:.0f} s, so the "
                "desktop (xrdp, xfce) could not be installed; the next apply makes it again"
            )
        # A base fresh from its image has no package lists: without an update first, apt
        # finds none of the packages ("Unable to locate package").
        apt = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]
        self._run(self.lxd, spec.name, [*apt, "update", "-q"])
        self._run(
            self.lxd,
            spec.name,
            [*apt, "install", "-y", "--no-install-recommends", *DESKTOP_PACKAGES],
        )

    def _push_keys(
        self, api: LxdApi, name: str, login: str, keys: tuple[str, ...], uid: int, gid: int
    ) -> None:
        """~/.ssh made right (`install -d` also mends an existing one's owner and mode), keys."""
        self._run(
            api,
            name,
            ["install", "-d", "-m", "700", "-o", str(uid), "-g", str(gid), f"/home/{login}/.ssh"],
        )
        self._write_keys(api, name, login, keys, uid, gid)

    @staticmethod
    def _write_keys(
        api: LxdApi, name: str, login: str, keys: tuple[str, ...], uid: int, gid: int
    ) -> None:
        body = "".join(k.strip() + "\n" for k in keys).encode()
        api.push_file(name, f"/home/{login}/.ssh/authorized_keys", body, 0o600, uid, gid)

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
            raise _explained(spec, e) from e
        if action.restart and current.running:
            self.lxd.stop(spec.name)
        if action.restart or not current.running:
            self._start(spec)
        # Commands run only in a running container: keys are pushed once it is up.
        if action.push_keys and spec.users:
            self._push_keys(self.lxd, spec.name, spec.login, spec.keys, spec.uid, spec.uid)
        ipv4 = self.lxd.wait_ipv4(spec.name, self.ipv4_timeout_s)
        return container_outcome(spec, "updated", ipv4, message="; ".join(action.reasons))

    def start(self, action: Start) -> Outcome:
        self.log(f"{action.spec.name}: starting (found stopped)")
        self._start(action.spec)
        return container_outcome(
            action.spec, "started", self.lxd.wait_ipv4(action.spec.name, self.ipv4_timeout_s)
        )

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
                "boot.autostart": "false",
                "security.protection.delete": "true",
            },
        )
        keep = self.policy.retention_days
        return Outcome(
            action.name,
            action.owner,
            action.request_path,
            "container",
            "retired",
            True,
            f"{action.reason}: stopped and kept as snapshot {snapshot} for "
            f"{keep} days; an admin can restore it until then",
        )

    # --- accounts -----------------------------------------------------------------------------

    def account(self, action: AccountAction) -> Outcome:
        acc = action.account
        if action.verb == "keep":
            return self._account_outcome(acc, "unchanged", action.ipv4)
        try:
            return self._change_account(action)
        except LxdError as e:
            raise _server_explained(self.policy, action, e) from e

    def _change_account(self, action: AccountAction) -> Outcome:
        acc = action.account
        api = self.servers(acc.instance)
        name, login = acc.instance, acc.name
        if action.verb == "lock":
            self.log(f"{name}: locking account {login}")
            self._run(api, name, ["usermod", "--lock", "--expiredate", "1", login], ok=(0, 6))
            api.delete_file(name, f"/home/{login}/.ssh/authorized_keys")
            api.set_config(name, {state.ACCOUNT + login: acc.label("locked")})
            return Outcome(
                login,
                acc.owner,
                acc.request_path,
                "account",
                "locked",
                True,
                "login locked; the home directory is kept",
                login=login,
                server=acc.server,
            )
        if action.verb == "create":
            taken = self._taken(api, name, login)
            if taken:
                self.log(f"{name}: not taking over {taken} '{login}'")
                return Outcome(
                    login,
                    acc.owner,
                    acc.request_path,
                    "account",
                    "refused",
                    False,
                    f"a {taken} named '{login}' already exists on {name} and was not made by "
                    "ssp, so it is not taken over; pick another name "
                    f"(e.g. '{acc.owner.lower()}-{acc.server}'), or ask an admin to remove it",
                    login=login,
                    server=acc.server,
                )
            # The account's record is written before the user is made: it is how the next run
            # tells a user of ours (finished or half made) from one that was there before.
            api.set_config(name, {state.ACCOUNT + login: acc.label("creating")})
        self.log(f"{name}: {action.verb} account {login}")
        if api.execute(name, ["getent", "passwd", login]).exit_code != 0:
            useradd = ["useradd", "--create-home", "--shell", "/bin/bash", login]
            self._run(api, name, useradd, ok=(0, USER_EXISTS))
        self._run(api, name, ["usermod", "--unlock", "--expiredate", "", login], ok=(0, 6))
        group = (
            ["usermod", "--append", "--groups", "sudo", login]
            if acc.sudo
            else ["gpasswd", "--delete", login, "sudo"]
        )
        self._run(api, name, group, ok=(0, 3))
        uid = self._number(api, name, ["id", "-u", login])
        gid = self._number(api, name, ["id", "-g", login])
        self._push_keys(api, name, login, acc.keys, uid, gid)
        api.set_config(name, {state.ACCOUNT + login: acc.label()})
        verb = "created" if action.verb == "create" else "updated"
        return self._account_outcome(acc, verb, api.instance(name).ipv4)

    def _taken(self, api: LxdApi, name: str, login: str) -> str:
        """'user' or 'group' when the shared server already has one of that name, else ''.

        A user ssp made has its record on the instance (`user.ssp.account.<login>`, in LXD's
        config, which nobody inside the server can write); one without it was made by a
        package or by hand, and taking it over would hand its files and rights to a member.
        """
        for database in ("passwd", "group"):
            if api.execute(name, ["getent", database, login]).exit_code == 0:
                return "user" if database == "passwd" else "group"
        return ""

    def _account_outcome(self, acc: specs.AccountSpec, verb: str, ipv4: tuple[str, ...]) -> Outcome:
        return Outcome(
            acc.name,
            acc.owner,
            acc.request_path,
            "account",
            verb,
            True,
            login=acc.name,
            ipv4=ipv4,
            server=acc.server,
            sudo=acc.sudo,
            expires=acc.expires,
            ssh_port=self.policy.shared_servers[acc.server].ssh_port,
        )

    # --- the walk -----------------------------------------------------------------------------

    def step(self, action: Action, observed: Mapping[str, Instance]) -> Outcome:
        if isinstance(action, Create):
            return self.create(action)
        if isinstance(action, Update):
            return self.update(action, observed[action.spec.name])
        if isinstance(action, Start):
            return self.start(action)
        if isinstance(action, Ready):
            return container_outcome(action.spec, "unchanged", observed[action.spec.name].ipv4)
        if isinstance(action, Retire):
            return self.retire(action)
        if isinstance(action, AccountAction):
            return self.account(action)
        return refused(action)


def _plain(devices: state.Devices) -> dict[str, dict[str, str]]:
    return {name: dict(options) for name, options in devices.items()}


def _explained(spec: specs.Spec, error: LxdError) -> LxdError:
    """LXD's start failures for a missing GPU or a taken port, said in the request's terms."""
    text = str(error)
    for gpu in spec.gpus:
        if gpu.pci in text and "no device found" in text:
            return LxdError(
                f"GPU {gpu.index} ({gpu.model}, PCI {gpu.pci}) is not present on the host, so "
                f"{spec.name} cannot start with it; compare `ssp gpus` with config/hosts.yaml "
                f"(LXD: {text})"
            )
    if "raw.idmap" in spec.config and "forkstart" in text:
        # LXD saves a raw.idmap of any UID, then fails to start with only "forkstart: exit
        # status 1" when root may not map it: name the UID and the fix.
        files = (subids.SUBUID, subids.SUBGID)
        missing = [p for p in files if subids.undelegated(subids.parse(subids.read(p)), [spec.uid])]
        if missing:
            return LxdError(
                f"{spec.owner}'s UID {spec.uid} (mapped into {spec.name} for the share) is not "
                f"delegated to root in {' and '.join(map(str, missing))}, so LXD cannot start "
                f"it; run `ssp host init` (which adds it), then restart LXD, which reads those "
                f"files only when it starts (LXD: {text})"
            )
    ports = [p for p in (spec.ssh_port, spec.rdp_port) if p is not None]
    if "address already in use" in text:
        taken = [p for p in ports if f":{p}:" in text]
    elif "proxy device" in text:
        # LXD's proxy helper may die on the failed bind before it reports it, and LXD then
        # says only that it got no socket back: look at what listens on the host now.
        busy = listening_ports()
        taken = [p for p in ports if p in busy]
    else:
        taken = []
    if not taken:
        return error
    return LxdError(
        f"port {taken[0]} is already taken on the host by another program, so "
        f"{spec.name} cannot forward it (LXD: {text})"
    )


def _source_explained(spec: specs.Spec, error: LxdError) -> LxdError:
    """A clone whose base or snapshot is gone, said in the policy's terms."""
    source = spec.source
    if source.get("type") == "copy" and (
        "Instance not found" in str(error) or "InstanceSnapshot not found" in str(error)
    ):
        return LxdError(
            f"image {spec.image} is cloned from {source['source']} (LXD project "
            f"{source.get('project', 'default')}), which does not exist; restore that snapshot "
            f"or correct images.{spec.image} in config/policy.yaml (LXD: {error})"
        )
    return error


def _server_explained(policy: Policy, action: AccountAction, error: LxdError) -> LxdError:
    """A shared server found stopped or missing, said as such (not as a failed command)."""
    acc, text = action.account, str(error)
    where = (
        f"the shared server {acc.instance} ({acc.server}, LXD project "
        f"{policy.shared_servers[acc.server].project})"
    )
    done = {"create": "made", "lock": "locked"}.get(action.verb, "changed")
    if "Instance is not running" in text:
        project = policy.shared_servers[acc.server].project
        then = "makes it" if action.verb == "create" else "does it"
        return LxdError(
            f"{where} is stopped, so account {acc.name} cannot be {done}; start it "
            f"(`lxc start {acc.instance} --project {project}`) and the next apply {then}"
        )
    if "Instance not found" in text:
        return LxdError(
            f"{where} does not exist, so account {acc.name} cannot be {done}; restore it, or "
            f"correct shared_servers.{acc.server} in config/policy.yaml"
        )
    return error


def _failed(action: Action, error: Exception) -> Outcome:
    if isinstance(action, Create | Update | Start | Ready):
        return container_outcome(action.spec, "failed", ok=False, message=str(error))
    if isinstance(action, AccountAction):
        a = action.account
        return Outcome(
            a.name,
            a.owner,
            a.request_path,
            "account",
            "failed",
            False,
            str(error),
            login=a.name,
            server=a.server,
        )
    if isinstance(action, Retire):
        return Outcome(
            action.name, action.owner, action.request_path, "container", "failed", False, str(error)
        )
    return refused(action)


def refused(action: Refuse) -> Outcome:
    """A request the plan would not carry out; its owner is its folder under requests/."""
    parts = action.request_path.split("/")
    owner = parts[1] if len(parts) == 3 else ""
    return Outcome(
        action.name, owner, action.request_path, "container", "refused", False, action.message
    )


def apply_plan(
    plan: Plan,
    applier: Applier,
    observed: Mapping[str, Instance],
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
            tuple(_planned(a, observed, applier) for a in plan.actions), plan.drift, plan.sha, True
        )

    def attempt(action: Action) -> Outcome:
        try:
            return applier.step(action, observed)
        except LxdError as e:
            applier.log(f"{action.name}: failed: {e}")
            return _failed(action, e)

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
    return ApplyResult(tuple(outcomes[i] for i in sorted(outcomes)), plan.drift, plan.sha)


def _planned(action: Action, observed: Mapping[str, Instance], applier: Applier) -> Outcome:
    if isinstance(action, Refuse):
        return _failed(action, LxdError(action.message))
    if unchanged(action):
        return applier.step(action, observed)  # nothing to change: no request either
    word = {
        "create": "would create",
        "update": "would update",
        "start": "would start",
        "retire": "would retire",
        "account": "would change account",
    }[action.kind]
    return dataclasses.replace(_failed(action, LxdError("")), action=word, ok=True, message="")

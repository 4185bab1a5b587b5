"""The published state snapshot: what the host looked like, for the PR check's plan preview.

The maintenance run on the GPU host (`ssp publish`) writes `snapshot.json` to a branch of the
repository; the PR check, on a GitHub-hosted runner far from the host, reads it back and
previews what apply would do (`provisioner.status.preview`). So the snapshot holds what planning
needs and what the status page shows, and nothing else:

- `status`: the `ServerStatus` (GPU board, containers, accounts, quotas, pool), with the
  containers' IP addresses removed unless the policy's `snapshot.addresses` allows them
  (they are private LAN addresses; anyone who can read the repository can read the branch);
- `instances`: each instance of the project reduced to what `make_plan` looks at (owner, image
  id, lifecycle, GPUs by PCI address, forwarded host ports, root disk size, whether its GPUs
  were handed back) — never config values, keys, users or addresses;
- `busy_ports`: host ports in the policy's SSH range that something outside LXD listens on;
- `images`: ssp's images (members' `kind: image`), alias and owner: a container request
  naming any other `<owner>/<name>` alias is refused at PR time.

`held` reads what the host has given out (names, logins, images) for the validator: a
retired container's name or an account's login stays its owner's (`provisioner.values.held`).

The format is versioned (`format`); a reader checks the whole document against the model
(unknown keys, wrong types, another version are refused with the reason) and its age against
the policy's `snapshot.max_age_hours`. Members can push the branch too, so a reader trusts
nothing in it: any defect (not UTF-8, not JSON, nested too deep, a number no host has, a
string with control characters, a timestamp without a UTC offset or from the future) is a
`SnapshotError` with the reason, never an exception of another kind. `ssp publish` records the
SHA-256 of the status page it wrote beside the snapshot (`page_sha256`), and a reader checks
the page it was given against it (`check_page`). Pure: text in, values out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from provisioner.status.server import ServerStatus
from provisioner.validation.textpolicy import describe, first_forbidden
from provisioner.values import spec as specs
from provisioner.values import state
from provisioner.values.held import Held
from provisioner.values.policymodels import Policy
from provisioner.values.sizes import size_bytes
from provisioner.values.state import Image, Instance

FORMAT: Literal[1] = 1
# Where `ssp publish` writes, and what validate.yml fetches.
BRANCH = "ssp-state"
SNAPSHOT_FILE = "snapshot.json"
PAGE_FILE = "index.html"
# A snapshot is a few KiB per container; anything near this is not one of ours.
MAX_BYTES = 4 * 2**20
# The listen port LXD proxy devices are rebuilt with: only the port matters to planning.
_ANY = "0.0.0.0"  # noqa: S104  (a label in a rebuilt device, nothing listens on it)
# Bounds on what a snapshot of one host can hold: a count or a byte size beyond 2**62, a string
# longer than this or a document nested deeper is not ours (and a huge integer would overflow
# the float arithmetic of the page and the preview).
_MAX_INT = 2**62
_MAX_STRING = 4096
_MAX_DEPTH = 16
_KEY = re.compile(r"[a-z_][a-z0-9_]{0,39}")
# A snapshot from the future would never go stale; a clock a little ahead is forgiven.
_CLOCK_SKEW = timedelta(minutes=10)

Port = Annotated[int, Field(ge=1, le=65535)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SnapshotInstance(StrictModel):
    """One instance of the project as planning sees it (nothing secret, no address)."""

    name: Annotated[str, Field(min_length=1, max_length=63)]
    managed: bool
    running: bool
    owner: str = ""
    image: str = ""
    lifecycle: Literal["ready", "creating", "retired"] = "ready"
    expires: date | None = None
    gpus: list[Annotated[str, Field(max_length=32)]] = Field(default_factory=list)
    ssh_port: Port | None = None
    rdp_port: Port | None = None
    other_ports: list[Port] = Field(default_factory=list)
    disk: Annotated[int, Field(ge=0)] | None = None  # root disk size in bytes, when set
    # its GPUs were handed back (`state.RELEASED`): the plan asks none for it
    released: bool = False


class SnapshotImage(StrictModel):
    """One of ssp's images (a member's `kind: image`): its alias and whose it is."""

    alias: Annotated[str, Field(min_length=3, max_length=200)]
    owner: Annotated[str, Field(max_length=100)]


class Snapshot(StrictModel):
    """`snapshot.json`."""

    format: Literal[1]
    generated_at: AwareDatetime  # with its UTC offset: a naive one cannot be compared with now
    commit: Annotated[str, Field(pattern=r"^([0-9a-f]{40}|[0-9a-f]{64})?$")] = ""
    # the SHA-256 of the status page published with it (index.html), as hex
    page_sha256: Annotated[str, Field(pattern=r"^([0-9a-f]{64})?$")] = ""
    addresses: bool = False  # whether containers' IP addresses were published
    status: ServerStatus
    instances: list[SnapshotInstance]
    busy_ports: list[Port] = Field(default_factory=list)
    # ssp's images; None in a snapshot from before they were listed (then nothing is known).
    images: list[SnapshotImage] | None = None

    def age(self, now: datetime) -> timedelta:
        return now - self.generated_at


def _lifecycle(inst: Instance) -> Literal["ready", "creating", "retired"]:
    if inst.config.get(state.RETIRED):
        return "retired"
    return "creating" if inst.config.get(state.STATE) == "creating" else "ready"


def _disk(inst: Instance) -> int | None:
    size = inst.devices.get(specs.ROOT_DEVICE, {}).get("size", "")
    try:
        return size_bytes(size) if size else None
    except ValueError:
        return None  # a size LXD accepts but requests cannot ask for (e.g. "10GB")


def _expires(inst: Instance) -> date | None:
    try:
        return date.fromisoformat(inst.config.get(state.EXPIRES, ""))
    except ValueError:
        return None


def reduce(inst: Instance) -> SnapshotInstance:
    """What planning needs of INST, and nothing else."""
    others = [
        port
        for key, device in sorted(inst.devices.items())
        if key not in (specs.SSH_DEVICE, specs.RDP_DEVICE)
        and (port := specs.listen_port(device)) is not None
    ]
    return SnapshotInstance(
        name=inst.name,
        managed=inst.managed,
        running=inst.running,
        owner=inst.config.get(state.OWNER, "") if inst.managed else "",
        image=inst.config.get(specs.IMAGE, "") if inst.managed else "",
        lifecycle=_lifecycle(inst),
        expires=_expires(inst) if inst.managed else None,
        gpus=sorted(
            d["pci"].lower()
            for d in inst.devices.values()
            if d.get("type") == "gpu" and d.get("pci")
        ),
        ssh_port=specs.listen_port(inst.devices.get(specs.SSH_DEVICE, {})),
        rdp_port=specs.listen_port(inst.devices.get(specs.RDP_DEVICE, {})),
        other_ports=others,
        disk=_disk(inst),
        released=inst.gpus_released,
    )


def redact(status: ServerStatus, addresses: bool) -> ServerStatus:
    """STATUS as it may be published: without the containers' IP addresses unless allowed."""
    if addresses:
        return status
    rows = tuple(dataclasses.replace(c, ipv4=()) for c in status.containers)
    return dataclasses.replace(status, containers=rows)


def make(
    status: ServerStatus,
    instances: Sequence[Instance],
    policy: Policy,
    *,
    commit: str = "",
    busy_ports: frozenset[int] = frozenset(),
    images: Sequence[Image] | None = None,
) -> Snapshot:
    """The snapshot of what was observed, redacted as the policy says; IMAGES: ssp's."""
    first, last = policy.ssh.ports
    return Snapshot(
        format=FORMAT,
        generated_at=status.generated,
        commit=commit,
        addresses=policy.snapshot.addresses,
        status=redact(status, policy.snapshot.addresses),
        instances=[reduce(i) for i in sorted(instances, key=lambda i: i.name)],
        busy_ports=sorted(p for p in busy_ports if first <= p <= last),
        images=None
        if images is None
        else [
            SnapshotImage(alias=alias, owner=i.properties.get(state.IMAGE_OWNER, ""))
            for i in sorted(images, key=lambda i: i.fingerprint)
            if i.managed
            for alias in i.aliases
        ],
    )


def to_json(snapshot: Snapshot) -> str:
    return snapshot.model_dump_json(indent=1) + "\n"


def page_digest(page: bytes) -> str:
    return hashlib.sha256(page).hexdigest()


def with_page(snapshot: Snapshot, page: str) -> Snapshot:
    """SNAPSHOT recording the SHA-256 of PAGE (the status page published beside it, UTF-8)."""
    return snapshot.model_copy(update={"page_sha256": page_digest(page.encode("utf-8"))})


class SnapshotError(ValueError):
    """Why a snapshot cannot be used; the message is for the PR's job summary."""


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "the document"
    if err["type"] == "timezone_aware":
        return f"{where} has no UTC offset, so it cannot be compared with now"
    return f"{where}: {err['msg']}"


def _odd_value(data: Any) -> str | None:
    """Why DATA (parsed JSON) cannot be a snapshot of one host, or None; walked without
    recursion, so no nesting can exhaust the stack."""
    todo: list[tuple[Any, int, str]] = [(data, 0, "the document")]
    while todo:
        value, depth, where = todo.pop()
        if depth > _MAX_DEPTH:
            return f"{where} is nested deeper than a snapshot is ({_MAX_DEPTH} levels)"
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int) and abs(value) > _MAX_INT:
            return f"{where} is a number larger than any host has ({len(str(value))} digits)"
        if isinstance(value, float):
            return f"{where} is a fraction; a snapshot holds whole numbers only"
        if isinstance(value, str):
            bad = first_forbidden(value)
            if len(value) > _MAX_STRING:
                return f"{where} is {len(value)} characters long, more than a snapshot holds"
            if bad is not None:
                return f"{where} holds {describe(value[bad])}"
        if isinstance(value, dict):
            for key, item in value.items():
                todo.append((key, depth + 1, f"a key of {where}"))
                # the document's own keys name where; any other text is not repeated
                name = key if _KEY.fullmatch(key) else "(a key)"
                todo.append((item, depth + 1, name if depth == 0 else f"{where}.{name}"))
        elif isinstance(value, list):
            todo += [(item, depth + 1, f"{where}.{n}") for n, item in enumerate(value)]
    return None


def _load(raw: bytes) -> Snapshot:
    """RAW as a snapshot document, whatever its age; else SnapshotError."""
    if len(raw) > MAX_BYTES:
        raise SnapshotError(f"it is {len(raw)} bytes, more than a snapshot can be ({MAX_BYTES})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SnapshotError(f"it is not UTF-8 text (byte {e.start})") from e
    found = re.search(r'"format"\s*:\s*(\d{1,9})\b', text)
    if found and int(found[1]) != FORMAT:
        raise SnapshotError(
            f"it is in format {found[1]}, this ssp reads format {FORMAT} (update one of them)"
        )
    try:
        data = json.loads(text)
    except RecursionError as e:
        raise SnapshotError(
            f"it is not a valid snapshot (nested deeper than a snapshot is, {_MAX_DEPTH} levels)"
        ) from e
    except ValueError as e:
        raise SnapshotError("it is not a valid snapshot (not JSON)") from e
    odd = _odd_value(data)
    if odd is not None:
        raise SnapshotError(f"it is not a valid snapshot ({odd})")
    try:
        return Snapshot.model_validate_json(raw)
    except ValidationError as e:
        raise SnapshotError(f"it is not a valid snapshot ({_first_error(e)})") from e


def parse(raw: bytes, now: datetime, max_age: timedelta) -> Snapshot:
    """The snapshot in RAW, checked against the format and its age; else SnapshotError.

    NOW must be aware (it is compared with the snapshot's own time, which is).
    """
    snapshot = _load(raw)
    if snapshot.status.generated.utcoffset() is None:
        raise SnapshotError(
            "it is not a valid snapshot (status.generated has no UTC offset, so it cannot be "
            "compared with now)"
        )
    when = f"{snapshot.generated_at:%Y-%m-%d %H:%M %Z}"
    age = snapshot.age(now)
    if age < -_CLOCK_SKEW:
        raise SnapshotError(f"it says it was made {when}, which is still to come")
    if age > max_age:
        hours = age.total_seconds() / 3600
        raise SnapshotError(
            f"it was made {when}, {hours:.0f} hours ago, "
            f"older than the policy's snapshot.max_age_hours ({max_age.total_seconds() / 3600:.0f})"
        )
    return snapshot


def check_page(snapshot: Snapshot, page: bytes | None) -> None:
    """SnapshotError unless PAGE is the status page `ssp publish` wrote with SNAPSHOT."""
    if not snapshot.page_sha256:
        raise SnapshotError(
            f"it records no SHA-256 of its status page ({PAGE_FILE}), as `ssp publish` does"
        )
    if page is None:
        raise SnapshotError(f"its status page ({PAGE_FILE}) is not beside it to be checked")
    if page_digest(page) != snapshot.page_sha256:
        raise SnapshotError(
            f"the status page beside it ({PAGE_FILE}) is not the one `ssp publish` wrote "
            "with it (its SHA-256 differs): the branch was written by something else"
        )


def instances(snapshot: Snapshot, listen: str = _ANY) -> tuple[Instance, ...]:
    """The snapshot's instances rebuilt as the LXD state planning reads (labels and devices)."""
    rebuilt = []
    for item in snapshot.instances:
        config: dict[str, str] = {}
        if item.managed:
            config = {state.MANAGED: "true", state.OWNER: item.owner, specs.IMAGE: item.image}
            if item.expires is not None:
                config[state.EXPIRES] = item.expires.isoformat()
        if item.lifecycle == "creating":
            config[state.STATE] = "creating"
        if item.lifecycle == "retired":
            config[state.RETIRED] = "yes"
        if item.released:
            config[state.RELEASED] = "yes"
        devices: dict[str, dict[str, str]] = {
            f"gpu{n}": {"type": "gpu", "pci": pci} for n, pci in enumerate(item.gpus)
        }
        for key, port in ((specs.SSH_DEVICE, item.ssh_port), (specs.RDP_DEVICE, item.rdp_port)):
            if port is not None:
                devices[key] = specs.proxy_device(listen, port, 22)
        for n, port in enumerate(item.other_ports):
            devices[f"port{n}"] = specs.proxy_device(listen, port, 22)
        rebuilt.append(
            Instance(
                name=item.name,
                status="Running" if item.running else "Stopped",
                config=config,
                devices=devices,
            )
        )
    return tuple(rebuilt)


def held(snapshot: Snapshot) -> Held:
    """What the snapshot shows the host holds: its containers' names (retired and expired
    ones too), the shared servers' accounts and ssp's images, each with its owner."""
    return Held(
        names={i.name: i.owner.lower() for i in snapshot.instances if i.managed and i.owner},
        accounts={
            (a.server, a.login.lower()): a.owner.lower()
            for a in snapshot.status.accounts
            if a.owner
        },
        images=None
        if snapshot.images is None
        else {i.alias: i.owner.lower() for i in snapshot.images},
    )

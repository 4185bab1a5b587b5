"""A request that passed the schema (`Loaded`), and what a container asks of its host.

Values below everything that reads requests: the rules, the plan, the status, the doctor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from provisioner.values.document import Document, Where
from provisioner.values.models import AnyRequest, ContainerRequest, Inventory
from provisioner.values.policymodels import Policy
from provisioner.values.problems import Problem, Severity
from provisioner.values.requestpaths import owner_folder, request_stem
from provisioner.values.sizes import size_bytes


@dataclass(frozen=True)
class Loaded:
    """A request that passed the schema, with the document it came from."""

    path: str
    doc: Document
    request: AnyRequest

    @property
    def folder(self) -> str:
        return owner_folder(self.path) or ""

    @property
    def stem(self) -> str:
        return request_stem(self.path)

    def problem(
        self, where: Where, rule: str, message: str, severity: Severity = Severity.ERROR
    ) -> Problem:
        return Problem(self.path, self.doc.position(where), rule, message, severity, where)


class Lifecycle(StrEnum):
    """Where a valid request stands on a given day. An expired one holds nothing: it is left
    out of quotas and capacity, and apply keeps its container stopped until it is renewed or
    retention ends."""

    LIVE = "live"
    EXPIRED = "expired"


def lifecycle(item: Loaded, today: date, *, focused: bool = False) -> Lifecycle:
    """`expires` is the lease's last day, inclusive: it ends after that day. A request a PR
    changes (`focused`) is never expired: a past date there is an error, not a retirement."""
    if item.request.expires < today and not focused:
        return Lifecycle.EXPIRED
    return Lifecycle.LIVE


@dataclass(frozen=True)
class Resources:
    """What one container request takes from its host and its owner's quota."""

    host: str
    cpu: int
    memory: int
    disk: int
    pinned: tuple[int, ...]
    counted: int

    @property
    def gpus(self) -> int:
        return len(self.pinned) + self.counted


def resources(req: ContainerRequest, policy: Policy, inventory: Inventory) -> Resources:
    host = req.host or sorted(inventory.hosts)[0]
    pinned = tuple(req.gpus) if isinstance(req.gpus, list) else ()
    counted = req.gpus if isinstance(req.gpus, int) else 0
    return Resources(
        host=host,
        cpu=req.cpu or policy.defaults.cpu,
        memory=size_bytes(req.memory or policy.defaults.memory),
        disk=size_bytes(req.disk or policy.defaults.disk),
        pinned=pinned,
        counted=counted,
    )

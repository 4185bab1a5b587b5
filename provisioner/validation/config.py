"""The admin-owned files: config/policy.yaml and config/hosts.yaml, loaded and cross-checked.

Both are parsed with the same safe loader as requests and checked against their schemas;
then the references inside the policy (default image, quota names, time zone) and the
inventory's uniqueness (GPU index, PCI address, UUID) are checked, so that a broken policy is
reported on its own line instead of surfacing as a confusing error in every request.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from provisioner.validation.schema import check
from provisioner.validation.sources import load
from provisioner.values.document import Document
from provisioner.values.models import Inventory
from provisioner.values.policymodels import Policy
from provisioner.values.problems import Position, Problem

M = TypeVar("M", Policy, Inventory)

POLICY_PATH = "config/policy.yaml"
HOSTS_PATH = "config/hosts.yaml"


@dataclass(frozen=True)
class Config:
    policy: Policy
    inventory: Inventory
    policy_doc: Document
    hosts_doc: Document

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.policy.timezone)


def _at(doc: Document, where: tuple[str | int, ...], rule: str, message: str) -> Problem:
    return Problem(doc.path, doc.position(where), rule, message, where=where)


def _policy_rules(doc: Document, policy: Policy) -> list[Problem]:
    out = []
    if policy.defaults.image not in policy.images:
        out.append(
            _at(
                doc,
                ("defaults", "image"),
                "policy.default_image",
                f"defaults.image '{policy.defaults.image}' is not in images",
            )
        )
    if "default" not in policy.quotas:
        out.append(
            _at(
                doc,
                ("quotas",),
                "policy.default_quota",
                "quotas must define 'default' (used for members without a quota)",
            )
        )
    for login, user in policy.users.items():
        if user.quota is not None and user.quota not in policy.quotas:
            out.append(
                _at(
                    doc,
                    ("users", login, "quota"),
                    "policy.quota_unknown",
                    f"users.{login}.quota '{user.quota}' is not in quotas",
                )
            )
    uids = Counter(u.uid for u in policy.users.values())
    for login, user in policy.users.items():
        if uids[user.uid] > 1:
            out.append(
                _at(
                    doc,
                    ("users", login, "uid"),
                    "policy.uid_duplicate",
                    f"uid {user.uid} is given to more than one member",
                )
            )
    out += _port_rules(doc, policy)
    out += _lease_rules(doc, policy)
    out += _usage_rules(doc, policy)
    try:
        ZoneInfo(policy.timezone)
    # OSError: a name that is a folder of the zone database ("Asia") or too long for a path.
    except (ZoneInfoNotFoundError, ValueError, OSError):
        out.append(
            _at(
                doc,
                ("timezone",),
                "policy.timezone",
                f"timezone '{policy.timezone}' is not an IANA time zone (e.g. Asia/Shanghai)",
            )
        )
    return out


def _lease_rules(doc: Document, policy: Policy) -> list[Problem]:
    """Reminders said once each; a final notice that comes before deletion, not after."""
    out = []
    seen: set[int] = set()
    for i, days in enumerate(policy.reminders):
        if days in seen:
            out.append(
                _at(
                    doc,
                    ("reminders", i),
                    "policy.reminders",
                    f"reminders lists {days} twice; each day is one reminder",
                )
            )
        seen.add(days)
    notice = policy.retention.final_notice_days
    if policy.retention.delete and notice > policy.retention_days:
        out.append(
            _at(
                doc,
                ("retention", "final_notice_days"),
                "policy.final_notice",
                f"retention.final_notice_days {notice} is more than retention_days "
                f"{policy.retention_days}: the last warning would come before the container "
                "is even retired; make it at most retention_days",
            )
        )
    return out


def _usage_rules(doc: Document, policy: Policy) -> list[Problem]:
    """A consent to release idle GPUs that could never act: without idle days no GPU is ever
    idle, so the admins would believe in releases that never come."""
    usage = policy.usage
    if usage.idle_action == "release" and usage.idle_days == 0:
        return [
            _at(
                doc,
                ("usage", "idle_action"),
                "policy.idle_release",
                "usage.idle_action is release but usage.idle_days is 0: no GPU is ever found "
                "idle, so none would be released; set idle_days (e.g. 7) or idle_action: none",
            )
        ]
    return []


def _port_rules(doc: Document, policy: Policy) -> list[Problem]:
    """A shared server's port outside the containers' range; every forwarded port still a
    port once the tunnel's offset is added."""
    out = []
    first, last = policy.ssh.ports
    for sid, server in policy.shared_servers.items():
        if server.ssh_port is not None and first <= server.ssh_port <= last:
            out.append(
                _at(
                    doc,
                    ("shared_servers", sid, "ssh_port"),
                    "policy.shared_port",
                    f"shared_servers.{sid}.ssh_port {server.ssh_port} is inside ssh.ports "
                    f"[{first}, {last}], which containers are given; pick a port outside it",
                )
            )
    if policy.tunnel is not None:
        offset = policy.tunnel.remote_offset
        ports = [first, last, *(s.ssh_port for s in policy.shared_servers.values() if s.ssh_port)]
        bad = [p for p in ports if not 1 <= p + offset <= 65535]
        if bad:
            out.append(
                _at(
                    doc,
                    ("tunnel", "remote_offset"),
                    "policy.tunnel_port",
                    f"tunnel.remote_offset {offset} maps port {bad[0]} to {bad[0] + offset}, "
                    "which is not a TCP port (1-65535)",
                )
            )
    return out


def _hosts_rules(doc: Document, inventory: Inventory) -> list[Problem]:
    out = []
    for host_id, host in inventory.hosts.items():
        for field in ("index", "pci", "uuid"):
            seen: set[object] = set()
            for i, gpu in enumerate(host.gpus):
                value = getattr(gpu, field)
                if value in seen:
                    out.append(
                        _at(
                            doc,
                            ("hosts", host_id, "gpus", i, field),
                            "hosts.duplicate_gpu",
                            f"{host_id}: GPU {field} {value} is listed twice",
                        )
                    )
                seen.add(value)
    return out


def _load_one(
    raw: bytes | None,
    path: str,
    kind: str,
    model: type[M],
    rules: Callable[[Document, M], list[Problem]],
) -> tuple[Document | None, M | None, list[Problem]]:
    """One config file: read safely, checked against its schema, then against the lab's rules."""
    if raw is None:
        return None, None, [Problem(path, Position(1, 1), "config.missing", "file is missing")]
    doc, problems = load(raw, path)
    if doc is None:
        return None, None, problems
    value, found = check(doc, kind, model)
    if value is None:
        return doc, None, problems + found
    return doc, value, problems + found + rules(doc, value)


def load_config(
    policy_raw: bytes | None, hosts_raw: bytes | None
) -> tuple[Config | None, list[Problem]]:
    """Load and check both files; None unless both are usable."""
    policy_doc, policy, problems = _load_one(
        policy_raw, POLICY_PATH, "policy", Policy, _policy_rules
    )
    hosts_doc, inventory, found = _load_one(hosts_raw, HOSTS_PATH, "hosts", Inventory, _hosts_rules)
    problems += found
    if problems or policy is None or inventory is None or policy_doc is None or hosts_doc is None:
        return None, problems
    return Config(policy, inventory, policy_doc, hosts_doc), []

"""The rule catalogue: every rule id the validator can report, in one table.

Each entry says what a finding with that id is about (its scope), how serious it is, a
one-line message, and the anchor of the user guide's section that explains it (the same
`<a id>` in docs/user-guide.md and docs/user-guide.zh.md). The validator refuses to report an
id that is not here (`validate.py`), `ssp explain` lists and prints from it, apply and the PR
comments ask it which rules are about competing requests, and tests/test_docs.py holds the
guides and the code's rule sites to it. No other list of rule ids or rule-id prefixes exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from provisioner.values.problems import Severity


class Scope(StrEnum):
    """What a rule looks at."""

    TREE = "tree"  # how the repository holds the file: its path, its mode, the folders
    FILE = "file"  # one request file on its own: YAML, schema, fields, names, keys, catalogues
    COMPETING = "competing"  # requests competing for one thing: the newest is refused
    PULL = "pull"  # a pull request: who may change what, and whether it merges
    LAB = "lab"  # the lab's own files under config/


@dataclass(frozen=True, kw_only=True)
class Rule:
    id: str
    scope: Scope
    severity: Severity
    message: str
    anchor: str  # the guides' `<a id="...">` for the section explaining it

    @property
    def family(self) -> str:
        return self.id.split(".", 1)[0]


# Severity is ERROR unless WARNINGS says otherwise.
# A lease ended: retired, not refused. The preview: the published state may be a day old.
# A member's image nobody publishes: containers made from it keep working; a new one fails.
WARNINGS = frozenset(
    {
        "purpose.vague",
        "lease.expired",
        "preview.fit",
        "preview.disk",
        "preview.gpu_unchecked",
        "image.unpublished",
    }
)
_T, _F, _C, _P, _L = Scope.TREE, Scope.FILE, Scope.COMPETING, Scope.PULL, Scope.LAB
_SECTIONS: dict[str, tuple[tuple[str, Scope, str], ...]] = {
    "rules-file": (
        ("path.layout", _T, "a file outside requests/<login>/<name>.yaml"),
        ("path.char", _T, "a file name holding a character names may not hold"),
        ("file.mode", _T, "a link, submodule or executable where a plain file belongs"),
        ("tree.depth", _T, "folders nested too deep under requests/"),
        ("tree.size", _T, "too many files and folders under requests/"),
        ("yaml.size", _F, "a file, value or number too long"),
        ("yaml.encoding", _F, "not UTF-8, or a byte-order mark"),
        ("yaml.control_char", _F, "a character text may not hold"),
        ("yaml.syntax", _F, "not valid YAML"),
        ("yaml.fullwidth", _F, "a full-width colon, quote or indenting space (a Chinese IME)"),
        ("yaml.tab_indent", _F, "a tab used for indentation"),
        ("yaml.unclosed_quote", _F, "a quote opened and not closed"),
        ("yaml.empty", _F, "an empty file"),
        ("yaml.multiple_documents", _F, "more than one YAML document"),
        ("yaml.anchor", _F, "a YAML anchor (&name)"),
        ("yaml.alias", _F, "a YAML alias (*name)"),
        ("yaml.merge", _F, "a YAML merge key (<<:)"),
        ("yaml.tag", _F, "a YAML tag"),
        ("yaml.depth", _F, "nesting too deep"),
        ("yaml.key", _F, "a key that is not a plain word"),
        ("yaml.duplicate_key", _F, "one key twice"),
    ),
    "rules-fields": (
        ("schema.kind", _F, "a missing or unknown kind"),
        ("schema.required", _F, "a required field is missing"),
        ("schema.unknown_field", _F, "a field that does not exist"),
        ("schema.type", _F, "a value of the wrong type"),
        ("schema.enum", _F, "a word that is not one of the allowed ones"),
        ("schema.pattern", _F, "a value of the wrong form"),
        ("schema.range", _F, "a number too small or too large"),
        ("schema.length", _F, "text or a list too short or too long"),
        ("schema.date", _F, "a date that does not exist"),
        ("schema.format", _F, "a value without the required format"),
        ("schema.unique", _F, "a list holding one entry twice"),
        ("schema.key", _F, "a key that is not allowed where it is"),
        ("schema.invalid", _F, "a value that breaks another rule of its field"),
    ),
    "rules-names": (
        ("name.stem", _F, "a name that differs from the file's name"),
        ("name.reserved", _F, "a reserved name"),
        ("purpose.placeholder", _F, "a purpose that says nothing (TODO, test, the name again)"),
        ("purpose.vague", _F, "a request on main whose purpose says nothing; it stays"),
        ("name.duplicate", _C, "a name another request already uses"),
        ("name.held", _F, "a name another member's container holds (retired or expired too)"),
        ("owner.folder", _F, "an owner that differs from the file's folder"),
        ("owner.unknown", _F, "an owner who is not a registered member"),
        ("lease.past", _F, "an expiry date that is not after today"),
        ("lease.too_long", _F, "an expiry date beyond the policy's longest lease"),
        ("lease.expired", _F, "a lease that has ended; the request will be retired"),
    ),
    "rules-ssh-keys": (
        ("ssh_key.private", _F, "a private key"),
        ("ssh_key.format", _F, "a key line that is not 'type base64 [comment]'"),
        ("ssh_key.newline", _F, "a key with a line break or control character inside"),
        ("ssh_key.options", _F, "a key line with options (command=, from=, ...)"),
        ("ssh_key.type", _F, "an unknown or too weak key type, or a file's path"),
        ("ssh_key.base64", _F, "key data that is not base64"),
        ("ssh_key.truncated", _F, "key data cut short or damaged"),
        ("ssh_key.mismatch", _F, "a key whose stated type differs from its data"),
        ("ssh_key.rsa_bits", _F, "an RSA key under 3072 bits"),
        ("ssh_key.duplicate", _F, "one key listed twice in a file"),
        ("ssh_key.shared", _C, "a key another member already uses"),
    ),
    "rules-catalogues": (
        ("image.unknown", _F, "an image that is not in the lab's catalogue"),
        ("share.unknown", _F, "a share that is not in the catalogue"),
        ("share.duplicate", _F, "a share listed twice"),
        ("host.unknown", _F, "a host that is not in config/hosts.yaml"),
        ("gpus.unknown", _F, "a GPU index the host does not have"),
        ("gpus.duplicate", _F, "a GPU index listed twice"),
        ("gpus.double_booked", _C, "a GPU already pinned by an older request"),
        ("gpus.too_many", _F, "more GPUs than the host has"),
        ("gpus.model", _F, "a GPU model no server (or not the named host) has"),
        ("gpus.capacity", _C, "GPUs the host no longer has free, beside older requests"),
        ("server.unknown", _F, "a shared server that is not in the policy"),
        ("account.name_owner", _F, "an account name that is not the owner's login or <login>-..."),
        ("account.system_user", _F, "an account name that is a system or service user"),
        ("account.duplicate", _C, "a second account for one member on one shared server"),
        ("account.held", _F, "an account name a shared server holds for another member"),
    ),
    "rules-quotas": (
        ("quota.containers", _C, "more containers than the owner's quota"),
        ("quota.gpus", _C, "more GPUs than the owner's quota"),
        ("quota.cpu", _C, "more CPU cores than the owner's quota"),
        ("quota.memory", _C, "more memory than the owner's quota"),
        ("quota.disk", _C, "more disk than the owner's quota"),
        ("capacity.cpu", _C, "more CPU cores than the host has, beside older requests"),
        ("capacity.memory", _C, "more memory than the host has, beside older requests"),
        ("capacity.disk", _C, "more disk than the host's storage, beside older requests"),
        # the plan preview against the host's published state (a PR with --snapshot)
        ("preview.fit", _P, "what it asks for cannot be had on the host now (GPUs taken)"),
        ("preview.disk", _P, "more disk than the storage pool has free now"),
        ("preview.gpu_held", _P, "a pinned GPU a container holds for its count (GPUs never move)"),
        (
            "preview.gpu_unchecked",
            _P,
            "a newly pinned GPU nobody could check (no usable state snapshot)",
        ),
    ),
    "rules-snapshots-images": (
        ("restore.snapshot", _F, "a restore that is not a snapshot's name"),
        ("image.snapshot", _F, "an image's snapshot that is not a snapshot's name"),
        ("image.from", _F, "an image made from a container that is not the owner's"),
        (
            "image.not_yours",
            _F,
            "a container from another member's image the policy does not share",
        ),
        ("image.unpublished", _F, "a member's image that no image request publishes"),
        ("image.not_ssp", _F, "an `<owner>/<name>` image that ssp did not publish"),
    ),
    "rules-authz": (
        ("authz.other_owner", _P, "a change to another member's request"),
        ("authz.infra", _P, "a change outside requests/, which only an admin may make"),
        ("authz.unknown_author", _P, "a commit linked to no GitHub account"),
        (
            "authz.unknown_commit",
            _P,
            "a commit in the merge that GitHub does not list for the pull request",
        ),
        ("merge.conflict", _P, "the pull request does not merge cleanly into its base"),
    ),
    "rules-lab": (
        ("config.missing", _L, "config/policy.yaml or config/hosts.yaml is missing"),
        ("policy.default_image", _L, "the default image is not in the catalogue"),
        ("policy.default_quota", _L, "no default quota"),
        ("policy.quota_unknown", _L, "a member's quota that does not exist"),
        ("policy.uid_duplicate", _L, "two members with one UID"),
        ("policy.timezone", _L, "a time zone that is not an IANA name"),
        ("policy.shared_port", _L, "a shared server's SSH port inside the containers' port range"),
        ("policy.tunnel_port", _L, "a tunnel offset that moves a port out of range"),
        ("policy.reminders", _L, "a reminder day listed twice"),
        ("policy.final_notice", _L, "a final notice longer than the retention it warns about"),
        ("policy.idle_release", _L, "a consent to release idle GPUs without idle days"),
        ("hosts.duplicate_gpu", _L, "the inventory lists one GPU twice"),
    ),
}

RULES: dict[str, Rule] = {
    id_: Rule(
        id=id_,
        scope=scope,
        severity=Severity.WARNING if id_ in WARNINGS else Severity.ERROR,
        message=message,
        anchor=anchor,
    )
    for anchor, rows in _SECTIONS.items()
    for id_, scope, message in rows
}
ANCHORS: tuple[str, ...] = tuple(_SECTIONS)


def competing(rule_id: str) -> bool:
    """Whether a finding is about requests competing for one thing (a GPU, a quota, a name):
    apply refuses the newest of them and applies the rest."""
    rule = RULES.get(rule_id)
    return rule is not None and rule.scope is Scope.COMPETING


def unknown(rule_ids: set[str] | frozenset[str]) -> list[str]:
    """The ids among `rule_ids` that the catalogue does not hold, sorted."""
    return sorted(set(rule_ids) - RULES.keys())

"""Validation of a whole tree of request files, and of a pull request against its base.

A `Tree` is the bytes of one revision's `requests/` and `config/` files (read from git blobs
or the working tree by `gitfiles`). `validate_tree` runs every stage — safe YAML, schema,
per-file rules, cross-file rules — and returns a `Validation`: the problems, and the requests
that are valid, which is what `plan` builds on. `validate_pull` adds the PR's authorization
and judges the tree after the PR against the tree before it: what the PR breaks anywhere is
its error, what was broken before is a note.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from provisioner.validation.authz import authorize
from provisioner.validation.catalogue import RULES
from provisioner.validation.config import HOSTS_PATH, POLICY_PATH, Config, load_config
from provisioner.validation.crossrules import check_all
from provisioner.validation.rules import check_request
from provisioner.validation.schema import check
from provisioner.validation.sources import load
from provisioner.validation.textpolicy import describe, first_forbidden
from provisioner.values.changes import FileChange
from provisioner.values.held import Held
from provisioner.values.loaded import Lifecycle, Loaded, lifecycle
from provisioner.values.models import REQUEST_MODELS, AccountRequest, AnyRequest
from provisioner.values.policymodels import Policy
from provisioner.values.problems import Position, Problem, Severity
from provisioner.values.requestpaths import LAYOUT, is_request_path, under_requests
from provisioner.values.tree import Tree

_IGNORED = re.compile(r"^requests/(README(\.[a-z-]+)?\.md|(.*/)?\.gitkeep)$")


@dataclass(frozen=True)
class Renewal:
    """A request whose only change is a later last day: `old` → `new`."""

    path: str
    old: date
    new: date


@dataclass(frozen=True)
class Validation:
    problems: tuple[Problem, ...]
    config: Config | None
    valid: tuple[Loaded, ...] = ()
    expired: tuple[Loaded, ...] = ()
    notes: tuple[str, ...] = ()
    focus: frozenset[str] | None = field(default=None)
    # A pull request that only renews leases: every change one (empty otherwise).
    renewals: tuple[Renewal, ...] = ()
    # The same tree judged again knowing what the host holds (validate_tree's only): apply
    # reads main before it reads LXD. Not a value to compare or show.
    redo: Callable[[Held], Validation] | None = field(default=None, compare=False, repr=False)

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity is Severity.ERROR)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def invalid_paths(self) -> frozenset[str]:
        return frozenset(p.path for p in self.errors)


def today_for(config: Config, now: datetime) -> date:
    """The lab's calendar day: leases are days in the policy's time zone, not the runner's."""
    return now.astimezone(config.zone).date()


def load_request(path: str, raw: bytes) -> tuple[Loaded | None, list[Problem]]:
    """One request file through the loader and the schema of its kind."""
    bad = first_forbidden(path)
    if bad is not None:
        # The name is text from the PR like any value: held to the same rule, never repeated.
        return None, [
            Problem(
                path,
                Position(1, 1),
                "path.char",
                f"the file's name holds {describe(path[bad])}; request files are {LAYOUT}",
            )
        ]
    if not is_request_path(path):
        return None, [
            Problem(
                path,
                Position(1, 1),
                "path.layout",
                f"request files live at {LAYOUT}",
            )
        ]
    doc, problems = load(raw, path)
    if doc is None:
        return None, problems
    if not isinstance(doc.data, dict):
        return None, [
            Problem(
                path,
                doc.position(()),
                "schema.type",
                "a request is a mapping of fields (kind: container, name: …)",
            )
        ]
    kind = doc.data.get("kind")
    # `kind: [a]` is unhashable: test the type before looking it up.
    if not isinstance(kind, str) or kind not in REQUEST_MODELS:
        where = ("kind",) if "kind" in doc.data else ()
        if "kind" not in doc.data:
            shown = "missing"
        elif isinstance(kind, str) and len(kind) < 40:
            shown = f"'{kind}' is not a kind"
        else:
            shown = "not a kind"
        return None, [
            Problem(
                path,
                doc.position(where),
                "schema.kind",
                f"kind: {shown}; write 'kind: container', 'kind: account' or 'kind: image'",
                where=where,
            )
        ]
    request, problems = check(doc, kind, REQUEST_MODELS[kind])
    if request is None:
        return None, problems
    assert isinstance(request, AnyRequest)  # noqa: S101  (for mypy)
    return Loaded(path, doc, request), []


def as_registered(item: Loaded, policy: Policy) -> Loaded:
    """ITEM with its owner spelt as the policy's `users:` spells that login. GitHub logins
    are case-insensitive (`WangXM` is `wangxm`): one spelling from here on keeps the labels,
    quotas and names that plan and apply compare by owner the same whatever a file wrote."""
    owner = item.request.owner
    if owner in policy.users:
        return item
    same = [login for login in policy.users if login.casefold() == owner.casefold()]
    if len(same) != 1:
        return item
    return dataclasses.replace(item, request=item.request.model_copy(update={"owner": same[0]}))


def validate_tree(
    tree: Tree,
    now: datetime,
    focus: frozenset[str] | None = None,
    ages: Mapping[str, int] | None = None,
    held: Held | None = None,
) -> Validation:
    """Every request in `tree` against the schema, the policy and each other.

    Where requests compete, the newest are found at fault: `focus` (a PR's files) are the
    newest of all, then `ages` orders the rest (see crossrules.ranked). `held`: what the host
    has given out (names stay with their owners; see `provisioner.values.held`).
    """
    problems = list(tree.problems)
    config, found = load_config(tree.files.get(POLICY_PATH), tree.files.get(HOSTS_PATH))
    problems += found
    if config is None:
        return Validation(_catalogued(problems), None, focus=focus)
    today = today_for(config, now)
    loaded: list[Loaded] = []
    expired: set[str] = set()
    for path in tree.requests():
        if _IGNORED.match(path):
            continue
        item, found = load_request(path, tree.files[path])
        problems += found
        if item is not None:
            item = as_registered(item, config.policy)
            loaded.append(item)
            focused = focus is not None and path in focus
            problems += check_request(item, config.policy, config.inventory, today, focused, held)
            if lifecycle(item, today, focused=focused) is Lifecycle.EXPIRED:
                expired.add(path)
    broken = {p.path for p in problems if p.severity is Severity.ERROR}
    # Expired and broken requests hold no resources, so they are left out of the sums.
    live = [i for i in loaded if i.path not in broken and i.path not in expired]
    problems += check_all(live, config.policy, config.inventory, focus, ages, held)
    broken = {p.path for p in problems if p.severity is Severity.ERROR}
    return Validation(
        problems=_catalogued(problems),
        config=config,
        valid=tuple(i for i in live if i.path not in broken),
        expired=tuple(i for i in loaded if i.path in expired and i.path not in broken),
        focus=focus,
        redo=lambda found: validate_tree(tree, now, focus, ages, found),
    )


def with_held(validation: Validation, held: Held) -> Validation:
    """VALIDATION judged again with what the host holds, where that can change anything: a
    request naming what another member holds, or a name or login refused that may be its
    holder's to keep. Otherwise VALIDATION itself (judging again reads the tree again)."""
    if validation.redo is None:
        return validation
    rules = {"name.duplicate", "account.name_owner"}
    changes = any(p.rule in rules for p in validation.errors) or any(
        held.name_holder(i.request.name, i.request.owner) is not None
        or (
            isinstance(i.request, AccountRequest)
            and held.account_holder(i.request.server, i.request.name, i.request.owner) is not None
        )
        for i in (*validation.valid, *validation.expired)
    )
    return validation.redo(held) if changes else validation


def validate_pull(
    head: Tree,
    changes: Sequence[FileChange],
    author: str,
    base_admins: frozenset[str],
    now: datetime,
    before: Tree | None = None,
    others: Mapping[str, str] | None = None,
    held: Held | None = None,
) -> Validation:
    """A PR: everyone involved (the author, and `others`: pushers and commit authors) may
    change only their own requests, and the PR may hurt no one else. `head` is the tree the
    merge would make and `changes` what it changes on the base.

    The tree after the PR (`head`) is judged against the tree before it (`before`): the
    PR's files are the newest, so where they compete with others for a GPU, a quota or the
    host, they are the ones found at fault. Any problem in another file that was not there
    before is the PR's doing too, so it fails the PR, reported on the PR's own file with the
    name of the file it breaks (an infra change reports it in place: it may break anyone).
    Problems that were already there before are notes, not blamed on the PR.
    """
    touched = frozenset(c.path for c in changes if c.status != "D")
    auth_problems, notes = authorize(changes, author, base_admins, others)
    result = validate_tree(head, now, focus=touched, held=held)
    infra = any(not under_requests(c.path) for c in changes)
    known = None
    if before is not None:
        earlier = validate_tree(before, now, focus=touched, held=held)
        known = {(p.path, p.rule) for p in earlier.errors}
    mine = sorted(p for p in touched if p in head.files and under_requests(p))
    shown: list[Problem] = []
    already: list[Problem] = []
    hidden = 0
    for p in result.problems:
        if p.path in touched:
            shown.append(p)
        elif known is not None and p.severity is Severity.ERROR:
            if (p.path, p.rule) in known:
                already.append(p)
            elif infra or not mine:
                shown.append(p)
            else:  # something the PR's requests broke: said on the PR's own file
                shown.append(
                    Problem(
                        mine[0],
                        Position(1, 1),
                        p.rule,
                        f"this pull request breaks {p.path} (line {p.line}): {p.message}",
                    )
                )
        elif infra:
            shown.append(p)
        else:
            hidden += 1
    notes = (*notes, *_already(already))
    if hidden:
        notes = (*notes, f"{hidden} finding(s) in files this PR does not touch are not shown")
    return Validation(
        problems=_catalogued([*auth_problems, *shown]),
        config=result.config,
        valid=result.valid,
        expired=result.expired,
        notes=notes,
        focus=touched,
        renewals=() if before is None else renewals_only(before, head, changes),
    )


def renewals_only(before: Tree, head: Tree, changes: Sequence[FileChange]) -> tuple[Renewal, ...]:
    """The renewals, when every change is one: an existing request whose `expires` moved
    later and nothing else (comments and layout aside). Otherwise (anything else changed,
    or nothing did) `()`: the PR needs a closer look."""
    out = []
    for change in changes:
        old_raw, new_raw = before.files.get(change.path), head.files.get(change.path)
        if change.status != "M" or old_raw is None or new_raw is None:
            return ()
        old, _ = load_request(change.path, old_raw)
        new, _ = load_request(change.path, new_raw)
        if old is None or new is None or type(old.request) is not type(new.request):
            return ()
        same = old.request.model_dump(exclude={"expires"}) == new.request.model_dump(
            exclude={"expires"}
        )
        if not same or new.request.expires <= old.request.expires:
            return ()
        out.append(Renewal(change.path, old.request.expires, new.request.expires))
    return tuple(sorted(out, key=lambda r: r.path))


def _catalogued(problems: Sequence[Problem]) -> tuple[Problem, ...]:
    """The problems in report order, each under a rule of the catalogue with its severity.

    A rule id missing from the catalogue is a bug here, not in the user's file: it would
    reach the user with no entry in the guide and no `ssp explain`.
    """
    for p in problems:
        rule = RULES.get(p.rule)
        if rule is None or rule.severity is not p.severity:
            raise RuntimeError(f"rule {p.rule!r} ({p.severity}) is not in the rule catalogue")
    return tuple(sorted(problems, key=Problem.sort_key))


_MAX_ALREADY = 20


def _already(problems: Sequence[Problem]) -> tuple[str, ...]:
    """Notes for problems that were on the base before the PR (not blamed on it)."""
    lines = [f"already before this PR, not blamed on it: {p}" for p in problems[:_MAX_ALREADY]]
    if len(problems) > _MAX_ALREADY:
        lines.append(f"... and {len(problems) - _MAX_ALREADY} more problem(s) already before it")
    return tuple(lines)


def blocking(validation: Validation) -> list[Problem]:
    """Problems that stop the whole pass: those of the config, which every request needs,
    and a requests/ that was not read whole (`tree.size`).

    Requests that compete (a double-booked GPU, a host or a quota over its limit, a name
    used twice) do not stop it: validation finds the newest of them at fault, and those are
    skipped like any invalid request while the rest are applied.
    """
    out = [p for p in validation.errors if p.path in (POLICY_PATH, HOSTS_PATH)]
    # A requests/ not read whole: every request it did not reach would look removed, and
    # acting on that retires, locks and in the end deletes other members' machines.
    out += [p for p in validation.errors if p.rule == "tree.size"]
    if validation.config is None and not out:
        out = list(validation.errors)
    return out

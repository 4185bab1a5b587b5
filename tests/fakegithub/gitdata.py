"""The fake GitHub's git database: references, trees and commits, with git's real object ids.

Served: `git/get-ref`, `git/create-ref`, `git/update-ref`, `git/create-tree` (entries by
`content` or `sha`, nested paths, `base_tree`, `sha: null` deleting) and `git/create-commit`.
Objects are hashed as git hashes them (`blob N\\0…`, tree entries sorted as git sorts them,
commits with author and committer lines), so a test can rebuild what was published in a
real git repository and get the same ids. Refusals are GitHub's: 404 for an unknown
reference, 422 for a reference that exists already, an object that does not, or a move that
is not a fast-forward without `force`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import resources as r

if TYPE_CHECKING:
    from .state import GitHubState, Identity


@dataclass(frozen=True)
class Reply:
    """What an endpoint answers (`server.py` makes it HTTP)."""

    status: int
    body: Any = None  # parsed JSON; None for no body
    headers: Mapping[str, str] = field(default_factory=dict)


DOCS = "https://docs.github.com/rest/git"
_KINDS = {
    "100644": "blob",
    "100755": "blob",
    "120000": "blob",
    "040000": "tree",
    "160000": "commit",
}


@dataclass
class GitObject:
    kind: str  # blob | tree | commit
    data: Any  # bytes for a blob; [(mode, name, sha)] for a tree; a dict for a commit


@dataclass
class GitDatabase:
    """One repository's objects (by sha) and references (`refs/heads/x` → commit sha)."""

    objects: dict[str, GitObject] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)

    def put(self, kind: str, payload: bytes, data: Any) -> str:
        raw = f"{kind} {len(payload)}\0".encode() + payload
        sha = hashlib.sha1(raw, usedforsecurity=False).hexdigest()
        self.objects[sha] = GitObject(kind, data)
        return sha

    def blob(self, content: bytes) -> str:
        return self.put("blob", content, content)

    def tree(self, entries: Mapping[str, tuple[str, str]]) -> str:
        """A tree of NAME → (mode, sha), hashed the way git does."""
        # git sorts a tree's entries by name, a subtree's name as if it ended in "/"
        order = sorted(entries, key=lambda n: n + ("/" if entries[n][0] == "040000" else ""))
        payload = b"".join(
            f"{entries[n][0].lstrip('0')} {n}\0".encode() + bytes.fromhex(entries[n][1])
            for n in order
        )
        return self.put("tree", payload, [(entries[n][0], n, entries[n][1]) for n in order])

    def files(self, tree_sha: str, prefix: str = "") -> dict[str, bytes]:
        """Every file under a tree, by path (for tests to read back what was published)."""
        out: dict[str, bytes] = {}
        for mode, name, sha in self.objects[tree_sha].data:
            if mode == "040000":
                out |= self.files(sha, f"{prefix}{name}/")
            elif self.objects[sha].kind == "blob":
                out[f"{prefix}{name}"] = self.objects[sha].data
        return out

    def ancestors(self, sha: str) -> set[str]:
        seen, todo = set(), [sha]
        while todo:
            current = todo.pop()
            if current in seen or current not in self.objects:
                continue
            seen.add(current)
            todo += self.objects[current].data["parents"]
        return seen


def _invalid(message: str, docs: str) -> Reply:
    return Reply(422, r.error(message, docs, 422))


def _api(state: GitHubState, p: Mapping[str, str], tail: str) -> str:
    return f"{state.site.api}/repos/{p['owner']}/{p['repo']}/git/{tail}"


def _db(state: GitHubState, p: Mapping[str, str]) -> GitDatabase:
    return state.git.setdefault(f"{p['owner']}/{p['repo']}".lower(), GitDatabase())


def _ref_json(state: GitHubState, p: Mapping[str, str], name: str, sha: str) -> dict[str, Any]:
    return {
        "ref": name,
        "node_id": r.node_id("Ref", int(sha[:8], 16)),
        "url": _api(state, p, name),
        "object": {"type": "commit", "sha": sha, "url": _api(state, p, f"commits/{sha}")},
    }


def get_ref(state: GitHubState, p: Mapping[str, str], q: Any, b: Any, who: Identity) -> Reply:
    name = f"refs/{p['ref']}"
    sha = _db(state, p).refs.get(name)
    if sha is None:
        return Reply(404, r.error("Not Found", f"{DOCS}/refs#get-a-reference", 404))
    return Reply(200, _ref_json(state, p, name, sha))


def create_ref(state: GitHubState, p: Mapping[str, str], q: Any, b: Any, who: Identity) -> Reply:
    docs = f"{DOCS}/refs#create-a-reference"
    db = _db(state, p)
    name, sha = b["ref"], b["sha"]
    if not name.startswith("refs/") or name.count("/") < 2:
        return _invalid(f"{name} is not a valid ref name.", docs)
    if name in db.refs:
        return _invalid("Reference already exists", docs)
    if db.objects.get(sha, GitObject("", None)).kind != "commit":
        return _invalid("Object does not exist", docs)
    db.refs[name] = sha
    headers = {"Location": _api(state, p, name)}
    return Reply(201, _ref_json(state, p, name, sha), headers)


def update_ref(state: GitHubState, p: Mapping[str, str], q: Any, b: Any, who: Identity) -> Reply:
    docs = f"{DOCS}/refs#update-a-reference"
    db = _db(state, p)
    name, sha = f"refs/{p['ref']}", b["sha"]
    if name not in db.refs:
        return _invalid("Reference does not exist", docs)
    if db.objects.get(sha, GitObject("", None)).kind != "commit":
        return _invalid("Object does not exist", docs)
    if not b.get("force") and db.refs[name] not in db.ancestors(sha):
        return _invalid("Update is not a fast forward", docs)
    db.refs[name] = sha
    return Reply(200, _ref_json(state, p, name, sha))


def _insert(
    db: GitDatabase, base: Mapping[str, tuple[str, str]], parts: list[str], entry: Any
) -> dict[str, tuple[str, str]]:
    """BASE with the entry at PARTS set (or removed, for `sha: null`), subtrees rebuilt."""
    entries = dict(base)
    name = parts[0]
    if len(parts) > 1:
        below: dict[str, tuple[str, str]] = {}
        if name in entries and entries[name][0] == "040000":
            below = {n: (m, s) for m, n, s in db.objects[entries[name][1]].data}
        entries[name] = ("040000", db.tree(_insert(db, below, parts[1:], entry)))
    elif "content" in entry:
        entries[name] = (entry["mode"], db.blob(entry["content"].encode()))
    elif entry.get("sha") is None:
        entries.pop(name, None)
    else:
        entries[name] = (entry["mode"], entry["sha"])
    return entries


def create_tree(state: GitHubState, p: Mapping[str, str], q: Any, b: Any, who: Identity) -> Reply:
    docs = f"{DOCS}/trees#create-a-tree"
    db = _db(state, p)
    base: dict[str, tuple[str, str]] = {}
    if b.get("base_tree"):
        found = db.objects.get(b["base_tree"])
        if found is None or found.kind != "tree":
            return _invalid("base_tree is not a valid tree oid", docs)
        base = {n: (m, s) for m, n, s in found.data}
    for entry in b["tree"]:
        if "content" in entry and entry.get("sha"):
            return _invalid("Must supply either tree.sha or tree.content, not both", docs)
        if not entry.get("path") or entry["path"].startswith("/") or "mode" not in entry:
            return _invalid("tree.path and tree.mode are needed for each entry", docs)
        sha = entry.get("sha")
        if sha is not None and db.objects.get(sha, GitObject("", None)).kind != _KINDS.get(
            entry["mode"]
        ):
            return _invalid(f"tree.sha {sha} is not a valid {_KINDS.get(entry['mode'])}", docs)
        base = _insert(db, base, entry["path"].split("/"), entry)
    sha = db.tree(base)
    listed = [
        {
            "path": n,
            "mode": m,
            "type": db.objects[s].kind,
            "sha": s,
            "url": _api(state, p, f"{db.objects[s].kind}s/{s}"),
        }
        for m, n, s in db.objects[sha].data
    ]
    body = {"sha": sha, "url": _api(state, p, f"trees/{sha}"), "truncated": False, "tree": listed}
    return Reply(201, body, {"Location": _api(state, p, f"trees/{sha}")})


def _person(given: Any, who: Identity, when: datetime) -> dict[str, str]:
    if isinstance(given, dict) and given.get("name") and given.get("email"):
        return {
            "name": given["name"],
            "email": given["email"],
            "date": given.get("date") or r.iso(when),
        }
    login = who.user.login
    return {
        "name": login,
        "email": f"{who.user.id}+{login}@users.noreply.github.com",
        "date": r.iso(when),
    }


def create_commit(state: GitHubState, p: Mapping[str, str], q: Any, b: Any, who: Identity) -> Reply:
    docs = f"{DOCS}/commits#create-a-commit"
    db = _db(state, p)
    tree, parents = b["tree"], list(b.get("parents") or [])
    if db.objects.get(tree, GitObject("", None)).kind != "tree":
        return _invalid("Tree SHA does not exist", docs)
    if any(db.objects.get(s, GitObject("", None)).kind != "commit" for s in parents):
        return _invalid("Parent SHA does not exist or is not a commit object", docs)
    now = datetime.now(UTC)
    author = _person(b.get("author"), who, now)
    committer = _person(b.get("committer"), who, now) if b.get("committer") else author

    def line(role: str, person: dict[str, str]) -> str:
        stamp = int(datetime.fromisoformat(person["date"].replace("Z", "+00:00")).timestamp())
        return f"{role} {person['name']} <{person['email']}> {stamp} +0000\n"

    payload = (
        f"tree {tree}\n"
        + "".join(f"parent {s}\n" for s in parents)
        + line("author", author)
        + line("committer", committer)
        + f"\n{b['message']}"
    ).encode()
    data = {"tree": tree, "parents": parents, "message": b["message"], "author": author}
    sha = db.put("commit", payload, data)
    web = f"{state.site.web}/{p['owner']}/{p['repo']}/commit"
    body = {
        "sha": sha,
        "node_id": r.node_id("Commit", int(sha[:8], 16)),
        "url": _api(state, p, f"commits/{sha}"),
        "html_url": f"{web}/{sha}",
        "author": author,
        "committer": committer,
        "tree": {"sha": tree, "url": _api(state, p, f"trees/{tree}")},
        "message": b["message"],
        "parents": [
            {"sha": s, "url": _api(state, p, f"commits/{s}"), "html_url": f"{web}/{s}"}
            for s in parents
        ],
        "verification": {
            "verified": False,
            "reason": "unsigned",
            "signature": None,
            "payload": None,
            "verified_at": None,
        },
    }
    return Reply(201, body, {"Location": _api(state, p, f"commits/{sha}")})


HANDLERS = {
    "git/get-ref": get_ref,
    "git/create-ref": create_ref,
    "git/update-ref": update_ref,
    "git/create-tree": create_tree,
    "git/create-commit": create_commit,
}

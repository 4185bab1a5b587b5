"""`ssp new`: write a request file with the lab's defaults, already checked by the validator.

A container, an account on a shared server, or an image published from one of one's own
containers (`ssp new image --name base --from alice-box`).

A convenience for members: the file it writes passes `ssp validate` unchanged, or nothing is
written and the validator's findings say why (unknown owner, quota, ...). Every value goes
into the YAML either as a plain scalar that reads back as the same string under YAML 1.2, or
JSON-encoded (a JSON string is a valid YAML double-quoted scalar), so `--purpose` cannot
inject keys.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from provisioner.commands import (
    add_lang_arg,
    add_repo_arg,
    clock,
    examples,
    language,
    member_login,
)
from provisioner.git import files as gitfiles
from provisioner.reporting.escape import log_line
from provisioner.reporting.render import render
from provisioner.reporting.validationreport import said
from provisioner.validation.config import HOSTS_PATH, POLICY_PATH, Config, load_config
from provisioner.validation.rules import says_nothing
from provisioner.validation.sources import NumberTooLongError, load, resolve_plain
from provisioner.validation.sshkeys import KeyRefusal, parse_key
from provisioner.validation.textpolicy import describe, first_forbidden
from provisioner.validation.validate import today_for, validate_tree
from provisioner.values.errors import UsageError
from provisioner.values.requestpaths import request_path
from provisioner.values.tree import Tree

DEFAULT_KEYS = ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub")
LEASE_DAYS = 90
_PATH_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}$")  # no '/', no '..': a path part
_PLAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
GPU_NUMBERING = (
    "GPUs are numbered as nvidia-smi numbers them on the host (config/hosts.yaml, `ssp status`); "
    "inside your container nvidia-smi and CUDA number yours from 0, in the same order "
    "(host GPUs [2, 3] are 0 and 1 there); `nvidia-smi -L` shows the same UUIDs on both sides."
)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "new",
        help="write requests/<owner>/<name>.yaml with the lab's defaults",
        description="Write a request file that passes `ssp validate`; edit it, then open a PR.",
        **examples(
            "ssp new container --name alice-thesis --gpus 1 \\\n"
            "      --purpose 'Diffusion experiments for my thesis'",
            "ssp new account --owner bob --name bob-common --purpose 'Notebooks for my course'",
            "ssp new container --owner alice --name alice-cpu --purpose 'CPU-only builds' \\\n"
            "      --ssh-key ~/.ssh/id_ecdsa.pub",
            "ssp new image --name base --from alice-thesis --purpose 'My CUDA tools, set up'",
        ),
    )
    parser.add_argument("kind", choices=("container", "account", "image"))
    parser.add_argument(
        "--owner",
        metavar="LOGIN",
        help="your GitHub login (default: as `ssp validate` finds it: SSP_AUTHOR, "
        "git config github.user, gh's login)",
    )
    parser.add_argument("--name", required=True, help="the container's, account's or image's name")
    parser.add_argument("--gpus", type=int, metavar="N", help="GPUs (container; default 0)")
    parser.add_argument(
        "--ssh-key", type=Path, metavar="FILE", help="public key (default: ~/.ssh/id_*.pub)"
    )
    parser.add_argument(
        "--purpose",
        required=True,
        metavar="TEXT",
        help="what it is for, in a sentence (admins read it before they merge)",
    )
    for flag, metavar, text in (
        ("--server", "ID", "shared server (account; default: the only one)"),
        ("--expires", "YYYY-MM-DD", f"last day (default: in {LEASE_DAYS} days)"),
    ):
        parser.add_argument(flag, metavar=metavar, help=text)
    parser.add_argument(
        "--from",
        dest="source",
        metavar="CONTAINER",
        help="the container to publish (image; default: your only container request)",
    )
    parser.add_argument(
        "--snapshot",
        metavar="SNAP",
        help="one of its snapshots to publish (image; default: ssp takes one when merged)",
    )
    parser.add_argument(
        "--share",
        action="append",
        metavar="ID",
        help="a shared folder to mount, again for more (container; default: every share in "
        "the policy's catalogue)",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing file")
    add_lang_arg(parser, "the language of the findings that stop it")
    add_repo_arg(parser)
    parser.set_defaults(func=run)


def _scalar(value: str | int | bool) -> str:
    """A YAML scalar that reads back as `value`: plain when that is unambiguous, else JSON."""
    try:
        if isinstance(value, str) and _PLAIN.match(value) and resolve_plain(value) == value:
            return value
    except NumberTooLongError:  # a long run of digits: written quoted, it stays text
        pass
    return json.dumps(value, ensure_ascii=False)


def _text(value: str, option: str) -> str:
    """The validator's rule on text (`textpolicy`), said before anything is written."""
    bad = first_forbidden(value)
    if bad is not None:
        raise UsageError(f"{option} holds {describe(value[bad])}; type it plainly, on one line")
    return value


def _purpose(value: str, name: str) -> str:
    """A purpose an admin can judge: not empty words, not a placeholder, not the name again."""
    if says_nothing(_text(value, "--purpose"), name):
        raise UsageError(
            f"--purpose {value!r} does not say what it is for; write a sentence an admin can "
            "judge, e.g. --purpose 'Diffusion experiments for my thesis'"
        )
    return value


def _keys(args: argparse.Namespace, env: Mapping[str, str]) -> list[str]:
    path: Path | None = args.ssh_key
    if path is None:
        ssh = Path(env.get("HOME", "~")) / ".ssh"
        path = next((ssh / n for n in DEFAULT_KEYS if (ssh / n).is_file()), None)
        if path is None:
            raise UsageError(
                f"no SSH public key in {ssh} ({', '.join(DEFAULT_KEYS)}); make one with "
                "`ssh-keygen -t ed25519` or give one with --ssh-key FILE"
            )
    try:
        text = path.read_bytes()[: 64 * 1024].decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read the SSH key {path}: {e}") from e
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    refusals = [k for k in map(parse_key, lines) if isinstance(k, KeyRefusal)]
    if any(k.rule == "ssh_key.private" for k in refusals):
        raise UsageError(f"{path} is a PRIVATE key: give its .pub file, never the key itself")
    if not lines:
        raise UsageError(f"{path} holds no key; make one with `ssh-keygen -t ed25519`")
    return lines


def _server(config: Config, wanted: str | None) -> str:
    servers = sorted(config.policy.shared_servers)
    if wanted is not None:
        return wanted  # the validator explains an unknown id on its line
    if len(servers) != 1:
        raise UsageError(f"pick a shared server with --server ({', '.join(servers) or 'none'})")
    return servers[0]


def _source(args: argparse.Namespace, tree: Tree) -> str:
    """The container an image is published from: --from, or the owner's only container."""
    if args.source is not None:
        return _text(args.source, "--from")  # the validator explains one that is not yours
    folder = f"requests/{args.owner}/"
    mine = sorted(
        path[len(folder) : -len(".yaml")]
        for path, raw in tree.files.items()
        if path.startswith(folder) and path.endswith(".yaml") and _kind(raw, path) == "container"
    )
    if len(mine) != 1:
        raise UsageError(
            f"say which container to publish with --from ({', '.join(mine)})"
            if mine
            else f"{folder} holds no container request to publish; ask for a container first "
            "(`ssp new container`), or name one of yours with --from CONTAINER"
        )
    print(f"ssp new: from {mine[0]} (your only container; --from says otherwise)", file=sys.stderr)
    return mine[0]


def _kind(raw: bytes, path: str) -> object:
    doc, _ = load(raw, path)
    return doc.data.get("kind") if doc is not None and isinstance(doc.data, dict) else None


def _fields(args: argparse.Namespace, env: Mapping[str, str], config: Config) -> dict[str, Any]:
    """What the template needs; every value from outside goes through `q` (_scalar)."""
    today = today_for(config, clock(env))
    try:
        expires = date.fromisoformat(args.expires) if args.expires else None
    except ValueError as e:
        raise UsageError(f"--expires {args.expires!r}: write a date as YYYY-MM-DD") from e
    days = min(LEASE_DAYS, config.policy.max_lease_days)
    shares = args.share if args.share is not None else sorted(config.policy.shares)
    return {
        "q": _scalar,
        "policy": config.policy,
        "hosts": sorted(config.inventory.hosts),
        "name": args.name,
        "owner": args.owner,
        "purpose": _purpose(args.purpose, args.name),
        "shares": shares,
        "gpus": args.gpus or 0,
        "server": _server(config, args.server) if args.kind == "account" else "",
        "ssh_keys": _keys(args, env) if args.kind != "image" else [],
        "snapshot": _text(args.snapshot, "--snapshot") if args.snapshot is not None else None,
        "expires": (expires or today + timedelta(days=days)).isoformat(),
    }


def _refuse_misplaced(args: argparse.Namespace) -> None:
    """Options that do not belong to the kind asked for: said, not silently dropped."""
    if args.kind == "image":
        for value, option in (
            (args.gpus, "--gpus"),
            (args.ssh_key, "--ssh-key"),
            (args.share, "--share"),
            (args.server, "--server"),
        ):
            if value is not None:
                raise UsageError(
                    f"{option} is not for an image: it is published from a container "
                    "(--from) and keeps what that container has"
                )
        return
    for value, option in ((args.source, "--from"), (args.snapshot, "--snapshot")):
        if value is not None:
            raise UsageError(f"{option} is for `ssp new image`, not for a {args.kind}")
    if args.kind == "account" and args.gpus is not None:
        raise UsageError("--gpus is for containers; an account shares its server's GPUs")
    if args.kind == "container" and args.server is not None:
        raise UsageError("--server is for accounts; a container is placed on a host")
    if args.kind == "account" and args.share is not None:
        raise UsageError("--share is for containers; an account sees its server's folders")


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.owner is None:
        found = member_login(args.repo, env)
        if found is None:
            raise UsageError(
                "who are you on GitHub? say --owner LOGIN, or once: git config github.user LOGIN"
            )
        args.owner = found[0]
        how = f"from {found[1]}; --owner LOGIN says otherwise"
        print(f"ssp new: owner {args.owner} ({how})", file=sys.stderr)
    for value, option in ((args.owner, "--owner"), (args.name, "--name")):
        if not _PATH_SAFE.match(value):
            raise UsageError(f"{option} {value!r}: use letters, digits and '-' only")
    _refuse_misplaced(args)
    rel = request_path(args.owner, args.name)
    target = args.repo / rel
    if target.exists() and not args.force:
        raise UsageError(f"{rel} exists; edit it, or pass --force to replace it")
    tree = gitfiles.worktree(args.repo)
    config, problems = load_config(tree.files.get(POLICY_PATH), tree.files.get(HOSTS_PATH))
    if config is None:
        first = f": {problems[0]}" if problems else ""
        raise UsageError(f"{args.repo} has no usable {POLICY_PATH} and {HOSTS_PATH}{first}")
    fields = _fields(args, env, config)
    if args.kind == "image":
        fields["source"] = _source(args, tree)
    text = render(f"request_{args.kind}.yaml.j2", **fields)
    data = text.encode("utf-8")
    # Judge the file among all the others, so quotas and unique names count too.
    candidate = Tree({**tree.files, rel: data}, tree.problems)
    result = validate_tree(candidate, clock(env), focus=frozenset({rel}))
    errors = [p for p in result.errors if p.path == rel]
    if errors:
        for problem in errors:
            print(log_line(said(problem, language(env, args.lang))), file=sys.stderr)
        print(f"ssp new: {rel} would not pass the check; nothing written", file=sys.stderr)
        return 1
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb" if args.force else "xb") as out:  # "x": never clobber a racing write
        out.write(data)
    print(f"wrote {rel}: edit it if you like, check it with `ssp validate`, then open a PR")
    if args.kind == "container" and args.gpus:
        print(f"note: {GPU_NUMBERING}")
    if args.kind == "image":
        print(
            f"note: once it is merged, a container of yours starts from it with "
            f"`image: {args.owner}/{args.name}`"
        )
    return 0

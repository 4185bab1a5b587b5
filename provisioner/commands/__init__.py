"""The `ssp` subcommands, one module each; every module exposes `register(subparsers)`.

`provisioner.cli` lists them (`GROUPS`) and imports only the one named on the line.

Commands are part of the CLI layer: they may read `env` (handed in by `cli.main`), print and
return exit statuses. They hold no logic of their own beyond wiring arguments to a flow.

May import: every wing (flows, applying, the adapters, doctor, status, reporting, planning,
validation, values); nothing imports a command but `provisioner.cli`.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

from provisioner.host.ports import listening_ports
from provisioner.reporting.escape import log_line
from provisioner.values.errors import UsageError

# Every command imports this package, `ssp validate --help` included: what builds models or
# reads config (the checkout, validation, planning) loads inside the functions that use it,
# so a command's start-up costs only what that command needs (issue 27).
if TYPE_CHECKING:  # types only: pylxd loads when a command connects
    from provisioner.flows.checkout import MainCheckout
    from provisioner.flows.observe import Observed
    from provisioner.github.client import GitHubClient
    from provisioner.lxd.api import Lxd
    from provisioner.reporting.mergecomment import Context
    from provisioner.validation.config import Config
    from provisioner.validation.validate import Validation
    from provisioner.values.gpuinventory import Card
    from provisioner.values.idranges import IdRange
    from provisioner.values.plandata import HostFacts
    from provisioner.values.policymodels import Policy
    from provisioner.values.problems import Problem
    from provisioner.values.state import HostApi

Register = Callable[["argparse._SubParsersAction[Any]"], None]


def clock(env: Mapping[str, str]) -> datetime:
    """Now, as an aware datetime. SSP_NOW (ISO 8601) pins it for tests and demos."""
    pinned = env.get("SSP_NOW")
    if not pinned:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(pinned)
    except ValueError as e:
        raise UsageError(f"SSP_NOW={pinned!r} is not an ISO 8601 date-time") from e
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def repo_url(env: Mapping[str, str]) -> str:
    """The repository's web address for the status page's links, from the Actions
    environment ("" outside it: the page then has no links; the page checks the form)."""
    repository = env.get("GITHUB_REPOSITORY", "")
    server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
    return f"{server}/{repository}" if repository else ""


def examples(*lines: str, status: str = "") -> dict[str, Any]:
    """`add_parser` arguments for a help text ending in an EXAMPLES section (and exit statuses).

    Each line is `command  # what it does`; the comments are aligned so the section reads as
    a table.
    """
    pairs = [line.partition("  # ") for line in lines]
    width = max((len(cmd) for cmd, _, why in pairs if why), default=0) + 2
    rows = [f"  {cmd:<{width}}# {why}" if why else f"  {cmd}" for cmd, _, why in pairs]
    text = "examples:\n" + "\n".join(rows)
    if status:
        text += "\n\n" + textwrap.fill(status, 78)
    return {"epilog": text, "formatter_class": argparse.RawDescriptionHelpFormatter}


def add_repo_arg(parser: argparse.ArgumentParser) -> None:
    """Every command takes --repo: the checkout holding requests/, config/ and schemas/."""
    parser.add_argument(
        "--repo",
        type=Path,
        metavar="DIR",
        help="repository checkout to work on (default: the current directory, or the git "
        "checkout it is in); may also come before the command",
    )


def load_for_host(repo: Path, env: Mapping[str, str]) -> MainCheckout:
    """The checkout for apply, maintain and plan, with what would stop them."""
    from provisioner.flows.checkout import read_main  # noqa: PLC0415  (see the imports)

    return read_main(repo, clock(env))


def print_blocking(problems: Sequence[Problem]) -> None:
    print("ssp: nothing was changed; these problems concern every request:", file=sys.stderr)
    for problem in problems:
        print(log_line(problem), file=sys.stderr)


def open_lxd(project: str, env: Mapping[str, str], *, require_project: bool = True) -> Any:
    """The LXD adapter for `project` on the daemon $LXD_DIR names (else the usual socket).

    `require_project=False` for `ssp host init`, which creates the project, and `ssp doctor`,
    which says it is missing. pylxd is imported here, on first use: the members' slim
    install runs `ssp validate` without it.
    """
    from provisioner.lxd.api import Lxd  # noqa: PLC0415  (pylxd loads only for commands using LXD)

    return Lxd(project, lxd_dir=env.get("LXD_DIR"), require_project=require_project)


def connect(policy: Policy, env: Mapping[str, str]) -> tuple[Lxd, Callable[[str], Lxd]]:
    """The adapter for the policy's project, and one per shared server's project."""
    main: Lxd = open_lxd(policy.lxd.project, env)
    projects = {s.instance: s.project for s in policy.shared_servers.values()}
    cache: dict[str, Lxd] = {}

    def server(instance: str) -> Lxd:
        project = projects.get(instance, "default")
        if project not in cache:
            cache[project] = open_lxd(project, env)
        return cache[project]

    return main, server


DEFAULT_LOCK = Path("/var/lock/ssp-apply.lock")
DEFAULT_API_URL = "https://api.github.com"


def add_lock_args(parser: argparse.ArgumentParser) -> None:
    """--lock and --lock-wait: every command that changes the host takes the host lock."""
    parser.add_argument(
        "--lock",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"host lock file (default: $SSP_LOCK or {DEFAULT_LOCK})",
    )
    parser.add_argument(
        "--lock-wait",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how long to wait for another apply or maintenance run to finish (default: 300)",
    )


def lock_path(args: argparse.Namespace, env: Mapping[str, str]) -> Path:
    return Path(args.lock or env.get("SSP_LOCK") or DEFAULT_LOCK)


def host_facts(validation: Validation, env: Mapping[str, str], lxd: HostApi) -> HostFacts:
    """What planning needs to know about this host besides LXD's instances."""
    from provisioner.values.plandata import HostFacts  # noqa: PLC0415  (see the imports)

    return HostFacts(
        busy_ports=listening_ports(),
        gpu_refusal=gpu_gate(validation, env, lxd),
        id_spans=host_id_spans(),
        pin_ids=ids_pinnable(lxd),
    )


def host_id_spans() -> tuple[IdRange, ...]:
    """Where containers' host ID blocks may go: root's ranges in /etc/subuid and /etc/subgid."""
    from provisioner.host import subidfiles  # noqa: PLC0415  (see the imports)
    from provisioner.values import subids  # noqa: PLC0415

    return subids.id_spans(subidfiles.read(subids.SUBUID), subidfiles.read(subids.SUBGID))


def ids_pinnable(lxd: HostApi) -> bool:
    """Whether ssp may choose host ID blocks in the policy's project: not where the project
    forbids low-level keys (ssp's own restricted project); LXD chooses there."""
    from provisioner.planning.hostproject import forbids_low_level  # noqa: PLC0415

    return not forbids_low_level(lxd.read_project())


def gpu_gate(validation: Validation, env: Mapping[str, str], lxd: HostApi) -> str | None:
    """Why GPUs may not be attached now (None: they may, or no request wants one).

    On a single server NVML on this host is compared with the inventory; in an LXD cluster
    each member's cards, read through LXD, with that member's entry (`member_gpu_refusal`).
    SSP_GPU_CHECK=off skips the check: for machines without GPUs in tests and demos only.
    """
    from provisioner.gpu.gate import (  # noqa: PLC0415  (loads NVML bindings)
        gpu_refusal,
        member_gpu_refusal,
    )
    from provisioner.values.models import ContainerRequest  # noqa: PLC0415  (see the imports)

    config = validation.config
    wants = any(
        isinstance(i.request, ContainerRequest) and i.request.gpus for i in validation.valid
    )
    if config is None or not wants or env.get("SSP_GPU_CHECK") == "off":
        return None
    members = lxd.members()
    if not members:
        return gpu_refusal(config.inventory)
    return member_gpu_refusal(config.inventory, member_cards(lxd, members))


def member_cards(lxd: HostApi, members: Mapping[str, str]) -> dict[str, Sequence[Card] | str]:
    """Each cluster member's GPU cards as its LXD lists them, or why they could not be read."""
    from provisioner.planning.cluster import ONLINE  # noqa: PLC0415  (see the imports)
    from provisioner.values.errors import LxdError  # noqa: PLC0415

    found: dict[str, Sequence[Card] | str] = {}
    for member, status in sorted(members.items()):
        if status != ONLINE:
            found[member] = f"LXD calls it {status}"
            continue
        try:
            found[member] = lxd.gpu_cards(member)
        except LxdError as e:
            found[member] = str(e)
    return found


def main_config(repo: Path, now: datetime, command: str) -> Config | None:
    """The checkout's config for a command that reads the host against the policy; None (and
    why, on stderr) when config/ is not valid."""
    from provisioner.flows.checkout import load_main  # noqa: PLC0415  (see the imports)

    validation, _sha = load_main(repo, now)
    if validation.config is None:
        print_invalid_config(command, validation)
    return validation.config


def print_invalid_config(command: str, validation: Validation) -> None:
    """Why a command that reads the host against the policy cannot run."""
    print(f"ssp {command}: config/ is not valid:", file=sys.stderr)
    for problem in validation.errors:
        print(log_line(problem), file=sys.stderr)


def emit(command: str, text: str, output: Path | None, what: str = "") -> None:
    """A report to stdout, or to `output` with a line on stderr saying where it went."""
    if output is None:
        sys.stdout.write(text)
        return
    output.write_text(text, encoding="utf-8")
    print(f"ssp {command}: wrote {output}{what}", file=sys.stderr)


def observe_host(
    repo: Path, env: Mapping[str, str], command: str, *, images: bool = False
) -> Observed | None:
    """The status observation for a command: LXD as $LXD_DIR says, NVML unless
    SSP_GPU_CHECK=off (machines without GPUs, in tests and demos)."""
    from provisioner.flows.observe import observe_status  # noqa: PLC0415  (status, publish only)

    found, validation = observe_status(
        repo,
        clock(env),
        lambda policy: connect(policy, env),
        read_gpus=env.get("SSP_GPU_CHECK") != "off",
        images=images,
    )
    if found is None:
        print_invalid_config(command, validation)
    return found


ClientT = TypeVar("ClientT", bound="GitHubClient")


@overload
def maybe_github_client(env: Mapping[str, str]) -> GitHubClient | None: ...
@overload
def maybe_github_client(env: Mapping[str, str], kind: type[ClientT]) -> ClientT | None: ...
def maybe_github_client(
    env: Mapping[str, str], kind: type[GitHubClient] | None = None
) -> GitHubClient | None:
    """The one place a GitHub client is made: GITHUB_TOKEN, GITHUB_REPOSITORY and
    GITHUB_API_URL from the environment, as Actions sets them; None without a token or
    repository.

    KIND is the adapter's client class (default: the plain GitHubClient); its module loads
    PyGithub, so each caller imports it only when it is about to talk to GitHub.
    """
    token = env.get("GITHUB_TOKEN", "").strip()
    repository = env.get("GITHUB_REPOSITORY", "").strip()
    if not (token and repository):
        return None
    kind = kind or _default_client()
    return kind(
        repository=repository, token=token, api_url=env.get("GITHUB_API_URL") or DEFAULT_API_URL
    )


# Environment variables whose values never appear in a PR comment, besides GITHUB_TOKEN.
_SECRET_NAME = re.compile(r".*(TOKEN|SECRET|PASSWORD|PRIVATE_KEY)$")


def comment_context(
    env: Mapping[str, str], policy: Policy | None, validation: Validation
) -> Context | None:
    """What the PR comments of a run share (`ssp apply`, and `ssp maintain` for a request in
    line), from GITHUB_* as Actions sets them; None unless token, repository and sha are."""
    from provisioner.reporting.mergecomment import Context  # noqa: PLC0415

    token, repository, sha = (
        env.get(k, "").strip() for k in ("GITHUB_TOKEN", "GITHUB_REPOSITORY", "GITHUB_SHA")
    )
    if not (token and repository and sha):
        return None
    server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
    run_id, attempt = env.get("GITHUB_RUN_ID", ""), env.get("GITHUB_RUN_ATTEMPT", "1")
    run_url = f"{server}/{repository}/actions/runs/{run_id}" if run_id.isdigit() else ""
    if run_url and attempt.isdigit() and int(attempt) > 1:
        run_url += f"/attempts/{attempt}"  # a re-run keeps the run's id
    secrets = [token] + [v for k, v in env.items() if _SECRET_NAME.fullmatch(k) and v.strip()]
    purposes = {i.path: i.request.purpose for i in (*validation.valid, *validation.expired)}
    return Context(policy, sha, run_url, purposes, tuple(secrets))


@overload
def github_client(env: Mapping[str, str], *, needed_for: str) -> GitHubClient: ...
@overload
def github_client(env: Mapping[str, str], kind: type[ClientT], *, needed_for: str) -> ClientT: ...
def github_client(
    env: Mapping[str, str], kind: type[GitHubClient] | None = None, *, needed_for: str
) -> GitHubClient:
    """As `maybe_github_client`, for a command that cannot go on without GitHub."""
    client = maybe_github_client(env, kind or _default_client())
    if client is None:
        raise UsageError(f"{needed_for} needs GITHUB_TOKEN and GITHUB_REPOSITORY (owner/name)")
    return client


def _default_client() -> type[GitHubClient]:
    from provisioner.github.client import GitHubClient  # noqa: PLC0415  (loads PyGithub)

    return GitHubClient


def gh_login(env: Mapping[str, str]) -> str | None:
    """The login `gh auth login` stored (~/.config/gh/hosts.yml), if any."""
    home = env.get("GH_CONFIG_DIR") or str(Path(env.get("HOME", "~")) / ".config" / "gh")
    try:
        import yaml  # noqa: PLC0415

        hosts = yaml.safe_load((Path(home).expanduser() / "hosts.yml").read_text("utf-8"))
    except (OSError, ValueError, ImportError):
        return None
    user = hosts.get("github.com", {}).get("user") if isinstance(hosts, dict) else None
    return user if isinstance(user, str) else None


def member_login(repo: Path, env: Mapping[str, str]) -> tuple[str, str] | None:
    """Who the member running a command is on GitHub, and how that was found: SSP_AUTHOR,
    then git's `github.user`, then gh's login (the order `ssp validate` tries)."""
    from provisioner.git.history import config_value  # noqa: PLC0415  (runs git)

    for found, how in (
        (env.get("SSP_AUTHOR"), "SSP_AUTHOR"),
        (config_value(repo, "github.user") if (repo / ".git").exists() else None, "git config"),
        (gh_login(env), "gh's login"),
    ):
        if found:
            return found, how
    return None


# owner/name in a GitHub remote's URL: https://github.com/o/n(.git), git@github.com:o/n(.git)
_GITHUB_REMOTE = re.compile(r"github\.com[:/]([A-Za-z0-9-]+/[A-Za-z0-9._-]+?)(?:\.git)?/?$")


def github_env_from_clone(env: Mapping[str, str], repo: Path) -> dict[str, str]:
    """ENV with what an admin's own clone tells when Actions' variables are not set: the
    repository from the `origin` remote, the token from `gh auth token` (GitHub's CLI)."""
    from provisioner.git.history import remote_url  # noqa: PLC0415  (runs git)

    out = dict(env)
    if not out.get("GITHUB_REPOSITORY", "").strip():
        found = _GITHUB_REMOTE.search(remote_url(repo) or "")
        if found:
            out["GITHUB_REPOSITORY"] = found.group(1)
    gh = shutil.which("gh", path=env.get("PATH"))
    if not out.get("GITHUB_TOKEN", "").strip() and gh:
        done = subprocess.run(
            [gh, "auth", "token"], capture_output=True, text=True, check=False, env=dict(env)
        )
        if done.returncode == 0 and done.stdout.strip():
            out["GITHUB_TOKEN"] = done.stdout.strip()
    return out

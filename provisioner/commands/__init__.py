"""The `ssp` subcommands, one module each; every module exposes `register(subparsers)`.

Commands are part of the CLI layer: they may read `env` (handed in by `cli.main`), print and
return exit statuses. They hold no logic of their own beyond wiring arguments to a flow.

May import: every wing (flows, applying, the adapters, doctor, status, reporting, planning,
validation, values); nothing imports a command but `provisioner.cli`.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provisioner.git import files as gitfiles
from provisioner.git import history as gitrepo
from provisioner.host import subidfiles
from provisioner.host.ports import listening_ports
from provisioner.planning.hostproject import forbids_low_level
from provisioner.reporting.escape import log_line
from provisioner.validation.config import Config
from provisioner.validation.validate import Validation, blocking, validate_tree
from provisioner.values import subids
from provisioner.values.errors import SspError, UsageError
from provisioner.values.idranges import IdRange
from provisioner.values.models import ContainerRequest
from provisioner.values.plandata import HostFacts
from provisioner.values.policymodels import Policy
from provisioner.values.problems import Problem
from provisioner.values.state import HostApi

if TYPE_CHECKING:  # the adapter's type only: pylxd loads when a command connects
    from provisioner.lxd.api import Lxd

Register = Callable[["argparse._SubParsersAction[Any]"], None]

# Listed, not discovered: the order is the order `ssp --help` shows. `cli` imports them.
NAMES = (
    "validate",
    "explain",
    "new",
    "schema",
    "plan",
    "apply",
    "maintain",
    "status",
    "publish",
    "tunnel",
    "gpus",
    "host",
    "doctor",
)


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


def load_main(repo: Path, now: datetime) -> tuple[Validation, str]:
    """Re-validate the whole checkout (apply never trusts that the PR check ran).

    Where requests compete (a GPU, a quota, the host's capacity), the newest by git history
    are refused and the rest applied; outside git, path order decides.
    """
    if not (repo / ".git").exists():
        return validate_tree(gitfiles.worktree(repo), now), ""
    ages = gitrepo.ages(repo)
    return validate_tree(gitfiles.worktree(repo), now, ages=ages), gitrepo.head_sha(repo)


@dataclass(frozen=True, kw_only=True)
class MainCheckout:
    """`main` as a host command sees it: validated again, its commit, the time it was read,
    and the problems that stop a whole pass (an invalid config)."""

    validation: Validation
    sha: str
    now: datetime
    blocking: tuple[Problem, ...]

    @property
    def config(self) -> Config:
        config = self.validation.config
        if config is None:  # callers look at `blocking` first; it is never empty then
            raise SspError("config/ is not valid")
        return config


def load_for_host(repo: Path, env: Mapping[str, str]) -> MainCheckout:
    """The checkout for apply, maintain and plan, with what would stop them."""
    now = clock(env)
    validation, sha = load_main(repo, now)
    return MainCheckout(
        validation=validation, sha=sha, now=now, blocking=tuple(blocking(validation))
    )


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
    return HostFacts(
        busy_ports=listening_ports(),
        gpu_refusal=gpu_gate(validation, env),
        id_spans=host_id_spans(),
        pin_ids=ids_pinnable(lxd),
    )


def host_id_spans() -> tuple[IdRange, ...]:
    """Where containers' host ID blocks may go: root's ranges in /etc/subuid and /etc/subgid."""
    return subids.id_spans(subidfiles.read(subids.SUBUID), subidfiles.read(subids.SUBGID))


def ids_pinnable(lxd: HostApi) -> bool:
    """Whether ssp may choose host ID blocks in the policy's project: not where the project
    forbids low-level keys (ssp's own restricted project); LXD chooses there."""
    return not forbids_low_level(lxd.read_project())


def gpu_gate(validation: Validation, env: Mapping[str, str]) -> str | None:
    """Why GPUs may not be attached now (None: they may, or no request wants one).

    SSP_GPU_CHECK=off skips the check: for machines without GPUs in tests and demos only.
    """
    from provisioner.gpu.gate import gpu_refusal  # noqa: PLC0415  (loads NVML bindings)

    config = validation.config
    wants = any(
        isinstance(i.request, ContainerRequest) and i.request.gpus for i in validation.valid
    )
    if config is None or not wants or env.get("SSP_GPU_CHECK") == "off":
        return None
    return gpu_refusal(config.inventory)


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

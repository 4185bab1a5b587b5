"""The `ssp` subcommands, one module each; every module exposes `register(subparsers)`.

Commands are part of the CLI layer: they may read `env` (handed in by `cli.main`), print and
return exit statuses. They hold no logic of their own beyond wiring arguments to the core.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from provisioner.errors import UsageError

Register = Callable[["argparse._SubParsersAction[Any]"], None]

# Listed, not discovered: the order is the order `ssp --help` shows. `cli` imports them.
NAMES = ("validate", "new", "schema", "plan", "apply", "gpus", "host", "doctor")


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


def add_repo_arg(parser: argparse.ArgumentParser) -> None:
    """Every command takes --repo: the checkout holding requests/, config/ and schemas/."""
    parser.add_argument(
        "--repo",
        type=Path,
        default=Path(),
        metavar="DIR",
        help="repository checkout to work on (default: the current directory)",
    )

"""The `ssp` subcommands, one module each; every module exposes `register(subparsers)`.

Commands are part of the CLI layer: they may read `env` (handed in by `cli.main`), print and
return exit statuses. They hold no logic of their own beyond wiring arguments to the core.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

Register = Callable[["argparse._SubParsersAction[Any]"], None]

# Listed, not discovered: the order is the order `ssp --help` shows.
_NAMES = ("validate", "new", "schema", "plan", "apply", "gpus", "host", "doctor")


def _load() -> list[Register]:
    found: list[Register] = []
    for name in _NAMES:
        try:
            module = importlib.import_module(f"provisioner.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"provisioner.commands.{name}":
                raise
            continue
        found.append(module.register)
    return found


COMMANDS: list[Register] = _load()


def add_repo_arg(parser: argparse.ArgumentParser) -> None:
    """Every command takes --repo: the checkout holding requests/, config/ and schemas/."""
    parser.add_argument(
        "--repo",
        type=Path,
        default=Path(),
        metavar="DIR",
        help="repository checkout to work on (default: the current directory)",
    )

"""The `ssp` command line: the only place that reads the environment, prints and exits.

Each subcommand lives in `provisioner.commands.<name>` and exposes `register(subparsers)`,
which adds its parser and sets `func(args, env) -> int` as the handler. This module maps
exceptions to exit statuses so that no user ever sees a traceback:
0 ok, 1 findings/failures, 2 usage, 3 unexpected error. As the `ssp` process itself (not
when called in-process), it also sets the garbage collector for a short command.
"""

from __future__ import annotations

import argparse
import difflib
import gc
import importlib
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from provisioner import __version__
from provisioner.values.errors import SspError, UsageError

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_ERROR = 3


# The commands as `ssp --help` lists them, grouped by who runs them, with their one-line help.
# Listed here, not read from the modules: help, a bare `ssp` and a mistyped command load no
# command module (so they start fast and work in the members' slim install, which lacks the
# host's libraries). tests/test_cli.py keeps this table equal to the modules' own help.
GROUPS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    (
        "for members (in a clone of the lab's repository)",
        (
            ("validate", "check request files against the schema, the policy and each other"),
            ("new", "write requests/<owner>/<name>.yaml with the lab's defaults"),
            ("explain", "what a rule id in a finding means and how to fix it"),
        ),
    ),
    (
        "for admins, on the GPU host",
        (
            ("plan", "show what apply would change (and drift)"),
            ("apply", "reconcile LXD with the requests on this checkout"),
            ("maintain", "daily upkeep: expire leases, notify owners, delete past retention"),
            (
                "comment",
                "run a member's /ssp command from an issue comment (the commands workflow)",
            ),
            (
                "backup",
                "list a container's backups off the host, or restore one as a new container",
            ),
            ("status", "who holds which GPU until when: containers, accounts, quotas, pool"),
            (
                "publish",
                "publish the host's state and status page to a branch (after applies, daily)",
            ),
            (
                "tunnel",
                "the tunnel client's config for the host (frpc.toml), one proxy per forwarded port",
            ),
            ("gpus", "list this host's NVIDIA GPUs; --write records them in config/hosts.yaml"),
            ("sample", "record each GPU's use and holder in the usage database (run by a timer)"),
            ("usage", "GPU-hours held and used per member and month (text, JSON, CSV, Prometheus)"),
            ("host", "set up the GPU host: the hardened LXD project, subordinate UIDs"),
            ("doctor", "check the GPU host: LXD, the project, pool, GPUs, ports, subordinate UIDs"),
            ("schema", "print, write (--write) or check (--check) schemas/"),
        ),
    ),
)
HELP = {name: line for _, rows in GROUPS for name, line in rows}

# The libraries only the GPU host needs, which the members' slim install leaves out.
HOST_LIBRARIES = {
    "pylxd": "pylxd",
    "github": "PyGithub",
    "pynvml": "nvidia-ml-py",
    "cryptography": "cryptography",
    "jwt": "PyJWT",
    "requests": "requests",
    "ws4py": "ws4py",
    "prometheus_client": "prometheus-client",
}


class _Parser(argparse.ArgumentParser):
    """argparse exits with 2 on bad usage already; keep its message, drop the traceback risk,
    and suggest the command a typo meant."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"ssp: error: {message}", file=sys.stderr)
        typo = re.search(r"invalid choice: '([^']*)'", message)
        if typo:
            close = difflib.get_close_matches(typo.group(1), HELP, n=2, cutoff=0.6)
            hint = f"did you mean: ssp {' or ssp '.join(close)}? " if close else ""
            print(f"ssp: {hint}`ssp --help` lists the commands", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _wanted(argv: Sequence[str] | None) -> str | None:
    """The command named on the line (only its module is imported), or None."""
    args = list(sys.argv[1:] if argv is None else argv)
    words = [
        a
        for i, a in enumerate(args)
        if not a.startswith("-") and not (i and args[i - 1] == "--repo")  # --repo's value
    ]
    return words[0] if words and words[0] in HELP else None


def _grouped() -> str:
    width = max(len(name) for name in HELP) + 2
    parts = []
    for title, rows in GROUPS:
        lines = [f"  {name:<{width}}{line}" for name, line in rows]
        parts.append(f"commands {title}:\n" + "\n".join(lines))
    return "\n\n".join(parts) + "\n\n`ssp COMMAND --help` shows a command's options and examples."


def _missing_library(e: ModuleNotFoundError) -> str | None:
    return HOST_LIBRARIES.get((e.name or "").split(".")[0])


def _host_only(sub: argparse._SubParsersAction[Any], name: str, package: str) -> None:
    """A command whose module needs a library this install lacks: its help, and why not."""
    why = (
        f"this needs {package}, which this install of ssp leaves out (the members' slim "
        "install validates requests only); on the GPU host install it whole: pip install ."
    )
    parser = sub.add_parser(name, help=HELP[name], description=f"{HELP[name]}. ({why})")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def refuse(args: argparse.Namespace, env: Mapping[str, str]) -> int:
        raise UsageError(why)

    parser.set_defaults(func=refuse)


def find_repo(start: Path) -> Path:
    """The checkout to work on when --repo is not given: `start` when it holds requests/ or
    config/, else the nearest enclosing git work tree (so `ssp` works from any subdirectory),
    else `start` (whose findings then say what is missing)."""
    if (start / "requests").is_dir() or (start / "config").is_dir():
        return start
    here = start.resolve()
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder if folder != here else start
    return start


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ARGV: with the named command's module loaded, or (for help, a bare
    `ssp` or a mistyped command) with every command's one-line help and no module loaded."""
    parser = _Parser(
        prog="ssp",
        description="Self-service LXD containers on a shared GPU server, driven by pull requests.",
        epilog=_grouped(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ssp {__version__}")
    parser.add_argument(
        "--repo",
        dest="top_repo",
        type=Path,
        metavar="DIR",
        help="repository checkout to work on, before or after the command (default: the "
        "current directory, or the git checkout it is in)",
    )
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser, help="one of the commands below"
    )
    sub.required = True
    name = _wanted(argv)
    if name is None:  # help or a typo: every command, by name only
        for listed in HELP:
            sub.add_parser(listed, add_help=False)
        return parser
    try:
        module = importlib.import_module(f"provisioner.commands.{name}")
    except ModuleNotFoundError as e:
        package = _missing_library(e)
        if package is None:
            raise
        _host_only(sub, name, package)
    else:
        module.register(sub)
    return parser


# The cyclic garbage collector's young generation, as an `ssp` process sets it: Python's
# default (700 allocations) has it scan young objects thousands of times while a check builds
# one object per YAML value and model field, almost none of them in a cycle (mypy raises it
# for the same reason).
GC_YOUNG = 100_000


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    if argv is not None:  # a caller in-process (the tests): its collector is its own
        return _main(argv, env)
    gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])
    try:
        return _main(argv, env)
    finally:
        # What the command made is freed by the process's exit, not by the collector: left
        # to it, the interpreter's last collection walks every object once more. Together
        # with the threshold, 0.41 -> 0.34 s of `ssp validate --all` on 1,000 files
        # (bench/README.md).
        gc.freeze()


def _main(argv: Sequence[str] | None, env: Mapping[str, str] | None) -> int:
    environ = dict(os.environ if env is None else env)
    if list(sys.argv[1:] if argv is None else argv) == ["--version"]:
        print(f"ssp {__version__}")  # without loading a command: a start-up's floor
        return EXIT_OK
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(words)
    if not words:  # `ssp` alone: what there is to do, not only that something is missing
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(words)
    if hasattr(args, "repo"):  # the command works on a checkout
        args.repo = args.repo or args.top_repo or find_repo(Path.cwd())
    elif args.top_repo is not None:
        parser.error(f"ssp {args.command} takes no --repo")
    try:
        code: int = args.func(args, environ)
    except UsageError as e:
        print(f"ssp {args.command}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except SspError as e:
        print(f"ssp {args.command}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"ssp {args.command}: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as e:
        package = _missing_library(e)
        if package is None:
            return _unexpected(args.command, e, environ)
        print(
            f"ssp {args.command}: this needs {package}, which this install of ssp leaves out "
            "(the members' slim install validates requests only); on the GPU host install it "
            "whole: pip install .",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except Exception as e:  # the last line of defence: a bug, reported without a traceback
        return _unexpected(args.command, e, environ)
    return code


def _unexpected(command: str, e: Exception, environ: Mapping[str, str]) -> int:
    """A bug, reported without a traceback (SSP_DEBUG=1 shows it)."""
    print(
        f"ssp {command}: unexpected error ({type(e).__name__}: {e}); "
        "set SSP_DEBUG=1 to see the traceback",
        file=sys.stderr,
    )
    if environ.get("SSP_DEBUG"):
        raise e
    return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())

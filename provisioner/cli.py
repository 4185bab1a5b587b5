"""The `ssp` command line: the only place that reads the environment, prints and exits.

Each subcommand lives in `provisioner.commands.<name>` and exposes `register(subparsers)`,
which adds its parser and sets `func(args, env) -> int` as the handler. This module maps
exceptions to exit statuses so that no user ever sees a traceback:
0 ok, 1 findings/failures, 2 usage, 3 unexpected error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from provisioner import __version__
from provisioner.commands import NAMES
from provisioner.values.errors import SspError, UsageError

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_ERROR = 3


class _Parser(argparse.ArgumentParser):
    """argparse exits with 2 on bad usage already; keep its message, drop the traceback risk."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"ssp: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _wanted(argv: Sequence[str] | None) -> tuple[str, ...]:
    """Only the named command's module is imported: start-up time is every check's cost."""
    args = list(sys.argv[1:] if argv is None else argv)
    words = [
        a
        for i, a in enumerate(args)
        if not a.startswith("-") and not (i and args[i - 1] == "--repo")  # --repo's value
    ]
    return (words[0],) if words and words[0] in NAMES else NAMES


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
    parser = _Parser(
        prog="ssp",
        description="Self-service LXD containers on a shared GPU server, driven by pull requests.",
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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in _wanted(argv) if argv is not None else NAMES:
        try:
            module = importlib.import_module(f"provisioner.commands.{name}")
        except ModuleNotFoundError as e:  # a command not written yet
            if e.name != f"provisioner.commands.{name}":
                raise
            continue
        module.register(sub)
    return parser


# The libraries only the GPU host needs, which the members' slim install leaves out.
HOST_LIBRARIES = {"pylxd": "pylxd", "github": "PyGithub", "pynvml": "nvidia-ml-py"}


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    environ = dict(os.environ if env is None else env)
    if list(sys.argv[1:] if argv is None else argv) == ["--version"]:
        print(f"ssp {__version__}")  # without loading a command: a start-up's floor
        return EXIT_OK
    parser = build_parser(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
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
        package = HOST_LIBRARIES.get((e.name or "").split(".")[0])
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

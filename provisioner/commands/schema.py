"""`ssp schema`: print, write or check the JSON Schemas generated from the models."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from provisioner.commands import add_repo_arg, examples
from provisioner.validation import schema


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "schema",
        help="print, write (--write) or check (--check) schemas/",
        description="The JSON Schemas generated from the models (editors use them to check "
        "request files as you type).",
        **examples(
            "ssp schema  # print the request schema",
            "ssp schema policy  # print the policy schema",
            "ssp schema --check  # exit 1 if schemas/ is out of date",
            "ssp schema --write  # regenerate schemas/ after changing the models",
        ),
    )
    add_repo_arg(parser)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write schemas/*.schema.json")
    mode.add_argument("--check", action="store_true", help="exit 1 if schemas/ is out of date")
    parser.add_argument("kind", nargs="?", choices=sorted(schema.SCHEMA_FILES), default="request")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    directory = args.repo / "schemas"
    if args.write:
        for path in schema.write_all(directory):
            print(f"wrote {path}")
        return 0
    if args.check:
        stale = schema.drifted(directory)
        for name in stale:
            print(f"schemas/{name}: out of date; run `ssp schema --write`", file=sys.stderr)
        return 1 if stale else 0
    sys.stdout.write(schema.render(args.kind))
    return 0

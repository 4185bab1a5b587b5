"""`ssp explain RULE`: what a finding's rule id means and how to fix it, from the user guide.

The guide is read from the checkout (`docs/user-guide.md`, or `docs/user-guide.zh.md` when
--lang or LANG asks for Chinese), so the terminal says exactly what the guide says.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from provisioner.commands import add_repo_arg, examples
from provisioner.errors import UsageError
from provisioner.ruleguide import catalogue, close_to, show

GUIDES = {"en": "docs/user-guide.md", "zh": "docs/user-guide.zh.md"}


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "explain",
        help="what a rule id in a finding means and how to fix it",
        description="Print the user guide's entry for a rule id (the word in brackets at the "
        "end of a finding); a family such as `quota` lists its rules.",
        **examples(
            "ssp explain schema.type  # what [schema.type] means and how to fix it",
            "ssp explain quota  # every quota rule",
            "ssp explain --lang zh ssh_key.type  # 中文说明",
        ),
    )
    parser.add_argument("rule", metavar="RULE", help="a rule id, e.g. schema.type")
    parser.add_argument(
        "--lang",
        choices=sorted(GUIDES),
        help="the guide's language (default: zh when LANG starts with zh, else en)",
    )
    add_repo_arg(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    lang = args.lang or ("zh" if env.get("LANG", "").startswith("zh") else "en")
    path = args.repo / GUIDES[lang]
    try:
        entries = catalogue(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(
            f"cannot read the guide {path} ({e}); give the checkout with --repo"
        ) from e
    wanted = args.rule.strip().strip("[]").lower()
    if wanted in entries:
        print(show(entries[wanted]))
        return 0
    near = close_to(wanted, sorted(entries))
    if len(near) > 1 and all(r.startswith(wanted.rstrip(".") + ".") for r in near):
        print("\n\n".join(show(entries[r]) for r in near))
        return 0
    tip = f"; did you mean {', '.join(near)}?" if near else f"; see {GUIDES[lang]}"
    raise UsageError(f"no rule {args.rule!r} in the guide{tip}")

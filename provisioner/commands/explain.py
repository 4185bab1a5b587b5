"""`ssp explain RULE`: what a finding's rule id means and how to fix it.

The rule ids, their scope and severity come from the rule catalogue (`rulecatalogue`); the
explanation is the guide's row, read from the checkout (`docs/user-guide.md`, or
`docs/user-guide.zh.md` when --lang or the locale asks for Chinese), so the terminal says exactly
what the guide says, and where in the guide it says it.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from provisioner.commands import add_lang_arg, add_repo_arg, examples, language
from provisioner.validation.catalogue import RULES, Rule
from provisioner.validation.guide import Entry, catalogue, close_to, show
from provisioner.values.errors import UsageError

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
    add_lang_arg(parser, "the guide's language")
    add_repo_arg(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    lang = language(env, args.lang)
    path = args.repo / GUIDES[lang]
    try:
        entries = catalogue(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(
            f"cannot read the guide {path} ({e}); give the checkout with --repo"
        ) from e
    wanted = args.rule.strip().strip("[]").lower()
    if wanted in RULES:
        print(_explained(RULES[wanted], entries.get(wanted), GUIDES[lang]))
        return 0
    near = close_to(wanted, sorted(RULES))
    if len(near) > 1 and all(r.startswith(wanted.rstrip(".") + ".") for r in near):
        print("\n\n".join(_explained(RULES[r], entries.get(r), GUIDES[lang]) for r in near))
        return 0
    tip = f"; did you mean {', '.join(near)}?" if near else f"; see {GUIDES[lang]}"
    raise UsageError(f"no rule {args.rule!r} in the guide{tip}")


def _explained(known: Rule, entry: Entry | None, guide: str) -> str:
    """The guide's row for the rule, then what the catalogue adds: severity, scope, anchor."""
    head = show(entry) if entry is not None else f"{known.id}\n  {known.message}"
    return f"{head}\n  ({known.severity.value}, {known.scope.value}; {guide}#{known.anchor})"

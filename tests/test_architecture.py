"""The house rules a newcomer relies on: every module sits in a wing that import-linter's
contracts name, every wing says what it holds and what it may import, every module says what
it is for and stays small enough to read in one sitting, and the top level stays short."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "provisioner"
MAX_LINES = 400
# A longer module says why in its docstring, in these words.
LONGER_BECAUSE = "Longer than 400 lines because"
# What may stand at the top of provisioner/ beside the wings: the package and the CLI.
TOP_MODULES = {"__init__.py", "cli.py", "py.typed"}
MAX_TOP_ENTRIES = 30


def contracts() -> list[dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    found: list[dict[str, object]] = config["tool"]["importlinter"]["contracts"]
    return found


def wings() -> set[str]:
    """The wings the layers contract names, as folder names under provisioner/."""
    layers = next(c for c in contracts() if c["type"] == "layers")["layers"]
    assert isinstance(layers, list)
    names = {name.strip() for layer in layers for name in layer.replace(":", "|").split("|")}
    return {name.removeprefix("provisioner.") for name in names}


def all_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_sits_in_a_wing_the_contracts_name() -> None:
    homeless = []
    for path in all_modules():
        parts = path.relative_to(PACKAGE).parts
        if len(parts) == 1:
            if path.name not in TOP_MODULES:
                homeless.append(path.name)
        elif parts[0] not in wings():
            homeless.append("/".join(parts))
    assert not homeless, f"put these in a wing named in pyproject.toml's layers: {homeless}"
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    unknown = sorted(folders - wings() - {"templates"})
    assert not unknown, f"folders the layers contract does not name: {unknown}"
    gone = sorted(wings() - folders - {"cli"})
    assert not gone, f"the layers contract names wings that do not exist: {gone}"


def test_the_top_level_stays_short() -> None:
    entries = [p.name for p in PACKAGE.iterdir() if p.name != "__pycache__"]
    assert len(entries) <= MAX_TOP_ENTRIES, sorted(entries)


def test_adapters_import_only_values_and_never_each_other() -> None:
    by_type = {c["type"]: c for c in contracts() if c["type"] in {"independence"}}
    independent = set(by_type["independence"]["modules"])  # type: ignore[arg-type]
    forbidden = next(c for c in contracts() if c["name"] == "Adapters import only values")
    assert set(forbidden["source_modules"]) == independent  # type: ignore[arg-type]
    below = {f"provisioner.{w}" for w in wings()} - independent - {"provisioner.values"}
    assert set(forbidden["forbidden_modules"]) == below  # type: ignore[arg-type]


def test_every_wing_says_what_it_holds_and_may_import() -> None:
    silent = []
    for wing in sorted(wings() - {"cli"}):
        doc = ast.get_docstring(ast.parse((PACKAGE / wing / "__init__.py").read_text("utf-8")))
        if not doc or ("May import" not in doc and "Imports nothing" not in doc):
            silent.append(wing)
    assert not silent, f"wings whose __init__ does not say what they hold and import: {silent}"


def test_every_module_says_what_it_is_for() -> None:
    silent = [
        str(p.relative_to(PACKAGE))
        for p in all_modules()
        if not ast.get_docstring(ast.parse(p.read_text("utf-8")))
    ]
    assert not silent, f"modules without a docstring: {silent}"


def test_modules_are_small_or_say_why_not() -> None:
    long = []
    for path in all_modules():
        text = path.read_text(encoding="utf-8")
        doc = ast.get_docstring(ast.parse(text)) or ""
        if len(text.splitlines()) > MAX_LINES and LONGER_BECAUSE not in doc:
            long.append(f"{path.relative_to(ROOT)} ({len(text.splitlines())} lines)")
    assert not long, f"over {MAX_LINES} lines without a reason at the top: {long}"

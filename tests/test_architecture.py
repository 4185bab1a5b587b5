"""The house rules a newcomer relies on: every module has its place in the layers that
import-linter enforces, says what it is for, and stays small enough to read in one sitting."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "provisioner"
MAX_LINES = 400
# A longer module says why in its docstring, in these words.
LONGER_BECAUSE = "Longer than 400 lines because"


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.glob("*.py")):
        if path.name != "__init__.py":
            out[f"provisioner.{path.stem}"] = path
    return out


def layered() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    layers = next(c for c in contracts if c["type"] == "layers")["layers"]
    return {name.strip() for layer in layers for name in layer.replace(":", "|").split("|")}


def test_every_module_has_its_place_in_the_layers() -> None:
    missing = sorted(set(modules()) - layered())
    assert not missing, f"add these to the layers contract in pyproject.toml: {missing}"
    gone = sorted(layered() - set(modules()) - {"provisioner.commands"})  # a package
    assert not gone, f"the layers contract names modules that do not exist: {gone}"


def test_every_module_says_what_it_is_for() -> None:
    paths = [*modules().values(), *sorted((PACKAGE / "commands").glob("*.py"))]
    silent = [p.name for p in paths if not ast.get_docstring(ast.parse(p.read_text("utf-8")))]
    assert not silent, f"modules without a docstring: {silent}"


def test_modules_are_small_or_say_why_not() -> None:
    paths = [*modules().values(), *sorted((PACKAGE / "commands").glob("*.py"))]
    long = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        doc = ast.get_docstring(ast.parse(text)) or ""
        if len(text.splitlines()) > MAX_LINES and LONGER_BECAUSE not in doc:
            long.append(f"{path.relative_to(ROOT)} ({len(text.splitlines())} lines)")
    assert not long, f"over {MAX_LINES} lines without a reason at the top: {long}"

"""Every package `provisioner/` imports is the standard library's, ours, or declared in
pyproject.toml's `dependencies`: a library that only arrives through another one's
requirements (jwt and cryptography through PyGithub, requests through pylxd) can vanish when
that one changes, and the hashed lock would not notice."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions

from helpers import ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PACKAGE = ROOT / "provisioner"


def imported_top_level_names() -> dict[str, set[str]]:
    """Top-level module name -> the files of provisioner/ that import it (absolute imports)."""
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        where = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), where)):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(where)
    return found


def declared() -> set[str]:
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return {canonicalize_name(Requirement(t).name) for t in doc["project"]["dependencies"]}


def undeclared(wanted: set[str]) -> list[str]:
    """Each third-party import whose distribution is not in `wanted`, with who imports it."""
    providers = packages_distributions()
    missing = []
    for name, files in sorted(imported_top_level_names().items()):
        if name in sys.stdlib_module_names or name == "provisioner":
            continue
        dists = {canonicalize_name(d) for d in providers.get(name, [])}
        assert dists, f"{name} (imported by {sorted(files)}) is not installed at all"
        if not dists & wanted:
            missing.append(f"{name} from {sorted(dists)}, imported by {sorted(files)}")
    return missing


def test_every_third_party_import_is_a_declared_dependency() -> None:
    missing = undeclared(declared())
    assert not missing, f"declare these in pyproject.toml dependencies: {missing}"


def test_a_library_that_comes_only_through_another_is_found() -> None:
    """Without PyJWT, requests and cryptography declared (as before), the check names them."""
    missing = undeclared(declared() - {"pyjwt", "requests", "cryptography"})
    assert [m.split(" ")[0] for m in missing] == ["cryptography", "jwt", "requests"], missing
    assert "provisioner/github/client.py" in missing[1]

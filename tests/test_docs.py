"""The user guides explain every rule id the validator can report, in both languages.

Rule ids are read from the source, not from a list kept by hand, so a new rule fails this
test until both guides say what it means. An id reaches a Problem through a parameter named
`rule` (`Problem`, `Loaded.problem`, `RefusalError`, `KeyRefusal`, small helpers); what is
passed there is either a literal ("name.stem"), an f-string over a family ("quota.{what}",
whose suffixes come from the tuples the loop walks), or a name unpacked from tuples (the
schema pass's `rule, message, where = _describe(...)`). Those call sites give the families;
then every quoted `family.word` string in the package counts too.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from provisioner.validation.catalogue import ANCHORS, RULES, competing, unknown
from provisioner.validation.guide import catalogue
from provisioner.validation.validate import _catalogued
from provisioner.values.problems import Position, Problem

ROOT = Path(__file__).resolve().parents[1]
GUIDES = [ROOT / "docs" / "user-guide.md", ROOT / "docs" / "user-guide.zh.md"]
QUOTED_ID = re.compile(r"""["']([a-z][a-z_]*)\.([a-z][a-z0-9_]*)["']""")
FILE_SUFFIXES = frozenset({"yaml", "yml", "json", "md", "j2", "py", "toml", "txt", "sh"})

Scope = ast.Module | ast.FunctionDef


def _walk(scope: Scope) -> Iterator[tuple[ast.AST, Scope]]:
    """Every node with its innermost enclosing function (or the module)."""
    stack: list[tuple[ast.AST, Scope]] = [(scope, scope)]
    while stack:
        node, owner = stack.pop()
        yield node, owner
        inner = node if isinstance(node, ast.FunctionDef) else owner
        stack.extend((child, inner) for child in ast.iter_child_nodes(node))


def _params(fn: ast.FunctionDef) -> list[str]:
    names = [a.arg for a in [*fn.args.posonlyargs, *fn.args.args]]
    return names[1:] if names[:1] in (["self"], ["cls"]) else names


def _rule_slots(tree: ast.Module) -> dict[str, int]:
    """Callables defined here with a `rule` parameter (or dataclass field) → its position."""
    slots = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and "rule" in _params(node) and node.name[:2] != "__":
            slots[node.name] = _params(node).index("rule")
        elif isinstance(node, ast.ClassDef):
            init = [n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"]
            annotated = [n.target for n in node.body if isinstance(n, ast.AnnAssign)]
            fields = [t.id for t in annotated if isinstance(t, ast.Name)]
            names = _params(init[0]) if init else fields
            if "rule" in names:
                slots[node.name] = names.index("rule")
    return slots


def _is(node: object, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _tuples(scope: Scope, name: str) -> list[ast.Tuple]:
    """The tuple literals a loop over `name` walks: its assignments and `.append`s."""
    found: list[ast.Tuple] = []
    for node, _ in _walk(scope):
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        value = getattr(node, "value", None)
        if _is(target, name) and isinstance(value, ast.List | ast.Tuple):
            found += [e for e in value.elts if isinstance(e, ast.Tuple)]
        call = node if isinstance(node, ast.Call) else None
        method = call.func if call and isinstance(call.func, ast.Attribute) else None
        if call and method and method.attr == "append" and _is(method.value, name):
            found += [a for a in call.args if isinstance(a, ast.Tuple)]
    return found


def _values(tree: ast.Module, scope: Scope, name: str) -> set[str] | None:
    """The strings `name` takes in `scope` when it is unpacked from tuples; None if unknown.

    Every binding of `name` in the function counts, so reusing one name for two things
    over-approximates (the guide is then asked to explain one id too many, never one too few).
    """
    out: set[str] = set()
    sources: list[tuple[int, list[ast.Tuple]]] = []
    for node, owner in _walk(scope):
        if owner is not scope and node is not scope:
            continue
        target, it = None, None
        if isinstance(node, ast.For | ast.comprehension):
            target, it = node.target, node.iter
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            target, it = node.targets[0], node.value.func
        if not isinstance(target, ast.Tuple) or not isinstance(it, ast.Name):
            continue
        names = [e.id if isinstance(e, ast.Name) else None for e in target.elts]
        index = names.index(name) if name in names else None
        if index is None:
            continue
        if isinstance(node, ast.Assign):  # `a, b = f(...)`: what f returns
            fns = [f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == it.id]
            rets = [r.value for f in fns for r in ast.walk(f) if isinstance(r, ast.Return)]
            sources.append((index, [r for r in rets if isinstance(r, ast.Tuple)]))
        else:
            sources.append((index, _tuples(scope, it.id)))
    for index, tuples in sources:
        elts = [t.elts[index] for t in tuples if len(t.elts) > index]
        out |= {e.value for e in elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    return out or None


@dataclass(frozen=True)
class Site:
    """One argument passed where a callable takes `rule`."""

    path: Path
    tree: ast.Module
    scope: Scope
    func: str
    arg: ast.expr | None

    @property
    def where(self) -> str:
        return f"{self.path}:{getattr(self.arg, 'lineno', '?')}"


def _sites(modules: dict[Path, ast.Module]) -> list[Site]:
    # Importable (public) callables are shared; a module's own names shadow them.
    shared = {k: v for t in modules.values() for k, v in _rule_slots(t).items() if k[0] != "_"}
    sites = []
    for path, tree in modules.items():
        local = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)}
        slots = {k: v for k, v in shared.items() if k not in local} | _rule_slots(tree)
        for node, scope in _walk(tree):
            if isinstance(node, ast.Call):
                func = getattr(node.func, "attr", getattr(node.func, "id", ""))
                if func in slots:
                    keywords = {k.arg: k.value for k in node.keywords}
                    at = slots[func]
                    arg = node.args[at] if len(node.args) > at else keywords.get("rule")
                    sites.append(Site(path, tree, scope, func, arg))
    return sites


def _family(arg: ast.expr | None) -> tuple[str, str] | None:
    """`f"quota.{what}"` → ("quota.", "what")."""
    if not isinstance(arg, ast.JoinedStr) or len(arg.values) != 2:
        return None
    head, var = arg.values
    name = var.value if isinstance(var, ast.FormattedValue) else None
    if not isinstance(head, ast.Constant) or not isinstance(name, ast.Name):
        return None
    return str(head.value), name.id


def _read(site: Site, prefix: str) -> set[str] | None:
    """The ids one site can pass; None when they cannot be read from the source."""
    arg, scope = site.arg, site.scope
    params = _params(scope) if isinstance(scope, ast.FunctionDef) else []
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return {prefix + arg.value}
    if isinstance(arg, ast.Attribute) and arg.attr == "rule":
        return set()  # a rule carried on from another value (`e.rule`), found where it was made
    if isinstance(arg, ast.Name) and arg.id == "rule" and "rule" in params:
        return set()  # a `rule` parameter passed on: the callers are sites themselves
    if isinstance(arg, ast.Name):
        found = _values(site.tree, scope, arg.id)
        return None if found is None else {prefix + s for s in found}
    family = _family(arg)
    if family is None:
        return None
    found = _values(site.tree, scope, family[1])
    return None if found is None else {family[0] + s for s in found}


@cache
def rule_ids(package: Path = ROOT / "provisioner") -> tuple[frozenset[str], tuple[str, ...]]:
    """(every rule id the package can emit, the sites this reader could not understand)."""
    files = sorted(package.glob("**/*.py"))
    modules = {p: ast.parse(p.read_text(encoding="utf-8")) for p in files}
    sites = _sites(modules)
    # A helper taking `rule` that builds `f"ssh_key.{rule}"` prefixes what its callers pass.
    prefixes = {}
    for site in sites:
        family = _family(site.arg)
        scope = site.scope
        if not isinstance(scope, ast.FunctionDef):
            continue
        if family and family[1] == "rule" and "rule" in _params(scope):
            prefixes[(site.path, scope.name)] = family[0]
    ids: set[str] = set()
    unread = []
    for site in sites:
        if (site.path, getattr(site.scope, "name", "")) in prefixes and _family(site.arg):
            continue  # the helper's own f-string; its callers give the suffixes
        found = _read(site, prefixes.get((site.path, site.func), ""))
        if found is None:
            unread.append(site.where)
        ids |= found or set()
    families = {i.split(".")[0] for i in ids}
    for path in files:
        for family, word in QUOTED_ID.findall(path.read_text(encoding="utf-8")):
            if family in families and word not in FILE_SUFFIXES:
                ids.add(f"{family}.{word}")
    return frozenset(ids), tuple(unread)


SAMPLE = """
from dataclasses import dataclass

@dataclass
class Problem:
    path: str
    rule: str

def _refuse(rule, message):
    return Problem("p", f"key.{rule}")

def _describe():
    return "shape.bad", "message"

def check(items):
    out = [Problem("p", "thing.literal"), _refuse("second", "m")]
    limits = [("a", 1)]
    limits.append(("b", 2))
    for what, limit in limits:
        out.append(Problem("p", rule=f"quota.{what}"))
    checks = ((True, "first", "m"),)
    out += [_refuse(rule, m) for bad, rule, m in checks if bad]
    found, message = _describe()
    out.append(Problem("p", found))
    return out, "thing.yaml", "other.word", "thing.compared"
"""


def test_reader_finds_ids_in_every_form(tmp_path: Path) -> None:
    (tmp_path / "sample.py").write_text(SAMPLE, encoding="utf-8")
    ids, unread = rule_ids(tmp_path)
    assert unread == ()
    assert ids == {
        "thing.literal",
        "thing.compared",
        "key.first",
        "key.second",
        "quota.a",
        "quota.b",
        "shape.bad",
    }
    (tmp_path / "more.py").write_text(
        "from sample import Problem\ndef f(x):\n    return Problem('p', x.upper())\n",
        encoding="utf-8",
    )
    rule_ids.cache_clear()
    assert rule_ids(tmp_path)[1] == (f"{tmp_path / 'more.py'}:3",)


def test_every_rule_site_is_understood() -> None:
    ids, unread = rule_ids()
    assert not unread, f"rule ids built in a way this test cannot read: {unread}"
    # the reader itself works: literal, f-string and unpacked ids of every kind are found
    for known in ("name.stem", "yaml.alias", "schema.unknown_field", "authz.infra", "file.mode"):
        assert known in ids  # literals
    for known in ("quota.gpus", "capacity.disk", "ssh_key.private", "ssh_key.rsa_bits"):
        assert known in ids  # built from a family and the tuples a loop walks
    assert not any(i.endswith((".yaml", ".json")) for i in ids)


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_guide_explains_every_rule(guide: Path) -> None:
    text = guide.read_text(encoding="utf-8")
    ids, _ = rule_ids()
    missing = sorted(i for i in ids if not re.search(rf"(?<![\w.]){re.escape(i)}(?![\w])", text))
    assert not missing, f"{guide.name} does not explain: {', '.join(missing)}"


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_ssp_explain_finds_every_rule_in_the_guides_tables(guide: Path) -> None:
    """`ssp explain` reads the tables' rows, not just any mention: every id needs its row."""
    entries = catalogue(guide.read_text(encoding="utf-8"))
    ids, _ = rule_ids()
    assert sorted(ids - entries.keys()) == []
    assert all(len(e.columns) == 2 and all(t for _, t in e.columns) for e in entries.values())


# --- the rule catalogue ---------------------------------------------------------------------------


def test_every_rule_the_validator_can_emit_is_in_the_catalogue_and_no_other() -> None:
    ids, _ = rule_ids()
    assert unknown(ids) == [], "add these to provisioner/validation/catalogue.py"
    assert sorted(RULES.keys() - ids) == [], "the catalogue holds rules nothing emits"


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_every_catalogue_entry_has_its_anchor_and_its_row_under_it(guide: Path) -> None:
    text = guide.read_text(encoding="utf-8")
    marks = {m[1]: m.start() for m in re.finditer(r'<a id="([a-z0-9-]+)"></a>', text)}
    assert set(ANCHORS) <= marks.keys(), sorted(set(ANCHORS) - marks.keys())
    ends = [*sorted(marks.values()), len(text)]
    misplaced = []
    for rule in RULES.values():
        start = marks[rule.anchor]
        end = next(e for e in ends if e > start)
        if f"| `{rule.id}` |" not in text[start:end]:
            misplaced.append(f"{rule.id} (#{rule.anchor})")
    assert not misplaced, f"{guide.name}: rows not under their anchor: {misplaced}"


def test_the_validator_refuses_to_report_a_rule_the_catalogue_lacks() -> None:
    bad = Problem("requests/a/b.yaml", Position(1, 1), "made.up", "x")
    with pytest.raises(RuntimeError, match=r"made\.up"):
        _catalogued([bad])
    wrong = Problem("requests/a/b.yaml", Position(1, 1), "lease.expired", "x")  # an ERROR
    with pytest.raises(RuntimeError, match=r"lease\.expired"):
        _catalogued([wrong])
    assert competing("quota.gpus") and competing("gpus.double_booked")
    assert not competing("gpus.unknown") and not competing("made.up")

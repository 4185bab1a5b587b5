"""JSON Schemas generated from the models, and the schema pass that turns data into models.

`generate()` derives the three committed schemas from `provisioner.values.models`; `check()` runs a
loaded Document through the JSON-Schema validator (with format checking) and then pydantic,
and reports every failure as a Problem at the line and column it is about. A compiled gate
(`provisioner.validation.schemagate`) passes the documents that surely satisfy the schema, so
jsonschema is loaded and run only for the others. Values under
`ssh_keys` are never echoed back: a member may have pasted a private key there.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from provisioner.validation.schemagate import Check, compile_schema
from provisioner.validation.sources import field_name
from provisioner.values import models, policymodels
from provisioner.values.document import Document, Where
from provisioner.values.problems import Problem

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_FILES = {
    "request": "request.schema.json",
    "policy": "policy.schema.json",
    "hosts": "hosts.schema.json",
}
_TARGETS: dict[str, Any] = {
    "request": models.Request,
    "container": models.ContainerRequest,
    "account": models.AccountRequest,
    "image": models.ImageRequest,
    "policy": policymodels.Policy,
    "hosts": models.Inventory,
}

M = TypeVar("M", bound=BaseModel)


def _drop_optional_null(node: Any) -> Any:
    """`X | None = None` means "may be left out", not "may be written as null": say so."""
    if isinstance(node, dict):
        branches = node.get("anyOf")
        if (
            isinstance(branches, list)
            and {"type": "null"} in branches
            and node.get("default", ...) is None
        ):
            rest = [b for b in branches if b != {"type": "null"}]
            merged = {k: v for k, v in node.items() if k not in ("anyOf", "default")}
            node = {**rest[0], **merged} if len(rest) == 1 else {**merged, "anyOf": rest}
        return {k: _drop_optional_null(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_drop_optional_null(v) for v in node]
    return node


@cache
def generate(kind: str) -> dict[str, Any]:
    """The JSON Schema for `kind` (request, container, account, image, policy, hosts)."""
    schema = _drop_optional_null(TypeAdapter(_TARGETS[kind]).json_schema())
    out: dict[str, Any] = {"$schema": SCHEMA_DIALECT}
    if kind in SCHEMA_FILES:
        out["$id"] = f"https://super-server-platform.invalid/schemas/{SCHEMA_FILES[kind]}"
        if kind == "request":
            schema["title"] = "Super Server Platform request (requests/<login>/<name>.yaml)"
    out.update(schema)
    return out


def render(kind: str) -> str:
    return json.dumps(generate(kind), indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def write_all(directory: Path) -> list[Path]:
    """Write the committed schemas; return the files whose content changed."""
    changed = []
    directory.mkdir(parents=True, exist_ok=True)
    for kind, filename in SCHEMA_FILES.items():
        path = directory / filename
        text = render(kind)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed


def drifted(directory: Path) -> list[str]:
    """Schema files that differ from what the models generate."""
    return [
        filename
        for kind, filename in SCHEMA_FILES.items()
        if not (directory / filename).exists()
        or (directory / filename).read_text(encoding="utf-8") != render(kind)
    ]


# --- checking ---------------------------------------------------------------------------------


def _is_integer(_checker: Any, instance: Any) -> bool:
    # JSON Schema counts 2.0 as an integer; a request that says `cpu: 2.0` is a typo.
    return isinstance(instance, int) and not isinstance(instance, bool)


@cache
def _validator(kind: str) -> Any:
    """jsonschema's validator, which says what is wrong; loaded for the first file that the
    gate does not pass (a valid tree never imports jsonschema)."""
    import jsonschema  # noqa: PLC0415  (see above)

    base = jsonschema.Draft202012Validator
    # jsonschema.validators.extend is untyped in its stubs.
    validator = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
        base, type_checker=base.TYPE_CHECKER.redefine("integer", _is_integer)
    )
    return validator(generate(kind), format_checker=base.FORMAT_CHECKER)


@cache
def _gate(kind: str) -> Check:
    return compile_schema(generate(kind))


_TYPE_WORDS = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
    "null": "nothing",
}


def _type_of(value: Any) -> str:
    for name, kinds in (
        ("boolean", bool),
        ("integer", int),
        ("number", float),
        ("string", str),
        ("array", list),
        ("object", dict),
    ):
        if isinstance(value, kinds):
            return _TYPE_WORDS[name]
    return _TYPE_WORDS["null"]


def _secret(where: Where) -> bool:
    return "ssh_keys" in where


def _clip(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "…"


def _show(value: Any, where: Where) -> str:
    if _secret(where):
        return "this key"
    return _clip(json.dumps(value, ensure_ascii=False, default=str))


_SIZE_LIKE = re.compile(r"^\s*([1-9][0-9]{0,6})\s*([MGT])(?:i?b?)?\s*$", re.IGNORECASE)


def _is_size(schema: Any) -> bool:
    return "GiB" in str(schema.get("pattern", ""))


def _size_guess(value: Any) -> str | None:
    """What a size probably meant: `32768` (MiB, as `free -m` shows) → 32GiB, `32GB` → 32GiB."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10**7:
        return f"{value // 1024}GiB" if value >= 1024 and value % 1024 == 0 else f"{value}GiB"
    if isinstance(value, str) and (m := _SIZE_LIKE.match(value)):
        return f"{m[1]}{m[2].upper()}iB"
    return None


def _type_hint(schema: Any, value: Any, where: Where) -> str:
    """How to write the value the field wants, said after what was found."""
    want = schema.get("type")
    if want == "boolean" and isinstance(value, str):
        quoted = value.strip().lower() in ("true", "false")
        how = "it without quotes" if quoted else "true or false"
        return f" {_show(value, where)} (write {how})"
    if want == "integer" and isinstance(value, str):
        digits = value.strip().lstrip("-").isdigit()
        return f" {_show(value, where)}" + (" (write it without quotes)" if digits else "")
    if want == "string" and _is_size(schema) and (guess := _size_guess(value)):
        return f" (did you mean `{guess}`?)"
    return ""


def _pick_branch(error: Any) -> Any:
    """For `anyOf` (gpus: a count or a list), explain the branch matching the value's type."""
    value_type = _type_of(error.instance)
    branches = error.schema.get(error.validator, [])
    for sub in sorted(error.context or (), key=lambda e: -len(e.absolute_path)):
        branch = branches[sub.relative_schema_path[0]]
        if _TYPE_WORDS.get(branch.get("type", "")) == value_type:
            return sub
    return error


def _describe(error: Any, where: Where) -> tuple[str, str, Where]:  # noqa: PLR0912  (a branch per JSON-Schema keyword)
    """(rule, message, where-to-point) for one jsonschema error."""
    v, schema, value = error.validator, error.schema, error.instance
    name = field_name(where)
    hint = schema.get("description", "")
    if v == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "a field"
        return "schema.required", f"missing required field '{missing}'", where
    if v == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extras = [k for k in value if k not in schema.get("properties", {})]
        if not allowed:
            return "schema.unknown_field", f"{name}: unexpected entry '{_clip(extras[0])}'", where
        extra = extras[0]
        close = difflib.get_close_matches(extra, allowed, n=1)
        tip = f" (did you mean '{close[0]}'?)" if close else f"; allowed: {', '.join(allowed)}"
        return "schema.unknown_field", f"unknown field '{_clip(extra)}'{tip}", (*where, extra)
    if v == "type":
        want = schema["type"]
        want_words = (
            " or ".join(_TYPE_WORDS[t] for t in want)
            if isinstance(want, list)
            else _TYPE_WORDS[want]
        )
        if _is_size(schema):
            want_words = "a size with its unit (MiB, GiB or TiB)"
        got = _type_of(value) + _type_hint(schema, value, where)
        return "schema.type", f"{name}: expected {want_words}, got {got}", where
    if v in ("const", "enum"):
        options = [schema["const"]] if v == "const" else schema["enum"]
        return (
            "schema.enum",
            f"{name}: {_show(value, where)} is not one of: {', '.join(map(str, options))}",
            where,
        )
    if v == "pattern":
        guess = _size_guess(value) if _is_size(schema) else None
        why = f" (did you mean `{guess}`?)" if guess else f" ({hint})" if hint else ""
        return "schema.pattern", f"{name}: {_show(value, where)} is not allowed here{why}", where
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        word = "at least" if "inimum" in v else "at most"
        return "schema.range", f"{name}: {_show(value, where)} must be {word} {schema[v]}", where
    if v in ("minLength", "maxLength"):
        word = "at least" if v == "minLength" else "at most"
        return "schema.length", f"{name}: must be {word} {schema[v]} characters", where
    if v in ("minItems", "maxItems"):
        word = "at least" if v == "minItems" else "at most"
        return "schema.length", f"{name}: must list {word} {schema[v]} entries", where
    if v in ("minProperties", "maxProperties"):
        word = "at least" if v == "minProperties" else "at most"
        return "schema.length", f"{name}: must have {word} {schema[v]} entries", where
    if v == "format":
        if schema["format"] == "date":
            return (
                "schema.date",
                f"{name}: {_show(value, where)} is not a real date (write YYYY-MM-DD)",
                where,
            )
        return (
            "schema.format",
            f"{name}: {_show(value, where)} is not a valid {schema['format']}",
            where,
        )
    if v in ("anyOf", "oneOf"):
        options = " or ".join(_TYPE_WORDS.get(b.get("type", ""), "?") for b in schema[v])
        return "schema.type", f"{name}: expected {options}, got {_type_of(value)}", where
    if v == "uniqueItems":
        return "schema.unique", f"{name}: lists the same entry twice", where
    return "schema.invalid", f"{name}: not valid here", where


def _problems(doc: Document, errors: Iterable[Any]) -> list[Problem]:
    found: dict[tuple[str, Where], Problem] = {}
    for raw in errors:
        error = _pick_branch(raw) if raw.validator in ("anyOf", "oneOf") else raw
        where: Where = tuple(error.absolute_path)
        rule, message, point = _describe(error, where)
        position = (
            doc.key_position(point) if rule == "schema.unknown_field" else doc.position(point)
        )
        found.setdefault((rule, point), Problem(doc.path, position, rule, message, where=point))
    # A value of the wrong type also breaks the checks meant for the right type (`cpu: -.inf`
    # is "not a whole number" and "below 1"): say only the first.
    mistyped = {point for rule, point in found if rule == "schema.type"}
    return sorted(
        (p for (rule, point), p in found.items() if rule == "schema.type" or point not in mistyped),
        key=Problem.sort_key,
    )


def _pydantic_problems(doc: Document, error: ValidationError) -> list[Problem]:
    out = []
    for item in error.errors(include_url=False, include_input=False):
        loc = [p for p in item["loc"] if isinstance(p, str | int)]
        if "[key]" in loc:  # a mapping key (a login, an id) that is not allowed
            where: Where = tuple(loc[: loc.index("[key]")])
            out.append(
                Problem(
                    doc.path,
                    doc.key_position(where),
                    "schema.key",
                    f"{field_name(where[:-1])}: '{where[-1]}' is not allowed as a name here "
                    f"({item['msg']})",
                    where=where,
                )
            )
            continue
        where = tuple(loc)
        out.append(
            Problem(
                doc.path,
                doc.position(where),
                "schema.invalid",
                f"{field_name(where)}: {item['msg']}",
                where=where,
            )
        )
    return out


def check(doc: Document, kind: str, model: type[M]) -> tuple[M | None, list[Problem]]:
    """Validate `doc` against the schema of `kind`, then build `model` from it."""
    # The gate passes what surely satisfies the schema; anything else meets jsonschema, whose
    # errors are the messages (the gate may say "no" where jsonschema finds nothing: fine).
    if not _gate(kind)(doc.data):
        problems = _problems(doc, _validator(kind).iter_errors(doc.data))
        if problems:
            return None, problems
    try:
        # JSON mode + strict: ISO dates from text, and no other coercion at all.
        return model.model_validate_json(json.dumps(doc.data), strict=True), []
    except ValidationError as e:
        return None, _pydantic_problems(doc, e)

"""GitHub's published REST contract, as a checker of requests and responses.

Holds the OpenAPI 3.0 description in `tests/contracts/` (cut from `@octokit/openapi`, see
PROVENANCE.md there) and answers two questions for the fake GitHub: is this request one that
GitHub describes (path, method, path and query parameters, JSON body), and is this response
one that GitHub could send (status described for the operation, body valid against its schema,
formats such as `date-time` and `uri` checked). Findings are strings, never exceptions, so the
server can both record them and answer the client with them.

Imports only the standard library and jsonschema.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

CONTRACTS = Path(__file__).resolve().parent.parent / "contracts"
OPENAPI_FILE = CONTRACTS / "github-rest-openapi-subset.json"

# GitHub answers these on any endpoint (authentication, rate limits, server trouble, unknown
# repository), but the description lists them only on some operations. Where an operation
# does not list one, its body must still be GitHub's "Basic Error" object.
GENERIC_ERROR_STATUSES = frozenset({401, 403, 404, 429, 500, 502, 503, 504})

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# OpenAPI annotations that JSON Schema does not know; dropped so they cannot be misread.
_OPENAPI_ONLY = frozenset({"nullable", "example", "discriminator", "xml", "externalDocs"})


def to_json_schema(schema: Any) -> Any:
    """An OpenAPI 3.0 schema object as a JSON Schema (Draft 2020-12) with the same meaning.

    `nullable: true` becomes a `"null"` type (or a null branch when there is no `type`), and a
    nullable `enum` gains `None`; `example` and `x-*` extensions go.
    """
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _OPENAPI_ONLY or key.startswith("x-"):
            continue
        if key == "properties":
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in {"items", "additionalProperties", "not"}:
            out[key] = to_json_schema(value)
        elif key in {"allOf", "anyOf", "oneOf"}:
            out[key] = [to_json_schema(sub) for sub in value]
        else:
            out[key] = value
    if schema.get("nullable") is True:
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        elif "type" not in out:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


@dataclass(frozen=True)
class Operation:
    """One described operation, matched against a concrete request path."""

    method: str
    template: str
    spec: Mapping[str, Any] = field(repr=False)
    path_params: Mapping[str, str] = field(default_factory=dict)

    @property
    def operation_id(self) -> str:
        return str(self.spec.get("operationId", f"{self.method} {self.template}"))


@dataclass(frozen=True)
class _Route:
    template: str
    pattern: re.Pattern[str]
    literal_segments: int
    operations: Mapping[str, Mapping[str, Any]]


def _segment(template: str, seg: str, last: bool) -> str:
    if not seg.startswith("{"):
        return "/" + re.escape(seg)
    # The git database's references are written with their slashes (`git/ref/heads/main`,
    # "formatted as heads/<branch name>" in GitHub's description), not percent-encoded.
    if last and seg == "{ref}" and "/git/" in template:
        return "/(?P<ref>.+)"
    return f"/(?P<{seg[1:-1]}>[^/]+)"


def _route(template: str, item: Mapping[str, Any]) -> _Route:
    segments = template.strip("/").split("/")
    regex = "".join(
        _segment(template, seg, n == len(segments) - 1) for n, seg in enumerate(segments)
    )
    literals = sum(1 for seg in template.split("/") if seg and not seg.startswith("{"))
    ops = {m.upper(): op for m, op in item.items() if m in _METHODS}
    return _Route(template, re.compile(f"^{regex}$"), literals, ops)


def _errors(validator: Draft202012Validator, instance: Any, where: str) -> list[str]:
    found: list[ValidationError] = sorted(
        validator.iter_errors(instance), key=lambda e: (len(e.absolute_path), str(e.message))
    )
    out = []
    for err in found[:5]:
        path = err.json_path
        out.append(f"{where}: {path}: {err.message[:300]}")
    if len(found) > 5:
        out.append(f"{where}: ... and {len(found) - 5} more")
    return out


class OpenApiContract:
    """Checks requests and responses against an OpenAPI 3.0 description (dereferenced)."""

    def __init__(self, description: Mapping[str, Any]) -> None:
        self._routes = sorted(
            (_route(t, item) for t, item in description["paths"].items()),
            key=lambda r: -r.literal_segments,
        )
        self._basic_error = self._find_basic_error(description)
        self._validators: dict[int, Draft202012Validator] = {}

    @staticmethod
    @cache
    def load(path: Path = OPENAPI_FILE) -> OpenApiContract:
        """The contract in tests/contracts (parsed once per process)."""
        return OpenApiContract(json.loads(path.read_text(encoding="utf-8")))

    @staticmethod
    def _find_basic_error(description: Mapping[str, Any]) -> Mapping[str, Any]:
        for item in description["paths"].values():
            for op in item.values():
                for response in op.get("responses", {}).values():
                    schema = response.get("content", {}).get("application/json", {}).get("schema")
                    if schema and schema.get("title") == "Basic Error":
                        return dict(schema)
        raise ValueError("the description has no Basic Error schema")

    def _validator(self, schema: Mapping[str, Any]) -> Draft202012Validator:
        key = id(schema)
        if key not in self._validators:
            # No check_schema here: checking a 100 kB schema against the metaschema takes
            # seconds; test_fake_github_contract checks the converted schemas once instead.
            self._validators[key] = Draft202012Validator(
                to_json_schema(schema), format_checker=Draft202012Validator.FORMAT_CHECKER
            )
        return self._validators[key]

    # ---- requests -------------------------------------------------------------------------

    def match(self, method: str, path: str) -> tuple[Operation | None, list[str]]:
        """The operation for METHOD PATH, or None and why not."""
        known_path = False
        for route in self._routes:
            m = route.pattern.match(path)
            if m is None:
                continue
            known_path = True
            spec = route.operations.get(method.upper())
            if spec is not None:
                return Operation(method.upper(), route.template, spec, m.groupdict()), []
        if known_path:
            return None, [f"request: {method} {path}: method not described for this path"]
        return None, [f"request: {method} {path}: path not in the description"]

    def check_request(
        self,
        op: Operation,
        query: Mapping[str, list[str]],
        body: bytes,
        content_type: str | None,
    ) -> list[str]:
        """What is wrong with a request for a matched operation (empty when nothing is)."""
        where = f"request {op.operation_id}"
        problems: list[str] = []
        params = op.spec.get("parameters", [])
        for param in params:
            name, located = param["name"], param["in"]
            if located == "path":
                problems += self._check_param(where, param, [op.path_params[name]])
            elif located == "query":
                if name in query:
                    problems += self._check_param(where, param, query[name])
                elif param.get("required"):
                    problems.append(f"{where}: missing required query parameter {name!r}")
        described = {p["name"] for p in params if p["in"] == "query"}
        # GitHub ignores unknown query parameters silently; a client that sends one has
        # almost certainly misspelt something, so the fake refuses it.
        problems += [
            f"{where}: query parameter {name!r} is not described"
            for name in query
            if name not in described
        ]
        problems += self._check_body(where, op.spec.get("requestBody"), body, content_type)
        return problems

    def _check_param(self, where: str, param: Mapping[str, Any], raw: list[str]) -> list[str]:
        name = param["name"]
        schema = param.get("schema", {})
        if len(raw) > 1 and schema.get("type") != "array":
            return [f"{where}: parameter {name!r} given {len(raw)} times"]
        value: Any = raw[0] if schema.get("type") != "array" else raw
        kind = schema.get("type")
        try:
            if kind == "integer":
                value = int(value)
            elif kind == "number":
                value = float(value)
            elif kind == "boolean":
                if value not in {"true", "false"}:
                    return [f"{where}: parameter {name!r}={value!r} is not a boolean"]
                value = value == "true"
        except ValueError:
            return [f"{where}: parameter {name!r}={value!r} is not {kind}"]
        return _errors(self._validator(schema), value, f"{where}: parameter {name!r}")

    def _check_body(
        self,
        where: str,
        request_body: Mapping[str, Any] | None,
        body: bytes,
        content_type: str | None,
    ) -> list[str]:
        if not body:
            if request_body and request_body.get("required"):
                return [f"{where}: a JSON body is required"]
            return []
        if request_body is None:
            return [f"{where}: the operation takes no body, got {len(body)} bytes"]
        if not (content_type or "").startswith("application/json"):
            return [f"{where}: body Content-Type is {content_type!r}, not application/json"]
        try:
            data = json.loads(body)
        except ValueError as e:
            return [f"{where}: body is not JSON: {e}"]
        schema = request_body["content"]["application/json"]["schema"]
        return _errors(self._validator(schema), data, f"{where} body")

    # ---- responses ------------------------------------------------------------------------

    def check_response(self, op: Operation, status: int, body: Any) -> list[str]:
        """What is wrong with answering `op` with STATUS and BODY (parsed JSON or None)."""
        where = f"response {op.operation_id} {status}"
        responses: Mapping[str, Any] = op.spec.get("responses", {})
        described = responses.get(str(status))
        if described is None:
            if status in GENERIC_ERROR_STATUSES:
                return _errors(self._validator(self._basic_error), body, where)
            return [f"{where}: status {status} is not described (has {sorted(responses)})"]
        schema = described.get("content", {}).get("application/json", {}).get("schema")
        if schema is None:
            if body is not None:
                return [f"{where}: described without a body, but one was sent"]
            return []
        if body is None:
            return [f"{where}: a JSON body is described, none was sent"]
        return _errors(self._validator(schema), body, where)

    def response_schema(self, method: str, template: str, status: int) -> Mapping[str, Any]:
        """The JSON Schema (converted) of one described response, for tests and builders."""
        for route in self._routes:
            if route.template == template:
                op = route.operations[method.upper()]
                raw = op["responses"][str(status)]["content"]["application/json"]["schema"]
                schema: Mapping[str, Any] = self._validator(raw).schema  # type: ignore[assignment]
                return dict(schema)
        raise KeyError(template)

    def operations(self) -> Iterable[tuple[str, str]]:
        """(METHOD, template) of every described operation."""
        for route in self._routes:
            for method in route.operations:
                yield method, route.template

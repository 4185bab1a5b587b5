"""A fake GitHub REST API on 127.0.0.1, held to GitHub's published OpenAPI description.

`FakeGitHub` is a `GitHubState` (seed it: `add_repo`, `add_pull`, `merge_pull`, `link_commit`,
`add_comment`, `add_app`/`install_app`, `add_token`) served by a `ThreadingHTTPServer`. Every
request is checked against the description before it is answered (path and method described,
path and query parameters, JSON body) and every answer after it is made (status described,
body valid against the schema). A violation is recorded in `violations` and answered with a
500 whose message is the violation, so that a test fails loudly whichever way it looks.

Also here: authentication like github.com (`Authorization: token …` or `Bearer …`; 401
otherwise; App JWTs checked with the App's public key), `fail_next` fault injection, and a
request log (`requests`) for counting calls.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt

from . import resources as r
from .contract import OpenApiContract
from .state import DOCS, GitHubState, Identity, Reply


@dataclass(frozen=True)
class LoggedRequest:
    """One request the fake received, and the status it answered."""

    method: str
    path: str  # without the API prefix and query, e.g. /repos/lab/ssp/issues/5/comments
    query: dict[str, list[str]]
    body: Any  # parsed JSON, or None
    status: int
    auth: str  # "token", "bearer" or "none"


@dataclass
class _Fault:
    remaining: int
    status: int
    retry_after: str | None
    path_prefix: str | None
    method: str | None
    after_processing: bool
    message: str | None
    secondary: bool = False

    def matches(self, method: str, path: str) -> bool:
        return (
            self.remaining > 0
            and (self.method is None or self.method == method)
            and (self.path_prefix is None or path.startswith(self.path_prefix))
        )


# The repository the fixtures seed (any name works; this one reads like the real thing).
FAKE_REPO = "lab/super-server"


class ContractViolationError(AssertionError):
    """The client or the fake stepped outside GitHub's published contract."""


class FakeGitHub(GitHubState):
    """Start with `with FakeGitHub() as gh:`; `gh.url` is the base URL for clients.

    `prefix="/api/v3"` serves the API under a path like GitHub Enterprise Server does.
    """

    def __init__(
        self,
        *,
        token: str = "ghp_fake_0123456789abcdefghijklmnopqrstuv",  # noqa: S107 - fake
        login: str = "ssp-bot",
        prefix: str = "",
        web_url: str = "https://github.com",
        contract: OpenApiContract | None = None,
    ) -> None:
        super().__init__(login=login, web_url=web_url)
        self.token = token
        self.prefix = prefix.rstrip("/")
        self.contract = contract or OpenApiContract.load()
        self.add_token(token, login)
        self._faults: list[_Fault] = []
        self._log: list[LoggedRequest] = []
        self._violations: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeGitHub:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        host, port = self._server.server_address[:2]
        self.site = r.Site(api=f"http://{host!s}:{port}{self.prefix}", web=self.site.web)
        # A short poll interval: shutdown() waits for it, once per test.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), name="fake-github", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def url(self) -> str:
        """The API base URL (what PyGithub calls base_url)."""
        return self.site.api

    # ---- faults, log, violations ------------------------------------------------------------

    def fail_next(
        self,
        count: int,
        status: int = 500,
        retry_after: float | str | None = None,
        path_prefix: str | None = None,
        *,
        method: str | None = None,
        after_processing: bool = False,
        message: str | None = None,
        secondary: bool = False,
    ) -> None:
        """Answer the next COUNT matching requests with STATUS instead of the real answer.

        `retry_after` becomes a `Retry-After` header (seconds, or a string sent verbatim such
        as an HTTP date). `path_prefix` (API path without prefix, e.g. "/repos/lab/ssp/issues")
        and `method` narrow which requests fail. `after_processing=True` carries the request
        out first and only then answers the error: a write that happened although the client
        saw it fail. A 403 without `message` is a primary rate limit, a 429 a secondary one.
        `secondary=True` makes a 403 a secondary rate limit too, as GitHub documents it: its
        message says so, its docs link points there, and X-RateLimit-Remaining is not 0 (only
        `retry_after` tells how long to wait; without it GitHub asks for at least a minute).
        """
        if secondary and status not in (403, 429):
            raise ValueError("a secondary rate limit is a 403 or a 429")
        header = (
            None
            if retry_after is None
            else (retry_after if isinstance(retry_after, str) else str(int(retry_after)))
        )
        with self.lock:
            self._faults.append(
                _Fault(
                    count, status, header, path_prefix, method, after_processing, message, secondary
                )
            )

    @property
    def requests(self) -> list[LoggedRequest]:
        """Every request received so far, in order."""
        with self.lock:
            return list(self._log)

    def requests_matching(self, method: str, path_prefix: str = "") -> list[LoggedRequest]:
        return [q for q in self.requests if q.method == method and q.path.startswith(path_prefix)]

    @property
    def violations(self) -> list[str]:
        with self.lock:
            return list(self._violations)

    def assert_no_violations(self) -> None:
        found = self.violations
        if found:
            raise ContractViolationError(
                f"{len(found)} contract violation(s) at the fake GitHub:\n" + "\n".join(found)
            )

    def iter_violations(self) -> Iterator[str]:
        yield from self.violations

    def _violation(self, text: str) -> Reply:
        with self.lock:
            self._violations.append(text)
        return Reply(500, r.error(f"contract violation: {text}", DOCS, 500))

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self.lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.remaining -= 1
                    return fault
        return None

    # ---- requests ---------------------------------------------------------------------------

    def _authenticate(self, header: str | None) -> Identity | Reply:
        if not header:
            return Reply(401, r.error("Requires authentication", DOCS, 401))
        scheme, _, credential = header.partition(" ")
        with self.lock:
            who = self.tokens.get(credential.strip())
        if scheme.lower() in {"token", "bearer"} and who is not None:
            return who
        if scheme.lower() == "bearer" and credential.count(".") == 2:
            return self._authenticate_app(credential.strip())
        return Reply(401, r.error("Bad credentials", DOCS, 401))

    def _authenticate_app(self, token: str) -> Identity | Reply:
        """Check an App's JWT the way GitHub documents it: RS256, iss = App id, ≤ 10 min."""
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
            app = self.apps.get(int(claims.get("iss", 0)))
            if app is None:
                raise jwt.InvalidTokenError("no such App")
            claims = jwt.decode(
                token,
                app.public_key_pem,
                algorithms=["RS256"],
                options={"require": ["iat", "exp", "iss"]},
                leeway=60,
            )
            if claims["exp"] - claims["iat"] > 660:  # GitHub: at most 10 minutes (+ clock skew)
                raise jwt.InvalidTokenError("expiration too far in the future")
        except (jwt.InvalidTokenError, ValueError) as e:
            return Reply(401, r.error(f"A JSON web token could not be decoded ({e})", DOCS, 401))
        return Identity("app", app.bot, app_id=app.app_id)

    def _rate_limit_headers(self, reset_in: int = 3600, remaining: int = 4999) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": "5000",
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(int(time.time()) + reset_in),
            "X-RateLimit-Used": str(5000 - remaining),
            "X-RateLimit-Resource": "core",
        }

    def _fault_reply(self, fault: _Fault) -> Reply:
        headers: dict[str, str] = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = fault.retry_after
        if fault.secondary or (fault.status == 429 and fault.message is None):
            message = fault.message or (
                "You have exceeded a secondary rate limit. Please wait a few minutes before you "
                "try again. If you reach out to GitHub Support for help, please include the "
                "request ID 0000:0000:0000000:0000000:00000000."
            )
            docs = f"{DOCS}/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"
        elif fault.status == 403 and fault.message is None:
            message = "API rate limit exceeded for user ID 1."
            headers |= self._rate_limit_headers(reset_in=60, remaining=0)
            docs = f"{DOCS}/overview/rate-limits-for-the-rest-api"
        else:
            message = fault.message or {500: "Server Error", 502: "Bad Gateway"}.get(
                fault.status, "Service Unavailable"
            )
            docs = DOCS
        return Reply(fault.status, r.error(message, docs, fault.status), headers)

    def serve(
        self, method: str, target: str, headers: dict[str, str], raw: bytes
    ) -> tuple[Reply, str | None]:
        """The reply to one HTTP request (and the path it was logged under)."""
        split = urlsplit(target)
        query = parse_qs(split.query, keep_blank_values=True)
        if not split.path.startswith(self.prefix + "/"):
            return self._violation(f"request: {method} {split.path}: outside {self.prefix}/"), None
        path = split.path[len(self.prefix) :]
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")

        reply = self._answer(method, path, query, raw, body, headers)
        auth = headers.get("authorization", "").partition(" ")[0].lower() or "none"
        with self.lock:
            self._log.append(LoggedRequest(method, path, query, body, reply.status, auth))
        return reply, path

    def _answer(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        raw: bytes,
        body: Any,
        headers: dict[str, str],
    ) -> Reply:
        op, problems = self.contract.match(method, path)
        if op is None:
            return self._violation("; ".join(problems))
        problems = self.contract.check_request(op, query, raw, headers.get("content-type"))
        if problems:
            return self._violation("; ".join(problems))

        fault = self._take_fault(method, path)
        if fault is not None and not fault.after_processing:
            reply = self._fault_reply(fault)
        else:
            who = self._authenticate(headers.get("authorization"))
            if isinstance(who, Reply):
                reply = who
            else:
                handled = self.handle(op.operation_id, op.path_params, query, body, who)
                if handled is None:
                    return self._violation(f"fake GitHub does not serve {op.operation_id}")
                reply = handled
            if fault is not None:
                reply = self._fault_reply(fault)

        problems = self.contract.check_response(op, reply.status, reply.body)
        if problems:
            return self._violation("; ".join(problems))
        return Reply(reply.status, reply.body, self._rate_limit_headers() | dict(reply.headers))


class _Handler(BaseHTTPRequestHandler):
    fake: FakeGitHub
    protocol_version = "HTTP/1.1"  # keep-alive, as PyGithub's connection pool expects
    # Headers and body go out as two writes; with Nagle on, the body waits for the client's
    # delayed ACK of the headers on a kept-alive connection: 40 ms on every request.
    disable_nagle_algorithm = True
    server_version = "GitHub.com"
    sys_version = ""

    def _any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        reply, _ = self.fake.serve(self.command, self.path, headers, raw)
        payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        if reply.body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-GitHub-Media-Type", "github.v3; format=json")
        self.send_header("X-GitHub-Api-Version-Selected", "2022-11-28")
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any  # noqa: N815 - http.server's names

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the fake keeps its own request log."""

"""Real local servers for the notice tests: an SMTP server (aiosmtpd) that offers STARTTLS
with a self-signed certificate made for the test and insists on it before a login, and an
HTTP receiver on 127.0.0.1 that answers each webhook path as its service does, or fails on
purpose (a scripted list of status codes)."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

LOGIN, PASSWORD = "ssp-notices", "s3cret-pw-not-in-the-repo"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made now (openssl), valid one day."""
    cert, key = folder / "smtp.crt", folder / "smtp.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@dataclass
class Received:
    tls: bool
    login: str
    to: list[str]
    mail: Message


@dataclass
class Mailbox:
    got: list[Received] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        data = session.auth_data if session.authenticated else None
        login = data.login.decode() if isinstance(data, LoginPassword) else ""
        self.got.append(
            Received(
                session.ssl is not None,
                login,
                list(envelope.rcpt_tos),
                message_from_bytes(envelope.original_content),
            )
        )
        return "250 OK"


def _auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        LOGIN.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False, auth_data=data)


def smtp_server(folder: Path, *, starttls: bool = True) -> Iterator[tuple[int, Mailbox]]:
    """An SMTP server on 127.0.0.1 (a generator for a fixture): STARTTLS required before
    anything else when STARTTLS is on, and a login only over TLS."""
    box = Mailbox()
    kwargs: dict[str, Any] = {"authenticator": _auth, "auth_require_tls": True}
    if starttls:
        cert, key = self_signed(folder)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        kwargs |= {"tls_context": context, "require_starttls": True}
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield port, box
    finally:
        controller.stop()


@dataclass
class Hook:
    """What the receiver got on one path, and the status codes it answers next."""

    bodies: list[Any] = field(default_factory=list)
    fail_with: list[int] = field(default_factory=list)
    answer: str = '{"errcode": 0, "errmsg": "ok"}'


class Receiver:
    """Webhook endpoints on 127.0.0.1: `hooks[path]`; an unknown path answers 404."""

    def __init__(self) -> None:
        self.hooks: dict[str, Hook] = {}
        hooks = self.hooks

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                hook = hooks.get(self.path.split("?", 1)[0])
                data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if hook is None:
                    self.send_error(404)
                    return
                if hook.fail_with:
                    hook.bodies.append(None)
                    self.send_error(hook.fail_with.pop(0))
                    return
                hook.bodies.append(json.loads(data))
                out = hook.answer.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, path: str, answer: str = '{"errcode": 0, "errmsg": "ok"}') -> Hook:
        self.hooks[path] = Hook(answer=answer)
        return self.hooks[path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

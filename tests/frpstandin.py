"""A stand-in for frpc and frps together, on 127.0.0.1, faithful to what frp documents and
ssp relies on (no frp binary is packaged in the registries this project reaches: Debian has
no frp, and the PyPI and npm packages named after it ship scripts or checksums, no binary).

Like `frpc -c FILE` it reads its TOML file at start and again on each `GET /api/reload` on its
`webServer` (addr, port, user, password), filling in `{{ .Envs.NAME }}` from its environment;
a file it cannot read or parse, or a proxy without name, type, localPort or remotePort, is a
400 whose body says why, and the proxies it ran are left running. With webServer.password set
every call needs that basic-auth login (401 otherwise). `GET /api/status` answers frp's
`{"tcp": [{"name", "type", "status", "err", "local_addr", "plugin", "remote_addr"}]}`.

Like frps, it accepts a proxy whose remotePort its `allow_ports` allows and then listens on
127.0.0.1:remotePort, carrying each connection to localIP:localPort (status `running`); any
other is `start error` with frps's words. A new proxy is `wait start` for a moment first, as
frpc's are while frps answers. A proxy gone from the file is closed on the next reload.
"""

from __future__ import annotations

import base64
import json
import re
import selectors
import socket
import socketserver
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_ENV = re.compile(r"\{\{\s*\.Envs\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
START_DELAY_S = 0.3  # frpc's proxies wait for frps's answer before they run


class _Pipe(socketserver.BaseRequestHandler):
    """One connection through the tunnel: bytes both ways until either side closes."""

    server: _Listener

    def handle(self) -> None:
        try:
            inner = socket.create_connection(self.server.target, timeout=5)
        except OSError:
            return
        sel = selectors.DefaultSelector()
        sel.register(self.request, selectors.EVENT_READ, inner)
        sel.register(inner, selectors.EVENT_READ, self.request)
        open_ends = 2
        with inner:
            while open_ends:
                ready = sel.select(timeout=60)
                if not ready:
                    return
                for key, _ in ready:
                    sock: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = sock.recv(65536)
                    if data:
                        key.data.sendall(data)
                        continue
                    # one side is done sending: pass the half-close on, read the other
                    sel.unregister(sock)
                    key.data.shutdown(socket.SHUT_WR)
                    open_ends -= 1


class _Listener(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.target = target
        super().__init__(("127.0.0.1", port), _Pipe)


@dataclass
class _Proxy:
    conf: dict[str, Any]
    status: str = "wait start"
    err: str = ""
    since: float = field(default_factory=time.monotonic)
    listener: _Listener | None = None


@dataclass
class FrpStandin:
    config: Path
    env: dict[str, str] = field(default_factory=dict)
    allow_ports: Callable[[int], bool] = lambda _port: True
    reloads: int = 0
    proxies: dict[str, _Proxy] = field(default_factory=dict)
    _http: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> FrpStandin:
        doc = self._read()  # frpc refuses to start on a file it cannot read
        web = doc.get("webServer", {})
        self.user, self.password = str(web.get("user", "")), str(web.get("password", ""))
        self._apply(doc)
        standin = self

        class Api(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if not standin._authorised(self.headers.get("Authorization", "")):
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="Restricted"')
                    self.end_headers()
                    return
                path = self.path.split("?", 1)[0]
                if path == "/api/reload":
                    code, body = standin.reload()
                elif path == "/api/status":
                    code, body = 200, json.dumps(standin.status_doc())
                else:
                    code, body = 404, "404 page not found\n"
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._http = ThreadingHTTPServer((str(web["addr"]), int(web["port"])), Api)
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        with self._lock:
            for proxy in self.proxies.values():
                self._close(proxy)
            self.proxies.clear()

    def reload(self) -> tuple[int, str]:
        try:
            doc = self._read()
        except ValueError as e:
            return 400, str(e)
        self._apply(doc)
        self.reloads += 1
        return 200, ""

    def status_doc(self) -> dict[str, list[dict[str, str]]]:
        with self._lock:
            for proxy in self.proxies.values():
                self._settle(proxy)
            rows = [
                {
                    "name": name,
                    "type": str(p.conf["type"]),
                    "status": p.status,
                    "err": p.err,
                    "local_addr": f"{p.conf.get('localIP', '127.0.0.1')}:{p.conf['localPort']}",
                    "plugin": "",
                    "remote_addr": f"127.0.0.1:{p.conf['remotePort']}" if p.listener else "",
                }
                for name, p in self.proxies.items()
            ]
        return {"tcp": rows} if rows else {}

    def running(self) -> dict[str, int]:
        """Each running proxy's name → the remote port it listens on."""
        doc = self.status_doc()
        return {
            r["name"]: int(r["remote_addr"].rsplit(":", 1)[1])
            for r in doc.get("tcp", [])
            if r["status"] == "running"
        }

    # --- inside ---------------------------------------------------------------------------

    def _authorised(self, header: str) -> bool:
        if not self.password:
            return True
        want = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return header == f"Basic {want}"

    def _read(self) -> dict[str, Any]:
        try:
            text = self.config.read_text(encoding="utf-8")
        except OSError as e:
            raise ValueError(f"load config file error: {e}") from None
        text = _ENV.sub(lambda m: self.env.get(m.group(1), ""), text)
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"toml: {e}") from None
        names = set()
        for p in doc.get("proxies", []):
            for key in ("name", "type", "localPort", "remotePort"):
                if key not in p:
                    raise ValueError(f"proxy {p.get('name', '?')}: {key} is required")
            if p["name"] in names:
                raise ValueError(f"proxy [{p['name']}] already exists")
            names.add(p["name"])
        return doc

    def _apply(self, doc: dict[str, Any]) -> None:
        wanted = {str(p["name"]): p for p in doc.get("proxies", [])}
        with self._lock:
            for name in list(self.proxies):
                if name not in wanted or self.proxies[name].conf != wanted[name]:
                    self._close(self.proxies.pop(name))
            for name, conf in wanted.items():
                self.proxies.setdefault(name, _Proxy(dict(conf)))
        # frpc starts its proxies by itself once frps answers, asked or not
        timer = threading.Timer(START_DELAY_S + 0.05, self.status_doc)
        timer.daemon = True
        timer.start()

    def _settle(self, proxy: _Proxy) -> None:
        if proxy.status != "wait start" or time.monotonic() - proxy.since < START_DELAY_S:
            return
        remote = int(proxy.conf["remotePort"])
        if not self.allow_ports(remote):
            proxy.status, proxy.err = "start error", f"port {remote} is not allowed"
            return
        target = (str(proxy.conf.get("localIP", "127.0.0.1")), int(proxy.conf["localPort"]))
        try:
            proxy.listener = _Listener(remote, target)
        except OSError as e:
            proxy.status, proxy.err = "start error", f"port unavailable: {e.strerror}"
            return
        threading.Thread(target=proxy.listener.serve_forever, daemon=True).start()
        proxy.status = "running"

    @staticmethod
    def _close(proxy: _Proxy) -> None:
        if proxy.listener is not None:
            proxy.listener.shutdown()
            proxy.listener.server_close()
            proxy.listener = None
        proxy.status = "closed"

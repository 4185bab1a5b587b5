"""The tunnel client on the host: frpc's configuration file and its admin API.

`write_config` replaces the file frpc was started with (atomically, and only when the text
changed); `FrpcAdmin` talks to frpc's admin API (its `webServer`, on 127.0.0.1) as frp
documents it: `GET /api/reload` makes frpc read that file again (200 with an empty body, or
400 with frpc's own words on a file it refuses; 401 without the right basic-auth login), and
`GET /api/status` answers each proxy's state as JSON, `{"tcp": [{"name": …, "status":
"running", "err": "", "local_addr": …, "remote_addr": …}, …], …}`.

Every failure is a TunnelError whose text names the step, never the password.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from provisioner.values.errors import TunnelError


def write_config(path: Path, text: str) -> bool:
    """Put TEXT in PATH unless it is there already; True when the file changed.

    A temporary file beside it, renamed over it: frpc never reads half a file, and a failed
    write leaves the old one.
    """
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except FileNotFoundError:
        pass
    except (OSError, UnicodeError) as e:
        raise TunnelError(f"cannot read {path}: {e.__class__.__name__}") from None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".frpc-", suffix=".toml")
    except OSError as e:
        raise TunnelError(f"cannot write beside {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        # frpc may run as its own user: the file holds no secret (only frp's templates).
        Path(tmp).chmod(0o644)
        Path(tmp).replace(path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise TunnelError(f"cannot write {path}: {e.strerror or e}") from None
    return True


MAX_PASSWORD = 4096


def read_password(path: Path) -> str:
    """The admin API's password: the file's first line. A TunnelError names the file and
    why, never what is in it."""
    try:
        with path.open(encoding="utf-8") as f:
            text = f.read(MAX_PASSWORD)
    except (OSError, UnicodeDecodeError) as e:
        raise TunnelError(f"cannot read {path}: {type(e).__name__}") from None
    line = text.splitlines()[0] if text.strip() else ""
    if not line:
        raise TunnelError(f"{path} holds no password on its first line")
    return line


class FrpcAdmin:
    """frpc's admin API at http://ADDR:PORT, with basic auth when a password is given."""

    def __init__(
        self, addr: str, port: int, user: str = "", password: str = "", timeout: float = 10.0
    ) -> None:
        self.base = f"http://{addr}:{port}"
        self.timeout = timeout
        self._auth = ""
        if password:
            pair = f"{user}:{password}".encode()
            self._auth = "Basic " + base64.b64encode(pair).decode("ascii")

    def reload(self) -> None:
        """Make frpc read its file again; TunnelError with frpc's reason when it refuses."""
        self._get("/api/reload", "reload")

    def status(self) -> dict[str, str]:
        """Each proxy's name → its state (`running`, `wait start`, `start error`, …)."""
        body = self._get("/api/status", "status")
        try:
            doc = json.loads(body)
        except ValueError:
            raise TunnelError("frpc's status is not JSON") from None
        found: dict[str, str] = {}
        if not isinstance(doc, dict):
            raise TunnelError("frpc's status is not a JSON object")
        for listed in doc.values():
            for proxy in listed if isinstance(listed, list) else ():
                if isinstance(proxy, dict) and isinstance(proxy.get("name"), str):
                    found[proxy["name"]] = str(proxy.get("status", ""))
        return found

    def _get(self, path: str, what: str) -> str:
        request = urllib.request.Request(self.base + path, method="GET")  # noqa: S310  (http://127.0.0.1 from the policy)
        if self._auth:
            request.add_header("Authorization", self._auth)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310
                return str(answer.read(1_000_000).decode("utf-8", "replace"))
        except urllib.error.HTTPError as e:
            said = e.read(2000).decode("utf-8", "replace").strip() if e.fp else ""
            if e.code == 401:
                said = "the admin user or password is wrong"
            raise TunnelError(
                f"frpc refused the {what} (HTTP {e.code}{': ' + said if said else ''})"
            ) from None
        except urllib.error.URLError as e:
            raise TunnelError(f"cannot reach frpc's admin API at {self.base}: {e.reason}") from None
        except (OSError, http.client.HTTPException) as e:
            raise TunnelError(f"frpc's admin API at {self.base}: {type(e).__name__}") from None

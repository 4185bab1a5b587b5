"""The notify settings' private files on the host: the SMTP login, webhook URLs, members'
addresses, and the ledger of what was delivered (so a rerun sends nothing twice).

A missing or unreadable secret is a `SecretError` naming the file, never its content.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from provisioner.values.notifymodels import EMAIL_PATTERN

_LOGIN = re.compile(r"^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$")
_EMAIL = re.compile(EMAIL_PATTERN)
MAX_SECRET = 65536


class SecretError(Exception):
    """A private file that cannot be used; says which and why, never what is in it."""


def _read(path: str) -> str:
    try:
        with Path(path).open(encoding="utf-8") as f:
            return f.read(MAX_SECRET)
    except (OSError, UnicodeDecodeError) as e:
        raise SecretError(f"cannot read {path}: {type(e).__name__}") from None


def smtp_login(path: str) -> tuple[str, str]:
    lines = _read(path).splitlines()
    if len(lines) < 2 or not lines[0].strip() or not lines[1]:
        raise SecretError(f"{path}: needs the login on line 1 and the password on line 2")
    return lines[0].strip(), lines[1]


def webhook_url(path: str) -> str:
    url = _read(path).strip()
    if not url.startswith(("https://", "http://")) or any(c.isspace() for c in url):
        raise SecretError(f"{path}: holds no single http(s) URL")
    return url


def addresses(path: str) -> dict[str, str]:
    """`login address` per line; blank lines and `#` comments skipped, bad lines refused."""
    found: dict[str, str] = {}
    for number, line in enumerate(_read(path).splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 2 or not _LOGIN.match(words[0]) or not _EMAIL.match(words[1]):
            raise SecretError(f"{path}:{number}: expected `login address`")
        found[words[0].lower()] = words[1]
    return found


def read_ledger(path: str) -> dict[str, str]:
    """Delivered keys (`key channel`) → the day they went; an absent ledger is empty."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise SecretError(f"cannot read the ledger {path}: {type(e).__name__}") from None
    if not isinstance(doc, dict):
        return {}
    return {str(k): str(v) for k, v in doc.items()}


def write_ledger(path: str, done: dict[str, str]) -> None:
    """Replace the ledger atomically (owner-only), so a crash leaves the old or the new one."""
    folder = Path(path).parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".notify-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:  # mkstemp: mode 0600
            json.dump(done, f, indent=1, sort_keys=True)
        Path(tmp).replace(path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        raise

"""SSH public keys from request files: parse one `type base64 [comment]` line or refuse it.

Pure: stdlib only, plus the project's one rule on what text may hold (`textpolicy`), which
is why a key is one line without tabs or control characters. The OpenSSH wire format (RFC 4253
section 6.6, uint32-length-prefixed strings and mpints) is read here with `struct`, so a key
is judged by what its blob holds, not by what its text claims. A refusal is a value with a
stable rule id; its message never repeats the input's key material, because a member who
pasted a private key by mistake must not see it again in a public PR comment.
The count limit (MAX_KEYS) and "one key, one owner" (compare `fingerprint`s) are applied by
the validator, which sees all requests at once.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
from dataclasses import dataclass
from functools import lru_cache

from provisioner.validation.textpolicy import first_forbidden

MAX_KEYS: int = 10
MAX_LINE = 16 * 1024
MAX_COMMENT = 200
MIN_RSA_BITS = 3072

# type -> (number of wire fields including the type, nominal bits or None to measure)
_LAYOUT: dict[str, tuple[int, int | None]] = {
    "ssh-ed25519": (2, 256),
    "ssh-rsa": (3, None),
    "ecdsa-sha2-nistp256": (3, 256),
    "ecdsa-sha2-nistp384": (3, 384),
    "ecdsa-sha2-nistp521": (3, 521),
    "sk-ssh-ed25519@openssh.com": (3, 256),
    "sk-ecdsa-sha2-nistp256@openssh.com": (4, 256),
}
KNOWN_TYPES = frozenset(_LAYOUT)
# authorized_keys options (sshd(8) "AUTHORIZED_KEYS FILE FORMAT"); any of them before the
# type would restrict or redirect logins, and `command=`/`from=` are exactly what we refuse.
_OPTION = re.compile(
    r"(no-)?(agent-forwarding|port-forwarding|pty|user-rc|x11-forwarding|touch-required)"
    r"|cert-authority|restrict|verify-required",
    re.IGNORECASE,
)
# "openssh-key-v1\0" in base64: how every OpenSSH private key body (and its first line) starts.
_PRIVATE_MARKS = ("PRIVATE KEY", "-----BEGIN", "-----END", "b3BlbnNzaC1rZXktdjE", "PuTTY-User-Key")
# The first base64 line of a PEM private key: a DER SEQUENCE then version 0 (RSA PKCS#1 and
# PKCS#8) or version 1 with a 32/48/66-byte secret (EC P-256/384/521).
_PEM_BODY = re.compile(r"(?:^|\s)(?:MII[A-Za-z0-9+/]{3}IBA|MHcCAQEE|MIGkAgEBBD|MIHcAgEBBE)")
_SAFE_WORD = re.compile(r"[a-z0-9@._-]{1,40}")
_HOW = "make a new key with `ssh-keygen -t ed25519` and paste the one line of its .pub file"


@dataclass(frozen=True)
class SshKey:
    type: str  # e.g. "ssh-ed25519"
    blob: str  # the base64 text as written
    comment: str  # "" when none
    fingerprint: str  # "SHA256:..." as `ssh-keygen -lf` prints it
    bits: int | None  # RSA modulus size; 256 for ed25519; curve size for ecdsa


@dataclass(frozen=True)
class KeyRefusal:
    rule: str  # stable rule id, "ssh_key.<what>"
    message: str  # never contains key material


class _MalformedError(Exception):
    """The blob's length-prefixed fields do not add up."""


def _fields(data: bytes) -> list[bytes]:
    out: list[bytes] = []
    at = 0
    while at < len(data):
        if len(data) - at < 4:
            raise _MalformedError
        (size,) = struct.unpack_from(">I", data, at)
        at += 4
        if size > len(data) - at:
            raise _MalformedError
        out.append(data[at : at + size])
        at += size
    return out


def _positive_mpint(raw: bytes) -> int:
    if not raw or raw[0] & 0x80:  # empty is zero, a high first bit is negative
        raise _MalformedError
    return int.from_bytes(raw, "big")


def _bits(key_type: str, fields: list[bytes]) -> int | None:
    """Check the fields after the type; return the key size. Raise _MalformedError if unusable."""
    count, bits = _LAYOUT[key_type]
    if len(fields) != count:
        raise _MalformedError
    if key_type == "ssh-rsa":
        _positive_mpint(fields[1])
        return _positive_mpint(fields[2]).bit_length()
    if "ed25519" in key_type:
        if len(fields[1]) != 32:
            raise _MalformedError
    elif bits is not None and (fields[2][:1] != b"\x04" or len(fields[2]) != 1 + 2 * -(-bits // 8)):
        raise _MalformedError  # an ECDSA point must be uncompressed: 0x04 || x || y
    return bits


def _refuse(rule: str, message: str) -> KeyRefusal:
    return KeyRefusal(f"ssh_key.{rule}", message)


def _named(word: str) -> str:
    """Quote a word back to the user only if it cannot be a piece of key material."""
    return f" {word!r}" if _SAFE_WORD.fullmatch(word) else ""


def _split(text: str) -> tuple[str, str, str]:
    key_type, _, rest = text.strip(" ").partition(" ")
    blob, _, comment = rest.lstrip(" ").partition(" ")
    return key_type, blob, comment.strip(" ")


def private_refusal(text: str) -> KeyRefusal | None:
    """Refuse `text` if it looks like (a piece of) a private key, wherever it was written.

    The loader asks this before it refuses a value for its line breaks: a private key pasted
    as a block is a leak, and the member must be told so, not that it has too many lines.
    """
    if any(mark in text for mark in _PRIVATE_MARKS) or _PEM_BODY.search(text):
        return _refuse(
            "private",
            "this looks like a PRIVATE key; never share it: treat it as leaked, "
            f"delete it and {_HOW}",
        )
    return None


def _looks_like_path(word: str) -> bool:
    """`~/.ssh/id_ed25519.pub`, `/home/me/.ssh/key.pub`, `id_rsa.pub`: a file named, not pasted."""
    return word.startswith(("~", "/", "./", "../")) or word.endswith(".pub")


def _line_refusal(text: str) -> KeyRefusal | None:
    """The first rule the line's text breaks, before its blob is looked at; in priority order."""
    if (private := private_refusal(text)) is not None:
        return private
    key_type, blob, comment = _split(text)
    too_long = len(text) > MAX_LINE
    known = key_type in KNOWN_TYPES
    checks = (
        (too_long, "format", f"a key line must be at most {MAX_LINE} characters"),
        (
            not too_long and first_forbidden(text) is not None,
            "newline",
            "a key must be one line without line breaks, tabs or other control characters",
        ),
        (not key_type, "format", "empty key; expected `type base64 [comment]`"),
        (
            not known
            and ("=" in key_type or any(_OPTION.fullmatch(o) for o in key_type.split(","))),
            "options",
            "key options (command=, from=, no-pty, restrict, ...) are not allowed; "
            "give just `type base64 [comment]`",
        ),
        (key_type == "ssh-dss", "type", f"DSA keys (ssh-dss) are refused as too weak; {_HOW}"),
        (key_type.startswith("AAAA"), "format", "the key type is missing before the base64"),
        (
            not known and not blob and _looks_like_path(key_type),
            "type",
            "this is a file's path, not a key: paste the contents of the .pub file "
            "(print it with `cat ~/.ssh/id_ed25519.pub`)",
        ),
        (
            not known,
            "type",
            f"unknown key type{_named(key_type)}; known types: {', '.join(sorted(KNOWN_TYPES))}",
        ),
        (not blob, "format", f"{key_type} key has no base64 part; expected `type base64`"),
        (len(comment) > MAX_COMMENT, "format", f"comment longer than {MAX_COMMENT} characters"),
    )
    return next((_refuse(rule, message) for bad, rule, message in checks if bad), None)


def _inner_refusal(key_type: str, fields: list[bytes]) -> KeyRefusal | None:
    """Refuse a blob that holds another kind of key than its line says."""
    if not fields:
        raise _MalformedError
    inner = fields[0].decode("ascii", errors="replace")
    if inner != key_type:
        return _refuse(
            "mismatch",
            f"the key says {key_type} but its data holds a{_named(inner) or 'nother'} key",
        )
    if key_type.startswith(("ecdsa", "sk-ecdsa")) and len(fields) > 1:
        curve = fields[1].decode("ascii", errors="replace")
        if not key_type.removesuffix("@openssh.com").endswith(f"-{curve}"):
            return _refuse("mismatch", f"the {key_type} key's data names another curve")
    return None


def _decode(key_type: str, blob: str) -> KeyRefusal | tuple[bytes, int | None]:
    """The blob's bytes and the key size, or why they are unusable."""
    try:
        data = base64.b64decode(blob, validate=True)
    except ValueError:
        return _refuse("base64", f"the {key_type} key's second part is not valid base64")
    try:
        fields = _fields(data)
        if (refusal := _inner_refusal(key_type, fields)) is not None:
            return refusal
        bits = _bits(key_type, fields)
    except _MalformedError:
        return _refuse(
            "truncated",
            f"the {key_type} key's data is cut short or malformed; copy the whole line again",
        )
    if key_type == "ssh-rsa" and bits is not None and bits < MIN_RSA_BITS:
        return _refuse(
            "rsa_bits",
            f"this RSA key has {bits} bits; at least {MIN_RSA_BITS} are needed. Better: {_HOW}",
        )
    return data, bits


# The per-file check and the cross-file "one key, one owner" check both parse every key;
# results are immutable, so the second parse is a dictionary lookup.
@lru_cache(maxsize=8192)
def parse_key(text: str) -> SshKey | KeyRefusal:
    """Parse one authorized_keys-style public key line, or say which rule it breaks."""
    if (refusal := _line_refusal(text)) is not None:
        return refusal
    key_type, blob, comment = _split(text)
    decoded = _decode(key_type, blob)
    if isinstance(decoded, KeyRefusal):
        return decoded
    data, bits = decoded
    digest = base64.b64encode(hashlib.sha256(data).digest()).decode("ascii").rstrip("=")
    return SshKey(key_type, blob, comment, f"SHA256:{digest}", bits)

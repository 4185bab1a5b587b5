"""SSH key checks against real keys made by ssh-keygen, and hand-made bad ones."""

from __future__ import annotations

import base64
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.validation.sshkeys import MAX_KEYS, KeyRefusal, SshKey, parse_key

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")

GENERATED = {
    "ed25519": ["-t", "ed25519"],
    "rsa2048": ["-t", "rsa", "-b", "2048"],
    "rsa3072": ["-t", "rsa", "-b", "3072"],
    "ecdsa256": ["-t", "ecdsa", "-b", "256"],
    "ecdsa384": ["-t", "ecdsa", "-b", "384"],
    "ecdsa521": ["-t", "ecdsa", "-b", "521"],
    "rsa3072pem": ["-t", "rsa", "-b", "3072", "-m", "PEM"],
    "ecdsa256pem": ["-t", "ecdsa", "-b", "256", "-m", "PEM"],
    "ecdsa384pem": ["-t", "ecdsa", "-b", "384", "-m", "PEM"],
    "ecdsa521pem": ["-t", "ecdsa", "-b", "521", "-m", "PEM"],
}


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _line(*fields: bytes, key_type: str | None = None, comment: str = "") -> str:
    outer = key_type or fields[0].decode()
    blob = base64.b64encode(b"".join(_string(f) for f in fields)).decode()
    return f"{outer} {blob} {comment}".rstrip()


# Keys ssh-keygen cannot make without hardware or refuses to make any more, built by hand.
CRAFTED = {
    "sk-ed25519": _line(b"sk-ssh-ed25519@openssh.com", bytes(range(32)), b"ssh:", comment="yk"),
    "sk-ecdsa": _line(
        b"sk-ecdsa-sha2-nistp256@openssh.com",
        b"nistp256",
        # the P-256 generator point, uncompressed: a real point on the curve
        bytes.fromhex(
            "046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
            "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"
        ),
        b"ssh:",
    ),
}


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> private key path (its public half is next to it as .pub)."""
    where = tmp_path_factory.mktemp("sshkeys")
    made = {}
    for name, args in GENERATED.items():
        path = where / name
        subprocess.run(
            ["ssh-keygen", "-q", *args, "-N", "", "-C", f"{name} laptop", "-f", str(path)],
            check=True,
            capture_output=True,
        )
        made[name] = path
    for name, text in CRAFTED.items():
        (where / f"{name}.pub").write_text(text + "\n")
        made[name] = where / name
    return made


def _pub(keys: dict[str, Path], name: str) -> str:
    return keys[name].with_suffix(".pub").read_text().strip()


def _keygen_says(pub: Path) -> tuple[int, str]:
    out = subprocess.run(
        ["ssh-keygen", "-lf", str(pub)], check=True, capture_output=True, text=True
    ).stdout
    bits, fingerprint = out.split()[:2]
    return int(bits), fingerprint


@pytest.mark.parametrize(
    ("name", "key_type"),
    [
        ("ed25519", "ssh-ed25519"),
        ("rsa3072", "ssh-rsa"),
        ("rsa3072pem", "ssh-rsa"),
        ("ecdsa256", "ecdsa-sha2-nistp256"),
        ("ecdsa384", "ecdsa-sha2-nistp384"),
        ("ecdsa521", "ecdsa-sha2-nistp521"),
        ("sk-ed25519", "sk-ssh-ed25519@openssh.com"),
        ("sk-ecdsa", "sk-ecdsa-sha2-nistp256@openssh.com"),
    ],
)
def test_good_keys_parse_like_ssh_keygen_reads_them(
    keys: dict[str, Path], name: str, key_type: str
) -> None:
    line = _pub(keys, name)
    key = parse_key(line)
    assert isinstance(key, SshKey), key
    bits, fingerprint = _keygen_says(keys[name].with_suffix(".pub"))
    assert (key.type, key.fingerprint, key.bits) == (key_type, fingerprint, bits)
    assert key.blob == line.split()[1]
    assert key.comment == " ".join(line.split()[2:])


def test_comment_is_optional_and_may_hold_spaces(keys: dict[str, Path]) -> None:
    key_type, blob = _pub(keys, "ed25519").split()[:2]
    bare = parse_key(f"{key_type} {blob}")
    spaced = parse_key(f"  {key_type}  {blob}   Ana's  work laptop ")
    assert isinstance(bare, SshKey) and bare.comment == ""
    assert isinstance(spaced, SshKey) and spaced.comment == "Ana's  work laptop"
    assert bare.fingerprint == spaced.fingerprint


def _tamper(line: str, edit: str) -> str:
    """Bad variants of a good ed25519 line, each named for what is wrong with it."""
    key_type, blob, comment = line.split(" ", 2)
    data = base64.b64decode(blob)
    # an ed25519 blob: uint32 11, "ssh-ed25519", uint32 32, the 32-byte public key
    bad = {
        "inner_rsa": _string(b"ssh-rsa") + data[4 + 11 :],
        "cut": data[:-5],
        "cut_in_length": data[:2],
        "trailing": data + _string(b"extra"),
        "short_point": data[:15] + struct.pack(">I", 31) + data[19:-1],
        "type_only": data[: 4 + 11],
    }[edit]
    return f"{key_type} {base64.b64encode(bad).decode()} {comment}"


@pytest.mark.parametrize(
    ("edit", "rule"),
    [
        ("inner_rsa", "ssh_key.mismatch"),
        ("cut", "ssh_key.truncated"),
        ("cut_in_length", "ssh_key.truncated"),
        ("trailing", "ssh_key.truncated"),
        ("short_point", "ssh_key.truncated"),
        ("type_only", "ssh_key.truncated"),
    ],
)
def test_tampered_blobs_are_refused(keys: dict[str, Path], edit: str, rule: str) -> None:
    result = parse_key(_tamper(_pub(keys, "ed25519"), edit))
    assert isinstance(result, KeyRefusal)
    assert result.rule == rule, result.message


def test_outer_type_must_match_inner(keys: dict[str, Path]) -> None:
    blob = _pub(keys, "ed25519").split()[1]
    result = parse_key(f"ssh-rsa {blob}")
    assert result == KeyRefusal(
        "ssh_key.mismatch", "the key says ssh-rsa but its data holds a 'ssh-ed25519' key"
    )


DSA = _line(b"ssh-dss", b"\x00" + b"\xab" * 128, b"\x00" + b"\xcd" * 20, b"\x01" * 128, b"\x02")
ECDSA_WRONG_CURVE = _line(b"ecdsa-sha2-nistp256", b"nistp384", b"\x04" + b"\x01" * 96)


@pytest.mark.parametrize(
    ("text", "rule", "says"),
    [
        ('command="rm -rf ~" ssh-ed25519 AAAA', "ssh_key.options", "command="),
        ('from="10.0.0.0/8" ssh-ed25519 AAAA', "ssh_key.options", "from="),
        ("no-pty,restrict ssh-ed25519 AAAA", "ssh_key.options", "not allowed"),
        ("restrict ssh-ed25519 AAAA", "ssh_key.options", "not allowed"),
        ('environment="A=b" ssh-ed25519 AAAA', "ssh_key.options", "not allowed"),
        (DSA, "ssh_key.type", "DSA"),
        ("ssh-foo AAAAB3 me", "ssh_key.type", "'ssh-foo'"),
        ("ssh-ed25519-cert-v01@openssh.com AAAA", "ssh_key.type", "unknown key type"),
        ("ssh-ed25519 AAAA*not-base64 me", "ssh_key.base64", "not valid base64"),
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE", "ssh_key.base64", "not valid base64"),
        ("ssh-ed25519 AAAAC3Nz\u00e9", "ssh_key.base64", "not valid base64"),
        (ECDSA_WRONG_CURVE, "ssh_key.mismatch", "another curve"),
        ("ssh-ed25519", "ssh_key.format", "no base64 part"),
        ("", "ssh_key.format", "empty key"),
        ("   ", "ssh_key.format", "empty key"),
        ("AAAAC3NzaC1lZDI1NTE5AAAAI me", "ssh_key.format", "type is missing"),
        ("ssh-ed25519 AAAA " + "x" * 201, "ssh_key.format", "longer than 200"),
        ("ssh-ed25519 " + "A" * 20_000, "ssh_key.format", "at most 16384"),
        ("ssh-ed25519 AAAA me\r\n", "ssh_key.newline", "one line"),
        ("ssh-ed25519 AAAA me\n", "ssh_key.newline", "one line"),
        ("ssh-ed25519\tAAAA me", "ssh_key.newline", "control characters"),
        ("ssh-ed25519 AAAA me\u2028", "ssh_key.newline", "one line"),
        ("ssh-ed25519 AAAA \u202eme", "ssh_key.newline", "one line"),
    ],
)
def test_bad_lines_are_refused_with_a_reason(text: str, rule: str, says: str) -> None:
    result = parse_key(text)
    assert isinstance(result, KeyRefusal)
    assert (result.rule, says in result.message) == (rule, True), result.message


def test_two_lines_in_one_entry_are_refused(keys: dict[str, Path]) -> None:
    two = _pub(keys, "ed25519") + "\r\n" + _pub(keys, "ecdsa256")
    result = parse_key(two)
    assert isinstance(result, KeyRefusal) and result.rule == "ssh_key.newline"


def test_short_rsa_says_how_many_bits_and_what_to_do(keys: dict[str, Path]) -> None:
    result = parse_key(_pub(keys, "rsa2048"))
    assert result == KeyRefusal(
        "ssh_key.rsa_bits",
        "this RSA key has 2048 bits; at least 3072 are needed. Better: make a new key with "
        "`ssh-keygen -t ed25519` and paste the one line of its .pub file",
    )


def _private_texts(keys: dict[str, Path]) -> list[tuple[str, str]]:
    texts = []
    for name in ("ed25519", "rsa3072", "ecdsa521", "rsa3072pem", "ecdsa256pem", "ecdsa384pem"):
        private = keys[name].read_text()
        texts += [
            (private, private),
            (private.strip(), private),
            (private.splitlines()[1], private),
        ]
        body = "".join(private.splitlines()[1:-1])
        texts.append((f"ssh-ed25519 {body} me", private))  # the body pasted as if a blob
    return texts


def test_private_keys_are_refused_and_never_echoed(keys: dict[str, Path]) -> None:
    for text, private in _private_texts(keys):
        result = parse_key(text)
        assert isinstance(result, KeyRefusal)
        assert result.rule == "ssh_key.private", (text[:40], result)
        assert "leaked" in result.message
        for line in private.splitlines():
            assert line not in result.message


def test_no_line_of_a_private_key_is_echoed_even_when_not_recognised(
    keys: dict[str, Path],
) -> None:
    """A middle line of a private key pasted alone is not recognisable, but stays unseen."""
    for name in ("ed25519", "rsa3072", "rsa3072pem", "ecdsa521pem"):
        lines = keys[name].read_text().splitlines()
        for line in lines:
            result = parse_key(line)
            assert isinstance(result, KeyRefusal)
            assert not any(part in result.message for part in lines if len(part) > 8)


def test_max_keys_is_a_small_bound() -> None:
    assert 1 <= MAX_KEYS <= 20


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=300) | st.from_regex(r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp\d+) .*"))
def test_any_text_gives_a_key_or_a_short_refusal(text: str) -> None:
    result = parse_key(text)
    if isinstance(result, KeyRefusal):
        assert result.rule.startswith("ssh_key.")
        assert len(result.message) < 300  # refusals never carry the input along
    else:
        assert result.fingerprint.startswith("SHA256:")


@given(st.binary(max_size=200), st.sampled_from(["ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256"]))
def test_any_blob_gives_a_key_or_a_refusal(data: bytes, key_type: str) -> None:
    result = parse_key(f"{key_type} {base64.b64encode(data).decode()}")
    assert isinstance(result, SshKey | KeyRefusal)
    if isinstance(result, KeyRefusal):
        assert result.rule != "ssh_key.base64"

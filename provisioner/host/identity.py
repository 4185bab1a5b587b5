"""A fresh identity for each clone: machine-id and SSH host key, generated on the host.

Clones of one base share `/etc/machine-id` (and with it DHCP client ids, so the bridge may
hand two containers the same lease) and SSH host keys (so every container has the same
fingerprint, and one can impersonate another). A new container gets its own of both before
its first boot, pushed as files while it is stopped: no shell, no race with sshd's start.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# Host keys the Debian/Ubuntu openssh packages create; all are removed, one is replaced.
OLD_HOST_KEYS = tuple(
    f"/etc/ssh/ssh_host_{kind}_key{suffix}"
    for kind in ("rsa", "ecdsa", "ed25519", "dsa")
    for suffix in ("", ".pub")
)
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"


@dataclass(frozen=True)
class Identity:
    machine_id: bytes
    host_key: bytes  # OpenSSH private key file contents
    host_key_pub: bytes  # one line: ssh-ed25519 AAAA... root@<name>


def new_identity(name: str) -> Identity:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return Identity(
        machine_id=(secrets.token_hex(16) + "\n").encode(),
        host_key=private,
        host_key_pub=public + f" root@{name}\n".encode(),
    )

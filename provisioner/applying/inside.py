"""Work done inside an instance: commands run as argv lists, files pushed as bytes.

Everything here goes through an `LxdApi`, never a shell on the host, and nothing from a
request is ever parsed by a shell inside either: logins and keys were checked by the
validator and travel as separate argv entries or as file contents.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from provisioner.host.identity import HOST_KEY, OLD_HOST_KEYS, new_identity
from provisioner.values import spec as specs
from provisioner.values.errors import LxdError
from provisioner.values.state import LxdApi

DESKTOP_PACKAGES = ("xrdp", "xfce4", "xfce4-terminal", "dbus-x11")
USER_EXISTS = 9  # useradd's exit status for "user already exists"
SOME_MISSING = 2  # getent: one or more of the names asked for do not exist
NO_SUCH_USER = 6  # usermod, userdel: the user does not exist
LOGGED_IN = 8  # userdel: the user has processes (the login is locked and keyless anyway)
READ_TRIES = 3


def run(api: LxdApi, name: str, argv: list[str], *, ok: tuple[int, ...] = (0,)) -> str:
    """Run a command; an exit status outside `ok` is an `LxdError` naming its last line."""
    result = api.execute(name, argv)
    if result.exit_code not in ok:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise LxdError(
            f"`{' '.join(argv[:2])}` failed in {name} (exit {result.exit_code})"
            + (f": {detail[-1]}" if detail else "")
        )
    return result.stdout


def number(api: LxdApi, name: str, argv: list[str]) -> int:
    """A command's one-number output. Under load pylxd has lost an exec's output while the
    command succeeded (ws4py: "Broken pipe"): the read is asked again then."""
    out = ""
    for attempt in range(1, READ_TRIES + 1):
        out = run(api, name, argv).strip()
        if out.isdigit():
            return int(out)
        time.sleep(0.2 * attempt)
    raise LxdError(f"`{' '.join(argv[:2])}` in {name} printed {out!r}, not a number")


def give_identity(api: LxdApi, name: str) -> None:
    """A clone's own machine ID and SSH host key, replacing the base's (and any stale keys)."""
    ident = new_identity(name)
    api.push_file(name, "/etc/machine-id", ident.machine_id, 0o444, 0, 0)
    for path in OLD_HOST_KEYS:
        if path not in (HOST_KEY, HOST_KEY + ".pub"):  # those two are overwritten below
            api.delete_file(name, path)
    api.make_dir(name, "/etc/ssh", 0o755, 0, 0)  # minimal images have none
    api.push_file(name, HOST_KEY, ident.host_key, 0o600, 0, 0)
    api.push_file(name, HOST_KEY + ".pub", ident.host_key_pub, 0o644, 0, 0)


def setup_owner(api: LxdApi, spec: specs.Spec) -> None:
    """The owner's user with the policy's UID (so the share's files are theirs), and keys.

    Two commands and three file requests: each `exec` costs a round of websockets, so
    "already there" is taken from the tools' own exit statuses rather than asked first.
    """
    uid, login, name = str(spec.uid), spec.login, spec.name
    run(api, name, ["groupadd", "--force", "--gid", uid, login])
    useradd = ["useradd", "--create-home", "--uid", uid, "--gid", uid, "--shell", "/bin/bash"]
    # 9: the base already has this user (as a clone of a used Common-Server may).
    run(api, name, [*useradd, login], ok=(0, USER_EXISTS))
    sudoers = f"{login} ALL=(ALL) NOPASSWD:ALL\n".encode()
    api.push_file(name, f"/etc/sudoers.d/ssp-{login}", sudoers, 0o440, 0, 0)
    # A new home has no ~/.ssh (Debian's /etc/skel holds none): make it through the file
    # API, which sets owner and mode in the same request.
    api.make_dir(name, f"/home/{login}/.ssh", 0o700, spec.uid, spec.uid)
    write_keys(api, name, login=login, keys=spec.keys, uid=spec.uid, gid=spec.uid)


def remove_members(api: LxdApi, spec: specs.Spec, members: Iterable[str]) -> tuple[str, ...]:
    """Remove every member's login but the owner's from a container made from a member's
    image, with its `authorized_keys` and its ssp sudoers file; the logins removed.

    A member's image is a snapshot of its publisher's container, so it holds the publisher's
    user, keys and `NOPASSWD: ALL` (setup_owner's), and those of anyone whose image it was
    made from in turn. Done when the container is made, it holds for every image, also those
    published before this check existed. Homes are kept (the image's files may be what it is
    for); the login is locked first, so a user that cannot be deleted still cannot log in.
    """
    others = sorted({specs.linux_user(m) for m in members} - {spec.login})
    if not others:
        return ()
    found = run(api, spec.name, ["getent", "passwd", *others], ok=(0, SOME_MISSING))
    removed = []
    for line in found.splitlines():
        fields = line.split(":")
        if len(fields) < 7 or fields[0] not in others:
            continue
        login, home = fields[0], fields[5]
        run(api, spec.name, ["usermod", "--lock", "--expiredate", "1", login], ok=(0, NO_SUCH_USER))
        api.delete_file(spec.name, f"/etc/sudoers.d/ssp-{login}")
        for where in sorted({home, f"/home/{login}"} - {""}):
            api.delete_file(spec.name, f"{where.rstrip('/')}/.ssh/authorized_keys")
        run(api, spec.name, ["userdel", login], ok=(0, NO_SUCH_USER, LOGGED_IN))
        removed.append(login)
    return tuple(removed)


def install_desktop(api: LxdApi, spec: specs.Spec) -> None:
    # A base fresh from its image has no package lists: without an update first, apt
    # finds none of the packages ("Unable to locate package").
    apt = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]
    run(api, spec.name, [*apt, "update", "-q"])
    run(api, spec.name, [*apt, "install", "-y", "--no-install-recommends", *DESKTOP_PACKAGES])


def push_keys(
    api: LxdApi, name: str, *, login: str, keys: tuple[str, ...], uid: int, gid: int
) -> None:
    """~/.ssh made right (`install -d` also mends an existing one's owner and mode), keys."""
    home_ssh = f"/home/{login}/.ssh"
    run(api, name, ["install", "-d", "-m", "700", "-o", str(uid), "-g", str(gid), home_ssh])
    write_keys(api, name, login=login, keys=keys, uid=uid, gid=gid)


def write_keys(
    api: LxdApi, name: str, *, login: str, keys: tuple[str, ...], uid: int, gid: int
) -> None:
    body = "".join(k.strip() + "\n" for k in keys).encode()
    api.push_file(name, f"/home/{login}/.ssh/authorized_keys", body, 0o600, uid, gid)

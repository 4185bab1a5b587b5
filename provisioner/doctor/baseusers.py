"""`ssp doctor`'s `images.uids`: the members' UIDs against the users the bases already have.

A container cloned from a base (and a shared server, where accounts are made) gets its
owner's user with the owner's host UID (`useradd -u UID`); a base whose own user has that UID
makes it fail with "useradd: UID 1000 is not unique". The bases' `/etc/passwd` is read through
the LXD adapter by the checkup flow; this is the pure comparison.
"""

from __future__ import annotations

from collections.abc import Mapping

from provisioner.doctor.checks import Check, not_applicable, passed, problem_found, skipped

NAME = "images.uids"


def passwd_uids(text: str) -> dict[int, str]:
    """UID → user name of an /etc/passwd; lines that are not `name:x:uid:...` are skipped."""
    found: dict[int, str] = {}
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[2].isdigit():
            found.setdefault(int(fields[2]), fields[0])
    return found


def check_base_uids(passwds: Mapping[str, str | None], users: Mapping[str, int]) -> Check:
    """PASSWDS: each base (or shared server) → its /etc/passwd (None: could not be read);
    USERS: member login → UID, from the policy."""
    if not passwds:
        return not_applicable(NAME, "no clone base and no shared server")
    clashes = []
    for base, text in sorted(passwds.items()):
        if text is None:
            continue
        taken = passwd_uids(text)
        for login, uid in sorted(users.items(), key=lambda u: u[1]):
            holder = taken.get(uid)
            if holder is not None and holder != login:
                clashes.append(f"{login}'s UID {uid} is user {holder!r} in {base}")
    unread = sorted(base for base, text in passwds.items() if text is None)
    not_read = f" (could not read /etc/passwd of {', '.join(unread)})" if unread else ""
    if clashes:
        return problem_found(
            NAME,
            "; ".join(clashes) + " (useradd: UID is not unique: their container or account "
            "cannot be made)" + not_read,
            "give the member a free UID in config/policy.yaml `users:` (the sample's start at "
            "1001; change the host's account and its files with it), or remove that user "
            "from the base and take its snapshot again",
        )
    read = sorted(set(passwds) - set(unread))
    if not read:
        return skipped(
            NAME, f"could not read /etc/passwd of {', '.join(unread)} (see images.clones)"
        )
    detail = f"no member's UID is taken by a user of {', '.join(read)}" + not_read
    return passed(NAME, detail)

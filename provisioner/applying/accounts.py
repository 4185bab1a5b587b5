"""Logins on a shared server (Common-Server): made, updated and locked inside it.

A member's account is a user inside the shared server's instance, not an instance of its
own. Its record is a `user.ssp.account.<login>` key in the instance's LXD config, which
nobody inside the server can write: that is how ssp tells a user it made (finished or half
made) from one that a package or an admin made, which it never takes over. The record names
the owner, and an account is never handed to another member: a login stays with the member
it was made for until an admin removes it, whatever logins the lab registers later.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from provisioner.applying import inside
from provisioner.applying.failures import server_failure
from provisioner.values import spec as specs
from provisioner.values import state
from provisioner.values.errors import LxdError
from provisioner.values.held import account_owner
from provisioner.values.outcomes import Done, Outcome, account_result
from provisioner.values.plandata import AccountAction, AccountVerb
from provisioner.values.policymodels import Policy
from provisioner.values.state import LxdApi

NO_SUCH_USER = 6  # usermod: the user does not exist (so there is nothing to lock)
NOT_IN_GROUP = 3  # gpasswd --delete: the user is not a member


def apply_account(
    action: AccountAction,
    *,
    policy: Policy,
    servers: Callable[[str], LxdApi],
    log: Callable[[str], None],
) -> Outcome:
    """Carry out one account action on its shared server; LXD's failures said plainly."""
    if action.verb == AccountVerb.KEEP:
        return account_outcome(action.account, Done.UNCHANGED, policy=policy, ipv4=action.ipv4)
    try:
        return _change(action, policy=policy, api=servers(action.account.instance), log=log)
    except LxdError as e:
        raise server_failure(policy, action, e) from e


def _change(
    action: AccountAction, *, policy: Policy, api: LxdApi, log: Callable[[str], None]
) -> Outcome:
    acc = action.account
    name, login = acc.instance, acc.name
    if action.verb == AccountVerb.LOCK:
        log(f"{name}: locking account {login}")
        inside.run(
            api, name, ["usermod", "--lock", "--expiredate", "1", login], ok=(0, NO_SUCH_USER)
        )
        api.delete_file(name, f"/home/{login}/.ssh/authorized_keys")
        api.set_config(name, {state.ACCOUNT + login: acc.label("locked")})
        return account_result(
            acc, Done.LOCKED, ok=True, message="login locked; the home directory is kept"
        )
    if action.verb == AccountVerb.CREATE:
        taken = _taken(api, name, login)
        if taken:
            log(f"{name}: not taking over {taken} '{login}'")
            return account_result(
                acc,
                Done.REFUSED,
                ok=False,
                message=f"a {taken} named '{login}' already exists on {name} and was not made "
                "by ssp, so it is not taken over; pick another name "
                f"(e.g. '{acc.owner.lower()}-{acc.server}'), or ask an admin to remove it",
            )
        # The account's record is written before the user is made: it is how the next run
        # tells a user of ours (finished or half made) from one that was there before.
        api.set_config(name, {state.ACCOUNT + login: acc.label("creating")})
    else:
        holder = _holder(api, name, login)
        if holder and holder != acc.owner.lower():
            log(f"{name}: not handing account '{login}' from {holder} to {acc.owner}")
            return account_result(
                acc,
                Done.REFUSED,
                ok=False,
                message=f"account '{login}' on {name} was made for {holder} and stays theirs "
                "until an admin removes it; nothing was changed: pick another name "
                f"(e.g. '{acc.owner.lower()}-{acc.server}')",
            )
        # No owner recorded (a label from before owners were): the update below records it.
    log(f"{name}: {action.verb} account {login}")
    if api.execute(name, ["getent", "passwd", login]).exit_code != 0:
        useradd = ["useradd", "--create-home", "--shell", "/bin/bash", login]
        inside.run(api, name, useradd, ok=(0, inside.USER_EXISTS))
    inside.run(api, name, ["usermod", "--unlock", "--expiredate", "", login], ok=(0, NO_SUCH_USER))
    group = (
        ["usermod", "--append", "--groups", "sudo", login]
        if acc.sudo
        else ["gpasswd", "--delete", login, "sudo"]
    )
    inside.run(api, name, group, ok=(0, NOT_IN_GROUP))
    uid = inside.number(api, name, ["id", "-u", login])
    gid = inside.number(api, name, ["id", "-g", login])
    inside.push_keys(api, name, login=login, keys=acc.keys, uid=uid, gid=gid)
    api.set_config(name, {state.ACCOUNT + login: acc.label()})
    done = Done.CREATED if action.verb == AccountVerb.CREATE else Done.UPDATED
    return account_outcome(acc, done, policy=policy, ipv4=api.instance(name).ipv4)


def _holder(api: LxdApi, name: str, login: str) -> str:
    """The owner the shared server's record of LOGIN names, read now ("" when none)."""
    return account_owner(api.instance(name).config.get(state.ACCOUNT + login, ""))


def _taken(api: LxdApi, name: str, login: str) -> str:
    """'user' or 'group' when the shared server already has one of that name, else ''."""
    for database in ("passwd", "group"):
        if api.execute(name, ["getent", database, login]).exit_code == 0:
            return "user" if database == "passwd" else "group"
    return ""


def account_outcome(
    acc: specs.AccountSpec, done: Done, *, policy: Policy, ipv4: tuple[str, ...]
) -> Outcome:
    """A working account's outcome, with what its owner needs to log in."""
    return dataclasses.replace(
        account_result(acc, done, ok=True, message=""),
        ipv4=ipv4,
        sudo=acc.sudo,
        expires=acc.expires,
        ssh_port=policy.shared_servers[acc.server].ssh_port,
    )

"""The plan's part for logins on shared servers (`kind: account`): what to create, update,
keep or lock, from the requests and what each server's labels record. Pure.
"""

from __future__ import annotations

import json

from provisioner.planning import allocate
from provisioner.values import spec as specs
from provisioner.values import state
from provisioner.values.models import AccountRequest
from provisioner.values.plandata import AccountAction, AccountVerb, Action, Inputs
from provisioner.values.requestpaths import request_stem


def account_actions(inputs: Inputs) -> list[Action]:
    """Accounts on the shared servers: create, update or keep each valid request's; lock
    one ssp made whose request is gone (never one whose request is on main but invalid)."""
    observed = allocate.by_name(inputs.servers)
    out: list[Action] = []
    desired: dict[tuple[str, str], specs.AccountSpec] = {}
    for item in sorted(inputs.valid, key=lambda i: i.path):
        if isinstance(item.request, AccountRequest):
            acc = specs.account_spec(item.request, item.path, inputs.policy)
            desired[(acc.instance, acc.name)] = acc
    for (instance, name), acc in desired.items():
        host = observed.get(instance)
        have = None if host is None else host.config.get(state.ACCOUNT + name)
        if have is None:
            out.append(AccountAction(account=acc, verb=AccountVerb.CREATE))
        elif have != acc.label():
            out.append(AccountAction(account=acc, verb=AccountVerb.UPDATE))
        else:  # reported, so its PR comment can be written again (a re-run after an outage)
            out.append(
                AccountAction(account=acc, verb=AccountVerb.KEEP, ipv4=host.ipv4 if host else ())
            )
    skipped_names = {request_stem(p) for p in inputs.skipped}
    for server_id, shared in sorted(inputs.policy.shared_servers.items()):
        inst = observed.get(shared.instance)
        if inst is None:
            continue
        for key, value in sorted(inst.config.items()):
            if not key.startswith(state.ACCOUNT):
                continue
            name = key.removeprefix(state.ACCOUNT)
            label = _account_label(value)
            if (inst.name, name) in desired or label.get("state") == "locked":
                continue
            request_path = str(label.get("request", ""))
            if request_path in inputs.skipped or name in skipped_names:
                continue  # its request is on main but invalid right now: leave it, it was reported
            out.append(
                AccountAction(
                    account=specs.AccountSpec(
                        name=name,
                        owner=str(label.get("owner", "")),
                        server=server_id,
                        instance=inst.name,
                        request_path=request_path,
                        keys=(),
                        sudo=False,
                        expires=inputs.today,
                    ),
                    verb=AccountVerb.LOCK,
                )
            )
    return out


def _account_label(value: str) -> dict[str, object]:
    """What a shared server's `user.ssp.account.<name>` records (see AccountSpec.label)."""
    try:
        data = json.loads(value)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}

"""LXD's failures said in the request's terms: which GPU is missing, which port is taken,
which base is gone, which shared server is stopped — and what to do about it.

LXD's own messages name devices and internals ("no device found", "forkstart: exit status
1"); a member reading the PR comment needs the GPU index, the port and the next step. Each
function returns the better `LxdError`, or the original one when it has nothing to add.
"""

from __future__ import annotations

from provisioner.host import subidfiles
from provisioner.host.ports import listening_ports
from provisioner.values import spec as specs
from provisioner.values import subids
from provisioner.values.errors import LxdError
from provisioner.values.plandata import AccountAction, AccountVerb
from provisioner.values.policymodels import Policy


def start_failure(spec: specs.Spec, error: LxdError) -> LxdError:
    """LXD's start failures for a missing GPU or a taken port, said in the request's terms."""
    text = str(error)
    for gpu in spec.gpus:
        if gpu.pci in text and "no device found" in text:
            return LxdError(
                f"GPU {gpu.index} ({gpu.model}, PCI {gpu.pci}) is not present on the host, so "
                f"{spec.name} cannot start with it; compare `ssp gpus` with config/hosts.yaml "
                f"(LXD: {text})"
            )
    if spec.config.get(specs.NVIDIA_RUNTIME) == "true" and "NVIDIA container tools" in text:
        return LxdError(
            f"{spec.name} cannot start with its GPUs: the policy's gpu_userspace is "
            "nvidia-runtime and this host lacks nvidia-container-cli; an admin must install "
            "NVIDIA's container toolkit (`ssp host init` says how) or choose "
            f"gpu_userspace: image (LXD: {text})"
        )
    if "raw.idmap" in spec.config and "forkstart" in text:
        # LXD saves a raw.idmap of any UID, then fails to start with only "forkstart: exit
        # status 1" when root may not map it: name the UID and the fix.
        files = (subids.SUBUID, subids.SUBGID)
        missing = [
            p for p in files if subids.undelegated(subids.parse(subidfiles.read(p)), [spec.uid])
        ]
        if missing:
            return LxdError(
                f"{spec.owner}'s UID {spec.uid} (mapped into {spec.name} for the share) is not "
                f"delegated to root in {' and '.join(map(str, missing))}, so LXD cannot start "
                f"it; run `ssp host init` (which adds it), then restart LXD, which reads those "
                f"files only when it starts (LXD: {text})"
            )
    ports = [p for p in (spec.ssh_port, spec.rdp_port) if p is not None]
    if "address already in use" in text:
        taken = [p for p in ports if f":{p}:" in text]
    elif "proxy device" in text:
        # LXD's proxy helper may die on the failed bind before it reports it, and LXD then
        # says only that it got no socket back: look at what listens on the host now.
        busy = listening_ports()
        taken = [p for p in ports if p in busy]
    else:
        taken = []
    if not taken:
        return error
    return LxdError(
        f"port {taken[0]} is already taken on the host by another program, so "
        f"{spec.name} cannot forward it (LXD: {text})"
    )


def source_failure(spec: specs.Spec, error: LxdError) -> LxdError:
    """A clone whose base or snapshot is gone, said in the policy's terms."""
    source = spec.source
    if source.get("type") == "copy" and (
        "Instance not found" in str(error) or "InstanceSnapshot not found" in str(error)
    ):
        return LxdError(
            f"image {spec.image} is cloned from {source['source']} (LXD project "
            f"{source.get('project', 'default')}), which does not exist; restore that snapshot "
            f"or correct images.{spec.image} in config/policy.yaml (LXD: {error})"
        )
    return error


def server_failure(policy: Policy, action: AccountAction, error: LxdError) -> LxdError:
    """A shared server found stopped or missing, said as such (not as a failed command)."""
    acc, text = action.account, str(error)
    where = (
        f"the shared server {acc.instance} ({acc.server}, LXD project "
        f"{policy.shared_servers[acc.server].project})"
    )
    done = {AccountVerb.CREATE: "made", AccountVerb.LOCK: "locked"}.get(action.verb, "changed")
    if "Instance is not running" in text:
        project = policy.shared_servers[acc.server].project
        then = "makes it" if action.verb == AccountVerb.CREATE else "does it"
        return LxdError(
            f"{where} is stopped, so account {acc.name} cannot be {done}; start it "
            f"(`lxc start {acc.instance} --project {project}`) and the next apply {then}"
        )
    if "Instance not found" in text:
        return LxdError(
            f"{where} does not exist, so account {acc.name} cannot be {done}; restore it, or "
            f"correct shared_servers.{acc.server} in config/policy.yaml"
        )
    return error

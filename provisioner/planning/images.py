"""The plan's part for members' images (`kind: image`): publish, keep or delete. Pure.

An image request is carried out once: while ssp's image under its alias records the same
source (container/snapshot), nothing is done. It is published from a snapshot, so the
container keeps running: the one the request names, or `ssp-image-<name>`, which ssp takes
when it is missing. An image whose request is gone (removed, or its lease ended) is deleted;
containers made from it keep their own copy. One whose request is on main but invalid now is
left alone, like a container's.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from provisioner.values import state
from provisioner.values.models import ContainerRequest, ImageRequest
from provisioner.values.plandata import Action, ImageReady, Inputs, Publish, Refuse, Unpublish
from provisioner.values.policymodels import Policy
from provisioner.values.requestpaths import image_alias, member_image, owner_folder, request_stem
from provisioner.values.state import Image, Instance

SNAPSHOT_PREFIX = "ssp-image-"


def member_users(inputs: Inputs) -> dict[str, bool]:
    """Whether each member's image (by alias) has useradd and sshd: as the image of the
    container it comes from (a request on main, else what the published image recorded)."""
    out = {
        alias: image.properties.get(state.IMAGE_USERS, "true") == "true"
        for image in inputs.images
        for alias in image.aliases
    }
    containers = {
        i.request.name: i.request for i in inputs.valid if isinstance(i.request, ContainerRequest)
    }
    for item in inputs.valid:
        req = item.request
        if isinstance(req, ImageRequest) and req.source in containers:
            base = containers[req.source].image or inputs.policy.defaults.image
            out[image_alias(req.owner, req.name)] = _users(inputs.policy, base, out)
    return out


def _users(policy: Policy, image_id: str, members: Mapping[str, bool]) -> bool:
    if member_image(image_id) is not None:
        return members.get(image_id, True)
    known = policy.images.get(image_id)
    return True if known is None else known.users


def use_refusal(
    image_id: str,
    owner: str,
    images: Sequence[Image],
    policy: Policy,
    publishing: Collection[str] = (),
) -> str:
    """Why a new container of OWNER may not start from IMAGE_ID ("" when it may).

    Only an image ssp published (its `ssp.managed` and `ssp.owner` properties, see
    `provisioner.applying.images`) is a member's image: any other alias in LXD's default
    project (an admin's backup of Common-Server, say) could hold anything, and its name says
    nothing about whose it is. An alias this pass publishes (PUBLISHING) is ssp's by then.
    """
    ref = member_image(image_id)
    if ref is None or image_alias(*ref) in publishing:
        return ""
    alias = image_alias(*ref)
    found = next((i for i in images if alias in i.aliases), None)
    if found is None or not found.managed:
        return (
            f"image '{alias}' is not an image ssp published for a `kind: image` request, so "
            "no container is made from it; use a lab image or a member's published image"
        )
    publisher = found.properties.get(state.IMAGE_OWNER, "")
    if publisher.lower() != ref[0].lower():
        return f"image '{alias}' was published for '{publisher}', not {ref[0]}; nothing was made"
    if publisher.lower() != owner.lower() and not policy.images_shared:
        return (
            f"image '{alias}' is {publisher}'s and the lab's policy does not share members' "
            "images; nothing was made"
        )
    return ""


def image_actions(inputs: Inputs) -> list[Action]:
    """Publish what is asked and not there, delete ssp's images nobody asks for any more."""
    have = {alias: image for image in inputs.images for alias in image.aliases}
    instances = {i.name: i for i in inputs.observed}
    users = member_users(inputs)
    out: list[Action] = []
    wanted: set[str] = set()
    for item in sorted(inputs.valid, key=lambda i: i.path):
        req = item.request
        if not isinstance(req, ImageRequest):
            continue
        alias = image_alias(req.owner, req.name)
        wanted.add(alias)
        snapshot = req.snapshot or SNAPSHOT_PREFIX + req.name
        current = have.get(alias)
        if current is not None and current.properties.get(state.IMAGE_SOURCE) == (
            f"{req.source}/{snapshot}"
        ):
            out.append(
                ImageReady(name=req.name, owner=req.owner, request_path=item.path, alias=alias)
            )
            continue
        inst = instances.get(req.source)
        refusal = _refusal(req, inst, snapshot)
        if refusal or inst is None:
            out.append(Refuse(name=req.name, request_path=item.path, message=refusal))
            continue
        out.append(
            Publish(
                name=req.name,
                owner=req.owner,
                request_path=item.path,
                alias=alias,
                instance=req.source,
                snapshot=snapshot,
                take_snapshot=req.snapshot is None and snapshot not in inst.snapshots,
                description=f"{req.owner}: {req.purpose}"[:200],
                users=users.get(alias, True),
                replace=current.fingerprint if current is not None else "",
            )
        )
    out += _deletions(inputs, wanted)
    return out


def _refusal(req: ImageRequest, inst: Instance | None, snapshot: str) -> str:
    """Why the image cannot be published now ("" when it can)."""
    if inst is None or not inst.managed:
        return (
            f"from: '{req.source}' is not in LXD yet; the image is published on the next "
            "apply after the container is made"
        )
    if inst.config.get(state.OWNER) != req.owner:
        return f"from: '{req.source}' belongs to {inst.config.get(state.OWNER)}, not {req.owner}"
    if req.snapshot is not None and req.snapshot not in inst.snapshots:
        found = ", ".join(inst.snapshots) or "none"
        return (
            f"snapshot: '{req.source}' has no snapshot '{req.snapshot}' (its snapshots: "
            f"{found}); nothing was published"
        )
    return ""


def _deletions(inputs: Inputs, wanted: set[str]) -> list[Action]:
    ended = {
        image_alias(i.request.owner, i.request.name)
        for i in inputs.expired
        if isinstance(i.request, ImageRequest)
    }
    skipped = {(owner_folder(p) or "", request_stem(p)) for p in inputs.skipped}
    out: list[Action] = []
    for image in sorted(inputs.images, key=_first_alias):
        alias = _first_alias(image)
        owner, _, name = alias.partition("/")
        if alias in wanted or image.properties.get(state.IMAGE_REQUEST) in inputs.skipped:
            continue
        if (owner, name) in skipped:
            continue  # its request is on main but invalid right now: reported, left alone
        out.append(
            Unpublish(
                name=name,
                owner=image.properties.get(state.IMAGE_OWNER, owner),
                request_path=image.properties.get(state.IMAGE_REQUEST, ""),
                alias=alias,
                fingerprint=image.fingerprint,
                reason="its lease ended" if alias in ended else "its request was removed",
            )
        )
    return out


def _first_alias(image: Image) -> str:
    return image.aliases[0] if image.aliases else image.fingerprint

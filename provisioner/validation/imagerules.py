"""The rules about members' images: `kind: image` requests and `image: <owner>/<name>`. Pure.

An image request publishes one of its owner's own containers. LXD keeps ssp's images in its
default project (ssp's project does not have images of its own), where every project can see
them, so who may start a container from a member's image is decided here: the member who
published it, or every member when the policy says `images_shared: true`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from provisioner.values.loaded import Loaded
from provisioner.values.models import ContainerRequest, ImageRequest
from provisioner.values.policymodels import Policy
from provisioner.values.problems import Problem, Severity
from provisioner.values.requestpaths import image_alias, member_image


def check_images(
    items: Sequence[Loaded], policy: Policy, held: Mapping[str, str] | None = None
) -> list[Problem]:
    """Image requests name one of their owner's containers; a container starts only from a
    member's image that is its owner's own (or shared by the policy) and is published.

    HELD: ssp's images by alias, with their owners, where known (the published snapshot at
    PR time): an alias that is not among them and that no request publishes is not ssp's."""
    published = {
        image_alias(i.request.owner, i.request.name).lower()
        for i in items
        if isinstance(i.request, ImageRequest)
    }
    containers: dict[str, list[str]] = {}
    for item in items:
        if isinstance(item.request, ContainerRequest):
            containers.setdefault(item.request.owner.lower(), []).append(item.request.name)
    out: list[Problem] = []
    for item in items:
        req = item.request
        if isinstance(req, ImageRequest):
            mine = sorted(containers.get(req.owner.lower(), []))
            if req.source not in mine:
                out.append(
                    item.problem(
                        ("from",),
                        "image.from",
                        f"from: '{req.source}' is not one of your containers (yours: "
                        f"{', '.join(mine) or 'none'}); an image is made from a container "
                        "of your own",
                    )
                )
        elif isinstance(req, ContainerRequest):
            out += _use(item, req, policy, published)
            out += _not_ssp(item, req, published, held)
    return out


def _use(item: Loaded, req: ContainerRequest, policy: Policy, published: set[str]) -> list[Problem]:
    ref = member_image(req.image)
    if ref is None:
        return []
    owner, name = ref
    if owner.lower() != item.folder.lower() and not policy.images_shared:
        return [
            item.problem(
                ("image",),
                "image.not_yours",
                f"image '{req.image}' is {owner}'s; a member's image is only for its owner "
                "(the lab's policy does not share members' images): use a lab image or "
                "publish your own",
            )
        ]
    if image_alias(owner, name).lower() not in published:
        return [
            item.problem(
                ("image",),
                "image.unpublished",
                f"image '{req.image}' is published by no request (requests/{owner}/{name}.yaml "
                "with kind: image): a new container cannot start from it",
                Severity.WARNING,
            )
        ]
    return []


def _not_ssp(
    item: Loaded, req: ContainerRequest, published: set[str], held: Mapping[str, str] | None
) -> list[Problem]:
    ref = member_image(req.image)
    if ref is None or held is None:
        return []
    alias = image_alias(*ref)
    publisher = held.get(alias)
    if publisher is None and alias.lower() in published:
        return []  # published when this is applied, before the container is made
    if publisher is not None and publisher == ref[0].lower():
        return []
    why = (
        "is not an image ssp published (the host's snapshot lists no such image of ssp's, "
        "and no request publishes it)"
        if publisher is None
        else f"was published for '{publisher}', not {ref[0]}"
    )
    return [
        item.problem(
            ("image",),
            "image.not_ssp",
            f"image '{req.image}' {why}: apply would refuse this container; use a lab image "
            "or a member's published image",
        )
    ]

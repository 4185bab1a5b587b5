"""Apply's part for members' images: publish one from a container's snapshot, delete one,
and make a container from one safely (ssp's images only; no other member's login inside).

The image's properties are its labels (`ssp.*`, see `provisioner.values.state`): ssp's mark, the
owner, the request and the commit it was published from, its source and whether it has
users. They are what the next plan compares, so a second apply publishes nothing again.
"""

from __future__ import annotations

from collections.abc import Callable

from provisioner.applying import inside
from provisioner.planning.images import use_refusal
from provisioner.values import spec as specs
from provisioner.values import state
from provisioner.values.outcomes import Done, Outcome, image_result
from provisioner.values.plandata import Publish, Unpublish
from provisioner.values.policymodels import Policy
from provisioner.values.requestpaths import member_image
from provisioner.values.state import LxdApi


def publish(lxd: LxdApi, action: Publish, *, sha: str, log: Callable[[str], None]) -> Outcome:
    source = f"{action.instance}/{action.snapshot}"
    if action.take_snapshot:
        log(f"{action.name}: snapshotting {action.instance} as {action.snapshot}")
        lxd.snapshot(action.instance, action.snapshot)
    if action.replace:  # the request now names another source: the old image goes first
        log(f"{action.name}: deleting the image published from an earlier source")
        lxd.delete_image(action.replace)
    log(f"{action.name}: publishing {source} as image {action.alias}")
    properties = {
        state.IMAGE_MANAGED: "true",
        state.IMAGE_OWNER: action.owner,
        state.IMAGE_REQUEST: action.request_path,
        state.IMAGE_SHA: sha,
        state.IMAGE_SOURCE: source,
        state.IMAGE_USERS: "true" if action.users else "false",
    }
    lxd.publish_image(
        action.instance, action.snapshot, action.alias, properties, action.description
    )
    return image_result(
        action,
        Done.PUBLISHED,
        message=f"published from {source}; start a container from it with `image: {action.alias}`",
    )


def unpublish(lxd: LxdApi, action: Unpublish, *, log: Callable[[str], None]) -> Outcome:
    log(f"{action.alias}: deleting image ({action.reason})")
    lxd.delete_image(action.fingerprint)
    return image_result(
        action,
        Done.DELETED,
        message=f"{action.reason}: image deleted; containers made from it keep their files",
    )


def member_refusal(lxd: LxdApi, spec: specs.Spec, policy: Policy) -> str:
    """Why SPEC may not be made from its member's image, asked of LXD just before it would
    be ("" when it may, or for a lab image): the plan looked at what LXD held when it was
    made, and a publish earlier in this pass may have failed under an alias that is taken."""
    if member_image(spec.image) is None:
        return ""
    return use_refusal(spec.image, spec.owner, lxd.images(), policy)


def remove_members(lxd: LxdApi, spec: specs.Spec, policy: Policy) -> str:
    """In a container new from a member's image, every member's login but its owner's
    removed (see `inside.remove_members`); what apply's output says about it ("" if none)."""
    if member_image(spec.image) is None:
        return ""
    removed = inside.remove_members(lxd, spec, [*policy.users, *policy.admins])
    if not removed:
        return ""
    return (
        f"the image's other member logins were removed ({', '.join(removed)}: their keys and "
        "sudo rights too; their home folders are kept)"
    )

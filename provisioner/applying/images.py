"""Apply's part for members' images: publish one from a container's snapshot, delete one.

The image's properties are its labels (`ssp.*`, see `provisioner.values.state`): ssp's mark, the
owner, the request and the commit it was published from, its source and whether it has
users. They are what the next plan compares, so a second apply publishes nothing again.
"""

from __future__ import annotations

from collections.abc import Callable

from provisioner.values import state
from provisioner.values.outcomes import Done, Outcome, image_result
from provisioner.values.plandata import Publish, Unpublish
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

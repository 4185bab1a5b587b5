"""Where request files live: `requests/<owner login>/<name>.yaml`, and what a path says.

The folder is the owner (who may change the file), the file's stem is the container's or
account's name. Every module that reads a path for either asks here.
"""

from __future__ import annotations

import re

ROOT = "requests"
LAYOUT = f"{ROOT}/<your login>/<name>.yaml"
REQUEST_PATH = re.compile(rf"^{ROOT}/(?P<owner>[^/]+)/(?P<stem>[^/]+)\.yaml$")


def request_path(owner: str, name: str) -> str:
    return f"{ROOT}/{owner}/{name}.yaml"


def is_request_path(path: str) -> bool:
    return REQUEST_PATH.match(path) is not None


def under_requests(path: str) -> bool:
    """Anything under requests/ (a request or not: a README, a stray file)."""
    return path.startswith(ROOT + "/")


def owner_folder(path: str) -> str | None:
    """The owner folder of anything under requests/<folder>/…, else None."""
    parts = path.split("/")
    return parts[1] if len(parts) >= 3 and parts[0] == ROOT else None


def request_owner(path: str) -> str:
    """The owner a request path names, "" when it is not one."""
    match = REQUEST_PATH.match(path)
    return match["owner"] if match else ""


def request_stem(path: str) -> str:
    """The name a request file gives (its file name without `.yaml`)."""
    return path.rsplit("/", 1)[-1].removesuffix(".yaml")


def member_image(image: str | None) -> tuple[str, str] | None:
    """`(owner, name)` of a member's image reference (`alice/base`); None for a lab image."""
    if image is None or "/" not in image:
        return None
    owner, _, name = image.partition("/")
    return owner, name


def image_alias(owner: str, name: str) -> str:
    """The LXD image alias of a member's image: its request's folder and name."""
    return f"{owner}/{name}"

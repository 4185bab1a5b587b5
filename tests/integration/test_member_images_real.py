"""Members' images on a real LXD (`kind: image`): published from a snapshot of a container
with a file in it, a container of the same owner started from it has that file, a second
pass changes nothing, another member may not use it (refused on its line), and removing the
image request deletes the image while the container made from it keeps running. Aliases are
the daemon's, seen from every project: the test's names are its own, and the image is
deleted whatever happens."""

from __future__ import annotations

import pytest
import yaml

from integration.helpers import (
    EXPIRES,
    NOW,
    Adapters,
    LabRepo,
    apply_pass,
    in_instance,
    lxc,
    lxc_query,
    outcomes,
)
from provisioner.git import files as gitfiles
from provisioner.validation.validate import validate_tree

pytestmark = pytest.mark.lxd


def _image_request(owner: str, name: str, source: str) -> tuple[str, bytes]:
    doc = {
        "kind": "image",
        "name": name,
        "owner": owner,
        "purpose": "A base with my tools",
        "from": source,
        "expires": EXPIRES,
    }
    return f"requests/{owner}/{name}.yaml", yaml.safe_dump(doc, sort_keys=False).encode()


def _alias_exists(alias: str) -> bool:
    return (
        lxc("image", "alias", "list", "--format", "csv", check=False).stdout.count(f"{alias},") == 1
    )


def test_an_image_is_published_started_from_kept_to_its_owner_and_deleted(
    lab: LabRepo, adapters: Adapters, lxd_project: str, suffix: str
) -> None:
    base, image, child = f"src-{suffix}", f"img-{suffix}", f"kid-{suffix}"
    alias = f"alice/{image}"
    source = lab.container(base, image="busybox")
    assert apply_pass(lab, adapters, source).result.ok
    in_instance(lxd_project, base, "sh", "-c", "echo tools > /root/made")
    published = _image_request("alice", image, base)
    try:
        # The image and the container from it in one pass: images are published first.
        kid = lab.container(child, image=alias)
        done = apply_pass(lab, adapters, source, published, kid)
        got = outcomes(done)
        assert got[image][:2] == ("published", True), got
        assert got[child][:2] == ("created", True), got
        assert _alias_exists(alias)
        assert in_instance(lxd_project, child, "cat", "/root/made").stdout == "tools\n"
        # Published from a snapshot ssp took: the source container kept running.
        assert in_instance(lxd_project, base, "true").returncode == 0
        assert f"ssp-image-{image}" in adapters.main.instance(base).snapshots

        before = len(adapters.mutations())
        again = apply_pass(lab, adapters, source, published, kid)
        assert outcomes(again)[image][0] == "unchanged"
        assert [a.detail for a in again.plan.changes] == []
        assert adapters.mutations()[before:] == []

        # Another member's request naming it is refused on the `image:` line.
        theirs = lab.container(f"bob-{suffix}", owner="bob", image=alias)
        lab.write(source, published, kid, theirs)
        found = validate_tree(gitfiles.worktree(lab.root), NOW).problems
        refusal = [p for p in found if p.rule == "image.not_yours"]
        assert [p.path for p in refusal] == [theirs[0]]
        line = theirs[1].decode().splitlines().index(f"image: {alias}") + 1
        assert refusal[0].line == line
        assert "is alice's" in refusal[0].message

        # The request removed: the image goes, the container made from it keeps its files.
        gone = apply_pass(lab, adapters, source, kid)
        assert outcomes(gone)[image][:2] == ("deleted", True), outcomes(gone)
        assert outcomes(gone)[child][0] == "unchanged"
        assert not _alias_exists(alias)
        assert in_instance(lxd_project, child, "cat", "/root/made").stdout == "tools\n"
    finally:
        lxc("image", "delete", alias, check=False)


@pytest.mark.slow
def test_a_shared_image_keeps_none_of_its_publishers_logins(
    lab: LabRepo, adapters: Adapters, lxd_project: str, suffix: str
) -> None:
    """Security finding 2: alice publishes an image of her Debian container (her user, her
    key, her NOPASSWD sudoers file inside); bob's container from it has none of them, only
    his own login, and the apply output says what was removed."""
    lab.settings["images_shared"] = True
    base, image, child = f"pub-{suffix}", f"shr-{suffix}", f"bobs-{suffix}"
    alias = f"alice/{image}"
    source = lab.container(base)  # the lab's Debian clone: users, keys, sudo
    assert apply_pass(lab, adapters, source).result.ok
    assert in_instance(lxd_project, base, "test", "-f", "/etc/sudoers.d/ssp-alice").returncode == 0
    published = _image_request("alice", image, base)
    try:
        theirs = lab.container(child, owner="bob", image=alias)
        done = apply_pass(lab, adapters, source, published, theirs)
        got = outcomes(done)
        assert got[image][:2] == ("published", True), got
        assert got[child][:2] == ("created", True), got
        assert "other member logins were removed (alice" in got[child][2]

        def inside(*argv: str) -> int:
            return in_instance(lxd_project, child, *argv, check=False).returncode

        assert inside("getent", "passwd", "alice") == 2  # no alice user at all
        assert inside("test", "-e", "/home/alice/.ssh/authorized_keys") == 1
        assert inside("test", "-e", "/etc/sudoers.d/ssp-alice") == 1
        keys = in_instance(lxd_project, child, "cat", "/home/bob/.ssh/authorized_keys").stdout
        assert keys == lab.keys["bob"].public + "\n"
        grants = in_instance(lxd_project, child, "grep", "-rh", "NOPASSWD", "/etc/sudoers.d")
        assert grants.stdout == "bob ALL=(ALL) NOPASSWD:ALL\n"
        # The publisher's own container is untouched.
        assert in_instance(lxd_project, base, "getent", "passwd", "alice").returncode == 0
    finally:
        lxc("image", "delete", alias, check=False)


def test_an_alias_ssp_did_not_publish_is_refused_and_nothing_is_made(
    lab: LabRepo, adapters: Adapters, lxd_project: str, suffix: str
) -> None:
    """Security finding 3: an alias in LXD's default project that looks like a member's
    image (`alice/<name>`, made by hand on an image without ssp's properties, such as an
    admin's backup) is never a container's source: apply refuses the request and makes
    nothing, whether or not an image request claims the alias too (its publish fails, and
    the container is refused again just before it would be made)."""
    name, base, kid = f"hand-{suffix}", f"hsrc-{suffix}", f"hkid-{suffix}"
    alias = f"alice/{name}"
    fingerprint = lxc("image", "info", "ssp-busybox").stdout.split("Fingerprint: ")[1].split()[0]
    lxc("image", "alias", "create", alias, fingerprint)
    try:
        kid_request = lab.container(kid, image=alias)
        done = apply_pass(lab, adapters, kid_request)
        assert outcomes(done)[kid][:2] == ("refused", False), outcomes(done)
        assert "is not an image ssp published" in outcomes(done)[kid][2]
        assert lxc_query("/1.0/instances", lxd_project) == []

        # An image request for the same alias: the plan would publish it first, LXD refuses
        # the publish (the alias is taken), and the container is refused at create time.
        source = lab.container(base, image="busybox")
        assert apply_pass(lab, adapters, source).result.ok
        claim = _image_request("alice", name, base)
        claimed = apply_pass(lab, adapters, source, claim, kid_request)
        got = outcomes(claimed)
        assert got[name][:2] == ("failed", False), got
        assert got[kid][:2] == ("refused", False), got
        assert "is not an image ssp published" in got[kid][2]
        assert [i.name for i in adapters.main.instances()] == [base]
    finally:
        lxc("image", "alias", "delete", alias, check=False)

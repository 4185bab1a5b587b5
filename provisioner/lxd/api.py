"""The LXD adapter: `LxdApi` against a real daemon, through pylxd's raw API tree.

With `provisioner.lxd.conn` (the connection) and `provisioner.lxd.host` (the host side), the
only modules that import `pylxd` (enforced by import-linter). It speaks to the daemon's unix
socket, scoped to one LXD project, and turns what comes back into the plain
`provisioner.values.state` types; every pylxd or requests exception becomes `LxdError` (chained), so
the core never sees a pylxd object. It uses `client.api` (URLs and JSON) rather than pylxd's
models: one request lists every instance with its state, no stale `sync()`, no model warnings.
Only `execute` borrows the model, for its stdin/stdout/stderr websockets.

It also implements `provisioner.values.state.HostApi` (server info, the project and its profile,
storage pools, networks, GPUs LXD sees) for `ssp host init` and `ssp doctor`.

Every HTTP request it sends is recorded in `Lxd.requests`, so tests and benchmarks can show
that a no-op apply mutates nothing. It never reads the environment: the CLI passes `lxd_dir`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from urllib import parse

from pylxd import exceptions as pylxd_errors
from pylxd.models import Instance as PylxdInstance

from provisioner.lxd.backups import LxdBackups
from provisioner.lxd.conn import not_found
from provisioner.lxd.host import LxdHost
from provisioner.lxd.wire import (
    EXEC_RETRY_S,
    EXEC_TRIES,
    MANAGED_PREFIXES,
    POLL_S,
    device_map,
    ipv4_addresses,
    perm_headers,
    quiet_ws4py_shutdown_race,
    released_by_gc,
    source_text,
    to_instance,
)
from provisioner.values.errors import LxdError
from provisioner.values.idranges import IdMapUse, use_of
from provisioner.values.state import IMAGE_PROJECT, Devices, ExecResult, Image, Instance, image_of

# How long a delete waits for an operation LXD is still running on the instance, and how often
# it asks again.
BUSY_WAIT_S = 30.0
BUSY_POLL_S = 0.5


class Lxd(LxdHost, LxdBackups):
    """`LxdApi` on one project of a daemon reached by its unix socket. Connects on first use.

    Safe to share between threads (apply makes new containers concurrently): each thread
    gets its own connection, since a `requests.Session` is not meant to be shared.
    """

    # -- reading ----------------------------------------------------------------------------

    def instances(self) -> list[Instance]:
        """Every instance of the project with state and snapshots: one GET (recursion=2)."""
        what = f"list instances of LXD project {self.project!r}"
        response = self._send(what, self._api.instances.get, params={"recursion": 2})
        return [to_instance(raw) for raw in response.json()["metadata"]]

    def all_instances(self) -> dict[str, list[Instance]]:
        """Every instance of every project of the daemon, with state and snapshots, by
        project: one GET (`all-projects=true&recursion=2`; LXD 5.0.2 answers it with each
        instance's `project`). A no-op pass needs no other listing of instances."""
        got = self._send(
            "list the host's instances in all projects",
            self._unscoped_api.instances.get,
            params={"all-projects": "true", "recursion": 2},
        )
        found: dict[str, list[Instance]] = {}
        for raw in got.json()["metadata"]:
            found.setdefault(str(raw.get("project") or "default"), []).append(to_instance(raw))
        return found

    def id_maps(self) -> list[IdMapUse]:
        """Every instance's host ID blocks, in every project of the daemon: one GET."""
        got = self._send(
            "list the host's instances in all projects",
            self._unscoped_api.instances.get,
            params={"all-projects": "true", "recursion": 1},
        )
        return [
            use_of(str(m.get("project") or "default"), str(m["name"]), dict(m.get("config") or {}))
            for m in got.json()["metadata"]
        ]

    def instance(self, name: str) -> Instance:
        """One instance with state and snapshots (recursion=1); LxdError "not found" if absent."""
        try:
            response = self._send(
                f"read instance {name!r}", self._api.instances[name].get, params={"recursion": 1}
            )
        except LxdError as e:
            if not_found(e):
                raise LxdError(
                    f"instance {name!r} not found in LXD project {self.project!r}"
                ) from e
            raise
        return to_instance(response.json()["metadata"])

    def exists(self, name: str) -> bool:
        try:
            self._send(f"look up instance {name!r}", self._api.instances[name].get)
        except LxdError as e:
            if not_found(e):
                return False
            raise
        return True

    # -- lifecycle --------------------------------------------------------------------------

    def create(
        self,
        name: str,
        source: Mapping[str, str],
        config: Mapping[str, str],
        devices: Devices,
        profiles: Sequence[str],
        description: str,
        target: str = "",
    ) -> None:
        """Create a stopped instance from `source` (copy or image) and wait until it exists;
        in a cluster, on member `target` ("": where LXD chooses)."""
        body = {
            "name": name,
            "source": dict(source),
            "config": dict(config),
            "devices": device_map(devices),
            # Always sent: a copy without profiles fails on LXD 5.0 ("No root device").
            "profiles": list(profiles),
            "description": description,
        }
        what = f"create instance {name!r} from {source_text(source)}"
        if target:
            what += f" on cluster member {target!r}"
        # LXD 5.0.2 cannot copy an instance of another project onto another cluster member
        # ("Failed to get address of instance's member"): the copy is made on the member that
        # holds the source, then moved (a stopped instance moves between members).
        made_on = self._source_member(source) if target else ""
        made_on = made_on or target
        params = {"target": made_on} if made_on else {}
        self._send(what, self._api.instances.post, json=body, params=params)
        if made_on != target:
            self._send(
                f"move instance {name!r} from cluster member {made_on!r} to {target!r}",
                self._api.instances[name].post,
                json={"name": name, "migration": True, "live": False},
                params={"target": target},
            )

    def _source_member(self, source: Mapping[str, str]) -> str:
        """The member holding a copy's source in another project ("" for any other source)."""
        project = source.get("project", self.project)
        if source.get("type") != "copy" or project == self.project:
            return ""
        base = source["source"].split("/", 1)[0]
        got = self._send(
            f"find {base!r} (project {project}) in the cluster",
            self._server_api.instances[base].get,
            params={"project": project},
        )
        return str(got.json()["metadata"].get("location") or "")

    def replace(
        self,
        name: str,
        config: Mapping[str, str],
        devices: Devices,
        profiles: Sequence[str],
        description: str,
    ) -> None:
        """PUT the whole local config/devices/profiles/description, keeping LXD's own keys."""
        what = f"update instance {name!r}"
        node = self._api.instances[name]
        current = self._send(what, node.get)
        observed = current.json()["metadata"]
        kept = {k: v for k, v in observed["config"].items() if k.startswith(MANAGED_PREFIXES)}
        body = {
            "architecture": observed["architecture"],
            "ephemeral": observed["ephemeral"],
            "stateful": observed.get("stateful", False),
            "config": {**kept, **config},
            "devices": device_map(devices),
            "profiles": list(profiles),
            "description": description,
        }
        # If-Match: refuse (412) rather than overwrite a change made since our GET.
        etag = current.headers.get("ETag")
        self._send(what, node.put, json=body, headers={"If-Match": etag} if etag else {})

    def set_config(self, name: str, changes: Mapping[str, str | None]) -> None:
        """PATCH config keys; a None value removes the key.

        LXD 5.0 empties the description on a PATCH that leaves it out, so the current one
        is sent back (read together with its ETag, so a change made meanwhile is refused)."""
        what = f"set config {sorted(changes)} on {name!r}"
        node = self._api.instances[name]
        current = self._send(what, node.get)
        body = {"config": dict(changes), "description": current.json()["metadata"]["description"]}
        etag = current.headers.get("ETag")
        self._send(what, node.patch, json=body, headers={"If-Match": etag} if etag else {})

    def _change_state(self, name: str, action: str, **options: object) -> None:
        body = {"action": action, **options}
        self._send(f"{action} instance {name!r}", self._api.instances[name].state.put, json=body)

    def start(self, name: str) -> None:
        self._change_state(name, "start")

    def stop(self, name: str, timeout_s: int = 60) -> None:
        """A clean shutdown, forced only when it does not stop in time; no-op when stopped."""
        # pylxd's stop() defaults to force=True; ask init to shut down first.
        error = LxdError(f"stop instance {name!r}: still running")
        for options in ({"timeout": timeout_s, "force": False}, {"force": True}):
            if self._state(name)["status"] == "Stopped":
                return
            try:
                self._change_state(name, "stop", **options)
                return
            except LxdError as e:  # timed out, or it stopped by itself meanwhile
                error = e
        if self._state(name)["status"] != "Stopped":
            raise error

    def snapshot(self, name: str, snapshot: str) -> None:
        body = {"name": snapshot, "stateful": False}
        what = f"snapshot {name!r} as {snapshot!r}"
        self._send(what, self._api.instances[name].snapshots.post, json=body)

    def delete_snapshot(self, name: str, snapshot: str) -> None:
        """Delete one of an instance's snapshots (waits for LXD's operation)."""
        what = f"delete snapshot {snapshot!r} of {name!r}"
        self._send(what, self._api.instances[name].snapshots[snapshot].delete)

    def restore_snapshot(self, name: str, snapshot: str) -> None:
        """Roll a stopped instance back to one of its snapshots (a PUT with `restore`)."""
        what = f"restore {name!r} to snapshot {snapshot!r}"
        self._send(what, self._api.instances[name].put, json={"restore": snapshot})

    def delete(self, name: str) -> None:
        """Delete a stopped instance (LXD refuses running and protected ones).

        One LXD is still busy with is waited for, a bounded time: after a failed start, LXD
        5.0.2 answers the start and then runs a "stop" operation of its own for a moment, and
        an apply right after (removing that half-made instance) met "Instance is busy running a
        "stop" operation"."""
        deadline = time.monotonic() + BUSY_WAIT_S
        while True:
            try:
                self._send(f"delete instance {name!r}", self._api.instances[name].delete)
                return
            except LxdError as e:
                if "is busy running" not in str(e) or time.monotonic() > deadline:
                    raise
            time.sleep(BUSY_POLL_S)

    def rename(self, name: str, new_name: str) -> None:
        """Rename a stopped instance (POST with the new name; LXD refuses a running one)."""
        what = f"rename instance {name!r} to {new_name!r}"
        self._send(what, self._api.instances[name].post, json={"name": new_name})

    # -- inside the instance ----------------------------------------------------------------

    def execute(self, name: str, argv: Sequence[str], stdin: str | None = None) -> ExecResult:
        """Run argv (a list, never a shell string) in a running instance; no time limit.

        A websocket that breaks under the command (a busy host, several commands at once)
        is tried again, up to EXEC_TRIES times in all: so the commands given must be safe to
        run twice, as apply's are (each accepts "already done").
        """
        if not argv:
            raise LxdError(f"run in {name!r}: no command given")
        quiet_ws4py_shutdown_race()
        model = PylxdInstance(self._connect(), name=name)
        with self._errors(f"run {argv[0]!r} in {name!r}"):
            for attempt in range(1, EXEC_TRIES + 1):
                try:
                    with released_by_gc():
                        result = model.execute(list(argv), stdin_payload=stdin)
                    break
                except pylxd_errors.LXDAPIException as e:
                    if "command not found" in str(e).lower():
                        raise LxdError(f"command not found in {name}: {argv[0]}") from e
                    raise
                except OSError:  # the websocket broke (requests' errors are OSErrors too)
                    if attempt == EXEC_TRIES:
                        raise
                    time.sleep(EXEC_RETRY_S * attempt)
        return ExecResult(int(result.exit_code), str(result.stdout), str(result.stderr))

    def push_file(self, name: str, path: str, data: bytes, mode: int, uid: int, gid: int) -> None:
        """Write a file with exactly this owner and mode; works on stopped instances.

        The directory must exist. LXD 5.0 keeps an existing file's owner and mode when it
        overwrites it (`X-LXD-modify-perm` is newer), so there the old file goes first."""
        headers = perm_headers(mode, uid, gid) | {"X-LXD-type": "file", "X-LXD-write": "overwrite"}
        if self._connect().has_api_extension("instances_files_modify_permissions"):
            headers["X-LXD-modify-perm"] = "uid,gid,mode"
        else:
            self.delete_file(name, path)
        what, files = f"write {path} in {name!r}", self._api.instances[name].files
        self._send(what, files.post, params={"path": path}, data=data, headers=headers)

    def make_dir(self, name: str, path: str, mode: int, uid: int, gid: int) -> None:
        """Create a directory; an existing one keeps its owner and mode. The parent must exist."""
        headers = perm_headers(mode, uid, gid) | {"X-LXD-type": "directory"}
        files = self._api.instances[name].files
        self._send(f"make {path} in {name!r}", files.post, params={"path": path}, headers=headers)

    def delete_file(self, name: str, path: str) -> None:
        """Remove a file; one that is not there is fine (a missing instance is not)."""
        files = self._api.instances[name].files
        try:
            self._send(f"delete {path} in {name!r}", files.delete, params={"path": path})
        except LxdError as e:
            # LXD answers 404 for both; only the instance's says "Instance not found".
            if not not_found(e) or "instance" in str(e.__cause__).lower():
                raise

    def wait_ipv4(self, name: str, timeout_s: float) -> tuple[str, ...]:
        """The instance's IPv4 addresses once it has one; () if none came within timeout_s."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = ipv4_addresses(self._state(name))
            if found or time.monotonic() >= deadline:
                return found
            time.sleep(POLL_S)

    # -- images -----------------------------------------------------------------------------
    # ssp's project has no images of its own (features.images=false): they are the default
    # project's, seen from every project. Aliases may hold '/', so they are sent quoted.

    def images(self) -> list[Image]:
        """ssp's images (`ssp.managed=true` in their properties): one GET (recursion=1)."""
        got = self._send("list images", self._api.images.get, params={"recursion": 1})
        found = [
            Image(
                fingerprint=str(m["fingerprint"]),
                aliases=tuple(str(a["name"]) for a in m.get("aliases") or ()),
                properties={str(k): str(v) for k, v in (m.get("properties") or {}).items()},
                description=str((m.get("properties") or {}).get("description", "")),
            )
            for m in got.json()["metadata"]
        ]
        return [i for i in found if image_of(i.properties, self.project)]

    def publish_image(
        self,
        name: str,
        snapshot: str,
        alias: str,
        properties: Mapping[str, str],
        description: str,
    ) -> str:
        """Publish a snapshot as an image with one alias (`lxc publish NAME/SNAP --alias`);
        the instance keeps running. Returns the new image's fingerprint."""
        body = {
            "source": {"type": "snapshot", "name": f"{name}/{snapshot}"},
            "aliases": [{"name": alias, "description": description}],
            "properties": {**properties, IMAGE_PROJECT: self.project, "description": description},
            "public": False,
        }
        what = f"publish {name!r} snapshot {snapshot!r} as image {alias!r}"
        node = self._api.images.aliases[parse.quote(alias, safe="")]
        # LXD makes the image before it adds the alias: publishing under an alias that
        # exists would fail only then, and leave an image without an alias behind (seen).
        if self._get_or_none(f"read image alias {alias!r}", node) is not None:
            raise LxdError(f"{what}: the image alias already exists")
        self._send(what, self._api.images.post, json=body)
        got = self._send(f"read image alias {alias!r}", node.get)
        return str(got.json()["metadata"]["target"])

    def delete_image(self, fingerprint: str) -> None:
        """Delete an image with its aliases (instances made from it keep their copy)."""
        node = self._api.images[fingerprint]
        self._send(f"delete image {fingerprint[:12]}", node.delete)

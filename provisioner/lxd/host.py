"""The LXD adapter's host side (`provisioner.values.state.HostApi`): server info, the project and
its profile, storage pools, networks and the GPUs LXD sees, for `ssp host init` and
`ssp doctor`. Server-wide requests go without `?project=`, since the project may not exist.
"""

from __future__ import annotations

from provisioner.lxd.conn import LxdConnection, not_found
from provisioner.lxd.wire import REQUEST_TIMEOUT_S, card_of, device_map
from provisioner.values.errors import LxdError
from provisioner.values.gpuinventory import Card
from provisioner.values.state import Pool, Profile, Project, ServerInfo


class LxdHost(LxdConnection):
    def server(self) -> ServerInfo:
        """Version and API extensions, from the `GET /1.0` a new client starts with."""
        info = self._server_connect().host_info
        return ServerInfo(
            version=str(info.get("environment", {}).get("server_version", "")),
            api_extensions=frozenset(info.get("api_extensions") or ()),
        )

    def read_project(self) -> Project | None:
        if self.require_project:
            self._connect()  # it reads the project: no second request for it
            if self._seen_project is not None:
                seen = self._seen_project
                return Project(
                    seen["name"], seen.get("description") or "", dict(seen.get("config") or {})
                )
        got = self._get_or_none(
            f"read LXD project {self.project!r}", self._server_api.projects[self.project]
        )
        if got is None:
            return None
        meta = got.json()["metadata"]
        return Project(meta["name"], meta.get("description") or "", dict(meta.get("config") or {}))

    def create_project(self, project: Project) -> None:
        body = {
            "name": project.name,
            "description": project.description,
            "config": dict(project.config),
        }
        self._send(
            f"create LXD project {project.name!r}", self._server_api.projects.post, json=body
        )

    def update_project(self, project: Project) -> None:
        """PUT the whole config: on LXD 5.0 a project PATCH replaces the config anyway."""
        what = f"update LXD project {project.name!r}"
        self._seen_project = None  # read again from now on
        node = self._server_api.projects[project.name]
        etag = self._send(what, node.get).headers.get("ETag")
        body = {"description": project.description, "config": dict(project.config)}
        self._send(what, node.put, json=body, headers={"If-Match": etag} if etag else {})

    def read_profile(self, name: str) -> Profile | None:
        what = f"read profile {name!r} of LXD project {self.project!r}"
        got = self._get_or_none(what, self._api.profiles[name])
        if got is None:
            return None
        meta = got.json()["metadata"]
        return Profile(
            meta["name"],
            meta.get("description") or "",
            dict(meta.get("config") or {}),
            device_map(meta.get("devices")),
        )

    def update_profile(self, profile: Profile) -> None:
        what = f"update profile {profile.name!r} of LXD project {self.project!r}"
        node = self._api.profiles[profile.name]
        etag = self._send(what, node.get).headers.get("ETag")
        body = {
            "description": profile.description,
            "config": dict(profile.config),
            "devices": device_map(profile.devices),
        }
        self._send(what, node.put, json=body, headers={"If-Match": etag} if etag else {})

    def server_name(self) -> str:
        """This daemon's name: its cluster member name in a cluster (from `GET /1.0`)."""
        environment = self._connect().host_info.get("environment") or {}
        return str(environment.get("server_name") or "")

    def members(self) -> dict[str, str]:
        """In an LXD cluster, each member's name → its status ("Online", "Offline", ...), in
        one GET; {} on a single server (known from the `GET /1.0` the connection began with)."""
        environment = self._connect().host_info.get("environment") or {}
        if not environment.get("server_clustered"):
            return {}
        what = "list the LXD cluster's members"
        got = self._send(what, self._api.cluster.members.get, params={"recursion": 1})
        return {m["server_name"]: m["status"] for m in got.json()["metadata"]}

    def member_name(self) -> str:
        """This daemon's cluster member name ("" on a single server), from `GET /1.0`."""
        environment = self._connect().host_info.get("environment") or {}
        return (
            str(environment.get("server_name") or "") if environment.get("server_clustered") else ""
        )

    def storage_pool(self, name: str, member: str = "") -> Pool | None:
        """The pool and its space; in a cluster, on `member` ("": the member answering)."""
        node = self._server_api.storage_pools[name]
        got = self._get_or_none(f"read storage pool {name!r}", node)
        if got is None:
            return None
        what = f"read the space of storage pool {name!r}" + (f" on {member}" if member else "")
        params = {"target": member} if member else {}
        space = self._send(what, node.resources.get, params=params)
        used = space.json()["metadata"].get("space") or {}
        return Pool(
            name,
            str(got.json()["metadata"].get("driver") or ""),
            int(used.get("total") or 0),
            int(used.get("used") or 0),
        )

    def network_exists(self, name: str) -> bool:
        return (
            self._get_or_none(f"read network {name!r}", self._server_api.networks[name]) is not None
        )

    def project_usage(self) -> dict[str, tuple[int, int]]:
        """Per resource of the project (instances, cpu, memory, disk, ...): (limit, usage);
        a limit of -1 means none. Bytes for memory and disk."""
        what = f"read the usage of LXD project {self.project!r}"
        got = self._send(what, self._server_api.projects[self.project].state.get)
        resources = got.json()["metadata"].get("resources") or {}
        return {k: (int(v["Limit"]), int(v["Usage"])) for k, v in resources.items()}

    def gpu_pci_addresses(self) -> frozenset[str]:
        """The PCI addresses of the GPUs LXD itself sees (what a `gpu` device's `pci` matches)."""
        got = self._send("read the host's resources", self._server_api.resources.get)
        cards = (got.json()["metadata"].get("gpu") or {}).get("cards") or ()
        return frozenset(str(c["pci_address"]).lower() for c in cards if c.get("pci_address"))

    def gpu_cards(self, member: str = "") -> tuple[Card, ...]:
        """The GPU cards of one server, as its own LXD reads them (`?target=` in a cluster):
        the answer is that member's PCI bus, whichever member the request goes through."""
        params = {"target": member} if member else {}
        what = "read the GPUs of " + (f"cluster member {member!r}" if member else "the host")
        got = self._send(what, self._server_api.resources.get, params=params)
        cards = (got.json()["metadata"].get("gpu") or {}).get("cards") or ()
        return tuple(card_of(c) for c in cards if c.get("pci_address"))

    def read_file(self, name: str, path: str, project: str = "default") -> bytes | None:
        """A file of an instance in PROJECT (`lxc file pull`; a stopped one too); None when
        the instance or the file is not there. For the bases `ssp doctor` looks into."""
        node = self._server_api.instances[name].files
        try:
            with self._errors(f"read {path} in {name!r} (LXD project {project!r})"):
                got = node.get(
                    params={"path": path, "project": project},
                    is_api=False,
                    timeout=REQUEST_TIMEOUT_S,
                )
        except LxdError as e:
            if not_found(e):
                return None
            raise
        return bytes(got.content)

    def source_config(self, source: str, project: str = "default") -> Profile | None:
        """The local config and devices of an instance (`name`) or snapshot (`name/snap`) that
        clones are copied from; None when it is not there. Returned as a `Profile` (a name,
        config and devices) because that is all a copy inherits."""
        name, _, snapshot = source.partition("/")
        node = self._server_api.instances[name]
        if snapshot:
            node = node.snapshots[snapshot]
        try:
            got = self._send(
                f"read {source!r} in LXD project {project!r}", node.get, params={"project": project}
            )
        except LxdError as e:
            if not_found(e):
                return None
            raise
        meta = got.json()["metadata"]
        return Profile(source, "", dict(meta.get("config") or {}), device_map(meta.get("devices")))

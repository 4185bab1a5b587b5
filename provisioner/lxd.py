"""The LXD adapter: `LxdApi` against a real daemon, through pylxd's raw API tree.

This is the only module that imports `pylxd` (enforced by import-linter). It speaks to the
daemon's unix socket, scoped to one LXD project, and turns what comes back into the plain
`provisioner.state` types; every pylxd or requests exception becomes `LxdError` (chained), so
the core never sees a pylxd object. It uses `client.api` (URLs and JSON) rather than pylxd's
models: one request lists every instance with its state, no stale `sync()`, no model warnings.
Only `execute` borrows the model, for its stdin/stdout/stderr websockets.

It also implements `provisioner.host.HostApi` (server info, the project and its profile,
storage pools, networks, GPUs LXD sees) for `ssp host init` and `ssp doctor`.

Every HTTP request it sends is recorded in `Lxd.requests`, so tests and benchmarks can show
that a no-op apply mutates nothing. It never reads the environment: the CLI passes `lxd_dir`.
"""

from __future__ import annotations

import gc
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib import parse

import requests
from pylxd import Client
from pylxd import exceptions as pylxd_errors
from pylxd.client import get_session_for_url
from pylxd.models import Instance as PylxdInstance

from provisioner.errors import LxdError
from provisioner.host import Pool, Profile, Project, ServerInfo
from provisioner.idranges import IdMapUse, use_of
from provisioner.state import Devices, ExecResult, Instance

DEBIAN_SOCKET = "/var/lib/lxd/unix.socket"
SNAP_SOCKET = "/var/snap/lxd/common/lxd/unix.socket"
# Config keys LXD writes itself; a replace() keeps the observed ones so callers need not know them.
MANAGED_PREFIXES = ("volatile.", "image.")
REQUEST_TIMEOUT_S = 60.0  # one plain request; operations are waited for separately
WAIT_SLICE_S = 30  # /wait?timeout= takes whole seconds; loop in slices up to op_timeout_s
POLL_S = 0.2
EXEC_TRIES = 3  # a command whose websocket broke is run again, this many times in all
EXEC_RETRY_S = 0.5


def socket_path(endpoint: str | None = None, lxd_dir: str | None = None) -> str:
    """The daemon's socket: the endpoint given, $LXD_DIR's, Debian's, then the snap's."""
    if endpoint:
        return endpoint
    if lxd_dir:
        return str(Path(lxd_dir) / "unix.socket")
    if Path(DEBIAN_SOCKET).exists() or not Path(SNAP_SOCKET).exists():
        return DEBIAN_SOCKET
    return SNAP_SOCKET


def ipv4_addresses(state: Mapping[str, Any] | None) -> tuple[str, ...]:
    """IPv4 addresses from an instance state (its `network` is None while stopped), minus lo."""
    network = (state or {}).get("network") or {}
    return tuple(
        address["address"]
        for nic, info in network.items()
        if nic != "lo"
        for address in (info.get("addresses") or ())
        if address.get("family") == "inet"
    )


def _devices(raw: Mapping[str, Mapping[str, str]] | None) -> dict[str, dict[str, str]]:
    return {name: dict(options) for name, options in (raw or {}).items()}


def to_instance(raw: Mapping[str, Any]) -> Instance:
    """An `Instance` from LXD's full instance JSON (recursion=2 list item, or recursion=1 GET)."""
    snapshots = raw.get("snapshots") or ()
    return Instance(
        name=raw["name"],
        status=raw["status"],
        config=dict(raw.get("config") or {}),
        devices=_devices(raw.get("devices")),
        expanded_devices=_devices(raw.get("expanded_devices")),
        description=raw.get("description") or "",
        profiles=tuple(raw.get("profiles") or ()),
        ipv4=ipv4_addresses(raw.get("state")),
        # Full objects at recursion 2; URLs (".../snapshots/<name>") at lower recursion.
        snapshots=tuple(
            s["name"] if isinstance(s, Mapping) else str(s).rsplit("/", 1)[-1] for s in snapshots
        ),
        location=raw.get("location") or "",
    )


def _perm(mode: int, uid: int, gid: int) -> dict[str, str]:
    return {"X-LXD-mode": f"{mode:04o}", "X-LXD-uid": str(uid), "X-LXD-gid": str(gid)}


def _source_text(source: Mapping[str, str]) -> str:
    """`image ssp-busybox`, `a copy of Common-Server/golden (project default)`: for messages."""
    if source.get("type") == "image":
        return f"image {source.get('alias', '?')}"
    where = f" (project {source['project']})" if source.get("project") else ""
    return f"a copy of {source.get('source', '?')}{where}"


def _not_found(error: LxdError) -> bool:
    return isinstance(error.__cause__, pylxd_errors.NotFound)


# pylxd's models warn about every field a newer LXD sends that they do not know: noise for
# whoever runs ssp, whichever thread it comes from.
warnings.filterwarnings(
    "ignore", "Attempted to set unknown attribute", UserWarning, module=r"pylxd\."
)
# `warnings.catch_warnings` swaps the process-wide filter list: two threads inside it at once
# would restore each other's filters. One at a time, then (the thread hook below as well).
_GLOBALS_LOCK = threading.Lock()


def quiet_ws4py_shutdown_race() -> None:
    """Keep one harmless pylxd/ws4py thread error from printing a traceback to the user.

    After an exec, pylxd stops ws4py's `WebSocketManager` while its thread may still be
    unregistering a socket from the poller it just closed; the thread then dies with
    "ValueError: I/O operation on closed epoll object". The command's output is complete by
    then. Installed once, on the first exec; every other thread error goes on as before.
    """
    with _GLOBALS_LOCK:
        previous = threading.excepthook
        if getattr(previous, "ssp_ws4py", False):
            return

        def hook(args: threading.ExceptHookArgs) -> None:
            thread = args.thread.name if args.thread is not None else ""
            race = isinstance(args.exc_value, ValueError) and "closed epoll" in str(args.exc_value)
            if not (thread == "WebSocketManager" and race):
                previous(args)

        hook.ssp_ws4py = True  # type: ignore[attr-defined]
        threading.excepthook = hook


@contextmanager
def _unclosed_sockets_silenced() -> Iterator[None]:
    with _GLOBALS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        yield


@contextmanager
def _released_by_gc() -> Iterator[None]:
    """pylxd leaves its exec stdin websocket and a refused connection's socket to the garbage
    collector, which warns "unclosed socket" wherever it runs: release them right after,
    silenced (a failure's traceback keeps the refused socket alive: its frames are cleared).
    Only the release holds the lock, so commands in several containers still run at once."""
    try:
        yield
    except Exception as e:
        with _unclosed_sockets_silenced():
            error: BaseException | None = e
            while error is not None:  # the chain too: pylxd re-raises connection errors
                traceback.clear_frames(error.__traceback__)
                error = error.__cause__ or error.__context__
        raise
    finally:
        with _unclosed_sockets_silenced():
            gc.collect()


class Lxd:
    """`LxdApi` on one project of a daemon reached by its unix socket. Connects on first use.

    Safe to share between threads (apply makes new containers concurrently): each thread
    gets its own connection, since a `requests.Session` is not meant to be shared.
    """

    def __init__(
        self,
        project: str,
        endpoint: str | None = None,
        lxd_dir: str | None = None,
        op_timeout_s: float = 1800.0,
        require_project: bool = True,
    ) -> None:
        self.project = project
        self.socket = socket_path(endpoint, lxd_dir)
        self.op_timeout_s = op_timeout_s
        # False for `ssp host init`, which creates the project, and `ssp doctor`, which says
        # that it is missing rather than failing to connect.
        self.require_project = require_project
        # (method, path with query) of every HTTP request sent, in order.
        self.requests: list[tuple[str, str]] = []
        self._local = threading.local()  # .client: this thread's connection to the project
        self._server_client: Any = None

    @property
    def mutations(self) -> list[tuple[str, str]]:
        """The requests that could change something: every one that is not a GET."""
        return [r for r in self.requests if r[0] != "GET"]

    # -- connection and error translation -------------------------------------------------

    def _unreachable(self, why: object) -> LxdError:
        return LxdError(f"cannot reach LXD at {self.socket}: is the daemon running? ({why})")

    def _record(self, response: requests.Response, *_args: Any, **_kwargs: Any) -> None:
        self.requests.append((str(response.request.method), str(response.request.path_url)))

    def _new_client(self, project: str | None) -> Any:
        # pylxd treats a path that does not exist as a URL and fails obscurely: check first.
        if not Path(self.socket).exists():
            raise self._unreachable("no such socket")
        session = get_session_for_url("http+unix://" + parse.quote(self.socket, safe=""))
        session.hooks["response"].append(self._record)
        try:
            with _released_by_gc():
                return Client(endpoint=self.socket, project=project, session=session)
        except (pylxd_errors.ClientConnectionFailed, requests.RequestException) as e:
            raise self._unreachable(e) from e
        except pylxd_errors.LXDAPIException as e:
            raise LxdError(f"LXD at {self.socket} refused the connection: {e}") from e

    def _connect(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._new_client(self.project)
            if not self.require_project:
                self._local.client = client
                return client
            try:
                # Listing a project that does not exist returns [] rather than an error.
                client.api.projects[self.project].get(timeout=REQUEST_TIMEOUT_S)
            except pylxd_errors.NotFound as e:
                raise LxdError(f"LXD project {self.project!r} does not exist") from e
            except (pylxd_errors.ClientConnectionFailed, requests.RequestException) as e:
                raise self._unreachable(e) from e
            except pylxd_errors.LXDAPIException as e:
                raise LxdError(f"LXD at {self.socket} refused the connection: {e}") from e
            self._local.client = client
        return client

    @property
    def _api(self) -> Any:
        return self._connect().api

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Turn whatever pylxd or requests raises while doing `what` into LxdError."""
        try:
            yield
        except pylxd_errors.LXDAPIException as e:
            raise LxdError(f"{what}: {e}") from e
        except (pylxd_errors.ClientConnectionFailed, requests.ConnectionError) as e:
            raise self._unreachable(e) from e
        except (requests.RequestException, OSError) as e:
            raise LxdError(f"{what}: {e}") from e

    def _send(self, what: str, request: Callable[..., Any], **kwargs: Any) -> Any:
        """One request, and the operation it started if any; errors become LxdError."""
        with self._errors(what):
            response = request(timeout=REQUEST_TIMEOUT_S, **kwargs)
            body = response.json()
            if body.get("type") == "async":
                self._wait(str(body["operation"]).rsplit("/", 1)[-1], what)
            return response

    def _wait(self, operation_id: str, what: str) -> None:
        operation = self._api.operations[operation_id]
        deadline = time.monotonic() + self.op_timeout_s
        while True:
            slice_s = max(1, min(WAIT_SLICE_S, int(deadline - time.monotonic())))
            got = operation.wait.get(params={"timeout": slice_s}, timeout=slice_s + 30)
            meta = got.json()["metadata"]
            if meta["status_code"] >= 400:  # Failure 400, Cancelled 401
                raise LxdError(f"{what}: {meta.get('err') or meta['status']}")
            if meta["status_code"] == 200:
                return
            if time.monotonic() >= deadline:
                raise LxdError(f"{what}: still running after {self.op_timeout_s:.0f} s")

    def _state(self, name: str) -> dict[str, Any]:
        state = self._send(f"read the state of {name!r}", self._api.instances[name].state.get)
        return dict(state.json()["metadata"])

    # -- reading ----------------------------------------------------------------------------

    def instances(self) -> list[Instance]:
        """Every instance of the project with state and snapshots: one GET (recursion=2)."""
        what = f"list instances of LXD project {self.project!r}"
        response = self._send(what, self._api.instances.get, params={"recursion": 2})
        return [to_instance(raw) for raw in response.json()["metadata"]]

    def id_maps(self) -> list[IdMapUse]:
        """Every instance's host ID blocks, in every project of the daemon: one GET."""
        got = self._send(
            "list the host's instances in all projects",
            self._server_api.instances.get,
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
            if _not_found(e):
                raise LxdError(
                    f"instance {name!r} not found in LXD project {self.project!r}"
                ) from e
            raise
        return to_instance(response.json()["metadata"])

    def exists(self, name: str) -> bool:
        try:
            self._send(f"look up instance {name!r}", self._api.instances[name].get)
        except LxdError as e:
            if _not_found(e):
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
    ) -> None:
        """Create a stopped instance from `source` (copy or image) and wait until it exists."""
        body = {
            "name": name,
            "source": dict(source),
            "config": dict(config),
            "devices": _devices(devices),
            # Always sent: a copy without profiles fails on LXD 5.0 ("No root device").
            "profiles": list(profiles),
            "description": description,
        }
        what = f"create instance {name!r} from {_source_text(source)}"
        self._send(what, self._api.instances.post, json=body)

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
            "devices": _devices(devices),
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

    def delete(self, name: str) -> None:
        """Delete a stopped instance (LXD refuses running and protected ones)."""
        self._send(f"delete instance {name!r}", self._api.instances[name].delete)

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
                    with _released_by_gc():
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
        headers = _perm(mode, uid, gid) | {"X-LXD-type": "file", "X-LXD-write": "overwrite"}
        if self._connect().has_api_extension("instances_files_modify_permissions"):
            headers["X-LXD-modify-perm"] = "uid,gid,mode"
        else:
            self.delete_file(name, path)
        what, files = f"write {path} in {name!r}", self._api.instances[name].files
        self._send(what, files.post, params={"path": path}, data=data, headers=headers)

    def make_dir(self, name: str, path: str, mode: int, uid: int, gid: int) -> None:
        """Create a directory; an existing one keeps its owner and mode. The parent must exist."""
        headers = _perm(mode, uid, gid) | {"X-LXD-type": "directory"}
        files = self._api.instances[name].files
        self._send(f"make {path} in {name!r}", files.post, params={"path": path}, headers=headers)

    def delete_file(self, name: str, path: str) -> None:
        """Remove a file; one that is not there is fine (a missing instance is not)."""
        files = self._api.instances[name].files
        try:
            self._send(f"delete {path} in {name!r}", files.delete, params={"path": path})
        except LxdError as e:
            # LXD answers 404 for both; only the instance's says "Instance not found".
            if not _not_found(e) or "instance" in str(e.__cause__).lower():
                raise

    def wait_ipv4(self, name: str, timeout_s: float) -> tuple[str, ...]:
        """The instance's IPv4 addresses once it has one; () if none came within timeout_s."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = ipv4_addresses(self._state(name))
            if found or time.monotonic() >= deadline:
                return found
            time.sleep(POLL_S)

    # -- the host: server, project, profile, pool, network (provisioner.host.HostApi) -------

    def _server_connect(self) -> Any:
        """A client without `?project=`: LXD refuses server-wide requests for a project that
        does not exist yet, and `ssp host init` has to create it."""
        if self._server_client is None:
            self._server_client = self._new_client(None)
        return self._server_client

    @property
    def _server_api(self) -> Any:
        return self._server_connect().api

    def server(self) -> ServerInfo:
        """Version and API extensions, from the `GET /1.0` a new client starts with."""
        info = self._server_connect().host_info
        return ServerInfo(
            version=str(info.get("environment", {}).get("server_version", "")),
            api_extensions=frozenset(info.get("api_extensions") or ()),
        )

    def _get_or_none(self, what: str, node: Any) -> Any:
        try:
            return self._send(what, node.get)
        except LxdError as e:
            if _not_found(e):
                return None
            raise

    def read_project(self) -> Project | None:
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
            _devices(meta.get("devices")),
        )

    def update_profile(self, profile: Profile) -> None:
        what = f"update profile {profile.name!r} of LXD project {self.project!r}"
        node = self._api.profiles[profile.name]
        etag = self._send(what, node.get).headers.get("ETag")
        body = {
            "description": profile.description,
            "config": dict(profile.config),
            "devices": _devices(profile.devices),
        }
        self._send(what, node.put, json=body, headers={"If-Match": etag} if etag else {})

    def storage_pool(self, name: str) -> Pool | None:
        node = self._server_api.storage_pools[name]
        got = self._get_or_none(f"read storage pool {name!r}", node)
        if got is None:
            return None
        space = self._send(f"read the space of storage pool {name!r}", node.resources.get)
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
            if _not_found(e):
                return None
            raise
        meta = got.json()["metadata"]
        return Profile(source, "", dict(meta.get("config") or {}), _devices(meta.get("devices")))

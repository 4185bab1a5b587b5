"""The LXD adapter's connection: pylxd clients per thread, requests recorded, operations
waited for, and every pylxd or requests exception turned into `LxdError`.

`provisioner.lxd.host` and `provisioner.lxd.api` build on `LxdConnection`; the three together are
the only modules that import `pylxd` (import-linter enforces it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib import parse

import requests
from pylxd import Client
from pylxd import exceptions as pylxd_errors
from pylxd.client import get_session_for_url

from provisioner.lxd.wire import REQUEST_TIMEOUT_S, WAIT_SLICE_S, released_by_gc, socket_path
from provisioner.values.errors import LxdError

OPERATION_LOOKUPS = 10
OPERATION_LOOKUP_S = 0.5


def not_found(error: LxdError) -> bool:
    return isinstance(error.__cause__, pylxd_errors.NotFound)


class LxdConnection:
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
        # The project as the connection's check read it: `read_project` answers from it
        # rather than asking again (None until connected, and after ssp changed the project).
        self._seen_project: dict[str, Any] | None = None

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
            with released_by_gc():
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
                got = client.api.projects[self.project].get(timeout=REQUEST_TIMEOUT_S)
            except pylxd_errors.NotFound as e:
                raise LxdError(f"LXD project {self.project!r} does not exist") from e
            except (pylxd_errors.ClientConnectionFailed, requests.RequestException) as e:
                raise self._unreachable(e) from e
            except pylxd_errors.LXDAPIException as e:
                raise LxdError(f"LXD at {self.socket} refused the connection: {e}") from e
            self._seen_project = dict(got.json()["metadata"])
            self._local.client = client
        return client

    @property
    def _api(self) -> Any:
        return self._connect().api

    @property
    def _unscoped_api(self) -> Any:
        """This thread's connection without `?project=`, for the requests about every project
        (LXD refuses `all-projects` beside a project); no second client, so no second
        `GET /1.0`. pylxd's node takes its project when made: a new root node is made here."""
        api = self._api
        return type(api)(api._api_endpoint, api.session, timeout=api._timeout)

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
                # A clustered LXD's operation URL ends in `?project=...`: the id is before it.
                operation = str(body["operation"]).split("?", 1)[0]
                self._wait(operation.rsplit("/", 1)[-1], what)
            return response

    def _wait(self, operation_id: str, what: str) -> None:
        operation = self._api.operations[operation_id]
        deadline = time.monotonic() + self.op_timeout_s
        lookups = 0
        while True:
            slice_s = max(1, min(WAIT_SLICE_S, int(deadline - time.monotonic())))
            try:
                got = operation.wait.get(params={"timeout": slice_s}, timeout=slice_s + 30)
            except pylxd_errors.NotFound:
                # In a cluster, the member answering looks another member's operation up in
                # the cluster's database; just after that member came back (5.0.2) the lookup
                # can miss an operation it has only begun to record. Ask again a few times.
                lookups += 1
                if lookups >= OPERATION_LOOKUPS:
                    raise
                time.sleep(OPERATION_LOOKUP_S)
                continue
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

    def _server_connect(self) -> Any:
        """A client without `?project=`: LXD refuses server-wide requests for a project that
        does not exist yet, and `ssp host init` has to create it."""
        if self._server_client is None:
            self._server_client = self._new_client(None)
        return self._server_client

    @property
    def _server_api(self) -> Any:
        return self._server_connect().api

    def _get_or_none(self, what: str, node: Any) -> Any:
        try:
            return self._send(what, node.get)
        except LxdError as e:
            if not_found(e):
                return None
            raise

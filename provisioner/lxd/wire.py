"""What the LXD adapter needs besides pylxd: where the daemon's socket is, LXD's JSON turned
into `provisioner.values.state` values, and two workarounds for pylxd's exec websockets.

Kept apart from `provisioner.lxd.api` so the translation can be read (and tested) without a
connection, and so the adapter's modules hold only requests.
"""

from __future__ import annotations

import gc
import threading
import traceback
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from provisioner.values.gpuinventory import Card
from provisioner.values.state import Instance

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


def device_map(raw: Mapping[str, Mapping[str, str]] | None) -> dict[str, dict[str, str]]:
    return {name: dict(options) for name, options in (raw or {}).items()}


def to_instance(raw: Mapping[str, Any]) -> Instance:
    """An `Instance` from LXD's full instance JSON (recursion=2 list item, or recursion=1 GET)."""
    snapshots = raw.get("snapshots") or ()
    return Instance(
        name=raw["name"],
        status=raw["status"],
        config=dict(raw.get("config") or {}),
        devices=device_map(raw.get("devices")),
        expanded_devices=device_map(raw.get("expanded_devices")),
        description=raw.get("description") or "",
        profiles=tuple(raw.get("profiles") or ()),
        ipv4=ipv4_addresses(raw.get("state")),
        # Full objects at recursion 2; URLs (".../snapshots/<name>") at lower recursion.
        snapshots=tuple(
            s["name"] if isinstance(s, Mapping) else str(s).rsplit("/", 1)[-1] for s in snapshots
        ),
        location=raw.get("location") or "",
    )


def card_of(raw: Mapping[str, Any]) -> Card:
    """A `Card` from one of LXD's `gpu.cards` (resources API). The `nvidia` section is there
    only when LXD could ask the NVIDIA driver; then its model and UUID are the driver's."""
    nvidia = raw.get("nvidia") or {}
    return Card(
        pci=str(raw["pci_address"]).lower(),
        vendor_id=str(raw.get("vendor_id") or "").lower(),
        model=str(nvidia.get("model") or raw.get("product") or raw.get("product_id") or "?"),
        uuid=str(nvidia["uuid"]) if nvidia.get("uuid") else None,
    )


def perm_headers(mode: int, uid: int, gid: int) -> dict[str, str]:
    return {"X-LXD-mode": f"{mode:04o}", "X-LXD-uid": str(uid), "X-LXD-gid": str(gid)}


def source_text(source: Mapping[str, str]) -> str:
    """`image ssp-busybox`, `a copy of Common-Server/golden (project default)`: for messages."""
    if source.get("type") == "image":
        return f"image {source.get('alias', '?')}"
    where = f" (project {source['project']})" if source.get("project") else ""
    return f"a copy of {source.get('source', '?')}{where}"


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
def released_by_gc() -> Iterator[None]:
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

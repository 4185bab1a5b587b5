"""`ssp tunnel --format frpc`: the frpc.toml for the GPU host, held to frp's TOML client
schema (serverAddr, serverPort, auth.*, [[proxies]] name/type/localIP/localPort/remotePort),
one proxy per forwarded port, names unique and safe. Rendered from the seed policy plus a
tunnel, and instances as LXD reports them (the real-LXD run is in
tests/integration/test_ssh_login.py)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from helpers import run_cli, sample_repo

from provisioner.planning import tunnel
from provisioner.validation.config import load_config
from provisioner.values.policymodels import Policy, Tunnel
from provisioner.values.state import Instance

ROOT = Path(__file__).resolve().parents[1]
TOP_KEYS = {"serverAddr", "serverPort", "auth", "proxies"}
PROXY_KEYS = {"name", "type", "localIP", "localPort", "remotePort"}
SAFE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def policy(**tunnel_fields: object) -> Policy:
    config, problems = load_config(
        (ROOT / "config" / "policy.yaml").read_bytes(),
        (ROOT / "config" / "hosts.yaml").read_bytes(),
    )
    assert config is not None, problems
    seed = config.policy
    common = seed.shared_servers["common"].model_copy(update={"ssh_port": 22000})
    fields: dict[str, object] = {"kind": "frp", "server": "frp.lab.example"}
    fields |= {"remote_offset": 10000} | tunnel_fields
    return seed.model_copy(
        update={"tunnel": Tunnel(**fields), "shared_servers": {"common": common}}  # type: ignore[arg-type]
    )


def proxy(port: int) -> dict[str, str]:
    return {"type": "proxy", "listen": f"tcp:0.0.0.0:{port}", "connect": "tcp:127.0.0.1:22"}


def container(name: str, ssh: int, rdp: int | None = None, **config: str) -> Instance:
    devices = {"ssh": proxy(ssh), "eth0": {"type": "nic", "network": "lxdbr0"}}
    if rdp is not None:
        devices["rdp"] = proxy(rdp) | {"connect": "tcp:127.0.0.1:3389"}
    return Instance(name, "Running", {"user.ssp.managed": "true", **config}, devices)


INSTANCES = (
    container("alice-thesis", 22001, rdp=22002),
    container("bob-train", 22003),
    container("carol-old", 22004, **{"user.ssp.retired": "2026-11-01"}),  # stopped, given back
    Instance("hand-made", "Running", {}, {"ssh": proxy(22500)}),  # not ours
)


def parsed(pol: Policy) -> dict[str, object]:
    return tomllib.loads(tunnel.frpc_toml(pol, tunnel.forwards(pol, INSTANCES)))


def test_one_proxy_per_forwarded_port_with_exactly_frps_keys() -> None:
    doc = parsed(policy())
    assert set(doc) == TOP_KEYS
    assert (doc["serverAddr"], doc["serverPort"]) == ("frp.lab.example", 7000)
    # The token is frp's template for an environment variable, never a value in the file.
    assert doc["auth"] == {"method": "token", "token": "{{ .Envs.FRP_AUTH_TOKEN }}"}
    proxies = doc["proxies"]
    assert isinstance(proxies, list)
    assert all(set(p) == PROXY_KEYS and p["type"] == "tcp" for p in proxies)
    assert all(p["localIP"] == "127.0.0.1" for p in proxies)  # ssh.listen is 0.0.0.0
    assert [(p["name"], p["localPort"], p["remotePort"]) for p in proxies] == [
        ("ssp-common-server-ssh", 22000, 32000),
        ("ssp-alice-thesis-ssh", 22001, 32001),
        ("ssp-alice-thesis-rdp", 22002, 32002),
        ("ssp-bob-train-ssh", 22003, 32003),
    ]
    names = [p["name"] for p in proxies]
    assert len(set(names)) == len(names) and all(SAFE_NAME.match(n) for n in names)


def test_a_server_without_a_token_and_a_listen_address() -> None:
    pol = policy(token_env="", server_port=7443, remote_offset=-10000)
    pol = pol.model_copy(update={"ssh": pol.ssh.model_copy(update={"listen": "192.168.1.20"})})
    doc = parsed(pol)
    assert set(doc) == {"serverAddr", "serverPort", "proxies"} and doc["serverPort"] == 7443
    proxies = doc["proxies"]
    assert isinstance(proxies, list)
    assert {p["localIP"] for p in proxies} == {"192.168.1.20"}
    assert [p["remotePort"] for p in proxies] == [12000, 12001, 12002, 12003]


def test_no_forwarded_ports_is_still_a_valid_file() -> None:
    pol = policy()
    pol = pol.model_copy(update={"shared_servers": {}})
    doc = tomllib.loads(tunnel.frpc_toml(pol, tunnel.forwards(pol, ())))
    assert set(doc) == {"serverAddr", "serverPort", "auth"}


def test_a_policy_without_a_tunnel_has_no_client_config() -> None:
    pol = policy().model_copy(update={"tunnel": None})
    with pytest.raises(ValueError, match="no tunnel"):
        tunnel.frpc_toml(pol, ())


@pytest.mark.parametrize(
    "field, value",
    [
        ("server", 'frp.lab.example"\nevil = "x'),
        ("server", "frp lab"),
        ("token_env", "FRP}} {{ .Envs.HOME"),
        ("kind", "ngrok"),
    ],
)
def test_the_policy_refuses_what_would_break_the_file(field: str, value: str) -> None:
    with pytest.raises(ValueError):
        Tunnel.model_validate({"kind": "frp", "server": "frp.lab.example", field: value})


def test_ssp_tunnel_without_a_tunnel_in_the_policy_is_a_usage_error(tmp_path: Path) -> None:
    repo = sample_repo(tmp_path / "lab")
    done = run_cli("tunnel", "--repo", str(repo))
    assert (done.code, done.out) == (2, "")
    assert "config/policy.yaml has no `tunnel:`" in done.err
    assert "Traceback" not in done.err
    assert run_cli("tunnel", "--repo", str(repo), "--format", "ini").code == 2

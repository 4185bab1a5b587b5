"""Off-LAN logins right after an apply, tried for real: `ssp apply` (the CLI, as the runner
calls it) makes a container on the real LXD, rewrites frpc's file and reloads frpc, and the
off-LAN command it prints logs the owner in with real OpenSSH, with no admin at the host.
Then the `ssh -J` path: a real sshd (a Debian clone of Common-Server/golden) as the jump host.

No frp binary is packaged in the registries this project reaches, so frpc and frps are
tests/frpstandin.py: frpc's admin API as frp documents it (reload, status, basic auth) and
frps's side, a listener on 127.0.0.1:remotePort for each proxy it runs.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from frpstandin import FrpStandin

from integration.helpers import NOW, LabRepo, free_ports, lxc, ssh_until_ok
from provisioner import cli

pytestmark = [pytest.mark.lxd, pytest.mark.slow]

GOLDEN = "Common-Server/golden"
PASSWORD = "frpc-admin-pw-not-in-the-repo"
REMOTE_WINDOW = (46000, 46999)  # the frp server's ports, apart from the lab's


def env_for(lab: LabRepo, socket: str) -> dict[str, str]:
    return {
        "SSP_NOW": NOW.isoformat(),
        "SSP_LOCK": str(lab.root / "apply.lock"),
        "SSP_GPU_CHECK": "off",
        "LXD_DIR": str(Path(socket).parent),
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "FRPC_ADMIN_PASSWORD": PASSWORD,
    }


@pytest.fixture
def frpc(tmp_path: Path) -> Iterator[list[FrpStandin]]:
    started: list[FrpStandin] = []
    yield started
    for f in started:
        f.stop()


def test_the_off_lan_command_works_right_after_the_apply_and_so_does_the_jump_host(
    tmp_path: Path,
    lxd_project: str,
    lxd_socket: str,
    suffix: str,
    frpc: list[FrpStandin],
    capsys: pytest.CaptureFixture[str],
) -> None:
    lab = LabRepo.make(tmp_path, lxd_project, suffix, ports=4)
    remote, _ = free_ports(lab.ports[1] - lab.ports[0] + 1, REMOTE_WINDOW)
    admin_port, jump_port = free_ports(2, (47000, 47999))
    config_file = tmp_path / "frp" / "frpc.toml"
    config_file.parent.mkdir()
    lab.tunnel = {
        "kind": "frp",
        "server": "127.0.0.1",
        "remote_offset": remote - lab.ports[0],
        "admin_port": admin_port,
        "config_file": str(config_file),
    }
    lab.settings["ssh"] = {
        "listen": "127.0.0.1",
        "ports": list(lab.ports),
        "host": "",
        "jump_host": f"root@127.0.0.1:{jump_port}",
    }
    lab.write()
    env = env_for(lab, lxd_socket)

    # The admin's one-time step (admin guide): the file, then frpc started on it.
    code = cli.main(["tunnel", "--repo", str(lab.root), "--output", str(config_file)], env=env)
    assert code == 0, capsys.readouterr()
    frpc.append(FrpStandin(config_file, {"FRP_AUTH_TOKEN": "t", **env}).start())
    assert frpc[0].running() == {}

    # A member's request merged: one apply, nothing else.
    name = f"alice-t-{suffix}"
    lab.write(lab.container(name))
    code = cli.main(["apply", "--repo", str(lab.root), "--no-comment", "--format", "json"], env=env)
    out, err = capsys.readouterr()
    assert code == 0, out + err
    (row,) = json.loads(out)["outcomes"]
    port = row["ssh_port"]
    assert "tunnel: 1 of 1 proxies running, frpc reloaded with a new file" in err
    assert PASSWORD not in out + err
    assert row["ssh_command_public"] == f"ssh -p {port + remote - lab.ports[0]} alice@127.0.0.1"

    # The off-LAN command, as printed, logs alice in through the tunnel.
    away = int(row["ssh_command_public"].split()[2])
    done = ssh_until_ok(lab.keys["alice"], away, "alice", "id -un")
    assert (done.returncode, done.stdout.strip()) == (0, "alice"), done.stderr

    # The jump host: a real sshd that reaches the host's forwarded port (LXD proxies its own
    # 127.0.0.1:PORT to the host's), root's key the member's (a lab's gateway account).
    jump = f"jump-{suffix}"
    lxc("copy", GOLDEN, jump, "--project", "default", "--target-project", lxd_project)
    lxc(
        "config", "device", "add", "--project", lxd_project, jump, "ssh", "proxy",
        f"listen=tcp:127.0.0.1:{jump_port}", "connect=tcp:127.0.0.1:22",
    )  # fmt: skip
    lxc(
        "config", "device", "add", "--project", lxd_project, jump, "lab", "proxy", "bind=instance",
        f"listen=tcp:127.0.0.1:{port}", f"connect=tcp:127.0.0.1:{port}",
    )  # fmt: skip
    lxc("start", "--project", lxd_project, jump)
    key = lab.keys["alice"]
    lxc(
        "exec", "--project", lxd_project, jump, "--", "sh", "-c",
        f"mkdir -p -m 700 /root/.ssh && echo '{key.public}' > /root/.ssh/authorized_keys",
    )  # fmt: skip
    config = tmp_path / "ssh_config"
    # -F reaches the jump host's own ssh too (ProxyJump passes it on): one key for both hops.
    config.write_text(
        f"Host *\n    IdentityFile {key.private}\n    StrictHostKeyChecking no\n"
        "    UserKnownHostsFile /dev/null\n    BatchMode yes\n    ConnectTimeout 5\n"
        "    LogLevel ERROR\n"
    )
    argv = shlex.split(row["ssh_command_jump"])
    assert argv[:3] == ["ssh", "-J", f"root@127.0.0.1:{jump_port}"]
    command = [argv[0], "-F", str(config), *argv[1:], "id -un"]

    def through_jump() -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    last = through_jump()
    for _ in range(30):  # the jump host's sshd needs a few seconds after its start
        if last.returncode == 0:
            break
        subprocess.run(["sleep", "1"], check=True)
        last = through_jump()
    assert (last.returncode, last.stdout.strip()) == (0, "alice"), last.stderr

    # The request removed: the next apply retires the container and takes it off the tunnel.
    lab.write()
    code = cli.main(["apply", "--repo", str(lab.root), "--no-comment", "--format", "json"], env=env)
    out, err = capsys.readouterr()
    assert code == 0, out + err
    (row,) = json.loads(out)["outcomes"]
    assert (row["action"], row["ssh_command_public"]) == ("retired", None)
    assert "tunnel: 0 of 0 proxies running, frpc reloaded with a new file" in err
    assert frpc[0].running() == {}
    gone = ssh_until_ok(key, away, "alice", "true", timeout_s=1)
    assert gone.returncode == 255 and "refused" in gone.stderr

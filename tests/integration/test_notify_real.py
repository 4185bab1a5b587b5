"""`ssp maintain` on the real LXD with the policy's `notify:` section: the lease reminder goes
by e-mail to a real local SMTP server (STARTTLS, a self-signed certificate made here, the login
from a private file) and to a webhook receiver, after the host work; a dead webhook is a
warning that names it but never its URL, the exit status and the host are untouched, and a
rerun sends nothing twice while it tries the dead one again."""

from __future__ import annotations

import json
import os
from datetime import date, timedelta
from pathlib import Path

import pytest
from helpers import ENV, NOW, run_cli
from notifyservers import LOGIN, PASSWORD, Receiver, free_port, smtp_server

from integration.helpers import Adapters, LabRepo, apply_pass, lxc_query

pytestmark = pytest.mark.lxd


def private(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return str(path)


def test_ssp_maintain_mails_and_posts_the_reminder_and_a_dead_webhook_is_only_a_warning(
    lab: LabRepo, adapters: Adapters, suffix: str, tmp_path: Path, lxd_project: str
) -> None:
    name = f"notified-{suffix}"
    last = date.fromisoformat(NOW[:10]) + timedelta(days=3)  # the 3-day reminder is due
    token = "key=0f1e2d3c-webhook-secret"
    servers = smtp_server(tmp_path)
    port, box = next(servers)
    receiver = Receiver()
    wecom = receiver.add("/cgi-bin/webhook/send")
    try:
        lab.settings = {
            "notify": {
                "mail": {
                    "host": "127.0.0.1",
                    "port": port,
                    "sender": "gpu-lab@lab.example",
                    "credentials_file": private(tmp_path / "smtp", f"{LOGIN}\n{PASSWORD}\n"),
                    "ca_file": str(tmp_path / "smtp.crt"),
                },
                "addresses": {"alice": "alice@lab.example"},
                "webhooks": {
                    "lab": {
                        "kind": "wecom",
                        "url_file": private(
                            tmp_path / "wecom", f"{receiver.url}/cgi-bin/webhook/send?{token}"
                        ),
                    },
                    "gone": {
                        "kind": "slack",
                        "url_file": private(
                            tmp_path / "slack", f"http://127.0.0.1:{free_port()}/hook?{token}"
                        ),
                    },
                },
                "attempts": 2,
                "backoff_seconds": 0,
                "ledger": str(tmp_path / "ledger.json"),
            }
        }
        request = lab.container(name, image="busybox", expires=last.isoformat())
        apply_pass(lab, adapters, request)
        env = {**ENV, "SSP_LOCK": str(tmp_path / "apply.lock")}
        if os.environ.get("LXD_DIR"):
            env["LXD_DIR"] = os.environ["LXD_DIR"]

        said = []
        for run in range(2):
            done = run_cli("maintain", "--repo", str(lab.root), "--format", "json", env=env)
            assert done.code == 0, done.both
            said.append({r["channel"]: r["result"] for r in json.loads(done.out)["delivered"]})
            assert "webhook gone: not delivered: cannot connect" in done.err
            assert token not in done.both and PASSWORD not in done.both
            assert "Traceback" not in done.both
            assert len(box.got) == 1 and len(wecom.bodies) == 1, f"run {run + 1}"

        assert said[0]["mail to alice"] == said[0]["webhook lab"] == "sent"
        assert said[0]["webhook gone"].startswith("failed after 2 tries: cannot connect")
        assert said[1] == {"webhook gone": said[0]["webhook gone"]}  # the rest is in the ledger
        (mail,) = box.got
        assert mail.tls and mail.login == LOGIN and mail.to == ["alice@lab.example"]
        assert mail.mail["Subject"] == f"[ssp] Lease of {name} ends soon"
        assert f"ends with {last}" in mail.mail.get_payload(decode=True).decode()
        assert f"container {name} ends with {last}" in wecom.bodies[0]["text"]["content"]
        state = lxc_query(f"/1.0/instances/{name}", lxd_project)
        assert state["status"] == "Running"  # the host work is done whatever the mail does
    finally:
        receiver.close()
        servers.close()

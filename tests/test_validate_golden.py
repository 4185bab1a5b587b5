"""Golden outputs: what `ssp validate --base` prints for a fixed bad PR and a fixed good one.

Every form a person or a machine reads is compared exactly with a file in `tests/golden/`:
the text lines, the GitHub annotations, the JSON document and the Markdown job summary.
The scenarios run on a frozen copy of the sample config (`tests/golden/input/config/`) with
fixed public keys, in a real git repository, with the clock pinned. After an intended change,
regenerate with `SSP_UPDATE_GOLDEN=1 pytest tests/test_validate_golden.py` and review the diff.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import GitRepo, validate

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("SSP_UPDATE_GOLDEN") == "1"
NOW = "2026-11-28T12:00:00+00:00"

# Fixed public keys (made once with ssh-keygen; their private halves were thrown away).
KEYS = {
    "alice": "ssh-ed25519 "
    "AAAAC3NzaC1lZDI1NTE5AAAAIHIYrgIIMDghAZlUhziSegxNLXonYJGejtg7kKAk07sD alice@golden",
    "bob": "ssh-ed25519 "
    "AAAAC3NzaC1lZDI1NTE5AAAAIMaOdZ2Huia5YNtxOviEbn/6E7ECH1b3S3hbSwv++0lT bob@golden",
    "carol": "ssh-ed25519 "
    "AAAAC3NzaC1lZDI1NTE5AAAAIMENNkWyeLir8SCY5z0wihHsqawrWv1rmAVsRDkuaIfM carol@golden",
    "lab-admin": "ssh-ed25519 "
    "AAAAC3NzaC1lZDI1NTE5AAAAIDVSgTjgfKU4pnUbxa0Y8JSjUvh3Lwr2xTm2U1SxyyQL admin@golden",
    "dave": "ssh-ed25519 "
    "AAAAC3NzaC1lZDI1NTE5AAAAIB1/e/LLQibAJi3uXRl8fak7fo4Sf07NQ2IMu7+OGcMQ dave@golden",
}
# Looks like the start of an OpenSSH private key (made up, not a real one): must never be echoed.
FAKE_PRIVATE = (
    "-----BEGIN OPENSSH PRIVATE KEY----- "
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW "
    "QyNTUxOQAAACBTHISISNOTAREALKEYJUSTTESTDATAFORGOLDENFILESxxxxAAAA "
    "-----END OPENSSH PRIVATE KEY-----"
)


def container(owner: str, name: str, *, key: str | None = None, **fields: str) -> str:
    values = {
        "purpose": "Experiments for a thesis",
        "gpus": "1",
        "cpu": "4",
        "memory": "16GiB",
        "disk": "50GiB",
        "expires": "2027-06-30",
        **fields,
    }
    lines = [
        "# yaml-language-server: $schema=../../schemas/request.schema.json",
        "kind: container",
        f"name: {name}",
        f"owner: {owner}",
        *(f"{k}: {v}" for k, v in values.items() if k != "expires"),
        "ssh_keys:",
        f"  - {key or KEYS[owner]}",
        f"expires: {values['expires']}",
    ]
    return "\n".join(lines) + "\n"


def account(owner: str, name: str, **fields: str) -> str:
    values = {"purpose": "Notebooks on the shared server", "server": "common", "sudo": "false"}
    values |= fields
    lines = [
        "# yaml-language-server: $schema=../../schemas/request.schema.json",
        "kind: account",
        f"name: {name}",
        f"owner: {owner}",
        *(f"{k}: {v}" for k, v in values.items()),
        "ssh_keys:",
        f"  - {KEYS[owner]}",
        "expires: 2027-03-31",
    ]
    return "\n".join(lines) + "\n"


CONFIG = {
    f"config/{name}": (GOLDEN / "input" / "config" / name).read_text(encoding="utf-8")
    for name in ("policy.yaml", "hosts.yaml")
}
MAIN = {
    **CONFIG,
    "requests/alice/alice-thesis.yaml": container("alice", "alice-thesis", gpus="2"),
    "requests/bob/bob-common.yaml": account("bob", "bob-common"),
    "requests/carol/carol-ci.yaml": container("carol", "carol-ci", gpus="0", cpu="8"),
}


@dataclass(frozen=True)
class Scenario:
    name: str
    author: str
    base: dict[str, str | None]
    head: dict[str, str | None]
    code: int


SCENARIOS = [
    Scenario(
        "bad-pr",
        "alice",
        # dave is not a member yet: broken on main, but not this PR's business
        {**MAIN, "requests/dave/dave-box.yaml": container("dave", "dave-box", gpus="0")},
        {
            # over alice's GPU quota, and a share the lab does not have
            "requests/alice/alice-thesis.yaml": container(
                "alice", "alice-thesis", gpus="3", shares="[share, home]"
            ),
            "requests/alice/alice-notes.yaml": container(
                "alice",
                "alice-notes",
                gpus="0",
                purpose="Notes | *bold* [link](https://example.com) <b>@bob</b> 100%",
                expires="2027-02-30",
            ),
            "requests/alice/alice-keys.yaml": container(
                "alice", "alice-keys", gpus="0", key=FAKE_PRIVATE
            ),
            "requests/bob/bob-common.yaml": account("bob", "bob-common", sudo="true"),
            "requests/carol/carol-ci.yaml": None,
        },
        1,
    ),
    Scenario(
        "good-pr",
        "lab-admin",
        {
            **MAIN,
            "requests/carol/carol-old.yaml": container(
                "carol", "carol-old", gpus="0", expires="2026-10-31"
            ),
        },
        {
            "requests/lab-admin/lab-admin-box.yaml": container(
                "lab-admin", "lab-admin-box", gpus="[3]"
            ),
            "requests/bob/bob-common.yaml": account("bob", "bob-common", sudo="true"),
            "config/policy.yaml": CONFIG["config/policy.yaml"].replace(
                "max_lease_days: 365", "max_lease_days: 400"
            ),
        },
        0,
    ),
]
SCENARIOS.append(
    Scenario(
        "renewal-pr",
        "alice",
        MAIN,
        {
            "requests/alice/alice-thesis.yaml": container(
                "alice", "alice-thesis", gpus="2", expires="2027-09-30"
            )
        },
        0,
    )
)
FORMS = {"text": "txt", "github": "github.txt", "json": "json", "summary": "summary.md"}


def _outputs(scenario: Scenario, tmp_path: Path) -> dict[str, str]:
    repo = GitRepo.create(tmp_path / "repo", scenario.base)
    repo.branch("pr")
    repo.commit(scenario.head, "pull request")
    summary = tmp_path / "summary.md"
    env = {"SSP_NOW": NOW, "GITHUB_STEP_SUMMARY": str(summary)}
    outputs = {}
    for form in ("text", "github", "json"):
        result = validate(
            repo.root, "--base", "main", "--author", scenario.author, "--format", form, env=env
        )
        assert result.code == scenario.code, result.both
        outputs[form] = result.out + result.err
    outputs["summary"] = summary.read_text(encoding="utf-8")
    return outputs


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_outputs_match_the_golden_files(scenario: Scenario, tmp_path: Path) -> None:
    outputs = _outputs(scenario, tmp_path)
    for form, suffix in FORMS.items():
        path = GOLDEN / f"{scenario.name}.{suffix}"
        if UPDATE:
            path.write_text(outputs[form], encoding="utf-8")
            continue
        assert path.exists(), f"{path.name} is missing; run with SSP_UPDATE_GOLDEN=1"
        assert outputs[form] == path.read_text(encoding="utf-8"), f"{path.name} differs"
        assert "PRIVATE KEY-----" not in outputs[form]
        assert "b3BlbnNzaC1rZXktdjE" not in outputs[form]

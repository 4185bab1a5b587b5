"""Table-driven bad (and good) inputs through the real `ssp validate` command line.

Each case is a set of files written on top of a copy of the sample `config/` (or, for PR
cases, committed on a branch of a real git repository whose `main` holds the sample config),
the rule id it must produce, and the line and column the finding must point at. Every bad
case must exit 1 with a `path:line:col: error: ... [rule]` line and never show a traceback.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import (
    ACCOUNT_LINES,
    CONTAINER_LINES,
    NOW,
    Executable,
    Files,
    GitRepo,
    Submodule,
    Symlink,
    key,
    keypair,
    line_of,
    request_path,
    sample,
    sample_repo,
    valid_request,
    validate,
)
from snapshots import account_server, container, retired, snapshot_text, write_snapshot

A = "requests/alice/alice-box.yaml"  # valid_request()'s path
B = "requests/bob/bob-common.yaml"  # valid_request("account")'s path
L = CONTAINER_LINES
AL = ACCOUNT_LINES
EXTRA = L["expires"] + 1  # the line of a field appended after the last one


def alice(**overrides: str | list[str] | None) -> dict[str, str]:
    return {A: valid_request(**overrides)}


def member(owner: str, kind: str = "container", **overrides: str | list[str] | None) -> dict:
    text = valid_request(kind, owner=owner, **overrides)
    return {request_path(text): text}


def policy(old: str, new: str) -> dict[str, str]:
    text = sample("config/policy.yaml")
    assert old in text, old
    return {"config/policy.yaml": text.replace(old, new, 1)}


def hosts(old: str, new: str) -> dict[str, str]:
    text = sample("config/hosts.yaml")
    assert old in text, old
    return {"config/hosts.yaml": text.replace(old, new, 1)}


def position(path: str, needle: str, files: Mapping[str, object], offset: int = 0) -> tuple:
    """(line, col) of `needle` in the file text of `files[path]`, for config cases."""
    text = files[path]
    assert isinstance(text, str)
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number, line.index(needle) + 1 + offset
    raise AssertionError(needle)


@dataclass(frozen=True)
class Case:
    id: str
    files: Files
    rule: str
    path: str
    line: int
    col: int | None = None
    # PR cases: `files` go on `main`, `pr` on the PR branch; validated with --base main.
    pr: Files | None = None
    author: str = "alice"
    now: str = NOW
    # text that must not appear anywhere in the output (a pasted private key)
    absent: tuple[str, ...] = ()
    message: str = ""  # a piece of the message the finding must say
    env: Mapping[str, str] = field(default_factory=dict)
    # the host's published state (snapshot.json text from snapshot_text), given with --snapshot
    snapshot: str = ""


def _private_block() -> str:
    body = "".join(f"    {line}\n" for line in keypair("alice").private.splitlines())
    return valid_request().replace(f"  - {key('alice')}\n", f"  - |\n{body}")


def _private_plain() -> str:
    # pasted without `|`: YAML folds the lines of a plain scalar into one, joined by spaces
    lines = keypair("alice").private.splitlines()
    body = f"  - {lines[0]}\n" + "".join(f"    {line}\n" for line in lines[1:])
    return valid_request().replace(f"  - {key('alice')}\n", body)


def _private_material() -> tuple[str, ...]:
    lines = keypair("alice").private.splitlines()
    return tuple(line[:24] for line in lines[1:-1])


def _big_file() -> str:
    return valid_request() + "".join(f"# {'x' * 70}\n" for _ in range(1000))


def _key_with(old: str, new: str) -> str:
    text = key("alice")
    assert old in text
    return text.replace(old, new, 1)


def _rsa_2048() -> str:
    return keypair("alice-rsa", "-t", "rsa", "-b", "2048").public


def _truncated_key() -> str:
    kind, blob, _ = key("alice").split(" ")
    return f"{kind} {blob[:40]}"


def _cases() -> Iterator[Case]:
    # --- safe YAML -----------------------------------------------------------------------
    yield Case("syntax-unclosed-flow", alice(cpu="[4"), "yaml.syntax", A, L["memory"], 7)
    yield Case(
        "syntax-tab-indent",
        {A: valid_request().replace("  - ssh", "\t- ssh")},
        "yaml.tab_indent",
        A,
        L["ssh_keys"] + 1,
        1,
        message="tab character used for indentation; use spaces",
    )
    # Chinese-keyboard slips, named on the line where they were typed (issue 26)
    yield Case(
        "ime-fullwidth-colon",
        {A: valid_request().replace("cpu: ", "cpu：", 1)},
        "yaml.fullwidth",
        A,
        L["cpu"],
        4,
        message="full-width colon ： (U+FF1A) after 'cpu'; type an ASCII ':'",
    )
    yield Case(
        "ime-fullwidth-space-indent",
        {A: valid_request().replace("  - ssh", "\u3000- ssh")},
        "yaml.fullwidth",
        A,
        L["ssh_keys"] + 1,
        1,
        message="full-width space (U+3000) used for indentation",
    )
    yield Case(
        "ime-fullwidth-quotes",
        alice(purpose="\u201cExperiments: diffusion\u201d"),
        "yaml.fullwidth",
        A,
        L["purpose"],
        10,
        message="full-width quote \u201c (U+201C)",
    )
    yield Case(
        "unclosed-quote",
        alice(purpose='"Experiments for my thesis'),
        "yaml.unclosed_quote",
        A,
        L["purpose"],
        10,
        message='the quote " opened here is not closed',
    )
    yield Case("empty-file", {A: ""}, "yaml.empty", A, 1, 1)
    yield Case("only-comments", {A: "# nothing yet\n"}, "yaml.empty", A, 1, 14)
    yield Case(
        "byte-order-mark",
        {A: b"\xef\xbb\xbf" + valid_request().encode()},
        "yaml.encoding",
        A,
        1,
        1,
    )
    yield Case(
        "not-utf8",
        {A: valid_request(purpose="Caf\xe9 experiments").encode("latin-1")},
        "yaml.encoding",
        A,
        L["purpose"],
        13,
    )
    yield Case(
        "control-char",
        alice(purpose="Ring the \x07 bell"),
        "yaml.control_char",
        A,
        L["purpose"],
        19,
    )
    yield Case(
        "bidi-override",
        alice(purpose="Harmless \u202etext"),
        "yaml.control_char",
        A,
        L["purpose"],
        19,
    )
    yield Case(
        "line-separator",
        alice(purpose="Two\u2028lines"),
        "yaml.control_char",
        A,
        L["purpose"],
        13,
    )
    yield Case(
        "noncharacter",
        alice(purpose="Odd \ufffe char"),
        "yaml.control_char",
        A,
        L["purpose"],
        14,
    )
    yield Case(
        "lone-carriage-return",
        alice(purpose="Old Mac\rline end"),
        "yaml.control_char",
        A,
        L["purpose"],
        17,
    )
    yield Case("file-too-big", {A: _big_file()}, "yaml.size", A, 1, 1)
    yield Case("scalar-too-long", alice(purpose="x" * 17000), "yaml.size", A, L["purpose"], 10)
    yield Case("number-too-long", alice(cpu="4" * 5000), "yaml.size", A, L["cpu"], 6)
    yield Case(
        "two-documents",
        {A: valid_request() + "---\nkind: account\n"},
        "yaml.multiple_documents",
        A,
        EXTRA,
        1,
    )
    yield Case("anchor", alice(cpu="&cores 4"), "yaml.anchor", A, L["cpu"], 6)
    yield Case("alias", alice(memory="*mem"), "yaml.alias", A, L["memory"], 9)
    yield Case("merge-key", alice(**{"<<": "{cpu: 4}"}), "yaml.merge", A, EXTRA, 1)
    yield Case("tag", alice(cpu='!!int "4"'), "yaml.tag", A, L["cpu"], 6)
    yield Case(
        "tag-directive",
        {A: "%TAG !e! tag:example.com,2000:\n---\n" + valid_request()},
        "yaml.tag",
        A,
        1,
        1,
    )
    yield Case(
        "duplicate-key",
        {A: valid_request() + "cpu: 8\n"},
        "yaml.duplicate_key",
        A,
        EXTRA,
        1,
        message="first written on line 8",
    )
    yield Case(
        "too-deep", alice(purpose="[[[[[[[[[deep]]]]]]]]]"), "yaml.depth", A, L["purpose"], 17
    )
    yield Case("complex-key", {A: valid_request() + "? [a, b]\n: c\n"}, "yaml.key", A, EXTRA, 3)

    # --- schema ------------------------------------------------------------------------------
    yield Case("top-level-list", {A: "- kind: container\n"}, "schema.type", A, 1, 1)
    yield Case("gpus-word", alice(gpus="two"), "schema.type", A, L["gpus"], 7)
    yield Case(
        "cpu-quoted",
        alice(cpu='"4"'),
        "schema.type",
        A,
        L["cpu"],
        6,
        message="write it without quotes",
    )
    yield Case("cpu-float", alice(cpu="4.0"), "schema.type", A, L["cpu"], 6)
    yield Case("cpu-bool", alice(cpu="true"), "schema.type", A, L["cpu"], 6)
    yield Case("cpu-minus-inf", alice(cpu="-.inf"), "schema.type", A, L["cpu"], 6)
    yield Case(
        "desktop-yes-is-text",
        alice(desktop="yes"),
        "schema.type",
        A,
        L["desktop"],
        10,
        message='got text "yes" (write true or false)',
    )
    yield Case(
        "desktop-quoted-true",
        alice(desktop='"true"'),
        "schema.type",
        A,
        L["desktop"],
        10,
        message="write it without quotes",
    )
    yield Case(
        "memory-mib-number",
        alice(memory="32768"),
        "schema.type",
        A,
        L["memory"],
        9,
        message="did you mean `32GiB`?",
    )
    yield Case(
        "disk-bare-number",
        alice(disk="100"),
        "schema.type",
        A,
        L["disk"],
        7,
        message="did you mean `100GiB`?",
    )
    yield Case("kind-unknown", alice(kind="vm"), "schema.kind", A, L["kind"], 7)
    yield Case("kind-list", alice(kind="[container]"), "schema.kind", A, L["kind"], 7)
    yield Case("kind-missing", alice(kind=None), "schema.kind", A, L["kind"], 1)
    yield Case(
        "ssh-keys-missing",
        alice(ssh_keys=None),
        "schema.required",
        A,
        2,
        1,
        message="'ssh_keys'",
    )
    yield Case(
        "expires-missing",
        {B: valid_request("account", expires=None)},
        "schema.required",
        B,
        2,
        1,
        message="'expires'",
    )
    yield Case(
        "unknown-field-typo",
        alice(gpu="1"),
        "schema.unknown_field",
        A,
        EXTRA,
        1,
        message="did you mean 'gpus'",
    )
    yield Case("unknown-field-port", alice(port="2222"), "schema.unknown_field", A, EXTRA, 1)
    yield Case(
        "account-with-gpus",
        {B: valid_request("account", gpus="1")},
        "schema.unknown_field",
        B,
        AL["expires"] + 1,
        1,
    )
    yield Case("name-pattern", alice(name="Alice_Box"), "schema.pattern", A, L["name"], 7)
    yield Case(
        "memory-unit",
        alice(memory="32GB"),
        "schema.pattern",
        A,
        L["memory"],
        9,
        message="did you mean `32GiB`?",
    )
    yield Case("owner-pattern", alice(owner="-alice"), "schema.pattern", A, L["owner"], 8)
    yield Case("cpu-zero", alice(cpu="0"), "schema.range", A, L["cpu"], 6)
    yield Case("gpu-index-64", alice(gpus="[64]"), "schema.range", A, L["gpus"], 8)
    yield Case("gpus-count-17", alice(gpus="17"), "schema.range", A, L["gpus"], 7)
    yield Case(
        "purpose-no-is-text",
        alice(purpose="no"),
        "schema.length",
        A,
        L["purpose"],
        10,
        message="at least 3 characters",
    )
    yield Case("ssh-keys-empty", alice(ssh_keys="[]"), "schema.length", A, L["ssh_keys"], 11)
    yield Case(
        "eleven-keys",
        alice(ssh_keys=[key(f"alice{i}") for i in range(11)]),
        "schema.length",
        A,
        L["ssh_keys"] + 1,
        3,
    )
    yield Case("gpus-empty-list", alice(gpus="[]"), "schema.length", A, L["gpus"], 7)
    yield Case("snapshots-enum", alice(snapshots="hourly"), "schema.enum", A, L["snapshots"], 12)
    yield Case("expires-not-a-day", alice(expires="2027-02-30"), "schema.date", A, L["expires"], 10)
    yield Case("expires-short", alice(expires="2027-6-30"), "schema.date", A, L["expires"], 10)
    yield Case(
        "expires-with-time",
        alice(expires="2027-06-30T10:00:00"),
        "schema.date",
        A,
        L["expires"],
        10,
    )

    # --- layout and file modes ---------------------------------------------------------------
    text = valid_request()
    yield Case(
        "yml-suffix",
        {"requests/alice/alice-box.yml": text},
        "path.layout",
        "requests/alice/alice-box.yml",
        1,
        1,
    )
    yield Case(
        "no-folder",
        {"requests/alice-box.yaml": text},
        "path.layout",
        "requests/alice-box.yaml",
        1,
        1,
    )
    yield Case(
        "too-deep-folder",
        {"requests/alice/old/alice-box.yaml": text},
        "path.layout",
        "requests/alice/old/alice-box.yaml",
        1,
        1,
    )
    yield Case("worktree-symlink", {A: Symlink("/etc/passwd")}, "file.mode", A, 1, 1)
    yield Case("pr-symlink", {}, "file.mode", A, 1, 1, pr={A: Symlink("/etc/passwd")})
    yield Case("pr-executable", {}, "file.mode", A, 1, 1, pr={A: Executable(text)})
    yield Case("pr-submodule", {}, "file.mode", A, 1, 1, pr={A: Submodule()})

    # --- names and owners -------------------------------------------------------------------
    yield Case("name-not-stem", alice(name="alice-gpu"), "name.stem", A, L["name"], 7)
    yield Case(
        "name-reserved",
        {"requests/alice/default.yaml": valid_request(name="default")},
        "name.reserved",
        "requests/alice/default.yaml",
        L["name"],
        7,
    )
    yield Case(
        "purpose-placeholder-in-a-pr",
        {},
        "purpose.placeholder",
        A,
        L["purpose"],
        10,
        pr={A: valid_request(purpose="TODO")},
        message="does not say what it is for",
    )
    yield Case(
        "name-is-shared-server",
        {"requests/alice/common-server.yaml": valid_request(name="common-server")},
        "name.reserved",
        "requests/alice/common-server.yaml",
        L["name"],
        7,
    )
    yield Case(
        "name-duplicate",
        {
            **alice(gpus="0"),
            "requests/bob/alice-box.yaml": valid_request(owner="bob", name="alice-box", gpus="0"),
        },
        "name.duplicate",
        "requests/bob/alice-box.yaml",
        L["name"],
        7,
    )
    # a retired container of bob's, kept in LXD: its name stays his (security finding 8)
    yield Case(
        "name-held-by-a-retired-container",
        {"requests/alice/bob-box.yaml": valid_request(name="bob-box", gpus="0")},
        "name.held",
        "requests/alice/bob-box.yaml",
        L["name"],
        7,
        snapshot=snapshot_text([retired("bob-box", "bob")]),
        message="held by bob's container",
    )
    yield Case(
        "owner-not-folder",
        {"requests/bob/alice-box.yaml": valid_request()},
        "owner.folder",
        "requests/bob/alice-box.yaml",
        L["owner"],
        8,
    )
    yield Case(
        "owner-unknown",
        member("dave"),
        "owner.unknown",
        "requests/dave/dave-box.yaml",
        L["owner"],
        8,
    )

    # --- catalogues ---------------------------------------------------------------------------
    yield Case("image-unknown", alice(image="windows-11"), "image.unknown", A, L["image"], 8)
    yield Case("share-unknown", alice(shares="[share, home]"), "share.unknown", A, L["shares"], 17)
    yield Case("share-twice", alice(shares="[share, share]"), "share.duplicate", A, L["shares"], 17)
    yield Case(
        "server-unknown",
        {B: valid_request("account", server="gpu-box")},
        "server.unknown",
        B,
        AL["server"],
        9,
    )
    yield Case("host-unknown", alice(host="other-server"), "host.unknown", A, EXTRA, 7)

    # --- GPUs --------------------------------------------------------------------------------
    yield Case("gpu-index-unknown", alice(gpus="[0, 7]"), "gpus.unknown", A, L["gpus"], 11)
    yield Case("gpu-listed-twice", alice(gpus="[1, 1]"), "gpus.duplicate", A, L["gpus"], 11)
    yield Case(
        "gpu-model-unknown", alice(gpu_model="NVIDIA A100 80GB PCIe"), "gpus.model", A, EXTRA, 12
    )
    yield Case(
        "gpus-more-than-host",
        member("carol", gpus="5"),
        "gpus.too_many",
        "requests/carol/carol-box.yaml",
        L["gpus"],
        7,
    )
    yield Case(
        "gpus-count-after-pins",
        {**alice(gpus="[0, 1]"), **member("carol", gpus="3")},
        "gpus.capacity",
        "requests/carol/carol-box.yaml",
        L["gpus"],
        7,
    )
    yield Case(
        "gpu-double-booked",
        {**alice(gpus="[0, 1]"), **member("carol", gpus="[2, 1]")},
        "gpus.double_booked",
        "requests/carol/carol-box.yaml",
        L["gpus"],
        11,
        message="GPU 1 is already pinned by requests/alice/alice-box.yaml",
    )

    # --- quotas (alice: student = 2 containers, 2 GPUs, 16 cores, 64GiB, 300GiB) --------------
    three = {
        f"requests/alice/alice-{n}.yaml": valid_request(name=f"alice-{n}", gpus="0")
        for n in ("one", "three", "two")
    }
    yield Case(
        "quota-containers", three, "quota.containers", "requests/alice/alice-two.yaml", L["kind"], 7
    )
    yield Case(
        "quota-gpus",
        alice(gpus="3"),
        "quota.gpus",
        A,
        L["gpus"],
        7,
        message="gpus: 3 exceeds alice's quota of 2",
    )
    yield Case("quota-cpu", alice(cpu="17"), "quota.cpu", A, L["cpu"], 6)
    yield Case(
        "octal-looking-cpu-is-decimal",
        alice(cpu="017"),
        "quota.cpu",
        A,
        L["cpu"],
        6,
        message="cpu: 17 exceeds",
    )
    yield Case("quota-memory", alice(memory="65GiB"), "quota.memory", A, L["memory"], 9)
    yield Case(
        "quota-disk-summed",
        {
            **alice(disk="200GiB", gpus="0"),
            "requests/alice/alice-data.yaml": valid_request(
                name="alice-data", disk="101GiB", gpus="0"
            ),
        },
        "quota.disk",
        "requests/alice/alice-data.yaml",
        L["disk"],
        7,
        message="alice would use 301GiB in total, over the 'student' quota of 300GiB",
    )
    yield Case(
        "quota-default",  # lab-admin has no quota: `default` allows one container
        {
            **member("lab-admin", gpus="0"),
            "requests/lab-admin/lab-admin-two.yaml": valid_request(
                owner="lab-admin", name="lab-admin-two", gpus="0"
            ),
        },
        "quota.containers",
        "requests/lab-admin/lab-admin-two.yaml",
        L["kind"],
        7,
        message="'default' quota of 1",
    )

    # --- host capacity (super-server: 64 cores, 256GiB, 4TiB) --------------------------------
    yield Case(
        "capacity-cpu",
        {
            **alice(cpu="16", gpus="0"),
            **member("bob", cpu="16", gpus="0"),
            **member("carol", cpu="48", gpus="0"),
        },
        "capacity.cpu",
        "requests/carol/carol-box.yaml",
        L["cpu"],
        6,
    )
    yield Case(
        "capacity-memory",
        {
            **member("carol", memory="192GiB", gpus="0"),
            **member("bob", memory="64GiB", gpus="0"),
            **alice(memory="16GiB", gpus="0"),
        },
        "capacity.memory",
        "requests/carol/carol-box.yaml",
        L["memory"],
        9,
    )
    yield Case(
        "capacity-disk",
        {
            **alice(disk="50GiB"),
            **member("bob", disk="50GiB", gpus="0"),
            **hosts("disk: 4TiB", "disk: 80GiB"),
        },
        "capacity.disk",
        "requests/bob/bob-box.yaml",
        L["disk"],
        7,
    )

    # --- leases (policy: 365 days, Asia/Shanghai; now: 2026-11-28 20:00 Shanghai) ------------
    yield Case(
        "lease-yesterday-is-past",
        {},
        "lease.past",
        A,
        L["expires"],
        10,
        pr=alice(expires="2026-11-27"),
    )
    yield Case(
        "lease-too-long",
        alice(expires="2027-12-30"),
        "lease.too_long",
        A,
        L["expires"],
        10,
        message="latest allowed today is 2027-11-28",
    )
    yield Case(
        "lease-past-in-shanghai-only",  # 20:00 UTC on the 28th is already the 29th in Shanghai
        {},
        "lease.past",
        A,
        L["expires"],
        10,
        pr=alice(expires="2026-11-28"),  # the last day was the 28th: over in Shanghai
        now="2026-11-28T20:00:00+00:00",
        message="(today is 2026-11-29, Asia/Shanghai)",
    )
    yield Case(
        "lease-too-long-in-utc",
        {**alice(expires="2027-11-29"), **policy("timezone: Asia/Shanghai", "timezone: UTC")},
        "lease.too_long",
        A,
        L["expires"],
        10,
        now="2026-11-28T20:00:00+00:00",
    )

    # --- SSH keys --------------------------------------------------------------------------
    key_line = L["ssh_keys"] + 1
    secret = _private_material()
    yield Case(
        "private-key-block", {A: _private_block()}, "ssh_key.private", A, key_line, 5, absent=secret
    )
    yield Case(
        "private-key-plain", {A: _private_plain()}, "ssh_key.private", A, key_line, 5, absent=secret
    )
    yield Case(
        "dsa-key",
        alice(ssh_keys=["ssh-dss AAAAB3NzaC1kc3MAAACBAPxx old@box"]),
        "ssh_key.type",
        A,
        key_line,
        5,
    )
    yield Case(
        "unknown-key-type",
        alice(ssh_keys=[_key_with("ssh-ed25519", "ssh-foo")]),
        "ssh_key.type",
        A,
        key_line,
        5,
    )
    yield Case(
        "key-file-path",
        alice(ssh_keys=["~/.ssh/id_ed25519.pub"]),
        "ssh_key.type",
        A,
        key_line,
        5,
        message="paste the contents of the .pub file",
    )
    yield Case("rsa-2048", alice(ssh_keys=[_rsa_2048()]), "ssh_key.rsa_bits", A, key_line, 5)
    yield Case(
        "key-options",
        alice(ssh_keys=[f'command="/bin/sh" {key("alice")}']),
        "ssh_key.options",
        A,
        key_line,
        5,
    )
    yield Case(
        "key-type-mismatch",
        alice(ssh_keys=[_key_with("ssh-ed25519", "ecdsa-sha2-nistp256")]),
        "ssh_key.mismatch",
        A,
        key_line,
        5,
    )
    yield Case(
        "key-not-base64",
        alice(ssh_keys=["ssh-ed25519 AAAA$$$$notbase64 me@x"]),
        "ssh_key.base64",
        A,
        key_line,
        5,
    )
    yield Case(
        "key-cut-short", alice(ssh_keys=[_truncated_key()]), "ssh_key.truncated", A, key_line, 5
    )
    yield Case(
        "key-two-lines",
        alice(ssh_keys=[f'"{key("alice")}\\n{key("alice")}"']),
        "yaml.control_char",
        A,
        key_line,
        5,
        message="ssh_keys[0]: line break U+000A",
    )
    yield Case(
        "key-without-type",
        alice(ssh_keys=[key("alice").split(" ", 1)[1]]),
        "ssh_key.format",
        A,
        key_line,
        5,
    )
    yield Case(
        "same-key-twice",
        alice(ssh_keys=[key("alice"), key("alice")]),
        "ssh_key.duplicate",
        A,
        key_line + 1,
        5,
    )
    yield Case(
        "key-shared-with-another-member",
        {**alice(), B: valid_request("account", ssh_keys=[key("alice")])},
        "ssh_key.shared",
        B,
        AL["ssh_keys"] + 1,
        5,
        message="is also alice's key",
    )

    # --- accounts ---------------------------------------------------------------------------
    # A member whose GitHub login is a service's name still may not have that login.
    yield Case(
        "account-system-name",
        {
            **policy("  carol: {", "  git: {uid: 1010}\n  carol: {"),
            "requests/git/git.yaml": valid_request("account", owner="git", name="git"),
        },
        "account.system_user",
        "requests/git/git.yaml",
        AL["name"],
        7,
        message="'git' is a system or service account name",
    )
    yield Case(
        "account-named-after-another-member",
        {"requests/alice/bob.yaml": valid_request("account", owner="alice", name="bob")},
        "account.name_owner",
        "requests/alice/bob.yaml",
        AL["name"],
        7,
        message="'bob' is another member's login",
    )
    yield Case(
        "account-named-after-a-service",
        {"requests/bob/docker.yaml": valid_request("account", name="docker")},
        "account.name_owner",
        "requests/bob/docker.yaml",
        AL["name"],
        7,
        message="'bob' or 'bob-<something>' (e.g. 'bob-common'), not 'docker'",
    )
    yield Case(
        "account-twice-on-one-server",
        {
            B: valid_request("account"),
            "requests/bob/bob-more.yaml": valid_request("account", name="bob-more"),
        },
        "account.duplicate",
        "requests/bob/bob-more.yaml",
        AL["server"],
        9,
    )
    # carol's login bob-common on the shared server stays hers (security finding 7)
    yield Case(
        "account-held-by-another-member",
        {B: valid_request("account")},
        "account.held",
        B,
        AL["name"],
        7,
        snapshot=snapshot_text([], servers=(account_server({"bob-common": "carol"}),)),
        message="was made for carol",
    )

    # --- config files -----------------------------------------------------------------------
    yield Case(
        "policy-missing",
        {**alice(), "config/policy.yaml": None},
        "config.missing",
        "config/policy.yaml",
        1,
        1,
    )
    yield Case(
        "hosts-empty", {**alice(), "config/hosts.yaml": ""}, "yaml.empty", "config/hosts.yaml", 1, 1
    )
    for case_id, files, rule, needle, offset in (
        (
            "policy-default-image",
            policy("  image: common-server", "  image: debian"),
            "policy.default_image",
            "image: debian",
            7,
        ),
        (
            "policy-no-default-quota",
            policy("  default: {", "  basic: {"),
            "policy.default_quota",
            "basic:",
            0,
        ),
        (
            "policy-quota-unknown",
            policy("quota: staff", "quota: boss"),
            "policy.quota_unknown",
            "boss",
            0,
        ),
        (
            "policy-uid-twice",
            policy("uid: 1003", "uid: 1002"),
            "policy.uid_duplicate",
            "uid: 1002",
            5,
        ),
        (
            "policy-timezone-unknown",
            policy("Asia/Shanghai", "Mars/Olympus"),
            "policy.timezone",
            "Mars/Olympus",
            0,
        ),
        (
            "policy-timezone-is-a-folder",
            policy("Asia/Shanghai", "Asia"),
            "policy.timezone",
            "Asia",
            0,
        ),
        (
            "policy-reminder-twice",
            policy("reminders: [14, 3]", "reminders: [14, 3, 14]"),
            "policy.reminders",
            "reminders: [14, 3, 14]",
            19,
        ),
        (
            "policy-final-notice-after-retention",
            policy(
                "  delete: false\n  final_notice_days: 3", "  delete: true\n  final_notice_days: 40"
            ),
            "policy.final_notice",
            "final_notice_days: 40",
            19,
        ),
        (
            "policy-idle-release-without-idle-days",
            policy(
                "timezone: Asia/Shanghai", "usage:\n  idle_action: release\ntimezone: Asia/Shanghai"
            ),
            "policy.idle_release",
            "idle_action: release",
            13,
        ),
        (
            "policy-shared-port-among-the-containers-ports",
            policy("    ssh_port: 22000\n", "    ssh_port: 22500\n"),
            "policy.shared_port",
            "ssh_port: 22500",
            10,
        ),
        (
            "policy-tunnel-offset-past-the-last-port",
            policy(
                "\nlxd:\n",
                "\ntunnel:\n  kind: frp\n  server: frp.lab.example\n  remote_offset: 50000\nlxd:\n",
            ),
            "policy.tunnel_port",
            "remote_offset: 50000",
            15,
        ),
        (
            "policy-ports-reversed",
            policy("[22001, 22999]", "[22999, 22001]"),
            "schema.invalid",
            "listen:",
            0,
        ),
        ("policy-bad-login", policy("  carol: {", "  -carol: {"), "schema.key", "-carol", 0),
        (
            "policy-duplicate-key",
            policy("retention_days: 30", "retention_days: 30\nadmins: []"),
            "yaml.duplicate_key",
            "admins: []",
            0,
        ),
        (
            "hosts-gpu-index-twice",
            hosts("index: 1", "index:  0"),
            "hosts.duplicate_gpu",
            "index:  0",
            8,
        ),
        (
            "hosts-bad-pci",
            hosts('"0000:3b:00.0"', '"0000:3B:00.0"'),
            "schema.pattern",
            '"0000:3B',
            0,
        ),
    ):
        path = next(iter(files))
        line, col = position(path, needle.strip(), files, offset)
        yield Case(case_id, {**alice(), **files}, rule, path, line, col)

    # --- pull requests ----------------------------------------------------------------------
    bob_account = {B: valid_request("account")}
    yield Case(
        "pr-edits-another-members-request",
        bob_account,
        "authz.other_owner",
        B,
        1,
        1,
        pr={B: valid_request("account", sudo="true")},
    )
    yield Case(
        "pr-touches-config",
        {},
        "authz.infra",
        "config/policy.yaml",
        1,
        1,
        pr=policy("max_lease_days: 365", "max_lease_days: 3650"),
    )
    yield Case(
        "pr-touches-readme", {}, "authz.infra", "README.md", 1, 1, pr={"README.md": "hello\n"}
    )


# Characters the loader refuses typed raw, written instead as YAML escapes in a double-quoted
# scalar: refused all the same, once decoded (issue 15). (id, escape, the character.)
ESCAPES = (
    ("nul", "\\0", "\x00"),
    ("terminal-escape", "\\e[31m", "\x1b"),
    ("bell", "\\x07", "\x07"),
    ("tab", "\\t", "\t"),
    ("line-feed", "\\n", "\n"),
    ("next-line", "\\N", "\x85"),
    ("line-separator", "\\L", "\u2028"),
    ("bidi-override", "\\u202e", "\u202e"),
    ("bidi-isolate", "\\u2066", "\u2066"),
    ("zero-width-space", "\\u200b", "\u200b"),
    ("byte-order-mark", "\\ufeff", "\ufeff"),
    ("noncharacter", "\\uffff", "\uffff"),
    ("noncharacter-plane-1", "\\U0001FFFE", "\U0001fffe"),
    ("noncharacter-fdd0", "\\ufdd0", "\ufdd0"),
)
# Number literals longer than the loader converts (int() refuses 4300+ decimal digits and
# builds hex and octal ones that later break every str()).
GIANT_NUMBERS = (
    ("decimal", "9" * 5000),
    ("hex", "0x" + "f" * 5000),
    ("octal", "0o" + "7" * 5000),
    ("float", "1" * 5000 + ".5"),
    ("signed", "-" + "1" * 200),
)


def _text_cases() -> Iterator[Case]:
    """Each escape in a value, a key and an SSH key's comment; each giant number; in both a
    tree (`ssp validate`) and a pull request (`--base main --author alice`)."""
    key_line = L["ssh_keys"] + 1
    for case_id, escape, char in ESCAPES:
        shown = f"U+{ord(char):04X}"
        places = (
            ("purpose", alice(purpose=f'"Thesis {escape} work"'), L["purpose"], 10),
            ("key", alice(**{f'"extra{escape}"': "1"}), EXTRA, 1),
            ("key-comment", alice(ssh_keys=[f'"{key("alice")} {escape}me"']), key_line, 5),
        )
        for place, files, line, col in places:
            absent = () if char in "\n" else (char,)
            for pr in (False, True):
                yield Case(
                    f"{'pr-' if pr else ''}escaped-{case_id}-in-{place}",
                    {} if pr else files,
                    "yaml.control_char",
                    A,
                    line,
                    col,
                    pr=files if pr else None,
                    message=shown,
                    absent=absent,
                )
    for case_id, number in GIANT_NUMBERS:
        for pr in (False, True):
            files = alice(cpu=number)
            yield Case(
                f"{'pr-' if pr else ''}giant-{case_id}-number",
                {} if pr else files,
                "yaml.size",
                A,
                L["cpu"],
                6,
                pr=files if pr else None,
                message=f"cpu: a number {len(number)} characters long",
            )
    # a value in the admins' own files is held to the same rule
    described = policy("description: A clean Ubuntu 24.04", 'description: "Clean \\e]8;;x\\a"')
    pol = "config/policy.yaml"
    line, col = position(pol, '"Clean', described)
    yield Case("escaped-in-policy", {**alice(), **described}, "yaml.control_char", pol,
               line, col, message="U+001B")  # fmt: skip
    yield Case("pr-escaped-in-policy", alice(), "yaml.control_char", pol, line, col,
               pr=described, author="lab-admin", message="U+001B")  # fmt: skip
    # a file's name is text from the PR too
    bidi, clear = "requests/alice/alice\u202ebox.yaml", "requests/alice/x\x1b[2J.yaml"
    # (the text report shows the override in the name as `\u202e`, the ESC as `\x1b`:
    # provisioner/reporting/escape.py shows control and bidi characters as escapes on every channel)
    yield Case("file-name-with-bidi", {bidi: valid_request()}, "path.char", ascii(bidi)[1:-1],
               1, 1, message="U+202E")  # fmt: skip
    yield Case("pr-file-name-with-escape", {}, "path.char", ascii(clear)[1:-1], 1, 1,
               pr={clear: valid_request()}, message="U+001B")  # fmt: skip


IMG = "requests/alice/alice-base.yaml"


def image_request(source: str = "alice-box", snapshot: str | None = None) -> str:
    """alice's image of her container alice-box (valid_request()'s), leased as long."""
    expires = next(x for x in valid_request().splitlines() if x.startswith("expires:"))
    lines = [
        "kind: image",
        "name: alice-base",
        "owner: alice",
        "purpose: A base with my tools",
        f"from: {source}",
        *([f"snapshot: {snapshot}"] if snapshot is not None else []),
        expires,
    ]
    return "\n".join(lines) + "\n"


def _image_cases() -> Iterator[Case]:
    mine = {A: valid_request(), IMG: image_request()}
    yield Case("image-from-not-mine", {**mine, IMG: image_request("bob-box")}, "image.from", IMG, 5)
    yield Case(
        "image-snapshot-form",
        {**mine, IMG: image_request(snapshot="'a b'")},
        "image.snapshot",
        IMG,
        6,
    )
    theirs = valid_request(owner="bob", image="alice/alice-base")
    path = request_path(theirs)
    line = theirs.splitlines().index("image: alice/alice-base") + 1
    yield Case("image-of-another-member", {**mine, path: theirs}, "image.not_yours", path, line)
    # an alias ssp did not publish, and no request publishes (security finding 3)
    by_hand = valid_request(image="alice/backup")
    yield Case(
        "image-not-published-by-ssp",
        {A: by_hand},
        "image.not_ssp",
        A,
        by_hand.splitlines().index("image: alice/backup") + 1,
        8,
        snapshot=snapshot_text([], images=()),
        message="is not an image ssp published",
    )


def _preview_cases() -> Iterator[Case]:
    # carol's count was given GPU 0 (the published snapshot shows her container with it)
    carol = valid_request(owner="carol", gpus="1", shares="[]")
    mine = valid_request(gpus=["0"], shares="[]")
    yield Case(
        "pin-on-a-gpu-a-count-holds",
        {request_path(carol): carol},
        "preview.gpu_held",
        A,
        line_of(mine, "  - 0"),
        pr={A: mine},
        snapshot=snapshot_text([container("carol-box", "carol", (0,), 22001, "50GiB")]),
        message="GPU 0 (0000:18:00.0) is held by container 'carol-box'",
    )


CASES = [*_cases(), *_text_cases(), *_image_cases(), *_preview_cases()]


def _check(case: Case, tmp_path: Path) -> str:
    env = {"SSP_NOW": case.now, **case.env}
    args: tuple[str, ...] = ()
    if case.snapshot:
        args = ("--snapshot", str(write_snapshot(tmp_path / "snapshot.json", case.snapshot)))
    if case.pr is None:
        repo = sample_repo(tmp_path / "repo", case.files)
        result = validate(repo, *args, env=env)
    else:
        git = GitRepo.pull_request(tmp_path / "repo", case.files, case.pr)
        result = validate(git.root, "--base", "main", "--author", case.author, *args, env=env)
    assert "Traceback" not in result.both
    assert result.code == 1, result.both
    col = str(case.col) if case.col else r"\d+"
    where = f"{re.escape(case.path)}:{case.line}:{col}"
    finding = re.compile(rf"^{where}: error: (.+) \[{re.escape(case.rule)}\]$", re.MULTILINE)
    found = finding.search(result.out)
    assert found, f"no {case.path}:{case.line}:{case.col} [{case.rule}] in:\n{result.both}"
    assert case.message in found.group(1)
    for text in case.absent:
        assert text not in result.both
    return result.out


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_found_on_its_line(case: Case, tmp_path: Path) -> None:
    _check(case, tmp_path)


def test_there_are_at_least_sixty_cases() -> None:
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


# `newline` is not among them: the loader refuses every value with a line break, tab or
# control character (textpolicy) before the key parser sees it.
SSH_KEY_REFUSALS = (
    "private",
    "format",
    "options",
    "type",
    "base64",
    "truncated",
    "rsa_bits",
    "mismatch",
)


def _emitted_rules() -> set[str]:
    """Every rule id the validator can emit, read from its source (so a new rule needs a case)."""
    package = Path(__file__).resolve().parents[1] / "provisioner"
    literal = re.compile(
        r'"((?:yaml|schema|path|file|name|owner|image|share|server|host|gpus|'
        r'lease|account|policy|hosts|authz|config)\.[a-z_]+)"'
    )
    rules: set[str] = set()
    for module in (
        "validation/sources",
        "validation/yamlslips",
        "validation/schema",
        "validation/rules",
        "validation/imagerules",
        "validation/config",
        "validation/authz",
        "git/files",
        "validation/validate",
    ):
        text = (package / f"{module}.py").read_text(encoding="utf-8")
        rules |= {r for r in literal.findall(text) if not r.endswith(".yaml")}
    # ids built from a word: f"quota.{what}", f"capacity.{what}", f"ssh_key.{rule}"
    rules |= {f"quota.{w}" for w in ("containers", "gpus", "cpu", "memory", "disk")}
    rules |= {f"capacity.{w}" for w in ("cpu", "memory", "disk")}
    sshkeys = (package / "validation" / "sshkeys.py").read_text(encoding="utf-8")
    assert all(f'"{w}"' in sshkeys for w in SSH_KEY_REFUSALS)
    rules |= {f"ssh_key.{w}" for w in SSH_KEY_REFUSALS}
    rules |= {"ssh_key.duplicate", "ssh_key.shared"}
    return rules


# Warnings (lease.expired: the good cases) and schema keywords the generated schemas do not
# use today (no `format` but date, no `uniqueItems`).
NOT_ERRORS_HERE = {"lease.expired", "schema.format", "schema.unique", "image.unpublished"}
# who wrote a PR's commits comes from GitHub: their cases run on the fake GitHub, in
# tests/test_pr_commits.py
NEED_GITHUB = {"authz.unknown_author", "authz.unknown_commit"}


def test_every_rule_the_validator_emits_has_a_case() -> None:
    covered = {c.rule for c in CASES}
    missing = _emitted_rules() - covered - NOT_ERRORS_HERE - NEED_GITHUB
    assert not missing, f"rules without a bad-input case: {sorted(missing)}"


# --- good input -------------------------------------------------------------------------------


def _good_cases() -> Iterator[tuple[str, Files]]:
    yield "yes-is-a-purpose", alice(purpose="yes")
    yield "off-is-a-purpose", alice(purpose="off")
    yield (
        "no-is-an-image-id",
        {**alice(image="no"), **policy("images:\n", "images:\n  no:\n    image: debian/12\n")},
    )
    yield "hex-cpu", alice(cpu="0x8")
    yield "pinned-gpus", alice(gpus="[2, 3]")
    yield "no-gpus", alice(gpus="0")
    yield (
        "defaults-left-out",
        alice(
            image=None,
            cpu=None,
            memory=None,
            disk=None,
            shares=None,
            snapshots=None,
            desktop=None,
            gpus=None,
        ),
    )
    yield "account", {B: valid_request("account")}
    yield "crlf-line-ends", {A: valid_request().replace("\n", "\r\n")}
    yield "comments-and-blank-lines", {A: valid_request().replace("\n", "\n\n# note\n")}
    yield "quoted-date", alice(expires='"2027-06-30"')
    yield "lease-at-the-limit", alice(expires="2027-11-28")
    yield (
        "full-quota",
        {
            **alice(gpus="[0]", cpu="8", memory="32GiB", disk="150GiB"),
            "requests/alice/alice-two.yaml": valid_request(
                name="alice-two", gpus="1", cpu="8", memory="32GiB", disk="150GiB"
            ),
        },
    )
    yield "all-gpus-between-members", {**alice(gpus="[0, 1]"), **member("carol", gpus="2")}
    yield (
        "readme-in-requests",
        {**alice(), "requests/README.md": "# how to ask\n", "requests/carol/.gitkeep": ""},
    )
    yield "unicode-purpose", alice(purpose="扩散模型实验 (thesis)")


GOOD = list(_good_cases())


@pytest.mark.parametrize(("name", "files"), GOOD, ids=[g[0] for g in GOOD])
def test_good_input_passes(name: str, files: Files, tmp_path: Path) -> None:
    result = validate(sample_repo(tmp_path / "repo", files))
    assert result.code == 0, result.both
    assert " error: " not in result.out
    assert "Traceback" not in result.both


def test_the_sample_requests_pass(tmp_path: Path) -> None:
    result = validate(sample_repo(tmp_path / "repo", requests=True))
    assert result.code == 0, result.both
    assert result.out == ""
    assert re.search(r"ok: [1-9][0-9]* request\(s\) valid", result.err)


def test_an_expired_request_nobody_touched_is_a_warning(tmp_path: Path) -> None:
    result = validate(sample_repo(tmp_path / "repo", alice(expires="2026-11-01")))
    assert result.code == 0, result.both
    assert f"{A}:{L['expires']}:10: warning: " in result.out
    assert result.out.rstrip().endswith("[lease.expired]")


# --- time zones -------------------------------------------------------------------------------

# 20:00 UTC on 28 November is already 29 November in Asia/Shanghai (UTC+8). With a 365-day
# limit, a lease to 2027-11-29 is fine in Shanghai and one day too long in UTC.
EVENING = "2026-11-28T20:00:00+00:00"
EDGE = alice(expires="2027-11-29")


@pytest.mark.parametrize(
    "tz", ["UTC", "Asia/Shanghai", "America/Los_Angeles", "Pacific/Kiritimati"]
)
@pytest.mark.parametrize(("zone", "code"), [("Asia/Shanghai", 0), ("UTC", 1)])
def test_lease_verdict_follows_the_policy_zone_not_tz(
    tz: str, zone: str, code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", tz)
    time.tzset()
    try:
        files = {**EDGE, **policy("timezone: Asia/Shanghai", f"timezone: {zone}")}
        result = validate(sample_repo(tmp_path / "repo", files), env={"SSP_NOW": EVENING, "TZ": tz})
        # and a pinned time without an offset is UTC, not the runner's local time
        naive = validate(tmp_path / "repo", env={"SSP_NOW": EVENING[:19], "TZ": tz})
    finally:
        monkeypatch.undo()
        time.tzset()
    assert result.code == code, result.both
    assert naive.code == code, naive.both
    assert ("[lease.too_long]" in result.out) == (code == 1)


def test_tz_really_changes_local_time_in_these_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """The zone test above means something only if TZ moves the process's clock."""
    offsets = set()
    for tz in ("UTC", "Asia/Shanghai", "America/Los_Angeles"):
        monkeypatch.setenv("TZ", tz)
        time.tzset()
        offsets.add(time.strftime("%z", time.localtime(1_800_000_000)))
    monkeypatch.undo()
    time.tzset()
    assert offsets == {"+0000", "+0800", "-0800"}


# --- what the findings say --------------------------------------------------------------------


def test_a_mistyped_value_gets_one_finding(tmp_path: Path) -> None:
    result = validate(sample_repo(tmp_path / "repo", alice(cpu="-.inf")))
    assert result.out.splitlines() == [
        f"{A}:8:6: error: cpu: expected a whole number, got a number [schema.type]"
    ]


def test_long_keys_and_values_are_clipped_in_messages(tmp_path: Path) -> None:
    long_key = "k" * 500
    files = {
        **alice(**{long_key: "1"}),
        "requests/alice/alice-two.yaml": valid_request(name="alice-two", cpu="9" * 99),
    }
    result = validate(sample_repo(tmp_path / "repo", files))
    assert result.code == 1
    assert "[schema.unknown_field]" in result.out and "[schema.range]" in result.out
    assert "k" * 100 not in result.out
    assert "9" * 100 not in result.out
    assert all(len(line) < 400 for line in result.out.splitlines())


def test_a_file_name_that_is_not_utf8_is_a_finding_not_a_crash(tmp_path: Path) -> None:
    repo = sample_repo(tmp_path / "repo", alice())
    raw = os.fsencode(repo / "requests" / "alice") + b"/caf\xe9.yaml"
    with open(raw, "wb") as out:  # noqa: PTH123  (a bytes path: pathlib cannot spell it)
        out.write(valid_request().encode())
    result = validate(repo)
    assert result.code == 1
    result.out.encode("utf-8")  # printable on a strict UTF-8 stdout (no lone surrogates)
    assert "requests/alice/caf\ufffd.yaml:3:7: error: " in result.out


def test_a_missing_repository_is_a_usage_error(tmp_path: Path) -> None:
    result = validate(tmp_path / "nowhere")
    assert result.code == 2
    assert "no such directory" in result.err
    assert "Traceback" not in result.both

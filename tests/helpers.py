"""Shared test helpers for the validator: request text, real SSH keys, temp repos, the CLI.

- `valid_request(**overrides)` writes a request file's YAML text line by line, so a test knows
  which line each field is on (`CONTAINER_LINES`, `ACCOUNT_LINES`); an override is the raw
  YAML written after `field: `, a list of raw items for a block list, or None to leave the
  field out. Keys are real ed25519 keys made by ssh-keygen once per test session.
- `sample_repo` copies the repository's own `config/` into a directory and adds files;
  `GitRepo` does the same as a real git repository with a base branch and a PR branch.
- `run_cli` runs `provisioner.cli.main` in-process and captures what it prints.

Nothing here fakes a part that runs on this machine: git, ssh-keygen and the CLI are real.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from provisioner import cli

ROOT = Path(__file__).resolve().parents[1]
NOW = "2026-11-28T12:00:00+00:00"
ENV = {"SSP_NOW": NOW}
SCHEMA_LINE = "# yaml-language-server: $schema=../../schemas/request.schema.json"

# The line each field is written on by valid_request (line 1 is the schema comment).
CONTAINER_FIELDS = (
    "kind",
    "name",
    "owner",
    "purpose",
    "image",
    "gpus",
    "cpu",
    "memory",
    "disk",
    "shares",
    "ssh_keys",
    "desktop",
    "snapshots",
    "expires",
)
ACCOUNT_FIELDS = ("kind", "name", "owner", "purpose", "server", "ssh_keys", "sudo", "expires")


def _lines(fields: Sequence[str]) -> dict[str, int]:
    lines, at = {}, 2
    for name in fields:
        lines[name] = at
        at += 2 if name == "ssh_keys" else 1  # the key itself is on the next line
    return lines


CONTAINER_LINES = _lines(CONTAINER_FIELDS)
ACCOUNT_LINES = _lines(ACCOUNT_FIELDS)
_LOGIN = re.compile(r"[A-Za-z0-9]+(-[A-Za-z0-9]+)*")


# --- SSH keys ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPair:
    public: str  # the .pub line
    private: str  # the whole private key file


@cache
def keypair(label: str, *keygen: str) -> KeyPair:
    """A real key pair (ed25519 unless `keygen` says otherwise), made by ssh-keygen once per
    label and test session."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "key"
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                *(keygen or ("-t", "ed25519")),
                "-N",
                "",
                "-C",
                f"{label}@test",
                "-f",
                str(path),
            ],
            check=True,
            capture_output=True,
        )
        return KeyPair(
            path.with_suffix(".pub").read_text(encoding="ascii").strip(),
            path.read_text(encoding="ascii"),
        )


def key(label: str) -> str:
    """The public key line for `label` (one key per member keeps ssh_key.shared quiet)."""
    return keypair(label).public


# --- request text -----------------------------------------------------------------------------

Override = str | list[str] | None


def _render(fields: Sequence[str], values: Mapping[str, Override]) -> str:
    out = [SCHEMA_LINE]
    names = [*fields, *(k for k in values if k not in fields)]
    for name in names:
        value = values.get(name)
        if value is None:
            continue
        if isinstance(value, list):
            out.append(f"{name}:")
            out += [f"  - {item}" for item in value]
        else:
            out.append(f"{name}: {value}".rstrip())
    return "\n".join(out) + "\n"


def valid_request(kind: str = "container", **overrides: Override) -> str:
    """A valid request's YAML text; each override replaces one field's raw YAML (None drops it).

    The defaults are one of alice's containers (1 GPU, 4 cores, 16GiB, 50GiB) or bob's
    account; `owner`/`name` overrides also pick the default key and name.
    """
    owner = overrides.get("owner", "alice" if kind == "container" else "bob")
    login = owner if isinstance(owner, str) and _LOGIN.fullmatch(owner) else "someone"
    name = f"{login.lower()}-box" if kind == "container" else f"{login.lower()}-common"
    values: dict[str, Override] = {
        "kind": kind,
        "name": name,
        "owner": login,
        "purpose": "Experiments for my thesis",
        "ssh_keys": [key(login)],
        "expires": "2027-06-30",
    }
    if kind == "account":
        values |= {"server": "common", "sudo": "false"}
        fields: Sequence[str] = ACCOUNT_FIELDS
    else:
        values |= {
            "image": "common-server",
            "gpus": "1",
            "cpu": "4",
            "memory": "16GiB",
            "disk": "50GiB",
            "shares": "[share]",
            "desktop": "false",
            "snapshots": "daily",
        }
        fields = CONTAINER_FIELDS
    values |= overrides
    return _render(fields, values)


def request_path(text: str) -> str:
    """requests/<owner>/<name>.yaml for a request written by valid_request."""
    owner = re.search(r"^owner: (\S+)$", text, re.MULTILINE)
    name = re.search(r"^name: (\S+)$", text, re.MULTILINE)
    assert owner and name, "request_path needs owner and name lines"
    return f"requests/{owner.group(1)}/{name.group(1)}.yaml"


def line_of(text: str, needle: str) -> int:
    """The 1-based line of the first line of `text` that contains `needle`."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} is not in the text")


def col_of(text: str, needle: str) -> int:
    """The 1-based column where `needle` starts on its line."""
    line = text.splitlines()[line_of(text, needle) - 1]
    return line.index(needle) + 1


def sample(path: str) -> str:
    """A file of the repository's own sample config or requests, as text."""
    return (ROOT / path).read_text(encoding="utf-8")


# --- files and repositories -------------------------------------------------------------------


@dataclass(frozen=True)
class Symlink:
    target: str


@dataclass(frozen=True)
class Executable:
    text: str


@dataclass(frozen=True)
class Submodule:
    """A gitlink (mode 160000); only GitRepo can write one."""


FileSpec = str | bytes | Symlink | Executable | Submodule | None
Files = Mapping[str, FileSpec]


def write_files(root: Path, files: Files) -> None:
    """Write `files` under `root`: text, bytes, links, executables; None removes a file."""
    for rel, spec in files.items():
        path = root / rel
        if spec is None:
            path.unlink(missing_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.exists():
            path.unlink()
        if isinstance(spec, Symlink):
            path.symlink_to(spec.target)
        elif isinstance(spec, Executable):
            path.write_text(spec.text, encoding="utf-8")
            path.chmod(0o755)
        elif isinstance(spec, bytes):
            path.write_bytes(spec)
        elif isinstance(spec, str):
            path.write_text(spec, encoding="utf-8")
        else:
            raise TypeError(f"{rel}: {spec!r} needs a git repository (use GitRepo)")


def sample_repo(root: Path, files: Files = (), *, requests: bool = False) -> Path:
    """`root` with the sample config/ (and sample requests/ when asked), plus `files`."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "config", root / "config")
    if requests:
        shutil.copytree(ROOT / "requests", root / "requests")
    write_files(root, dict(files))
    return root


class GitRepo:
    """A real git repository in a temp dir: `main` as the PR's base, then a PR branch."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def git(self, *args: str) -> str:
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "Test",
            "GIT_AUTHOR_EMAIL": "test@example.invalid",
            "GIT_COMMITTER_NAME": "Test",
            "GIT_COMMITTER_EMAIL": "test@example.invalid",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.root.parent),
        }
        done = subprocess.run(
            ["git", "-C", str(self.root), *args],
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )
        assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
        return done.stdout

    @classmethod
    def create(cls, root: Path, files: Files = (), *, requests: bool = False) -> GitRepo:
        """A repository whose `main` holds the sample config (and requests) plus `files`."""
        sample_repo(root, files, requests=requests)
        repo = cls(root)
        repo.git("init", "-q", "-b", "main")
        repo.git("config", "commit.gpgsign", "false")
        repo.git("config", "core.symlinks", "true")
        repo.git("add", "-A")
        repo.git("commit", "-q", "-m", "base")
        return repo

    def commit(self, files: Files, message: str = "change") -> str:
        """Write `files` (None deletes) and commit them; return the commit's sha."""
        plain = {p: s for p, s in files.items() if not isinstance(s, Submodule)}
        write_files(self.root, plain)
        self.git("add", "-A")
        for path, spec in files.items():
            if isinstance(spec, Submodule):
                sha = self.git("rev-parse", "HEAD").strip()
                self.git("update-index", "--add", "--cacheinfo", f"160000,{sha},{path}")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD").strip()

    def branch(self, name: str) -> None:
        self.git("checkout", "-q", "-b", name)

    def checkout(self, name: str) -> None:
        self.git("checkout", "-q", name)

    def move(self, old: str, new: str) -> None:
        (self.root / new).parent.mkdir(parents=True, exist_ok=True)
        self.git("mv", old, new)

    @classmethod
    def pull_request(
        cls, root: Path, base: Files, head: Files, *, requests: bool = False
    ) -> GitRepo:
        """`main` with the sample config + `base`; branch `pr` checked out with `head` on top."""
        repo = cls.create(root, base, requests=requests)
        repo.branch("pr")
        repo.commit(head, "pull request")
        return repo


# --- the CLI ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str

    @property
    def both(self) -> str:
        return self.out + self.err


def run_cli(*argv: str, env: Mapping[str, str] | None = None) -> CliResult:
    """`ssp ARGV...` in-process with `env` (default: SSP_NOW pinned); what it printed."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(argv), env=dict(ENV if env is None else env))
        except SystemExit as e:  # argparse's own exits (usage errors, --help)
            code = e.code if isinstance(e.code, int) else 2
    return CliResult(code, out.getvalue(), err.getvalue())


def validate(repo: Path, *args: str, env: Mapping[str, str] | None = None) -> CliResult:
    """`ssp validate --repo REPO ARGS...`."""
    return run_cli("validate", "--repo", str(repo), *args, env=env)

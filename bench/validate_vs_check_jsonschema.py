"""Benchmark: `ssp validate` against `check-jsonschema` on the same request files, same run.

The request contract's target is that the validator — safe YAML, schema, every policy and
cross-file rule, SSH key parsing — is no slower than `check-jsonschema`, which does the schema
alone. This script builds a throw-away repository with N valid, varied request files (each
with its own real SSH keys) and a policy and inventory big enough to accept all of them, then
times both tools as real CLI processes from this interpreter's environment, alternating which
goes first so that drift in the machine's load hits both alike. Both must accept every file:
timing a tool that failed would measure nothing. For context it also times each tool's bare
start-up (`--version`) and ssp's `validate_tree` in-process, where no interpreter starts.

Usage: python bench/validate_vs_check_jsonschema.py [--files 1000] [--reps 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from provisioner.git import files as gitfiles
from provisioner.validation import schema
from provisioner.validation.validate import validate_tree

ROOT = Path(__file__).resolve().parents[1]
# Requests are judged against a pinned "now" (SSP_NOW) so the run does not depend on today.
NOW = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)
FILES_PER_MEMBER = 4
CONTAINERS_PER_HOST = 16
GPUS_PER_HOST = 8
# The fast start issue's goals: `ssp validate`'s own start-up, and the ratio on 1,000 files.
START_GOAL = 0.15
RATIO_GOAL = 0.35
SCHEMA_LINE = "# yaml-language-server: $schema=../../schemas/request.schema.json\n"


# --- the generated repository -----------------------------------------------------------------


def _openssh(public: ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return raw.decode("ascii")


def new_key(n: int) -> str:
    """A fresh public key line; every 10th is ECDSA P-256 so the parser sees two layouts."""
    if n % 10 == 9:
        public: ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey = ec.generate_private_key(
            ec.SECP256R1()
        ).public_key()
    else:
        public = ed25519.Ed25519PrivateKey.generate().public_key()
    return f"{_openssh(public)} bench-{n}@laptop"


def members_for(files: int) -> list[str]:
    return [f"m{i:04d}" for i in range(-(-files // FILES_PER_MEMBER))]


def write_policy(repo: Path, members: Sequence[str]) -> None:
    """The sample policy, with one quota that fits four requests per member."""
    policy = yaml.safe_load((ROOT / "config" / "policy.yaml").read_text(encoding="utf-8"))
    policy["users"] = {
        **{admin: {"uid": 1000} for admin in policy["admins"]},
        **{m: {"uid": 2000 + i, "quota": "bench"} for i, m in enumerate(members)},
    }
    policy["quotas"]["bench"] = {
        "containers": FILES_PER_MEMBER,
        "gpus": 16,
        "cpu": 256,
        "memory": "1TiB",
        "disk": "10TiB",
    }
    text = yaml.safe_dump(policy, sort_keys=False, allow_unicode=True)
    (repo / "config" / "policy.yaml").write_text(text, encoding="utf-8")


def host_id(n: int) -> str:
    return f"node-{n:04d}"


def write_hosts(repo: Path, containers: int) -> None:
    """One host per 16 containers that name one; `a-pool` (first in order) for the others.

    Written by hand, one line per GPU: the loader caps a file at 64 KiB, and ~440 GPUs in
    block style would not fit.
    """
    lines = [
        "# yaml-language-server: $schema=../schemas/hosts.schema.json",
        "hosts:",
        "  a-pool: {cpu: 4096, memory: 64TiB, disk: 1000TiB}",
    ]
    for h in range(-(-containers // CONTAINERS_PER_HOST)):
        lines += [f"  {host_id(h)}:", "    cpu: 512", "    memory: 4TiB", "    disk: 64TiB"]
        lines.append("    gpus:")
        # Domain = host number + 1 keeps every PCI address and UUID distinct.
        lines += [
            f'      - {{index: {g}, model: RTX 4090, pci: "{h + 1:04x}:{g:02x}:00.0", '
            f"uuid: GPU-{h + 1:08x}-0000-4000-8000-{g:012x}, memory: 24564MiB}}"
            for g in range(GPUS_PER_HOST)
        ]
    (repo / "config" / "hosts.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


# Per slot on a host: what the container asks for. GPUs 0-3 pinned and 3 counted, of 8: it
# fits. Slot 6 names no host and takes the policy's defaults: placement puts it on `a-pool`.
_SLOTS: tuple[dict[str, str], ...] = (
    {"gpus": "[0, 1]", "cpu": "16", "memory": "64GiB", "disk": "500GiB"},
    {"gpus": "[2]", "cpu": "8", "memory": "32GiB"},
    {"gpus": "2", "cpu": "12", "memory": "48GiB", "disk": "200GiB", "desktop": "true"},
    {"gpus": "0", "cpu": "2", "memory": "8GiB", "disk": "50GiB"},
    {"gpus": "[3]", "image": "ubuntu-24.04", "snapshots": "none"},
    {"gpus": "1", "cpu": "4", "memory": "16GiB"},
    {},
    {"cpu": "6", "memory": "24GiB", "disk": "80GiB", "snapshots": "daily"},
    {"cpu": "4", "memory": "16GiB", "disk": "100GiB", "desktop": "true"},
    {"cpu": "32", "memory": "128GiB", "disk": "1TiB"},
    {"image": "ubuntu-24.04", "cpu": "2", "memory": "4GiB", "disk": "20GiB"},
    {"gpus": "0", "memory": "16GiB", "snapshots": "weekly"},
    {"cpu": "8", "disk": "300GiB"},
    {"cpu": "16", "memory": "64GiB", "desktop": "false"},
    {"memory": "2048MiB", "disk": "10GiB", "snapshots": "none"},
    {"cpu": "1"},
)


def container_text(owner: str, name: str, slot: int, host: int, keys: Sequence[str]) -> str:
    fields = _SLOTS[slot]
    lines = [
        "kind: container",
        f"name: {name}",
        f"owner: {owner}",
        f"purpose: Benchmark container {name} (slot {slot})",
    ]
    if "image" in fields:
        lines.append(f"image: {fields['image']}")
    for key in ("gpus", "cpu", "memory", "disk"):
        if key in fields:
            lines.append(f"{key}: {fields[key]}")
    if slot % 2 == 0:
        lines.append("shares: [share]")
    lines.append("ssh_keys:")
    lines += [f"  - {k}" for k in keys]
    for key in ("desktop", "snapshots"):
        if key in fields:
            lines.append(f"{key}: {fields[key]}")
    lines.append(f"expires: {NOW.date() + timedelta(days=30 + (host * 7 + slot) % 300)}")
    if fields:
        lines.append(f"host: {host_id(host)}")
    return SCHEMA_LINE + "\n".join(lines) + "\n"


def account_text(owner: str, name: str, n: int, keys: Sequence[str]) -> str:
    lines = [
        "kind: account",
        f"name: {name}",
        f"owner: {owner}",
        "purpose: Notebooks on the shared server",
        "server: common",
        "ssh_keys:",
        *[f"  - {k}" for k in keys],
        f"sudo: {'true' if n % 3 == 0 else 'false'}",
        f"expires: {NOW.date() + timedelta(days=10 + n % 350)}",
    ]
    return SCHEMA_LINE + "\n".join(lines) + "\n"


@dataclass
class Corpus:
    repo: Path
    files: list[str]  # relative to repo, in order
    containers: int
    accounts: int
    keys: int


def build_repo(repo: Path, files: int) -> Corpus:
    """config/, schemas/ and `files` valid requests: 4 per member, one in 8 of them an account."""
    (repo / "config").mkdir(parents=True)
    members = members_for(files)
    write_policy(repo, members)
    schema.write_all(repo / "schemas")
    paths: list[str] = []
    containers = accounts = keys = 0
    for n in range(files):
        owner, k = members[n // FILES_PER_MEMBER], n % FILES_PER_MEMBER
        # A second key on every 5th file; every key in the corpus is a different one.
        mine = [new_key(keys + j) for j in range(2 if n % 5 == 4 else 1)]
        keys += len(mine)
        # Members with an odd number take an account on Common-Server as their last file.
        if k == FILES_PER_MEMBER - 1 and (n // FILES_PER_MEMBER) % 2 == 1:
            name = f"{owner}-notebooks"
            text = account_text(owner, name, n, mine)
            accounts += 1
        else:
            name = f"{owner}-box{k}"
            host, slot = divmod(containers, CONTAINERS_PER_HOST)
            text = container_text(owner, name, slot, host, mine)
            containers += 1
        rel = f"requests/{owner}/{name}.yaml"
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text, encoding="utf-8")
        paths.append(rel)
    write_hosts(repo, containers)
    return Corpus(repo, paths, containers, accounts, keys)


# --- measuring --------------------------------------------------------------------------------


@dataclass
class Series:
    name: str
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)

    def add(self, run: Run) -> None:
        self.seconds.append(run.seconds)
        if run.cpu is not None:
            self.cpu.append(run.cpu)
        if run.rss_kib is not None:
            self.rss_kib.append(run.rss_kib)

    def row(self) -> str:
        s = self.seconds
        cpu = f"{statistics.median(self.cpu):8.3f}" if self.cpu else f"{'-':>8}"
        rss = f"{max(self.rss_kib) / 1024:8.1f}" if self.rss_kib else f"{'-':>8}"
        return (
            f"{self.name:<34} {statistics.median(s):8.3f} {min(s):8.3f} {max(s):8.3f} "
            f"{cpu} {rss} {len(s):>4}"
        )


def tool(name: str) -> str:
    """A console script from this interpreter's environment (the venv), else from PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"bench: {name} not found next to {sys.executable} or on PATH")
    return found


@dataclass(frozen=True)
class Run:
    seconds: float  # wall clock
    cpu: float | None  # user + system seconds of the tool, when GNU time is there to say
    rss_kib: int | None  # peak resident set of the tool


def run_cli(argv: Sequence[str], cwd: Path, env: dict[str, str], logs: Path) -> Run:
    """One run of a CLI, which must exit 0 (or the benchmark aborts).

    CPU time and peak RSS come from GNU time when it is installed. Not from our own wait4: a
    child's ru_maxrss starts at the high-water mark of whoever forked it, and this script has
    pydantic and the whole validator loaded, so it would report our size, not the tool's.
    """
    gnu_time = Path("/usr/bin/time")
    rss_file = logs / "rss"
    rss_file.unlink(missing_ok=True)
    wrapped = [str(gnu_time), "-f", "%M %U %S", "-o", str(rss_file), *argv]
    if not gnu_time.exists():
        wrapped = list(argv)
    with (logs / "stdout").open("wb") as out, (logs / "stderr").open("wb") as err:
        start = time.perf_counter()
        code = subprocess.run(wrapped, cwd=cwd, env=env, stdout=out, stderr=err, check=False)
        elapsed = time.perf_counter() - start
    if code.returncode != 0:
        tail = ((logs / "stdout").read_bytes() + (logs / "stderr").read_bytes())[-2000:]
        raise SystemExit(
            f"bench: {' '.join(argv[:4])} … exited {code.returncode}; a benchmark of a tool "
            f"that failed means nothing. Its output ends:\n{tail.decode('utf-8', 'replace')}"
        )
    # GNU time writes "Command exited with non-zero status" lines first; ours is the last.
    last = rss_file.read_text().strip().splitlines()[-1:] if rss_file.exists() else []
    try:
        rss, user, system = last[0].split()
        return Run(elapsed, float(user) + float(system), int(rss))
    except (IndexError, ValueError):
        return Run(elapsed, None, None)


def steady_state(repo: Path, files: int, reps: int) -> Series:
    """ssp's whole validation in-process: read the tree, load, schema, rules; no start-up."""
    series = Series("(c) ssp validate_tree, in-process")
    for rep in range(reps + 1):
        start = time.perf_counter()
        result = validate_tree(gitfiles.worktree(repo), NOW)
        elapsed = time.perf_counter() - start
        if not result.ok or len(result.valid) != files:
            raise SystemExit(f"bench: in-process validation found problems: {result.problems[:3]}")
        if rep:  # the first pass builds the cached validators and is not steady state
            series.seconds.append(elapsed)
    return series


def small_repo(where: Path) -> Path:
    """The sample checkout's config/ and its 3 requests: a lab's everyday `ssp validate`.

    Their leases are moved to 60 days after the pinned "now", inside the policy's maximum.
    """
    for part in ("config", "requests"):
        shutil.copytree(ROOT / part, where / part)
    for path in (where / "requests").glob("*/*.yaml"):
        text = path.read_text(encoding="utf-8")
        lease = f"expires: {NOW.date() + timedelta(days=60)}"
        path.write_text(re.sub(r"(?m)^expires: .*$", lease, text), encoding="utf-8")
    return where


def measure(corpus: Corpus, reps: int, small: Path) -> list[Series]:
    """Each tool `reps` times, alternating, after one untimed warm-up run of each."""
    env = {**os.environ, "SSP_NOW": NOW.isoformat(), "NO_COLOR": "1"}
    # This checkout's ssp, whichever checkout the environment's editable install points at.
    env["PYTHONPATH"] = str(ROOT)
    env.pop("GITHUB_ACTIONS", None)  # plain text output, no step summary
    ssp, cjs = tool("ssp"), tool("check-jsonschema")
    schema_file = "schemas/request.schema.json"
    jobs: list[tuple[Series, list[str]]] = [
        (Series("(a) ssp validate --all"), [ssp, "validate", "--all", "--repo", "."]),
        (
            Series("(b) check-jsonschema"),
            [cjs, "--schemafile", schema_file, *corpus.files],
        ),
    ]
    startups: list[tuple[Series, list[str]]] = [
        (Series("    ssp --version (start-up)"), [ssp, "--version"]),
        (Series("    check-jsonschema --version"), [cjs, "--version"]),
        # what `ssp validate` loads before it reads a file: the command, the models, schemas
        (Series("(d) ssp validate --help (start-up)"), [ssp, "validate", "--help"]),
        (
            Series("(e) ssp validate --all, 3 files"),
            [ssp, "validate", "--all", "--repo", str(small)],
        ),
    ]
    with tempfile.TemporaryDirectory(prefix="ssp-bench-logs-") as tmp:
        logs = Path(tmp)
        # Both tools run from cached bytecode, as installed tools do. A dev shell that sets
        # PYTHONDONTWRITEBYTECODE would otherwise make the editable `provisioner` recompile
        # on every start while site-packages (compiled by pip) would not: an unfair handicap.
        # The cache lives in our temp folder, so the checkout is not touched.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(logs / "pycache")
        for _series, argv in [*jobs, *startups]:
            run_cli(argv, corpus.repo, env, logs)  # warm-up: bytecode cache, page cache
        for rep in range(reps):
            # Alternate who goes first: a load spike or a warm page cache favours neither.
            order = jobs if rep % 2 == 0 else jobs[::-1]
            for series, argv in [*order, *(startups if rep % 2 == 0 else startups[::-1])]:
                run = run_cli(argv, corpus.repo, env, logs)
                series.add(run)
                print(f"  rep {rep + 1}/{reps}  {series.name.strip():<30} {run.seconds:7.3f} s")
    return [jobs[0][0], jobs[1][0], *(s for s, _ in startups)]


# --- report -----------------------------------------------------------------------------------


def report(corpus: Corpus, reps: int, series: Sequence[Series], load: Sequence[str]) -> None:
    ssp, cjs = series[0], series[1]
    ratio = statistics.median(ssp.seconds) / statistics.median(cjs.seconds)
    print()
    print(
        f"{len(corpus.files)} request files ({corpus.containers} containers, "
        f"{corpus.accounts} accounts, {corpus.keys} distinct SSH keys), {reps} runs each"
    )
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()}, "
        f"load average {' -> '.join(load)}"
    )
    print()
    print(
        f"{'wall seconds':<34} {'median':>8} {'min':>8} {'max':>8} {'CPU s':>8} {'RSS MiB':>8}"
        f" {'runs':>4}"
    )
    for s in series:
        print(s.row())
    print()
    met = ratio <= 1.0
    print(f"ratio ssp / check-jsonschema (median wall time, whole CLI runs): {ratio:.2f}")
    ssp0, cjs0 = series[5], series[4]  # ssp's is `validate --help`: --version loads nothing
    print(
        "work beyond start-up (median of the run - median of `ssp validate --help` / "
        "`check-jsonschema --version`): "
        f"ssp {statistics.median(ssp.seconds) - statistics.median(ssp0.seconds):.2f} s, "
        f"check-jsonschema {statistics.median(cjs.seconds) - statistics.median(cjs0.seconds):.2f} s"
    )
    if ssp.cpu and cjs.cpu:
        cpu_ratio = statistics.median(ssp.cpu) / statistics.median(cjs.cpu)
        print(f"ratio ssp / check-jsonschema (median CPU time, user + system):  {cpu_ratio:.2f}")
    print(
        "target (no slower than check-jsonschema, doing all the policy checks): "
        + ("MET" if met else "NOT MET")
    )
    start, three = statistics.median(series[5].seconds), statistics.median(series[6].seconds)
    verdicts: tuple[tuple[str, bool, str], ...] = (
        (f"ssp validate start-up {start:.3f} s", start <= START_GOAL, f"<= {START_GOAL} s"),
        (
            f"ratio on {len(corpus.files)} files {ratio:.2f}",
            ratio <= RATIO_GOAL,
            f"<= {RATIO_GOAL}",
        ),
    )
    if ssp.cpu and cjs.cpu:
        cpu_ratio = statistics.median(ssp.cpu) / statistics.median(cjs.cpu)
        verdicts = (
            *verdicts,
            (
                f"CPU-time ratio on {len(corpus.files)} files {cpu_ratio:.2f}",
                cpu_ratio <= RATIO_GOAL,
                f"<= {RATIO_GOAL}",
            ),
        )
    print(f"3-file check (the sample checkout, --all): {three:.3f} s")
    for what, ok, goal in verdicts:
        print(f"goal (fast start issue) {what} {goal}: {'MET' if ok else 'NOT MET'}")


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=1000, help="request files (default 1000)")
    parser.add_argument("--reps", type=int, default=5, help="runs of each tool (default 5)")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="build the repo here and keep it")
    args = parser.parse_args(argv)
    if args.files < 1 or args.reps < 1:
        parser.error("--files and --reps must be at least 1")

    def go(repo: Path) -> None:
        started = time.perf_counter()
        corpus = build_repo(repo, args.files)
        print(f"built {repo} in {time.perf_counter() - started:.1f} s; measuring")
        load = [_load()]
        with tempfile.TemporaryDirectory(prefix="ssp-bench-small-") as small:
            a, b, a0, b0, d, e = measure(corpus, args.reps, small_repo(Path(small) / "repo"))
        c = steady_state(repo, args.files, args.reps)
        load.append(_load())
        report(corpus, args.reps, [a, b, c, a0, b0, d, e], load)

    if args.keep:
        if args.keep.exists():
            parser.error(f"{args.keep} exists; --keep wants a new folder")
        go(args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="ssp-bench-") as tmp:
            go(Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""requirements.lock, what the GPU host installs from, agrees with pyproject.toml: every
dependency (and the build backend) pinned to a version its specifier allows, every pin
hashed, nothing else unpinned. `make lock` writes it (pip-compile --generate-hashes).
"""

from __future__ import annotations

import re
import tomllib

from helpers import ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

LOCK = ROOT / "requirements.lock"


def locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) from the lock's `name==version \\ --hash=sha256:…` entries."""
    text = LOCK.read_text(encoding="utf-8").replace("\\\n", " ")
    out: dict[str, tuple[str, list[str]]] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})*)", line)
        assert match, f"not a pinned, hashed requirement: {line[:80]}"
        hashes = re.findall(r"sha256:([0-9a-f]{64})", match[3])
        out[canonicalize_name(match[1])] = (match[2], hashes)
    return out


def project() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_every_locked_package_is_pinned_and_hashed() -> None:
    pins = locked()
    assert pins
    assert all(hashes for _version, hashes in pins.values())


def test_every_dependency_and_the_build_backend_are_locked_within_their_specifiers() -> None:
    doc = project()
    wanted = [
        *doc["project"]["dependencies"],  # type: ignore[index]
        *doc["build-system"]["requires"],  # type: ignore[index]
    ]
    pins = locked()
    for text in wanted:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in requirements.lock: run `make lock`"
        version, _ = pins[name]
        assert req.specifier.contains(version, prereleases=True), f"{name}=={version} vs {req}"


def test_the_lock_holds_no_development_tools() -> None:
    # the GPU host gets what ssp runs with, not the test and lint tools
    dev = {
        canonicalize_name(Requirement(t).name)
        for t in project()["project"]["optional-dependencies"]["dev"]
    }  # type: ignore[index]
    assert not dev & set(locked())


def test_the_lock_says_how_it_was_made_and_make_lock_makes_it_so() -> None:
    header = LOCK.read_text(encoding="utf-8").split("\n\n", 1)[0]
    assert "pip-compile" in header and "--generate-hashes" in header
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    flags = re.search(r"LOCK_FLAGS := (.*?)\n\n", makefile, re.DOTALL)
    assert flags
    for flag in flags[1].replace("\\\n", " ").split():
        if flag.startswith("--") and flag != "--quiet":
            assert flag.split("=")[0] in header, flag


# The GPU host's adapters (LXD, GitHub, NVML) and what they import directly besides.
HOST_ONLY = {
    "pylxd",
    "pygithub",
    "nvidia-ml-py",
    "prometheus-client",
    "pyjwt",
    "requests",
    "cryptography",
}


def test_the_members_slim_list_is_the_dependencies_without_the_host_libraries() -> None:
    slim = [
        Requirement(line)
        for line in (ROOT / "requirements-member.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    deps = [Requirement(t) for t in project()["project"]["dependencies"]]  # type: ignore[index]
    wanted = {canonicalize_name(r.name): str(r.specifier) for r in deps}
    assert wanted.keys() >= HOST_ONLY  # still runtime dependencies of a full install
    for name in HOST_ONLY:
        del wanted[name]
    assert {canonicalize_name(r.name): str(r.specifier) for r in slim} == wanted

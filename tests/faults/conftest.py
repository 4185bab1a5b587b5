"""Fixtures of the fault suite: the integration fixtures (a throwaway LXD project per test,
the lab checkout, the adapters), an estate worth losing, and the record of each run.

`estate` is what a fault must never cost: a running container with a file in the share and
one in root's home, a snapshot its owner took, and a retired container with its snapshot.
`record` writes what the user saw and how long convergence took to a JSON-lines file
(SSP_FAULTS_LOG, else the test's tmp dir): tests/faults/README.md is filled from it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from integration.conftest import (  # noqa: F401  (fixtures, re-exported for this folder)
    adapters,
    lxd,
    lxd_project,
    lxd_socket,
    suffix,
    unique,
)
from integration.helpers import Adapters, LabRepo

from faults.helpers import Estate, make_estate

# Ports of their own: other suites forward ports from 24000 up on the same host (the fault
# suite keeps to one worker: the whole window is its).
FAULTS_PORTS = (25000, 25999)


@pytest.fixture
def lab(tmp_path: Path, lxd_project: str, suffix: str) -> LabRepo:  # noqa: F811
    """A lab checkout whose policy points at the test's project."""
    return LabRepo.make(tmp_path, lxd_project, suffix, window=FAULTS_PORTS)


@pytest.fixture
def estate(lab: LabRepo, adapters: Adapters, suffix: str) -> Estate:  # noqa: F811
    return make_estate(lab, adapters, suffix)


@pytest.fixture
def record(tmp_path: Path, request: pytest.FixtureRequest) -> Callable[..., None]:
    """record(fault=..., seen=..., exit=..., converge_s=...): one line of the figures."""
    target = Path(os.environ.get("SSP_FAULTS_LOG") or tmp_path / "faults.jsonl")

    def write(**fields: Any) -> None:
        fields = {"test": request.node.name, **fields}
        with target.open("a", encoding="utf-8") as out:
            out.write(json.dumps(fields) + "\n")

    return write

"""A Tree: the bytes of one revision's request and config files, as validation reads them.

Kept apart from the git adapter that fills it, so the pure core never imports git code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from provisioner.values.problems import Problem
from provisioner.values.requestpaths import under_requests

# The largest request or config file read: far above any real one, far below a memory problem.
MAX_BYTES = 64 * 1024


@dataclass(frozen=True)
class Tree:
    """The files of one revision that validation reads, and what reading them refused."""

    files: Mapping[str, bytes]
    problems: tuple[Problem, ...] = ()

    def requests(self) -> list[str]:
        return sorted(p for p in self.files if under_requests(p))

"""A Tree: the bytes of one revision's request and config files, as validation reads them.

Kept apart from the git adapter that fills it, so the pure core never imports git code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from provisioner.problems import Problem
from provisioner.requestpaths import under_requests


@dataclass(frozen=True)
class Tree:
    """The files of one revision that validation reads, and what reading them refused."""

    files: Mapping[str, bytes]
    problems: tuple[Problem, ...] = ()

    def requests(self) -> list[str]:
        return sorted(p for p in self.files if under_requests(p))

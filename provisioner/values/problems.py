"""Positioned findings: what the validator reports about a file, as values.

A Problem is a refusal the user can act on (a bad field, a quota exceeded); it always
carries the file, line and column it is about, so that editors and GitHub annotations can
point at it. Problems are collected, never raised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    NOTICE = "notice"


@dataclass(frozen=True, order=True)
class Position:
    """1-based line and column in a file."""

    line: int = 1
    col: int = 1


@dataclass(frozen=True)
class Problem:
    """One finding: `path:line:col: severity: message [rule]`."""

    path: str
    position: Position
    rule: str
    message: str
    severity: Severity = Severity.ERROR
    # The data path inside the document (("gpus", 1) for the second GPU), for tools.
    where: tuple[str | int, ...] = field(default=(), compare=False)
    # The message in Chinese where the finding has its own (the YAML slips); otherwise a
    # Chinese report says the rule's catalogued Chinese line before the English message.
    zh: str | None = field(default=None, compare=False)

    @property
    def line(self) -> int:
        return self.position.line

    @property
    def col(self) -> int:
        return self.position.col

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.path, self.line, self.col, self.rule)

    def __str__(self) -> str:
        return (
            f"{self.path}:{self.line}:{self.col}: {self.severity.value}: "
            f"{self.message} [{self.rule}]"
        )

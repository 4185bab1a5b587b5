"""A loaded YAML file as a value: its data, and where each part of it was written.

`provisioner.validation.sources` makes `Document`s; the schema check, the rules and every
finding read positions from them, so a problem lands on the exact line of the file it is about.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from provisioner.values.problems import Position

# A path into the data: mapping keys and list indices, e.g. ("ssh_keys", 0).
Where = tuple[str | int, ...]


@dataclass(frozen=True)
class Document:
    """A loaded file: its data and where each part of it was written."""

    path: str
    data: Any
    values: Mapping[Where, Position]
    keys: Mapping[Where, Position]

    def position(self, where: Where) -> Position:
        """Where `where` was written; for a missing part, the closest written parent."""
        probe = tuple(where)
        while probe:
            if probe in self.values:
                return self.values[probe]
            probe = probe[:-1]
        return self.values.get((), Position(1, 1))

    def key_position(self, where: Where) -> Position:
        """The position of the mapping key at `where` (the value's position otherwise)."""
        return self.keys.get(tuple(where)) or self.position(where)

"""/etc/subuid and /etc/subgid: which member UIDs LXD may map, and what `ssp host init` appends.

Files are real files in a temporary folder; the host's own are never touched.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.host import subidfiles
from provisioner.values import subids
from provisioner.values.subids import LXD_DEFAULT, Range

# What runner/dev-lxd.sh leaves on a development host, and a stock Debian host with one user.
DEV_HOST = "_lxd:100000:10000001\nroot:100000:10000001\nroot:1000:100\n"
DEBIAN = "admin:100000:65536\n"


def test_parse_keeps_well_formed_lines_only() -> None:
    text = "# comment\nroot:1000:1\n\nbroken line\nroot:x:1\nalice:100000:65536\n"
    assert subids.parse(text) == [Range("root", 1000, 1), Range("alice", 100000, 65536)]


@pytest.mark.parametrize(
    ("text", "ids", "missing"),
    [
        (DEV_HOST, [1000, 1001, 1099], []),  # a delegated range covers its members
        (DEV_HOST, [1099, 1100], [1100]),  # one past the range is not covered
        ("root:1001:1\n", [1000, 1001, 1002], [1000, 1002]),
        ("_lxd:1000:100\n", [1000], [1000]),  # only root's entries count for LXD
        ("", [1003, 1001, 1001], [1001, 1003]),
    ],
)
def test_undelegated_ids(text: str, ids: list[int], missing: list[int]) -> None:
    assert subids.undelegated(subids.parse(text), ids) == missing


def test_a_dev_host_needs_nothing() -> None:
    assert subids.additions(DEV_HOST, [1000, 1001, 1002, 1003]) == []


def test_members_are_delegated_one_line_per_run_of_uids() -> None:
    text = "root:100000:65536\n"
    assert subids.additions(text, [1003, 1000, 1001, 1002, 1010]) == [
        Range("root", 1000, 4),
        Range("root", 1010, 1),
    ]


def test_a_file_without_a_root_range_first_gets_lxds_default() -> None:
    # With no root entry LXD uses 1000000:1000000000 by itself; adding only root:1000:1 would
    # leave it a map too small for any container, so the default is written down first.
    assert subids.additions(DEBIAN, [1000]) == [LXD_DEFAULT, Range("root", 1000, 1)]
    assert str(LXD_DEFAULT) == "root:1000000:1000000000"


def test_append_then_nothing_left_to_add(tmp_path: Path) -> None:
    path = tmp_path / "subuid"
    path.write_text("admin:100000:65536", encoding="utf-8")  # no final newline
    subidfiles.append(path, subids.additions(subidfiles.read(path), [1001, 1002]))
    assert path.read_text(encoding="utf-8") == (
        "admin:100000:65536\nroot:1000000:1000000000\nroot:1001:2\n"
    )
    assert subids.additions(subidfiles.read(path), [1001, 1002]) == []


def test_a_missing_file_reads_empty_and_is_created(tmp_path: Path) -> None:
    path = tmp_path / "subgid"
    assert subidfiles.read(path) == ""
    subidfiles.append(path, [Range("root", 1000, 1)])
    assert path.read_text(encoding="utf-8") == "root:1000:1\n"


def test_appending_nothing_leaves_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "subuid"
    subidfiles.append(path, [])
    assert not path.exists()

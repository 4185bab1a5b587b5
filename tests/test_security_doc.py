"""SECURITY.md names, for each defence, the test that proves it: every test it names exists,
and the new defences of the trust model each cite at least one test."""

from __future__ import annotations

import re

from helpers import ROOT

TEXT = (ROOT / "SECURITY.md").read_text(encoding="utf-8")
CITED = re.findall(r"`((?:integration/)?test_[a-z_]+\.py)::(test_[a-z0-9_]+)`", TEXT)


def test_security_md_cites_tests() -> None:
    assert len(CITED) > 40


def test_every_cited_test_exists() -> None:
    missing = [
        f"{path}::{name}"
        for path, name in CITED
        if not re.search(
            rf"^def {name}\(", (ROOT / "tests" / path).read_text(encoding="utf-8"), re.MULTILINE
        )
    ]
    assert not missing, f"SECURITY.md cites tests that do not exist: {missing}"


def test_each_finding_of_the_adversarial_review_has_its_defence_and_test() -> None:
    for path in (
        "test_pr_merge.py",
        "test_pr_commits.py",
        "test_doctor_github.py",
        "test_tree_bounds.py",
        "test_output_escaping.py",
        "test_lockfile.py",
        "test_summary_cap.py",
        "test_held_names.py",
        "integration/test_held_names_real.py",
        "integration/test_member_images_real.py",
    ):
        assert any(p == path for p, _ in CITED), path

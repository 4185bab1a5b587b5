"""Shared pytest setup: the fake GitHub's fixtures, and no real network for unit tests."""

from __future__ import annotations

pytest_plugins = ["fakegithub.fixtures"]

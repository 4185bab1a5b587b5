"""The admin guide's "from zero" chapter (section 1a) read as what it is: shell blocks run in
order on a fresh Debian 12 host. The install-from-zero test runs these blocks as written; the
fast tests check that both languages hold the same blocks and that every placeholder the test
replaces is visible in them."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUIDES = {"en": ROOT / "docs" / "admin-guide.md", "zh": ROOT / "docs" / "admin-guide.zh.md"}
HEADING = "## 1a."
# What the test replaces, and nothing else: each must stand in the blocks as written.
PLACEHOLDERS = ("OWNER/REPO", "<hex>", "https://api.github.com", "images:debian/12")
# The block that reads the token on its standard input (an admin pastes it).
TOKEN_BLOCK = "(umask 077; cat >/root/github-pat)"
_BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def chapter(path: Path) -> str:
    """The text from the chapter's heading to the next second-level heading."""
    text = path.read_text(encoding="utf-8")
    start = text.index(f"\n{HEADING}") + 1
    end = text.find("\n## ", start)
    return text[start : end if end != -1 else len(text)]


def shell_blocks(path: Path) -> list[str]:
    """The chapter's ```sh blocks, in order, each as the text a shell is given."""
    return _BLOCK.findall(chapter(path))

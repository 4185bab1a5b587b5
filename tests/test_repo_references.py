"""The repository stands on its own: no file points to notes, design documents or paths that
live outside it, every relative Markdown link resolves inside it, and every citation of a
section (`SECURITY.md, "LXD"`, `docs/design.md, "Facts the code relies on"`) names a heading
that exists. What used to be cited from outside is in SECURITY.md and docs/design.md."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from helpers import ROOT

THIS = Path(__file__).resolve()
# Spelled in pieces so this file does not match itself.
OUTSIDE = re.compile(
    "|".join(
        [
            r"(?i:\bcr" + r"ib\b)",
            r"\bDESIGN" + r"\.md\b",
            r"\bSTYLE" + r"\.md\b",
            r"\bshared/(?:notes|contracts|hooks|DESIGN|SECURITY|STYLE)\b",
            r"/wo" + r"rk/",
            r"(?<![\w/])notes/[\w.-]+\.md\b",
        ]
    )
)
REPO_PATH = re.compile(
    r"(?<![\w./<-])((?:docs|tests|provisioner|runner|config|schemas|bench)/"
    r"[\w./-]*[\w-]\.(?:md|py|sh|yaml|yml|json|j2|toml))\b"
)
LINK = re.compile(r"\]\(([^)\s]+)\)")
CITATION = re.compile(r"\b(SECURITY\.md|docs/design\.md)[,]?\s+\"([^\"]+)\"")


def tracked_text_files() -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    files = []
    for name in filter(None, names):
        path = ROOT / name.decode()
        if path.resolve() == THIS or not path.is_file() or path.is_symlink():
            continue
        if path.parts[-2:-1] == ("contracts",) and path.suffix == ".json":
            continue  # GitHub's published API description, kept as GitHub wrote it
        try:
            files.append((path, path.read_text(encoding="utf-8")))
        except UnicodeDecodeError:
            continue
    return files  # type: ignore[return-value]


FILES = tracked_text_files()


def headings(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [m.strip() for m in re.findall(r"^#+\s+(.+)$", text, re.MULTILINE)]


def test_nothing_points_outside_the_repository() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
        for path, text in FILES
        for m in OUTSIDE.finditer(text)
    ]
    assert not found, "references to files outside the repository (use SECURITY.md or " + (
        f"docs/design.md instead): {found}"
    )


def guiding(path: Path) -> bool:
    """Files a reader follows references from: the package, the docs, the workflows."""
    where = path.relative_to(ROOT).parts
    return where[0] in ("provisioner", "docs", ".github") or (
        len(where) == 1 and path.suffix == ".md"
    )


def test_every_repository_path_named_in_code_and_docs_exists() -> None:
    missing = sorted(
        {
            f"{path.relative_to(ROOT)}: {m.group(1)}"
            for path, text in FILES
            if guiding(path)
            for m in REPO_PATH.finditer(text)
            if not (ROOT / m.group(1)).exists()
        }
    )
    assert not missing, missing


def test_every_relative_markdown_link_resolves_inside_the_repository() -> None:
    broken = []
    for path, text in FILES:
        if path.suffix != ".md":
            continue
        for target in LINK.findall(text):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            resolved = (path.parent / target.split("#", 1)[0]).resolve()
            if not resolved.is_relative_to(ROOT.resolve()) or not resolved.exists():
                broken.append(f"{path.relative_to(ROOT)}: {target}")
    assert not broken, broken


def test_every_cited_section_exists() -> None:
    cited = [
        (path, document, " ".join(section.split()))
        for path, text in FILES
        for document, section in CITATION.findall(text)
    ]
    assert any(doc == "docs/design.md" for _, doc, _ in cited)
    wrong = [
        f'{path.relative_to(ROOT)}: {document} "{section}"'
        for path, document, section in cited
        if not any(h.startswith(section) for h in headings(ROOT / document))
    ]
    assert not wrong, wrong


def test_the_checks_see_what_they_look_for() -> None:
    """The patterns match the kinds of reference that were once in the code."""
    assert OUTSIDE.search("checked on 5.0.2 (cr" + "ib sheet §2.3)")
    assert OUTSIDE.search("see shared/notes/lxd.md")
    assert OUTSIDE.search("as DESIGN" + ".md says")
    assert REPO_PATH.search("see docs/no-such-guide.md for")
    assert CITATION.search('(SECURITY.md "Input\nhandling")')

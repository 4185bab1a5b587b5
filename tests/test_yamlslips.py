"""Keyboard slips behind a YAML error (issue 26): named where typed, never blamed wrongly.

`sources.load` on request text as a member's editor saved it; the line-and-message cases
through the real CLI are in tests/test_validate_cases.py (`ime-*`, `unclosed-quote`,
`syntax-tab-indent`) and the Chinese words in tests/test_lang.py.
"""

from __future__ import annotations

import pytest

from provisioner.validation.sources import load
from provisioner.validation.yamlslips import MAX_TRIES, first_slip

HEAD = "kind: container\nname: alice-box\nowner: alice\n"
KEYS = 'ssh_keys:\n  - "ssh-ed25519 AAAA"\n'


def _finding(text: str) -> tuple[int, int, str, str]:
    doc, problems = load(text.encode("utf-8"), "requests/alice/alice-box.yaml")
    assert doc is None and len(problems) == 1
    p = problems[0]
    return p.line, p.col, p.rule, p.message


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (HEAD + "cpu：8\nmemory: 8GiB\n", (4, 4, "yaml.fullwidth")),  # YAML blames line 5
        (HEAD + "cpu：8\n", (4, 4, "yaml.fullwidth")),
        ("kind：container\n" + HEAD[16:], (1, 5, "yaml.fullwidth")),
        (HEAD + "ssh_keys：\n  - ssh-ed25519 AAAA a@b\n", (4, 9, "yaml.fullwidth")),
        (HEAD + 'purpose: "Thesis\n' + "cpu: 8\n" * 16, (4, 10, "yaml.unclosed_quote")),
        (HEAD + "purpose: 'Thesis\ncpu: 8\n", (4, 10, "yaml.unclosed_quote")),
        # closed by the next quote in the file: the parser fails lines later, elsewhere
        (HEAD + 'purpose: "Thesis\n' + KEYS, (4, 10, "yaml.unclosed_quote")),
        (HEAD + "host:\n  a: 1\n\tb: 2\n", (6, 1, "yaml.tab_indent")),
        (HEAD + "ssh_keys:\n\u3000- ssh-ed25519 AAAA a@b\n", (5, 1, "yaml.fullwidth")),
    ],
    ids=["colon", "colon-last", "colon-kind", "colon-list", "dquote", "squote", "closed-later",
         "tab", "ideographic-space"],
)  # fmt: skip
def test_the_slip_is_named_where_it_was_typed(text: str, where: tuple[int, int, str]) -> None:
    assert _finding(text)[:3] == where


def test_chinese_text_inside_a_value_is_no_slip() -> None:
    doc, problems = load((HEAD + "purpose: 用途：论文里的扩散模型实验\n").encode(), "f.yaml")
    assert problems == [] and doc is not None
    assert doc.data["purpose"] == "用途：论文里的扩散模型实验"


def test_a_slip_that_does_not_explain_the_error_is_not_blamed() -> None:
    # full-width quotes that parse as text, then a real error two lines later
    text = HEAD + "purpose: \u201cThesis\u201d\ndesktop: false\ncpu: [4\nmemory: 8GiB\n"
    line, _, rule, message = _finding(text)
    assert (line, rule) == (7, "yaml.syntax")
    assert message.startswith("YAML syntax:")


def test_an_error_without_a_slip_is_said_as_before() -> None:
    assert _finding(HEAD + "cpu: [4\nmemory: 8GiB\n")[:3] == (5, 7, "yaml.syntax")


def test_the_search_for_a_slip_is_bounded() -> None:
    # a file full of candidates that explain nothing: at most MAX_TRIES mended copies parsed
    text = "".join(f"k{i}: 'open\n" for i in range(500)) + "cpu: [4\n"
    tried: list[str] = []

    def parses(mended: str) -> int | None:
        tried.append(mended)
        return 501

    assert first_slip(text, 501, parses) is None
    assert len(tried) == MAX_TRIES

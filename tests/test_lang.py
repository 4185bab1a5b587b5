"""`ssp validate` in Chinese under a Chinese locale (issue 26), English everywhere else.

The real CLI on the sample config: a member whose locale is zh_CN reads each finding in
Chinese on the line it is about, with the rule id unchanged; a locale that is not Chinese, the
PR check (GITHUB_ACTIONS) and JSON stay in English, word for word as before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import CONTAINER_LINES, NOW, ROOT, run_cli, sample_repo, valid_request, validate

from provisioner.commands import language
from provisioner.validation.catalogue import RULES
from provisioner.validation.cataloguezh import MESSAGES_ZH

A = "requests/alice/alice-box.yaml"
ZH = {"SSP_NOW": NOW, "LANG": "zh_CN.UTF-8"}
SLIP = valid_request().replace("cpu: ", "cpu：", 1)  # typed with a Chinese input method
SLIP_ZH = "“cpu”后面是全角冒号“：”（U+FF1A）；请切换到英文（半角）输入，改成英文冒号“:”"


def test_every_catalogued_rule_has_a_chinese_message_and_nothing_else_does() -> None:
    assert sorted(MESSAGES_ZH.keys() ^ RULES.keys()) == []
    for rule, text in MESSAGES_ZH.items():
        assert text.strip() and any("\u4e00" <= c <= "\u9fff" for c in text), rule


def test_a_slip_is_said_in_chinese_on_its_line_under_lang_zh_cn(tmp_path: Path) -> None:
    repo = sample_repo(tmp_path / "repo", {A: SLIP})
    result = validate(repo, "--all", env=ZH)
    assert result.code == 1
    line = CONTAINER_LINES["cpu"]
    assert f"{A}:{line}:4: 错误: {SLIP_ZH}" in result.out
    assert result.out.rstrip().endswith("[yaml.fullwidth]")
    assert "full-width" not in result.out


def test_a_finding_without_its_own_chinese_says_its_rule_then_the_particulars(
    tmp_path: Path,
) -> None:
    repo = sample_repo(tmp_path / "repo", {A: valid_request(cpu='"8"')})
    english = validate(repo, "--all").out
    chinese = validate(repo, "--all", env=ZH).out
    at = f"{A}:{CONTAINER_LINES['cpu']}:6:"
    assert f"{at} error: " in english and "[schema.type]" in english
    detail = english.split(f"{at} error: ", 1)[1].split(" [schema.type]")[0]
    assert f"{at} 错误: 值的类型不对：{detail} [schema.type]" in chinese


def test_a_clean_check_says_so_in_chinese(tmp_path: Path) -> None:
    repo = sample_repo(tmp_path / "repo", {A: valid_request()})
    assert "ok: 1 request(s) valid" in validate(repo, "--all").err
    assert "通过：1 个申请有效" in validate(repo, "--all", env=ZH).err


@pytest.mark.parametrize(
    "env",
    [
        {"SSP_NOW": NOW},
        {"SSP_NOW": NOW, "LANG": "en_US.UTF-8"},
        {"SSP_NOW": NOW, "LANG": "C.UTF-8", "LANGUAGE": "zh_CN"},  # gettext: C ignores it
        {**ZH, "GITHUB_ACTIONS": "true"},  # the PR check stays English
    ],
    ids=["no-locale", "en_US", "C-with-LANGUAGE", "github-actions"],
)
def test_english_stays_english(env: dict[str, str], tmp_path: Path) -> None:
    repo = sample_repo(tmp_path / "repo", {A: SLIP})
    out = validate(repo, "--all", env=env).out
    assert f"{A}:{CONTAINER_LINES['cpu']}:4: error: full-width colon ： (U+FF1A) after" in out
    assert "错误" not in out


def test_lang_flag_wins_over_the_locale_and_json_is_english(tmp_path: Path) -> None:
    repo = sample_repo(tmp_path / "repo", {A: SLIP})
    assert "error: full-width colon" in validate(repo, "--all", "--lang", "en", env=ZH).out
    assert SLIP_ZH in validate(repo, "--all", "--lang", "zh").out
    doc = json.loads(validate(repo, "--all", "--format", "json", env=ZH).out)
    assert doc["problems"][0]["message"].startswith("full-width colon")


@pytest.mark.parametrize(
    ("env", "lang"),
    [
        ({"LANG": "zh_CN.UTF-8"}, "zh"),
        ({"LANG": "en_US.UTF-8", "LC_ALL": "zh_TW.UTF-8"}, "zh"),
        ({"LANG": "en_US.UTF-8", "LC_MESSAGES": "zh_CN.UTF-8"}, "zh"),
        ({"LANG": "en_US.UTF-8", "LANGUAGE": "zh_CN:en"}, "zh"),
        ({"LANG": "zh_CN.UTF-8", "LANGUAGE": "en"}, "en"),
        ({"LANG": "zh_CN.UTF-8", "LC_ALL": "C"}, "en"),
        ({}, "en"),
    ],
)
def test_the_locale_is_read_as_gettext_reads_it(env: dict[str, str], lang: str) -> None:
    assert language(env) == lang


def test_explain_follows_lc_all_too(tmp_path: Path) -> None:
    result = run_cli(
        "explain", "yaml.fullwidth", "--repo", str(ROOT), env={"LC_ALL": "zh_CN.UTF-8"}
    )
    assert result.code == 0
    assert "全角冒号" in result.out


def test_the_installed_command_speaks_chinese_in_a_real_process(tmp_path: Path) -> None:
    repo = sample_repo(tmp_path / "repo", {A: SLIP})
    env = {**os.environ, **ZH, "PYTHONPATH": str(ROOT)}
    for name in ("LC_ALL", "LC_MESSAGES", "LANGUAGE", "GITHUB_ACTIONS"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "provisioner.cli", "validate", "--all", "--repo", str(repo)],
        capture_output=True,
        env=env,
        check=False,
    )
    out = done.stdout.decode("utf-8")
    assert done.returncode == 1, done.stderr.decode("utf-8", "replace")
    assert f"{A}:{CONTAINER_LINES['cpu']}:4: 错误: {SLIP_ZH}" in out


def test_ssp_new_says_why_it_wrote_nothing_in_chinese(tmp_path: Path) -> None:
    repo = sample_repo(tmp_path / "repo", requests=True)
    argv = ("new", "image", "--owner", "alice", "--name", "base", "--from", "bob-common")
    result = run_cli(*argv, "--purpose", "My CUDA tools", "--repo", str(repo), env=ZH)
    assert result.code == 1
    assert "错误: 镜像的 from 不是你自己的容器：" in result.err
    assert "[image.from]" in result.err

"""The command line itself: where --repo may go, finding the checkout, help and `ssp explain`.

Everything runs the real `ssp` in-process against real files (and a real git repository);
nothing here is a stand-in.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import CONTAINER_LINES, NOW, ROOT, GitRepo, run_cli, sample_repo, valid_request

from provisioner import cli

NAMES = tuple(cli.HELP)

BAD = "requests/alice/alice-box.yaml"


def bad_repo(tmp_path: Path) -> Path:
    return sample_repo(tmp_path / "repo", {BAD: valid_request(desktop="yes")})


@pytest.mark.parametrize("before", [True, False], ids=["before", "after"])
def test_repo_may_come_before_or_after_the_command(tmp_path: Path, before: bool) -> None:
    repo = str(bad_repo(tmp_path))
    argv = (
        ("--repo", repo, "validate", "--all") if before else ("validate", "--all", "--repo", repo)
    )
    result = run_cli(*argv)
    assert result.code == 1, result.both
    assert f"{BAD}:{CONTAINER_LINES['desktop']}:10: error: desktop" in result.out


def test_from_a_subdirectory_the_git_checkout_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = GitRepo.create(tmp_path / "repo", {BAD: valid_request(desktop="yes")})
    monkeypatch.chdir(repo.root / "requests" / "alice")
    result = run_cli("validate", "--all")
    assert result.code == 1, result.both
    assert f"{BAD}:{CONTAINER_LINES['desktop']}:10: error: desktop" in result.out
    assert "config.missing" not in result.both


def test_outside_any_checkout_it_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli("validate", "--all")
    assert result.code == 1
    assert "config/policy.yaml:1:1: error: file is missing [config.missing]" in result.out


@pytest.mark.parametrize("command", [*NAMES, "host init"])
def test_every_command_s_help_ends_with_examples_of_itself(command: str) -> None:
    result = run_cli(*command.split(), "--help")
    assert result.code == 0, result.both
    section = result.out.split("\nexamples:\n", 1)
    assert len(section) == 2, f"ssp {command} --help has no examples section"
    first = section[1].splitlines()[0].strip()
    assert first.removeprefix("sudo ").startswith(f"ssp {command.split(maxsplit=1)[0]}"), first


def test_the_help_table_says_what_each_command_s_own_help_says() -> None:
    import argparse  # noqa: PLC0415
    import importlib  # noqa: PLC0415

    for name, line in cli.HELP.items():
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(f"provisioner.commands.{name}").register(sub)
        assert sub._choices_actions[0].help == line, name


def test_every_command_module_is_in_the_help_table() -> None:
    modules = {p.stem for p in (ROOT / "provisioner" / "commands").glob("*.py")} - {"__init__"}
    assert set(cli.HELP) == modules


def test_help_groups_the_commands_by_who_runs_them() -> None:
    result = run_cli("--help")
    assert result.code == 0, result.both
    members, host = result.out.split("commands for members")[1].split("commands for admins")
    assert [w.split()[0] for w in members.splitlines()[1:] if w.strip()] == [
        "validate",
        "new",
        "explain",
    ]
    assert "apply" in host and "validate" not in host


@pytest.mark.parametrize(
    ("typed", "meant"), [("valdate", "validate"), ("aply", "apply"), ("explian", "explain")]
)
def test_a_mistyped_command_gets_a_suggestion(typed: str, meant: str) -> None:
    result = run_cli(typed)
    assert result.code == 2
    assert f"did you mean: ssp {meant}" in result.err
    assert "Traceback" not in result.both


def test_ssp_alone_shows_the_commands() -> None:
    result = run_cli()
    assert result.code == 2
    assert "commands for members" in result.err and "Traceback" not in result.both


# Every way a member first meets ssp, run as the members' slim install has it: the host's
# libraries cannot be imported at all.
SLIM_STARTS = [
    [],
    ["--help"],
    ["valdate"],
    ["--version"],
    *([name, "--help"] for name in NAMES),
]


@pytest.mark.parametrize("argv", SLIM_STARTS, ids=lambda a: " ".join(a) or "nothing")
def test_the_members_slim_install_never_shows_a_traceback(argv: list[str]) -> None:
    code = (
        "import sys\n"
        f"for name in {sorted(cli.HOST_LIBRARIES)!r}:\n"
        "    sys.modules[name] = None  # as if it were not installed\n"
        "from provisioner.cli import main\n"
        f"sys.exit(main({argv!r}, {{}}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT
    )
    both = done.stdout + done.stderr
    assert "Traceback" not in both and "No module named" not in both, both
    assert done.returncode in (0, 2), both
    if argv and argv[-1] == "--help" and argv[0] in NAMES:
        assert done.returncode == 0 and f"usage: ssp {argv[0]}" in both, both
        if argv[0] in ("validate", "new", "explain"):  # what the slim install is for
            assert "leaves out" not in both


def test_explain_prints_the_guides_entry_for_a_rule() -> None:
    result = run_cli("explain", "schema.type", "--repo", str(ROOT))
    assert result.code == 0, result.both
    assert result.out.startswith("schema.type  (Fields and values)\n")
    assert "how to fix it:" in result.out
    assert "`32GiB`" in result.out


def test_explain_takes_the_id_as_a_finding_shows_it_and_speaks_chinese() -> None:
    result = run_cli("explain", "[yaml.tag]", "--repo", str(ROOT), env={"LANG": "zh_CN.UTF-8"})
    assert result.code == 0, result.both
    assert result.out.startswith("yaml.tag  (文件本身)\n")
    assert "怎么改:" in result.out


def test_explain_a_family_lists_its_rules() -> None:
    result = run_cli("explain", "quota", "--repo", str(ROOT))
    assert result.code == 0, result.both
    shown = [line.split()[0] for line in result.out.splitlines() if line[:1].isalpha()]
    assert shown == [f"quota.{w}" for w in ("containers", "cpu", "disk", "gpus", "memory")]


def test_explain_an_unknown_rule_names_the_close_ones() -> None:
    result = run_cli("explain", "ssh_key.typ", "--repo", str(ROOT))
    assert result.code == 2
    assert "no rule 'ssh_key.typ' in the guide; did you mean ssh_key.type" in result.err
    far = run_cli("explain", "nothing.like.it", "--repo", str(ROOT))
    assert far.code == 2
    assert "see docs/user-guide.md" in far.err


HOST_LIBRARIES = (
    "pylxd",
    "github",
    "pynvml",
    "jinja2",
    "ws4py",
    "requests",
    "jwt",
    "cryptography",
    "prometheus_client",
)


@pytest.mark.parametrize("argv", [["validate", "--all"], ["validate"]], ids=["all", "change"])
def test_validate_loads_no_host_library(tmp_path: Path, argv: list[str]) -> None:
    """A member's check starts fast and installs slim: no LXD, GitHub, NVML or templates."""
    repo = GitRepo.create(tmp_path / "repo", {BAD: valid_request(desktop="yes")})
    code = (
        "import sys\n"
        "from provisioner.cli import main\n"
        f"status = main({[*argv, '--repo', str(repo.root)]!r}, {{'SSP_NOW': '{NOW}'}})\n"
        f"loaded = sorted({{m.split('.')[0] for m in sys.modules}} & set({HOST_LIBRARIES!r}))\n"
        "print('loaded:', ','.join(loaded), 'status:', status)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "error: desktop" in done.stdout  # it did check the file
    assert done.stdout.splitlines()[-1] == "loaded:  status: 1"


# What building ssp's models and judging files loads: none of it before the first file.
JUDGING = (
    "pydantic",
    "jsonschema",
    "yaml",
    "provisioner.values.models",
    "provisioner.values.policymodels",
    "provisioner.validation.validate",
    "provisioner.flows.prcheck",
)


def _loaded_after(argv: list[str], judged: tuple[str, ...]) -> tuple[str, str]:
    """What `ssp ARGV` printed, and which of `judged` it had imported when it ended."""
    code = (
        "import sys\n"
        "from provisioner.cli import main\n"
        "try:\n"
        f"    main({argv!r}, {{'SSP_NOW': '{NOW}'}})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print('loaded:', ','.join(m for m in {judged!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    *printed, last = done.stdout.splitlines()
    return "\n".join(printed), last.removeprefix("loaded:").strip()


def test_validate_help_builds_no_model_and_reads_no_yaml() -> None:
    """`ssp validate --help` is start-up only (issue 27): the judging loads with the first file."""
    printed, loaded = _loaded_after(["validate", "--help"], JUDGING)
    assert "--all" in printed and "check every request on its own" in printed
    assert loaded == ""


def test_a_valid_tree_is_judged_without_loading_jsonschema(tmp_path: Path) -> None:
    """Files the schema gate passes need no JSON-Schema error: jsonschema loads only for a file
    that has one, and then says what is wrong as before."""
    repo = sample_repo(tmp_path / "repo")
    printed, loaded = _loaded_after(["validate", "--all", "--repo", str(repo)], ("jsonschema",))
    assert loaded == ""
    bad = GitRepo.create(tmp_path / "bad", {BAD: valid_request(desktop="yes")})
    printed, loaded = _loaded_after(["validate", "--all", "--repo", str(bad.root)], ("jsonschema",))
    assert loaded == "jsonschema"
    assert f"{BAD}:{CONTAINER_LINES['desktop']}:" in printed
    assert "desktop: expected true or false, got text" in printed


def test_a_host_command_in_the_members_slim_install_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if pylxd were not installed: the slim install leaves the host libraries out.
    monkeypatch.setitem(sys.modules, "pylxd", None)
    monkeypatch.delitem(sys.modules, "provisioner.lxd.api", raising=False)
    repo = sample_repo(tmp_path / "repo")
    done = run_cli("status", "--repo", str(repo))
    assert done.code == 2
    assert done.err.startswith("ssp status: this needs pylxd, which this install of ssp leaves")
    assert "pip install ." in done.err and "Traceback" not in done.both

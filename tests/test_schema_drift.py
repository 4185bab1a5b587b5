"""The committed JSON Schemas are exactly what the models generate, and editors can use them.

`schemas/*.schema.json` are generated from `provisioner.values.models` (`ssp schema --write`); this
fails when someone changes a model without regenerating, or edits a schema by hand. The
request files point editors at the schema with a `yaml-language-server` line, and the real
`check-jsonschema` (the tool lab members and CI may also use) accepts the sample files with
the committed schemas, and refuses a broken copy.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, run_cli, valid_request

from provisioner.validation import schema

SCHEMAS = ROOT / "schemas"
REQUESTS = sorted((ROOT / "requests").glob("**/*.yaml"))
REQUEST_LINE = "# yaml-language-server: $schema=../../schemas/request.schema.json"
CONFIG_LINES = {
    "config/policy.yaml": "# yaml-language-server: $schema=../schemas/policy.schema.json",
    "config/hosts.yaml": "# yaml-language-server: $schema=../schemas/hosts.schema.json",
}
# next to the interpreter running the tests, not a resolved symlink (that is the base python)
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


def test_committed_schemas_are_what_the_models_generate() -> None:
    result = run_cli("schema", "--check", "--repo", str(ROOT))
    assert result.code == 0, result.both
    for kind, filename in schema.SCHEMA_FILES.items():
        assert (SCHEMAS / filename).read_text(encoding="utf-8") == schema.render(kind)


@pytest.mark.parametrize("filename", sorted(schema.SCHEMA_FILES.values()))
def test_a_tampered_or_missing_schema_is_detected(tmp_path: Path, filename: str) -> None:
    shutil.copytree(SCHEMAS, tmp_path / "schemas")
    target = tmp_path / "schemas" / filename
    data = json.loads(target.read_text(encoding="utf-8"))
    data["title"] = data.get("title", "") + " (edited by hand)"
    target.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    result = run_cli("schema", "--check", "--repo", str(tmp_path))
    assert result.code == 1
    assert f"schemas/{filename}: out of date" in result.err
    assert result.err.count("out of date") == 1  # only the edited one

    target.unlink()
    assert run_cli("schema", "--check", "--repo", str(tmp_path)).code == 1

    written = run_cli("schema", "--write", "--repo", str(tmp_path))
    assert written.code == 0
    assert filename in written.out
    assert run_cli("schema", "--check", "--repo", str(tmp_path)).code == 0
    assert target.read_text(encoding="utf-8") == (SCHEMAS / filename).read_text(encoding="utf-8")


def test_there_are_sample_requests() -> None:
    assert len(REQUESTS) >= 2
    assert {p.read_text(encoding="utf-8").split("kind: ")[1].split()[0] for p in REQUESTS} == {
        "container",
        "account",
    }


@pytest.mark.parametrize("path", REQUESTS, ids=[p.relative_to(ROOT).as_posix() for p in REQUESTS])
def test_every_request_names_its_schema_for_editors(path: Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first == REQUEST_LINE
    target = (path.parent / REQUEST_LINE.split("$schema=")[1]).resolve()
    assert target == SCHEMAS / "request.schema.json"
    assert target.is_file()


@pytest.mark.parametrize("rel", sorted(CONFIG_LINES))
def test_config_files_name_their_schema_for_editors(rel: str) -> None:
    path = ROOT / rel
    assert path.read_text(encoding="utf-8").splitlines()[0] == CONFIG_LINES[rel]
    assert (path.parent / CONFIG_LINES[rel].split("$schema=")[1]).resolve().is_file()


def test_the_request_helper_writes_the_same_schema_line() -> None:
    assert valid_request().splitlines()[0] == REQUEST_LINE


def _check_jsonschema(schema_file: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    assert CHECK_JSONSCHEMA.is_file(), f"{CHECK_JSONSCHEMA} missing: pip install -e '.[dev]'"
    return subprocess.run(
        [
            str(CHECK_JSONSCHEMA),
            "--color",
            "never",
            "--schemafile",
            str(schema_file),
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_jsonschema_accepts_the_samples_with_the_committed_schemas(tmp_path: Path) -> None:
    requests = _check_jsonschema(SCHEMAS / "request.schema.json", *REQUESTS)
    assert requests.returncode == 0, requests.stdout + requests.stderr
    policy = _check_jsonschema(SCHEMAS / "policy.schema.json", ROOT / "config/policy.yaml")
    assert policy.returncode == 0, policy.stdout + policy.stderr
    hosts = _check_jsonschema(SCHEMAS / "hosts.schema.json", ROOT / "config/hosts.yaml")
    assert hosts.returncode == 0, hosts.stdout + hosts.stderr


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        ("gpus: 1", "gpus: two", "'two'"),
        ("expires: 2027-06-30", "expires: 2027-02-30", "is not a 'date'"),
        ("memory: 16GiB", "memory: 16GB", "16GB"),
        ("kind: container", "kind: vm", "vm"),
        ("desktop: false", "desktop: false\nport: 2222", "port"),
    ],
)
def test_check_jsonschema_refuses_what_the_schema_forbids(
    tmp_path: Path, old: str, new: str, says: str
) -> None:
    good = valid_request()
    assert old in good
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.replace(old, new), encoding="utf-8")
    result = _check_jsonschema(SCHEMAS / "request.schema.json", bad)
    assert result.returncode == 1
    assert says in result.stdout + result.stderr

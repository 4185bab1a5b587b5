"""Run a workflow's job the way a GitHub Actions runner would, on this machine.

    run = run_job(WORKFLOWS / "validate.yml", "pull_request", event, sha=merge_sha,
                  ref="refs/pull/1/merge", source=repo, work=tmp_path, secrets={...})
    assert run.ok, run.log()
    run.summary, run.annotations

What is real: the job's `run:` steps, in order, each as a script file run by the step's shell
(`shell: bash` is `bash --noprofile --norc -eo pipefail`, as on GitHub), in
GITHUB_WORKSPACE, with the runner's default variables (GITHUB_ACTIONS, GITHUB_EVENT_PATH,
GITHUB_SHA, GITHUB_REF, GITHUB_REPOSITORY, GITHUB_API_URL, RUNNER_TEMP …), a fresh
GITHUB_STEP_SUMMARY / GITHUB_OUTPUT / GITHUB_ENV / GITHUB_PATH file per step (read back as
the runner does), and the workflow's, job's and step's `env:`, whose `${{ … }}` expressions
are evaluated against the event payload and a small context (github, secrets, runner, env,
steps, inputs). The first failing step ends the job, like a step without `if:` on GitHub.

What stands in for GitHub: `actions/checkout` becomes what it does, done with git against
the local SOURCE repository: a fresh repository in `path:` that fetches `ref:` (depth 1 by
default, everything with `fetch-depth: 0`, as the action does) and checks it out detached;
`persist-credentials` other than false leaves the token in `.git/config` as the action does.
A job's `if:` may join with `&&` clauses that compare a property path with a string literal
(`github.ref == 'refs/heads/main'`), `startsWith(path, 'literal')` and
`contains(fromJSON('[…]'), path)` (both ignoring case, as GitHub does), the first of them may
be `!cancelled()`; when it is false the job is skipped, as GitHub shows it, and no step runs.
A job with `needs:` runs when the caller gives the result of each job it needs (`needs=`), and
only as GitHub would: all succeeded, or none cancelled under `!cancelled()`. Any other
`uses:`, a step `if:`, a matrix, services or an expression beyond a property path or a
literal raise `Unsupported`, so a workflow cannot silently outgrow what is tested.
Events must be among the workflow's triggers (with its branch filters for `push`).

`pip install` steps run for real and offline: `wheelhouse()` builds, once per dependency
set and Python version, a folder of wheels for the project's dependencies and its build
backend, and the runner's environment points pip at it (PIP_NO_INDEX, PIP_FIND_LINKS).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from fakegithub.events import validate_event

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
# What a runner process passes on from its own environment (a service's, not a login shell's).
_INHERITED = ("HOME", "LANG", "LC_ALL", "USER", "LOGNAME", "TMPDIR", "PYENV_ROOT", "LXD_DIR")
_EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
_PATH_EXPR = re.compile(r"[A-Za-z_][\w-]*(\.[\w-]+)*")
_COMMAND = re.compile(r"^::(error|warning|notice)(?: ([^:]*))?::(.*)$")
_SHELLS = {
    "bash": ["bash", "--noprofile", "--norc", "-eo", "pipefail"],
    "sh": ["sh", "-e"],
    None: ["bash", "-e"],  # the default on Linux when bash exists
}


class Unsupported(Exception):  # noqa: N818 - reads as "Unsupported: step if:"
    """The workflow uses something this harness does not emulate."""


@dataclass(frozen=True)
class Annotation:
    level: str  # error | warning | notice
    message: str
    file: str | None = None
    line: int | None = None
    col: int | None = None
    title: str | None = None


@dataclass
class StepRun:
    name: str
    kind: str  # "run" or the action used
    returncode: int
    output: str  # stdout and stderr, interleaved as printed
    summary: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class JobRun:
    workflow: str
    job: str
    steps: list[StepRun]
    workspace: Path
    skipped: list[str]  # steps not run after a failure
    condition_false: bool = False  # the job's `if:` was false: GitHub skips the whole job

    @property
    def ok(self) -> bool:
        return all(s.returncode == 0 for s in self.steps) and not self.skipped

    @property
    def summary(self) -> str:
        return "".join(s.summary for s in self.steps)

    @property
    def output(self) -> str:
        return "".join(s.output for s in self.steps)

    @property
    def annotations(self) -> list[Annotation]:
        return [a for s in self.steps for a in parse_annotations(s.output)]

    def step(self, name: str) -> StepRun:
        (found,) = [s for s in self.steps if s.name == name]
        return found

    def log(self) -> str:
        """The job's log, for assertion messages."""
        parts = []
        for s in self.steps:
            parts.append(f"--- {s.name} [{s.kind}] exit {s.returncode} ({s.seconds:.1f} s)")
            parts.append(s.output.rstrip())
        parts += [f"--- skipped: {name}" for name in self.skipped]
        return "\n".join(parts)


# --- workflow commands ---------------------------------------------------------------------------


def _unescape(text: str, prop: bool) -> str:
    pairs = [("%0D", "\r"), ("%0A", "\n")]
    if prop:
        pairs += [("%3A", ":"), ("%2C", ",")]
    for code, char in [*pairs, ("%25", "%")]:
        text = text.replace(code, char)
    return text


def parse_annotations(output: str) -> list[Annotation]:
    """The `::error file=…,line=…::message` commands in OUTPUT, decoded like the runner."""
    found = []
    for line in output.splitlines():
        match = _COMMAND.match(line)
        if not match:
            continue
        props: dict[str, str] = {}
        for item in (match[2] or "").split(","):
            key, sep, value = item.partition("=")
            if sep:
                props[key.strip().lower()] = _unescape(value, prop=True)

        def number(key: str, props: dict[str, str] = props) -> int | None:
            return int(props[key]) if props.get(key, "").isdigit() else None

        found.append(
            Annotation(
                match[1],
                _unescape(match[3], prop=False),
                props.get("file"),
                number("line"),
                number("col"),
                props.get("title"),
            )
        )
    return found


def _read_file_commands(path: Path) -> dict[str, str]:
    """GITHUB_OUTPUT / GITHUB_ENV: `name=value` lines and `name<<DELIM` … `DELIM` blocks."""
    values: dict[str, str] = {}
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, i + 1)
            values[name] = "\n".join(lines[i + 1 : end])
            i = end + 1
            continue
        if "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
        i += 1
    return values


# --- expressions ---------------------------------------------------------------------------------


def _scalar(value: Any) -> str:
    """A YAML value as the runner passes it on: booleans as true/false, null as ''."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def evaluate(text: str, context: Mapping[str, Any]) -> str:
    """TEXT with each `${{ expr }}` replaced; only property paths and literals are known."""

    def one(match: re.Match[str]) -> str:
        expr = match[1]
        if re.fullmatch(r"'(?:[^']|'')*'", expr):
            return expr[1:-1].replace("''", "'")
        if expr in ("true", "false", "null") or re.fullmatch(r"-?\d+(\.\d+)?", expr):
            return "" if expr == "null" else expr
        if not _PATH_EXPR.fullmatch(expr):
            raise Unsupported(f"expression {expr!r}")
        value: Any = context
        for part in expr.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
            if value is None:
                return ""  # GitHub: a missing property is null, which becomes ''
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, dict | list):
            return json.dumps(value)
        return str(value)

    return _EXPRESSION.sub(one, text)


_PATH = r"([A-Za-z_][\w.-]*)"
_JOB_IF_CLAUSES = (
    # github.ref == 'refs/heads/main'
    ("equals", re.compile(_PATH + r"\s*(==|!=)\s*'([^']*)'")),
    # startsWith(github.event.comment.body, '/ssp ')
    ("starts", re.compile(r"startsWith\(\s*" + _PATH + r"\s*,\s*'([^']*)'\s*\)")),
    # contains(fromJSON('["OWNER","MEMBER"]'), github.event.comment.author_association)
    (
        "one of",
        re.compile(r"contains\(\s*fromJSON\(\s*'(\[[^']*\])'\s*\)\s*,\s*" + _PATH + r"\s*\)"),
    ),
)


def _clause(text: str, context: Mapping[str, Any]) -> bool:
    for kind, pattern in _JOB_IF_CLAUSES:
        match = pattern.fullmatch(text.strip())
        if match is None:
            continue
        if kind == "equals":
            value = evaluate("${{ " + match[1] + " }}", context)
            return (value == match[3]) == (match[2] == "==")
        if kind == "starts":  # GitHub's startsWith ignores case
            value = evaluate("${{ " + match[1] + " }}", context)
            return value.casefold().startswith(match[2].casefold())
        items = json.loads(match[1])
        value = evaluate("${{ " + match[2] + " }}", context)
        return any(isinstance(i, str) and i.casefold() == value.casefold() for i in items)
    raise Unsupported(f"job if: {text!r}")


def _job_condition(
    text: str, context: Mapping[str, Any], needs: Mapping[str, str] | None = None
) -> bool:
    """A job's `if:`: clauses joined by `&&`, each a property path compared with a string
    literal, `startsWith(path, 'literal')` or `contains(fromJSON('[…]'), path)`, the first
    of them may be `!cancelled()`; nothing else (no `||`, no parentheses). As on GitHub, a
    job with `needs:` and no status function runs only when every job it needs succeeded;
    with `!cancelled()`, unless one was cancelled."""
    results = dict(needs or {})
    body = text.strip()
    if body.startswith("${{") and body.endswith("}}"):
        body = body[3:-2]
    if "||" in body:
        raise Unsupported(f"job if: {text!r}")
    parts = [part.strip() for part in body.split("&&")]
    if parts[0] == "!cancelled()":
        if "cancelled" in results.values():
            return False
        parts = parts[1:]
    elif any(r != "success" for r in results.values()):
        return False
    if not parts:
        raise Unsupported(f"job if: {text!r}")
    return all(_clause(part, context) for part in parts)


# --- the workflow file ---------------------------------------------------------------------------


def load(workflow: Path) -> dict[str, Any]:
    doc = yaml.safe_load(workflow.read_text(encoding="utf-8"))
    if True in doc:  # YAML 1.1 reads the bare key `on` as true
        doc["on"] = doc.pop(True)
    assert isinstance(doc, dict)
    return doc


def triggers(doc: Mapping[str, Any]) -> dict[str, Any]:
    on = doc["on"]
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    return dict(on)


def _check_trigger(doc: Mapping[str, Any], event_name: str, ref: str) -> None:
    on = triggers(doc)
    if event_name not in on:
        raise ValueError(f"the workflow does not run on {event_name!r} (only {sorted(on)})")
    if event_name == "push" and on[event_name]:
        branches = on[event_name].get("branches")
        name = ref.removeprefix("refs/heads/")
        if branches is not None and not any(fnmatch.fnmatchcase(name, b) for b in branches):
            raise ValueError(f"push to {ref} does not match branches {branches}")


def _event_definition(event_name: str, event: Mapping[str, Any]) -> str | None:
    if event_name in ("pull_request", "issue_comment"):
        return f"{event_name}${event['action']}"
    if event_name == "push":
        return "push$event"
    return None


# --- the runner ----------------------------------------------------------------------------------


def _git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "runner",
        "GIT_AUTHOR_EMAIL": "runner@example.invalid",
        "GIT_COMMITTER_NAME": "runner",
        "GIT_COMMITTER_EMAIL": "runner@example.invalid",
    }
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def checkout(
    source: Path, dest: Path, ref: str, fetch_depth: int, token: str, persist: bool
) -> str:
    """What actions/checkout does, against a local repository; returns the commit."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    sha = _git(source, "rev-parse", "--verify", f"{ref}^{{commit}}").strip()
    url = source.resolve().as_uri()
    _git(dest, "init", "-q")
    _git(dest, "remote", "add", "origin", url)
    if persist:
        # what the action leaves behind unless told not to: the token, for later git commands
        _git(
            dest, "config", "http.https://github.com/.extraheader", f"AUTHORIZATION: basic {token}"
        )
    if fetch_depth == 0:
        _git(
            dest,
            "fetch",
            "-q",
            "--prune",
            "--no-recurse-submodules",
            "origin",
            "+refs/heads/*:refs/remotes/origin/*",
            "+refs/tags/*:refs/tags/*",
        )
        _git(dest, "fetch", "-q", "origin", sha)
    else:
        _git(dest, "fetch", "-q", "--no-tags", f"--depth={fetch_depth}", "origin", sha)
    _git(dest, "checkout", "-q", "--force", "--detach", sha)
    return sha


def _runner_path() -> str:
    """The machine's PATH without this test run's virtual environment, as a runner has it."""
    ours = {str(Path(sys.executable).parent), os.environ.get("VIRTUAL_ENV", "") + "/bin"}
    parts = [p for p in os.environ.get("PATH", os.defpath).split(os.pathsep) if p not in ours]
    return os.pathsep.join(parts)


@dataclass
class _Job:
    """One job's state while its steps run."""

    context: dict[str, Any]
    machine: dict[str, str]  # what the runner process passes on
    defaults: dict[str, str]  # the runner's GITHUB_* / RUNNER_* variables
    run_defaults: dict[str, Any]  # `defaults: run:` of the workflow and the job
    workspace: Path
    temp: Path
    token: str
    deadline: float
    exported: dict[str, str] = field(default_factory=dict)  # from GITHUB_ENV
    extra_path: list[str] = field(default_factory=list)  # from GITHUB_PATH


@dataclass
class Runner:
    """Where and with what the jobs run; one per test is typical."""

    source: Path  # the repository actions/checkout fetches from
    work: Path  # jobs' workspaces and temp folders are made under it
    repository: str = "lab/super-server"
    api_url: str = "https://api.github.com"
    server_url: str = "https://github.com"
    secrets: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)  # the runner machine's extras
    wheels: Path | None = None  # a wheelhouse() folder: pip installs offline from it
    step_timeout_s: float = 600.0
    runs: int = 0  # jobs run so far; each gets the next GITHUB_RUN_ID

    def run_job(
        self,
        workflow: Path,
        event_name: str,
        event: Mapping[str, Any],
        *,
        sha: str,
        ref: str,
        job: str | None = None,
        inputs: Mapping[str, str] | None = None,
        needs: Mapping[str, str] | None = None,
    ) -> JobRun:
        """Run JOB (or the only job) of WORKFLOW for this event, as GitHub would start it.

        NEEDS: the result (`success`, `failure`, `cancelled`) of each job JOB's `needs:` names,
        run before by the caller; it must name exactly those jobs.
        """
        doc = load(workflow)
        _check_trigger(doc, event_name, ref)
        definition = _event_definition(event_name, event)
        if definition:
            validate_event(definition, dict(event))
        if job is None:
            if len(doc["jobs"]) != 1:
                raise Unsupported(f"{workflow.name} has several jobs; name one")
            job = next(iter(doc["jobs"]))
        spec = doc["jobs"][job]
        for key in ("strategy", "services", "container"):
            if key in spec:
                raise Unsupported(f"job {job}: {key}")
        wanted = spec.get("needs", [])
        wanted = [wanted] if isinstance(wanted, str) else list(wanted)
        if sorted(wanted) != sorted(needs or {}):
            raise Unsupported(f"job {job} needs {wanted}: give each one's result (needs=)")
        state = self._start(doc, spec, workflow, job, event_name, event, sha, ref, inputs or {})
        if "if" not in spec and any(r != "success" for r in (needs or {}).values()):
            return JobRun(workflow.name, job, [], state.workspace, [], condition_false=True)
        if "if" in spec and not _job_condition(str(spec["if"]), state.context, needs):
            return JobRun(workflow.name, job, [], state.workspace, [], condition_false=True)
        done: list[StepRun] = []
        skipped: list[str] = []
        for index, step in enumerate(spec.get("steps", [])):
            name = str(step.get("name") or step.get("uses") or str(step.get("run", ""))[:40])
            if done and done[-1].returncode != 0:
                skipped.append(name)
            else:
                done.append(self._step(state, index, name, step))
        return JobRun(workflow.name, job, done, state.workspace, skipped)

    def _start(
        self,
        doc: Mapping[str, Any],
        spec: Mapping[str, Any],
        workflow: Path,
        job: str,
        event_name: str,
        event: Mapping[str, Any],
        sha: str,
        ref: str,
        inputs: Mapping[str, str],
    ) -> _Job:
        self.runs += 1
        run_id = str(self.runs)
        self.work.mkdir(parents=True, exist_ok=True)
        base = Path(tempfile.mkdtemp(prefix=f"{workflow.stem}-{run_id}-", dir=self.work))
        workspace, temp = base / "workspace", base / "temp"
        workspace.mkdir()
        temp.mkdir()
        event_path = temp / "event.json"
        event_path.write_text(json.dumps(event), encoding="utf-8")
        owner = self.repository.split("/")[0]
        pull = event.get("pull_request") if event_name == "pull_request" else None
        github: dict[str, Any] = {
            "sha": sha,
            "ref": ref,
            "ref_name": ref.removeprefix("refs/heads/"),
            "repository": self.repository,
            "repository_owner": owner,
            "event_name": event_name,
            "event": event,
            "workspace": str(workspace),
            "run_id": run_id,
            "run_number": run_id,
            "run_attempt": "1",
            "actor": str((event.get("sender") or {}).get("login", "runner")),
            "server_url": self.server_url,
            "api_url": self.api_url,
            "job": job,
            "workflow": str(doc.get("name", workflow.name)),
            "token": self.secrets.get("GITHUB_TOKEN", ""),
            "base_ref": pull["base"]["ref"] if pull else "",
            "head_ref": pull["head"]["ref"] if pull else "",
        }
        runner = {"temp": str(temp), "os": "Linux", "arch": "X64", "name": "ssp-test-runner"}
        context: dict[str, Any] = {
            "github": github,
            "secrets": dict(self.secrets),
            "runner": runner,
            "inputs": dict(inputs),
            "steps": {},
            "env": {},
        }
        defaults = {
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_ACTOR": github["actor"],
            "GITHUB_API_URL": self.api_url,
            "GITHUB_GRAPHQL_URL": f"{self.api_url}/graphql",
            "GITHUB_SERVER_URL": self.server_url,
            "GITHUB_EVENT_NAME": event_name,
            "GITHUB_EVENT_PATH": str(event_path),
            "GITHUB_JOB": job,
            "GITHUB_REF": ref,
            "GITHUB_REF_NAME": github["ref_name"],
            "GITHUB_REPOSITORY": self.repository,
            "GITHUB_REPOSITORY_OWNER": owner,
            "GITHUB_RUN_ID": run_id,
            "GITHUB_RUN_NUMBER": run_id,
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_SHA": sha,
            "GITHUB_WORKFLOW": github["workflow"],
            "GITHUB_WORKSPACE": str(workspace),
            "GITHUB_BASE_REF": github["base_ref"],
            "GITHUB_HEAD_REF": github["head_ref"],
            "RUNNER_OS": "Linux",
            "RUNNER_ARCH": "X64",
            "RUNNER_NAME": runner["name"],
            "RUNNER_TEMP": str(temp),
            "RUNNER_TOOL_CACHE": str(base / "tool-cache"),
            "PATH": _runner_path(),
        }
        machine = {k: os.environ[k] for k in _INHERITED if k in os.environ}
        if self.wheels is not None:
            machine |= {
                "PIP_NO_INDEX": "1",
                "PIP_FIND_LINKS": str(self.wheels),
                "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            }
        machine |= dict(self.env)
        for level in (doc, spec):  # workflow env, then job env, each seeing the one before
            context["env"] |= {
                k: evaluate(_scalar(v), context) for k, v in (level.get("env") or {}).items()
            }
        run_defaults = {
            **((doc.get("defaults") or {}).get("run") or {}),
            **((spec.get("defaults") or {}).get("run") or {}),
        }
        deadline = time.monotonic() + 60 * float(spec.get("timeout-minutes", 360))
        return _Job(
            context, machine, defaults, run_defaults, workspace, temp, github["token"], deadline
        )

    def _step(self, job: _Job, index: int, name: str, step: Mapping[str, Any]) -> StepRun:
        for key in ("if", "continue-on-error"):
            if key in step:
                raise Unsupported(f"step {name!r}: {key}")
        files = {
            k: job.temp / f"{k.lower()}-{index}"
            for k in ("GITHUB_STEP_SUMMARY", "GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH")
        }
        for path in files.values():
            path.touch()
        step_env = dict(job.context["env"]) | job.exported
        context = job.context | {"env": step_env}
        step_env |= {k: evaluate(_scalar(v), context) for k, v in (step.get("env") or {}).items()}
        env = job.machine | step_env | job.defaults | {k: str(v) for k, v in files.items()}
        env["GITHUB_ACTION"] = str(step.get("id", f"__run_{index}"))
        if job.extra_path:
            env["PATH"] = os.pathsep.join([*reversed(job.extra_path), env["PATH"]])
        timeout = min(self.step_timeout_s, max(job.deadline - time.monotonic(), 1.0))
        if "timeout-minutes" in step:
            timeout = min(timeout, 60 * float(step["timeout-minutes"]))

        started = time.monotonic()
        if "uses" in step:
            result = self._uses(job, name, step, context)
        elif "run" in step:
            result = self._run(job, index, name, step, context, env, timeout)
        else:
            raise Unsupported(f"step {name!r} has neither run nor uses")
        result.seconds = time.monotonic() - started
        result.summary = files["GITHUB_STEP_SUMMARY"].read_text(encoding="utf-8")
        result.outputs |= _read_file_commands(files["GITHUB_OUTPUT"])
        job.exported |= {
            k: v
            for k, v in _read_file_commands(files["GITHUB_ENV"]).items()
            if not k.startswith(("GITHUB_", "RUNNER_"))  # the runner refuses to change these
        }
        job.extra_path += files["GITHUB_PATH"].read_text(encoding="utf-8").split()
        if "id" in step:
            conclusion = "success" if result.returncode == 0 else "failure"
            job.context["steps"][step["id"]] = {
                "outputs": result.outputs,
                "outcome": conclusion,
                "conclusion": conclusion,
            }
        return result

    def _uses(
        self, job: _Job, name: str, step: Mapping[str, Any], context: Mapping[str, Any]
    ) -> StepRun:
        action = str(step["uses"]).split("@", 1)[0]
        inputs = {k: evaluate(_scalar(v), context) for k, v in (step.get("with") or {}).items()}
        if action == "actions/upload-pages-artifact":
            return self._pages_artifact(job, name, action, inputs)
        if action != "actions/checkout":
            raise Unsupported(f"action {step['uses']}")
        unknown = set(inputs) - {"ref", "path", "fetch-depth", "persist-credentials"}
        if unknown:
            raise Unsupported(f"actions/checkout inputs {sorted(unknown)}")
        dest = (job.workspace / inputs.get("path", ".")).resolve()
        if not dest.is_relative_to(job.workspace.resolve()):
            raise ValueError(f"checkout path {inputs['path']!r} is outside the workspace")
        try:
            sha = checkout(
                self.source,
                dest,
                inputs.get("ref") or str(context["github"]["sha"]),
                int(inputs.get("fetch-depth", "1")),
                job.token,
                persist=inputs.get("persist-credentials", "true") != "false",
            )
        except RuntimeError as e:
            return StepRun(name, action, 1, f"::error::{e}\n")
        return StepRun(name, action, 0, f"checked out {sha} into {dest}\n", outputs={"commit": sha})

    def _pages_artifact(
        self, job: _Job, name: str, action: str, inputs: Mapping[str, str]
    ) -> StepRun:
        """actions/upload-pages-artifact as far as a test can see it: the folder named by
        `path` packed as the action packs it (a tar of its files, links followed, no .git or
        .github), kept as `pages.tar` beside the job's workspace instead of uploaded."""
        unknown = set(inputs) - {"path"}
        if unknown:
            raise Unsupported(f"{action} inputs {sorted(unknown)}")
        folder = Path(inputs.get("path", "_site"))
        if not folder.is_dir():
            return StepRun(name, action, 1, f"::error::{folder} is not a folder\n")
        tarball = job.workspace.parent / "pages.tar"
        done = subprocess.run(
            ["tar", "--dereference", "--hard-dereference", "--directory", str(folder), "-cf",
             str(tarball), "--exclude=.git", "--exclude=.github", "."],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        return StepRun(name, action, done.returncode, done.stdout + done.stderr)

    def _run(
        self,
        job: _Job,
        index: int,
        name: str,
        step: Mapping[str, Any],
        context: Mapping[str, Any],
        env: Mapping[str, str],
        timeout: float,
    ) -> StepRun:
        shell = step.get("shell", job.run_defaults.get("shell"))
        if shell not in _SHELLS:
            raise Unsupported(f"step {name!r}: shell {shell!r}")
        # Expressions in `run:` are expanded before the shell sees the script, as on GitHub
        # (the workflow rules forbid them; expanding keeps the harness honest if one slips in).
        script = job.temp / f"step-{index}.sh"
        script.write_text(evaluate(str(step["run"]), context), encoding="utf-8")
        folder = step.get("working-directory", job.run_defaults.get("working-directory", "."))
        try:
            done = subprocess.run(
                [*_SHELLS[shell], str(script)],
                cwd=job.workspace / str(folder),
                env=dict(env),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            partial = e.stdout if isinstance(e.stdout, str) else (e.stdout or b"").decode()
            message = f"\n::error::step timed out after {timeout:.0f} s\n"
            return StepRun(name, "run", 124, partial + message)
        return StepRun(name, "run", done.returncode, done.stdout)


# --- the repository under test ---------------------------------------------------------------

# What a checkout of this project needs to install and run ssp, and what the workflows read.
PROJECT_PATHS = (
    "pyproject.toml",
    "requirements.lock",
    "README.md",
    "provisioner",
    "schemas",
    "config",
    ".github",
)


def project_files() -> dict[str, bytes]:
    """This working tree's files under PROJECT_PATHS (tracked or new, not ignored), so that
    a test repository runs the code as it is now, uncommitted changes included."""
    listed = _git(
        ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *PROJECT_PATHS
    )
    files = {}
    for rel in sorted(set(filter(None, listed.split("\0")))):
        path = ROOT / rel
        if path.is_file() and not path.is_symlink():
            files[rel] = path.read_bytes()
    return files


# --- offline pip ---------------------------------------------------------------------------------


def _python3() -> str:
    found = shutil.which("python3", path=_runner_path())
    if not found:
        raise RuntimeError("no python3 on PATH: the workflows' install steps need one")
    return found


def wheelhouse(cache: Path | None = None) -> Path:
    """Wheels of the project's locked dependencies (and build backend) for the runner's python3.

    Built once per dependency list and Python version into CACHE (default: the user's cache
    folder); building needs the package index, later runs do not.
    """
    # The hashed lock the self-hosted workflows install from (its exact files, so that
    # `--require-hashes` holds offline); it satisfies pyproject.toml too (tests/test_lockfile.py).
    lock = ROOT / "requirements.lock"
    requirements = ["--require-hashes", "--no-deps", "-r", str(lock)]
    pinned = lock.read_text(encoding="utf-8")
    python = _python3()
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.implementation.cache_tag)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tempfile.gettempdir(),
    ).stdout.strip()
    key = hashlib.sha256("\n".join([version, pinned]).encode()).hexdigest()[:16]
    base = cache or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ssp-tests"
    folder = base / f"wheelhouse-{version}-{key}"
    if (folder / ".complete").exists():
        return folder
    base.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix="wheelhouse-", dir=base))
    try:
        # A throwaway venv of the same python3 the workflows use, so the wheels' tags match.
        subprocess.run([python, "-m", "venv", str(building / "venv")], check=True, cwd=building)
        pip = [str(building / "venv" / "bin" / "python"), "-m", "pip"]
        done = subprocess.run(
            [
                *pip,
                "wheel",
                "--disable-pip-version-check",
                "-q",
                "--wheel-dir",
                str(building / "wheels"),
                *requirements,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"building the test wheelhouse failed (needs the index once):\n{done.stderr}"
            )
        (building / "wheels" / ".complete").touch()
        try:
            (building / "wheels").rename(folder)
        except OSError:  # another process finished first
            if not (folder / ".complete").exists():
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return folder

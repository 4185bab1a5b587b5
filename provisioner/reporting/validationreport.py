"""What a validation says, in the three forms people and machines read.

- text: one `path:line:col: severity: message [rule]` line per finding (editors jump to it),
  in English or, for a Chinese locale, in Chinese (`cataloguezh`);
- github: `::error file=…,line=…,col=…::…` workflow commands, plus a Markdown job summary
  (quota use, free GPUs, what the PR would do);
- json: a stable document for tools.
Every value is escaped for its channel by `provisioner.reporting.escape`. Pure: returns strings; the
CLI decides where they go.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from provisioner.reporting.escape import command_data, command_property, log_line, one_line
from provisioner.validation.cataloguezh import MESSAGES_ZH
from provisioner.validation.validate import Validation
from provisioner.values.changes import FileChange
from provisioner.values.loaded import resources
from provisioner.values.models import AccountRequest, AnyRequest, ContainerRequest, ImageRequest
from provisioner.values.problems import Problem, Severity
from provisioner.values.requestpaths import REQUEST_PATH
from provisioner.values.sizes import format_size

_VERBS = {"A": "create", "M": "change", "D": "retire"}


_SEVERITY_ZH = {"error": "错误", "warning": "警告", "notice": "提示"}


def said(problem: Problem, lang: str = "en") -> str:
    """The finding's line in `lang` (`en`, `zh`); path, line, column and rule id stay as they
    are, so an editor still jumps to it. In Chinese, a finding without its own Chinese message
    says its rule's catalogued line, then the English particulars."""
    if lang != "zh":
        return str(problem)
    message = problem.zh or f"{MESSAGES_ZH.get(problem.rule, problem.rule)}：{problem.message}"
    return (
        f"{problem.path}:{problem.line}:{problem.col}: "
        f"{_SEVERITY_ZH[problem.severity.value]}: {message} [{problem.rule}]"
    )


def text_lines(result: Validation, lang: str = "en") -> list[str]:
    """One line per finding, then the notes; escaped for a terminal or a CI log."""
    lines = [log_line(said(p, lang)) for p in result.problems]
    note = "注意：" if lang == "zh" else "note: "
    lines += [log_line(f"{note}{n}") for n in result.notes]
    return lines


def ok_line(result: Validation, lang: str = "en") -> str:
    """What a clean check says once it is done."""
    if lang == "zh":
        return f"通过：{len(result.valid)} 个申请有效"
    return f"ok: {len(result.valid)} request(s) valid"


def annotation(problem: Problem) -> str:
    """A GitHub workflow command that annotates the problem's line in the PR diff."""
    level = {"error": "error", "warning": "warning", "notice": "notice"}[problem.severity.value]
    props = ",".join(
        f"{k}={command_property(v)}"
        for k, v in (
            ("file", problem.path),
            ("line", str(problem.line)),
            ("col", str(problem.col)),
            ("title", problem.rule),
        )
    )
    return f"::{level} {props}::{command_data(one_line(problem.message))}"


def to_json(result: Validation) -> str:
    doc = {
        "ok": result.ok,
        "problems": [
            {
                "path": p.path,
                "line": p.line,
                "col": p.col,
                "severity": p.severity.value,
                "rule": p.rule,
                "message": p.message,
                "where": list(p.where),
            }
            for p in result.problems
        ],
        "notes": list(result.notes),
        "valid": [i.path for i in result.valid],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


@dataclass(frozen=True)
class MemberUse:
    login: str
    quota: str
    containers: str
    gpus: str
    cpu: str
    memory: str
    disk: str


@dataclass(frozen=True)
class HostGpus:
    id: str
    total: int
    pinned: int
    counted: int

    @property
    def free(self) -> int:
        return max(self.total - self.pinned - self.counted, 0)


@dataclass(frozen=True)
class PlannedChange:
    verb: str
    path: str
    owner: str
    what: str


def _describe(request: AnyRequest | None) -> str:
    if request is None:
        return ""
    if isinstance(request, ImageRequest):
        return (
            f"image {request.owner}/{request.name} from {request.source}, until {request.expires}"
        )
    if isinstance(request, AccountRequest):
        return f"account on {request.server}, until {request.expires}"
    return f"container, {_gpu_words(request.gpus)}, until {request.expires}"


def _gpu_words(gpus: int | list[int]) -> str:
    """`2` → "2 GPUs", `[3]` → "GPU 3", `[0, 1]` → "GPUs 0, 1", `0` → "no GPU"."""
    if isinstance(gpus, list):
        return f"GPU{'s' if len(gpus) > 1 else ''} {', '.join(map(str, gpus))}"
    return "no GPU" if gpus == 0 else f"{gpus} GPU{'s' if gpus > 1 else ''}"


def summary_data(result: Validation, changes: Sequence[FileChange] = ()) -> dict[str, Any]:
    """The numbers the job summary shows: quota use after the PR, free GPUs, changes."""
    errors = [p for p in result.problems if p.severity is Severity.ERROR]
    warnings = [p for p in result.problems if p.severity is not Severity.ERROR]
    data: dict[str, Any] = {
        "ok": result.ok,
        "errors": errors,
        "warnings": warnings,
        "notes": list(result.notes),
        "members": [],
        "hosts": [],
        "changes": [],
        # Only later `expires` on existing requests: an admin can merge at a glance.
        "renewals": list(result.renewals),
    }
    by_path = {i.path: i.request for i in result.valid}
    renewed = {r.path for r in result.renewals}
    for c in sorted(changes, key=lambda c: c.path):
        match = REQUEST_PATH.match(c.path)
        if match:
            data["changes"].append(
                PlannedChange(
                    "renew" if c.path in renewed else _VERBS.get(c.status, "change"),
                    c.path,
                    match["owner"],
                    _describe(by_path.get(c.path)),
                )
            )
    if result.config is None:
        return data
    policy, inventory = result.config.policy, result.config.inventory
    use: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    per_host: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for item in result.valid:
        if isinstance(item.request, ContainerRequest):
            res = resources(item.request, policy, inventory)
            row = use[item.request.owner]
            for i, n in enumerate((1, res.gpus, res.cpu, res.memory, res.disk)):
                row[i] += n
            per_host[res.host][0] += len(res.pinned)
            per_host[res.host][1] += res.counted
    for login in sorted(use):
        name, quota = policy.quota_for(login)
        row = use[login]
        data["members"].append(
            MemberUse(
                login,
                name,
                f"{row[0]}/{quota.containers}",
                f"{row[1]}/{quota.gpus}",
                f"{row[2]}/{quota.cpu}",
                f"{format_size(row[3])}/{quota.memory}",
                f"{format_size(row[4])}/{quota.disk}",
            )
        )
    for host_id, host in sorted(inventory.hosts.items()):
        pinned, counted = per_host[host_id]
        data["hosts"].append(HostGpus(host_id, len(host.gpus), pinned, counted))
    return data


# GitHub drops a step summary over 1 MiB whole; what ssp writes stays under it with room.
SUMMARY_LIMIT = 1_000_000


def capped(text: str, limit: int = SUMMARY_LIMIT) -> str:
    """TEXT, or its first whole lines within LIMIT bytes (UTF-8) and a note saying it was cut."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    note = (
        f"\n\n> **Cut here:** this summary is {len(data)} bytes and GitHub shows at most "
        "1 MiB per step; every finding is in the job's log and annotations.\n"
    )
    head = data[: limit - len(note.encode("utf-8"))].decode("utf-8", "ignore")
    return head[: head.rfind("\n") + 1] + note


def summary_markdown(result: Validation, changes: Sequence[FileChange] = ()) -> str:
    # jinja2 loads only for a step summary: a member's `ssp validate` never needs it.
    from provisioner.reporting.render import render  # noqa: PLC0415

    return capped(render("validate_summary.md.j2", **summary_data(result, changes)))

"""Text for people: the only module that imports jinja2.

Templates live in `provisioner/reporting/templates/`, one per outcome. Undefined variables are
errors (StrictUndefined), so a template and its data cannot drift apart silently. Anything that came
from a request file goes through the `md` filter before it reaches Markdown: a purpose line
must not become a link, an @-mention or HTML in a PR comment.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2

from provisioner.reporting.escape import code, md


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("provisioner.reporting", "templates"),
        undefined=jinja2.StrictUndefined,
        # Markdown, not HTML: HTML autoescape would garble it; the `md` filter escapes instead.
        autoescape=False,  # noqa: S701
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["md"] = md
    env.filters["code"] = code
    return env


def render(template: str, **data: Any) -> str:
    """Render `templates/<template>` with `data`."""
    return _environment().get_template(template).render(**data)


@cache
def _html_environment() -> jinja2.Environment:
    """HTML pages: every value is escaped unless a template says otherwise."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("provisioner.reporting", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(template: str, **data: Any) -> str:
    """Render the HTML template `templates/<template>` with `data`, autoescaped."""
    return _html_environment().get_template(template).render(**data)

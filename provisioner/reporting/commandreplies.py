"""What ssp answers to a member's comment command, in the comment's own thread.

One answer per command: what was done, or why nothing was (who may command a container, the
rate limit, a comment that is no command ssp knows), always ending with the commands ssp
understands where the comment was not one, and with where the status page is when the policy
says. Pure: data in, Markdown out; every value from outside goes through `escape`.
"""

from __future__ import annotations

from provisioner.reporting.escape import code, md
from provisioner.validation.commands import USAGE


def _head(verb: str | None) -> str:
    return f"`/ssp {verb}`" if verb else "This command"


def _page(page_url: str) -> str:
    return f"\n\nThe lab's status page: {page_url}" if page_url else ""


def done(verb: str, name: str, detail: str, page_url: str = "") -> str:
    """The command ran: DETAIL says what became of the container."""
    return f"{_head(verb)} on container {code(name)}: done. {detail}{_page(page_url)}\n"


def refused(verb: str | None, why: str, page_url: str = "") -> str:
    """Nothing was changed, and WHY (a sentence of ssp's own, with values it checked)."""
    usage = "" if verb else f"\n\n{USAGE}"
    return f"{_head(verb)} was not run: {why}. Nothing was changed.{usage}{_page(page_url)}\n"


def unknown(page_url: str = "") -> str:
    """The comment starts with `/ssp ` but is none of the commands."""
    return f"ssp did not understand this comment. {USAGE}{_page(page_url)}\n"


def failed(verb: str, name: str, error: str, page_url: str = "") -> str:
    """The host could not do it: the error as LXD or the host said it (escaped)."""
    return (
        f"{_head(verb)} on container {code(name)} failed: {md(error)}. An admin can see the "
        f"whole run in the workflow's log.{_page(page_url)}\n"
    )

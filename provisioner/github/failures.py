"""How the GitHub adapter tells a failure worth retrying from one that is final.

5xx, 429, a 403 that is a rate limit and a dropped connection are transient; the wait comes
from GitHub's `Retry-After` (seconds or an HTTP date), else `X-RateLimit-Reset`, else a
minute for a secondary limit (GitHub's documented advice). A 401, a 404 and anything else
are final. Part of the adapter: it reads PyGithub's, requests' and PyJWT's exceptions.
"""

from __future__ import annotations

import email.utils
import json
from dataclasses import dataclass
from datetime import UTC

import jwt
import requests
from github import GithubException
from github.GithubException import BadAttributeException, RateLimitExceededException

# Without Retry-After, GitHub's docs say to wait at least a minute after a secondary limit.
SECONDARY_LIMIT_WAIT_S = 60.0

LIBRARY_ERRORS = (
    GithubException,
    BadAttributeException,
    requests.RequestException,
    jwt.PyJWTError,
    json.JSONDecodeError,  # PyGithub lets it out when a body that looks like JSON is not
)


@dataclass(frozen=True)
class Failure:
    retryable: bool
    wait_s: float | None  # what GitHub asked for, None when it said nothing
    summary: str


def header(e: GithubException, name: str) -> str | None:
    value = (e.headers or {}).get(name)
    return None if value is None else str(value)


def rate_limited(e: GithubException) -> bool:
    return (
        isinstance(e, RateLimitExceededException)
        or header(e, "x-ratelimit-remaining") == "0"
        or header(e, "retry-after") is not None
    )


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """A Retry-After header's wait in seconds: delta-seconds or an HTTP date (RFC 9110)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": UTC by RFC 5322, not this machine's local time
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def classify(e: Exception, now: float) -> Failure:
    if isinstance(e, GithubException):
        message = e.data.get("message") if isinstance(e.data, dict) else None
        summary = f"{e.status} {str(message or '')[:300]}".strip()
        if e.status == 401:
            return Failure(False, None, f"{summary} (the token or App key was refused)")
        if e.status == 404:
            return Failure(False, None, f"{summary} (missing, or not visible to these credentials)")
        wait = retry_after_seconds(header(e, "retry-after"), now)
        if e.status >= 500:
            return Failure(True, wait, summary)
        if e.status == 429 or (e.status == 403 and rate_limited(e)):
            reset = header(e, "x-ratelimit-reset")
            if (
                wait is None
                and header(e, "x-ratelimit-remaining") == "0"
                and reset
                and reset.isdigit()
            ):
                wait = max(0.0, float(reset) - now)
            return Failure(True, SECONDARY_LIMIT_WAIT_S if wait is None else wait, summary)
        return Failure(False, None, summary)
    if isinstance(e, requests.ConnectionError | requests.Timeout):
        return Failure(True, None, f"cannot reach GitHub ({type(e).__name__}: {str(e)[:300]})")
    if isinstance(e, jwt.PyJWTError):
        return Failure(False, None, f"cannot sign the GitHub App token: {e}")
    return Failure(False, None, f"unexpected answer ({type(e).__name__}: {str(e)[:200]})")

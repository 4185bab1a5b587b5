"""Exceptions that mean "cannot continue". Expected refusals are Problems, not exceptions.

The CLI maps each class to an exit status: UsageError → 2, everything else → 3.
"""


class SspError(Exception):
    """Something broke that the user did not cause by writing a bad request."""


class UsageError(SspError):
    """The command line or the repository layout is not what the command needs."""


class LxdError(SspError):
    """The LXD daemon refused a request or could not be reached."""


class GithubError(SspError):
    """GitHub refused a request or could not be reached."""


class GpuError(SspError):
    """NVML could not be loaded or queried (no driver, no library, no permission)."""


class LockHeldError(SspError):
    """Another apply holds the host lock."""


class UsageDbError(SspError):
    """The GPU usage database could not be opened, migrated, read or written."""


class TunnelError(SspError):
    """The tunnel client's file could not be written, or frpc's admin API refused or is down."""


class LedgerError(SspError):
    """A host ledger (the comment commands' counts) cannot be read or written."""

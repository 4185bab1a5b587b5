"""`ssp doctor`'s checks as data: the host, its GPUs, the cluster and the GitHub repository's
settings. Each check is a pure function of what the checkup flow observed.

May import: status, reporting, planning, validation, values.
"""

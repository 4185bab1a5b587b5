"""`ssp doctor`'s checks as data: the host, its GPUs, the cluster and the GitHub repository's
settings (who may reach the runner and the state branch around the rules). Each check is a
pure function of what the checkup flow (or, for GitHub, the command) observed.

May import: status, reporting, planning, validation, values.
"""

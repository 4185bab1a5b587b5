"""Super Server Platform: self-service LXD containers on a shared GPU server, driven by PRs.

The package is layered (enforced by import-linter, see pyproject.toml): a pure core
(problems, sources, models, schema, rules, plan) at the bottom, one adapter per outside
system (lxd, gpus, github, gitfiles), the workflows that use them (validate, apply), and the
CLI on top, which alone reads the environment, prints and picks exit codes.
"""

__version__ = "0.1.0"

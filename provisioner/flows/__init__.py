"""Flows: one command's whole job, wiring the adapters to the pure core: a reconcile pass,
maintenance (with idle GPUs released where the policy consents, and the monthly GPU-hours
summary issue), the doctor's checkup, the PR check, the status observation and its publishing,
keeping the tunnel in step after an apply, GPU sampling and usage, and a member's comment
command (`comment`).

May import: every wing below (applying, the adapters, doctor, status, reporting, planning,
validation, values). Reads no environment and never exits: the commands hand it what it needs.
"""

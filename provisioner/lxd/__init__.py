"""The LXD adapter: the daemon through pylxd, turned into observed state and our errors.

May import: values only. Never another adapter.
"""

"""The host's own files and state: the host lock, listening ports, /etc/subuid and
/etc/subgid, fresh identities for clones.

May import: values only. Never another adapter.
"""

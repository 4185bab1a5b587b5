"""The host's own files and state: the host lock, listening ports, /etc/subuid and
/etc/subgid, fresh identities for clones, what LXD's NVIDIA runtime needs on the host
(the loaded driver, nvidia-container-cli), and the GPU usage database (SQLite).

May import: values only. Never another adapter.
"""

"""The host's own files and state: the host lock, listening ports, /etc/subuid and
/etc/subgid, fresh identities for clones, what LXD's NVIDIA runtime needs on the host
(the loaded driver, nvidia-container-cli), the GPU usage database (SQLite), the tunnel
client (frpc's file and its admin API on 127.0.0.1), and the comment commands' ledger (each
container's commands of the last hour).

May import: values only. Never another adapter.
"""

"""Integration tests against a real LXD daemon (runner/dev-lxd.sh brings one up)."""

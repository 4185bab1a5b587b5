"""Fault-injection tests on the real LXD: each fault, then a plain apply that converges."""

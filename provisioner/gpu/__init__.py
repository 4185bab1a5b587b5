"""The GPU adapter: NVIDIA GPUs read through NVML, and the gate that says whether attaching
one is safe now.

May import: values only. Never another adapter.
"""

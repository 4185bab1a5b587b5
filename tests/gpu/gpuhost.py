"""Helpers of the real-GPU acceptance suite: `nvidia-smi` and `lxc` as a test runs them."""

from __future__ import annotations

import subprocess


def nvidia_smi(*args: str) -> list[str]:
    result = subprocess.run(
        ["nvidia-smi", *args], capture_output=True, text=True, check=True, timeout=60
    )
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def query(field: str) -> list[str]:
    """One value per GPU, in nvidia-smi's (= NVML's) index order."""
    return nvidia_smi(f"--query-gpu={field}", "--format=csv,noheader,nounits")


def lxc(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["lxc", *args], capture_output=True, text=True, timeout=300, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"lxc {' '.join(args)} failed: {result.stderr.strip()}")
    return result

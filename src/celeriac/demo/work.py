"""The CPU work the demo measures with, importable without creating an app."""

from __future__ import annotations


def burn(iterations: int) -> int:
    """Pure-Python arithmetic that holds the GIL the whole time (hashlib would release it)."""
    total = 0
    for i in range(iterations):
        total = (total + i * i) % 1_000_003
    return total

"""Quantities as an admin reads them. Imported by every front end, so it imports nothing."""

from __future__ import annotations

_KB, _MB, _GB, _TB = 1024, 1024**2, 1024**3, 1024**4


def human_bytes(n: float, byte_unit: str = "bytes") -> str:
    """``n`` bytes as an admin reads them (KB, MB, GB, TB of 1024); below 1 KB in ``byte_unit``."""
    if n < _KB:
        return f"{n:.0f} {byte_unit}"
    if n < _MB:
        return f"{n / _KB:.1f} KB"
    if n < _GB:
        return f"{n / _MB:.1f} MB"
    if n < _TB:
        return f"{n / _GB:.1f} GB"
    return f"{n / _TB:.1f} TB"

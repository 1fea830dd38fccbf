"""Quantities as an admin reads them. Imported by every front end, so it imports nothing.

Each has an SQL twin that writes the same text inside SQLite (the report formats 100,000 accounts'
lines there, see state.StateDB.report_texts): both round halves up, in integer arithmetic for byte
counts, so that the text is the same whichever side wrote it (tests/engine/test_units.py compares them).
"""

from __future__ import annotations

# (upper bound, divisor, unit) of each unit above bytes but the last, which has no bound
_UNITS = ((1024**2, 1024, "KB"), (1024**3, 1024**2, "MB"), (1024**4, 1024**3, "GB"))
_LAST_UNIT = (1024**4, "TB")


def human_bytes(n: float, byte_unit: str = "bytes") -> str:
    """``n`` bytes as an admin reads them (KB, MB, GB, TB of 1024, one decimal, halves rounded up);
    below 1 KB in ``byte_unit``."""
    if n < 1024:
        return f"{n:.0f} {byte_unit}"
    divisor, unit = _LAST_UNIT
    for bound, d, u in _UNITS:
        if n < bound:
            divisor, unit = d, u
            break
    t = int((n * 10 + divisor // 2) // divisor)  # tenths of the unit, half up
    return f"{t // 10}.{t % 10} {unit}"


def human_bytes_sql(column: str, byte_unit: str = "bytes") -> str:
    """An SQL expression of an INTEGER ``column`` (never negative) that is :func:`human_bytes` of it."""

    def tenths_of(divisor: int, unit: str) -> str:
        t = f"(({column}) * 10 + {divisor // 2}) / {divisor}"
        return f"printf('%d.%d {unit}', {t} / 10, {t} % 10)"

    branches = " ".join(f"WHEN ({column}) < {bound} THEN {tenths_of(divisor, unit)}" for bound, divisor, unit in _UNITS)
    return f"CASE WHEN ({column}) < 1024 THEN ({column}) || ' {byte_unit}' {branches} ELSE {tenths_of(*_LAST_UNIT)} END"


def tenths(x: float) -> str:
    """``x`` (never below 0: a duration) with one decimal, halves rounded up, as :func:`tenths_sql` writes it."""
    t = int(max(x, 0.0) * 10 + 0.5)
    return f"{t // 10}.{t % 10}"


def tenths_sql(column: str) -> str:
    """An SQL expression of a REAL ``column`` (NULL is 0) that is :func:`tenths` of it: the same double
    arithmetic, then truncation, on both sides."""
    t = f"CAST(MAX(COALESCE({column}, 0.0), 0.0) * 10 + 0.5 AS INTEGER)"
    return f"printf('%d.%d', {t} / 10, {t} % 10)"

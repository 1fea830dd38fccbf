"""engine/units.py: byte counts and durations as the reports, the TUI and the notification mails write
them, and their SQL twins, which must write the same text."""

from __future__ import annotations

import random
import sqlite3

import pytest

from mailmig_tui.engine.units import human_bytes, human_bytes_sql, tenths, tenths_sql


@pytest.mark.parametrize(
    ("n", "shown"),
    [
        (0, "0 bytes"),
        (1023, "1023 bytes"),
        (1024, "1.0 KB"),
        (1536, "1.5 KB"),
        (1024**2 - 1, "1024.0 KB"),  # rounded up, still in the smaller unit
        (1024**2, "1.0 MB"),
        (1280, "1.3 KB"),  # halves rounded up (Python's format would write 1.2)
        (int(2.25 * 1024**3), "2.3 GB"),
        (1024**4 - 1, "1024.0 GB"),
        (3 * 1024**4, "3.0 TB"),
        (5000 * 1024**4, "5000.0 TB"),
        (512.4, "512 bytes"),
    ],
)
def test_human_bytes(n: float, shown: str) -> None:
    assert human_bytes(n) == shown
    assert human_bytes(n, "B") == shown.replace(" bytes", " B")


def _sql(expression: str, value: float | None) -> str:
    db = sqlite3.connect(":memory:")
    try:
        (text,) = db.execute(f"SELECT {expression}", {"v": value}).fetchone()
    finally:
        db.close()
    return str(text)


def test_sql_writes_the_byte_counts_as_python_does() -> None:
    """Each unit's bounds, the halves (where SQLite's printf and Python's format round apart), and random
    counts up to 8 TB."""
    rng = random.Random(14)
    edges = [0, 1, 1023, 1024, 1075, 1076, 1280, 1536, 1024**2 - 52, 1024**2 - 1, 1024**2, 1024**3 - 1, 1024**3]
    edges += [int(2.25 * 1024**3), 1024**4 - 1, 1024**4, 5000 * 1024**4]
    counts = edges + [rng.randrange(2**43) for _ in range(2000)] + [rng.randrange(2**22) for _ in range(2000)]
    db = sqlite3.connect(":memory:")
    expression = human_bytes_sql(":v", "B")
    differ = [n for n in counts if db.execute(f"SELECT {expression}", {"v": n}).fetchone()[0] != human_bytes(n, "B")]
    db.close()
    assert differ == []
    assert _sql(human_bytes_sql(":v"), 1023) == "1023 bytes"


@pytest.mark.parametrize(
    ("x", "shown"),
    [(0.0, "0.0"), (0.04, "0.0"), (0.05, "0.1"), (0.25, "0.3"), (1.25, "1.3"), (9.95, "10.0"), (3600.0, "3600.0"),
     (-1.0, "0.0"), (None, "0.0")],
)  # fmt: skip
def test_tenths_and_their_sql(x: float | None, shown: str) -> None:
    if x is not None:
        assert tenths(x) == shown
    assert _sql(tenths_sql(":v"), x) == shown


def test_sql_writes_the_durations_as_python_does() -> None:
    rng = random.Random(14)
    durations = [rng.random() * 100 for _ in range(2000)] + [rng.randrange(10**5) / 100 for _ in range(2000)]
    db = sqlite3.connect(":memory:")
    expression = tenths_sql(":v")
    differ = [x for x in durations if db.execute(f"SELECT {expression}", {"v": x}).fetchone()[0] != tenths(x)]
    db.close()
    assert differ == []

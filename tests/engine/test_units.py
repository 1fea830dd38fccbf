"""engine/units.py: byte counts as the reports, the TUI and the notification mails write them."""

from __future__ import annotations

import pytest

from mailmig_tui.engine.units import human_bytes


@pytest.mark.parametrize(
    ("n", "shown"),
    [
        (0, "0 bytes"),
        (1023, "1023 bytes"),
        (1024, "1.0 KB"),
        (1536, "1.5 KB"),
        (1024**2 - 1, "1024.0 KB"),  # rounded up, still in the smaller unit
        (1024**2, "1.0 MB"),
        (int(2.25 * 1024**3), "2.2 GB"),  # round half to even, as Python formats
        (1024**4 - 1, "1024.0 GB"),
        (3 * 1024**4, "3.0 TB"),
        (5000 * 1024**4, "5000.0 TB"),
        (512.4, "512 bytes"),
    ],
)
def test_human_bytes(n: float, shown: str) -> None:
    assert human_bytes(n) == shown
    assert human_bytes(n, "B") == shown.replace(" bytes", " B")

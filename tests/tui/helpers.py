"""Helpers for Pilot tests: bounded waiting, reading table cells, what a screen shows."""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.pilot import Pilot
from textual.widgets import DataTable

TIMEOUT = 30.0


async def wait_for(pilot: Pilot, predicate: Callable[[], object], timeout: float = TIMEOUT, what: str = "") -> None:
    """Let the app run until ``predicate()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        await pilot.pause(0.05)


def cells(table: DataTable, key: str) -> list[str]:
    return [str(c) for c in table.get_row(key)]


def column(table: DataTable, key: str, column_key: str) -> str:
    return str(table.get_cell(key, column_key))

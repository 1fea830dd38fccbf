"""Snapshots of the main screens at 100×30, with fixed data: fixed times (UTC), no paths, no blinking cursor.

Regenerate only on purpose, after looking at the report: pytest tests/tui/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from mailmig_tui.app import MailmigApp
from mailmig_tui.engine import store
from mailmig_tui.engine.model import Source, Task, User
from mailmig_tui.screens.modals import CertificateModal
from tests.tui.helpers import column, wait_for
from tests.tui.test_info_screen import history, make_state, make_task, write_log

SIZE = (100, 30)
FIXED_TIME = 1767607200.0  # 2026-01-05 10:00:00 UTC
FINGERPRINT = "sha256:" + ":".join(f"{i * 7 % 256:02X}" for i in range(32))


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def make_fixed_state() -> None:
    """The state of test_info_screen, written as if at FIXED_TIME."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(time, "time", lambda: FIXED_TIME)
        make_state()


def no_blink(pilot: Pilot) -> None:
    for widget in pilot.app.screen.query(Input):
        widget.cursor_blink = False


async def settle(pilot: Pilot) -> None:
    no_blink(pilot)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause(0.3)  # tables measure updated cells when idle


def test_task_list(snap_compare, mailmig_home):
    make_task()
    make_fixed_state()
    store.save_task(
        Task(
            name="globex [google]",
            source=Source(type="google", key_file="/k.json"),
            users=[User(f"user{i}@globex.example", f"user{i}") for i in range(12)],
        )
    )
    store.save_task(Task(name="initech", source=Source(host="imap.initech.example", port=143, security="starttls")))
    store.paths().task_file("zz broken").write_text('name = "zz broken"\n[source]\nport = abc\n')

    async def run_before(pilot: Pilot) -> None:
        table = pilot.app.screen.query_one("#tasks-table")
        await wait_for(pilot, lambda: column(table, "acme", "accounts") == "1/2")
        await settle(pilot)

    assert snap_compare(MailmigApp(), terminal_size=SIZE, run_before=run_before)


def test_task_info(snap_compare, mailmig_home):
    make_task()
    write_log(history())
    make_fixed_state()

    async def run_before(pilot: Pilot) -> None:
        await pilot.pause()
        await pilot.press("i")
        await wait_for(pilot, lambda: getattr(pilot.app.screen, "history_loaded", False))
        await wait_for(pilot, lambda: column(pilot.app.screen.table, "alice", "copied") == "3")
        await settle(pilot)

    assert snap_compare(MailmigApp(), terminal_size=SIZE, run_before=run_before)


def test_task_info_at_80_by_24(snap_compare, mailmig_home):
    make_task()
    write_log(history())
    make_fixed_state()

    async def run_before(pilot: Pilot) -> None:
        await pilot.pause()
        await pilot.press("i")
        await wait_for(pilot, lambda: getattr(pilot.app.screen, "history_loaded", False))
        await wait_for(pilot, lambda: column(pilot.app.screen.table, "alice", "copied") == "3")
        await settle(pilot)

    assert snap_compare(MailmigApp(), terminal_size=(80, 24), run_before=run_before)


def test_settings_with_a_problem(snap_compare, mailmig_home):
    async def run_before(pilot: Pilot) -> None:
        await pilot.pause()
        await pilot.press("g")
        await wait_for(pilot, lambda: pilot.app.screen.query("#destination-port"))
        pilot.app.screen.query_one("#destination-port", Input).value = "70000"
        await pilot.press("ctrl+s")
        await settle(pilot)

    assert snap_compare(MailmigApp(), terminal_size=SIZE, run_before=run_before)


def test_certificate_dialog(snap_compare, mailmig_home):
    async def run_before(pilot: Pilot) -> None:
        await pilot.pause()
        pilot.app.push_screen(
            CertificateModal("mail.acme.example:993", FINGERPRINT, "mail.acme.example:993: certificate not trusted")
        )
        await settle(pilot)

    assert snap_compare(MailmigApp(), terminal_size=SIZE, run_before=run_before)

"""Task info without a run: history from the log file and the state database, filters, search, scrolling,
and mail data (``[Gmail]/Sent Mail``, ``Re: [urgent]``) shown exactly as it is."""

from __future__ import annotations

from collections import Counter

from textual.widgets import Input, Log, Select

from mailmig_tui.app import MailmigApp
from mailmig_tui.engine import store
from mailmig_tui.engine.events import AccountResult
from mailmig_tui.engine.logfile import LogRecord
from mailmig_tui.engine.model import Source, Task, User
from mailmig_tui.engine.state import COPIED, MessageRow, StateDB
from mailmig_tui.screens.info import InfoScreen
from mailmig_tui.widgets.log_pane import LogPane
from tests.tui.helpers import column, wait_for

BRACKETS_ERROR = "APPEND to [Gmail]/Sent Mail refused: Re: [urgent] call is over the size limit"


def make_task() -> Task:
    task = Task(
        name="acme",
        source=Source(host="mail.acme.example"),
        users=[User("alice", "alice", password="a"), User("bob", "bob", password="b")],
    )
    store.save_task(task)
    return task


def write_log(records: list[LogRecord]) -> None:
    path = store.paths().log_file("acme")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        for rec in records:
            fh.write(rec.line() + "\n")


def rec(n: int, severity: str = "info", account: str = "alice", folder: str = "INBOX", text: str = "") -> LogRecord:
    return LogRecord(
        f"2026-01-05T10:{n // 60:02d}:{n % 60:02d}.000+00:00", severity, account, folder, text or f"line {n}"
    )


def history() -> list[LogRecord]:
    return [
        rec(0, account="", folder="", text="run started: 2 account(s): alice, bob"),
        rec(1, text="account started", folder=""),
        rec(2, "debug", folder="[Gmail]/Sent Mail", text="10/20 → Sent"),
        rec(3, folder="[Gmail]/Sent Mail", text="folder done → Sent: 20 copied, 0 failed"),
        rec(4, "error", folder="[Gmail]/Sent Mail", text=BRACKETS_ERROR),
        rec(5, account="bob", text="folder done → INBOX: 3 copied, 0 failed"),
        rec(6, "warning", account="bob", folder="Re: [urgent]", text="1 message(s) skipped: over the size limit"),
        rec(7, account="", folder="", text="run partial: 1 complete, 1 failed, 0 stopped"),
    ]


def make_state() -> None:
    db = StateDB(store.paths().state_file("acme"))
    try:
        run_id = db.start_run(False)
        for account, status, error in (("alice", "failed", BRACKETS_ERROR), ("bob", "complete", "")):
            db.bind_account(account, "imap://mail.acme.example", account)
            db.set_account_status(account, "running")
            db.record(
                account, [MessageRow("INBOX", "1", str(i), COPIED, "INBOX", 1, i, f"f{i}", 100) for i in range(3)]
            )
            db.save_folder(
                account, "INBOX", validity="1", marker="m", filters="f", dest_folder="INBOX",
                skipped=Counter({"received before the date filter": 2}), clean=True,
            )  # fmt: skip
            db.set_account_status(account, status, error=error)
            result = AccountResult(account, account, status=status, copied=3, bytes=300, duration=75.0, error=error)
            db.record_account_run(run_id, result, 0.0)
        db.finish_run(run_id, "partial")
    finally:
        db.close()


def lines_of(app: MailmigApp) -> list[str]:
    return list(app.screen.query_one("#log-lines", Log).lines)


async def open_info(pilot, app: MailmigApp) -> InfoScreen:
    await pilot.pause()
    await pilot.press("i")
    await wait_for(pilot, lambda: isinstance(app.screen, InfoScreen) and app.screen.history_loaded)
    assert isinstance(app.screen, InfoScreen)
    return app.screen


async def test_history_and_summary_show_mail_data_literally(mailmig_home):
    make_task()
    write_log(history())
    make_state()
    app = MailmigApp()
    async with app.run_test(size=(140, 40)) as pilot:
        info = await open_info(pilot, app)
        await wait_for(pilot, lambda: column(info.table, "alice", "copied") == "3")
        lines = lines_of(app)
        assert lines[0] == "01-05 10:00:00 INFO    run started: 2 account(s): alice, bob"
        assert "01-05 10:00:04 ERROR   alice [[Gmail]/Sent Mail] " + BRACKETS_ERROR in lines
        assert "01-05 10:00:06 WARNING bob [Re: [urgent]] 1 message(s) skipped: over the size limit" in lines
        assert not any("10/20" in line for line in lines), "debug lines are hidden by default"
        assert column(info.table, "alice", "state") == "failed"
        assert column(info.table, "bob", "state") == "complete"
        assert column(info.table, "alice", "skipped") == "2: 2 old"
        assert column(info.table, "alice", "bytes") == "300 B"
        assert column(info.table, "alice", "duration") == "1m 15s"
        assert column(info.table, "alice", "error") == "APPEND to [Gmail]/Sent Mail refused: Re…"  # clipped
        detail = str(info.query_one("#account-detail").render())
        assert detail == f"alice → alice: skipped: 2 received before the date filter; last error: {BRACKETS_ERROR}"
        status = str(info.query_one("#info-status").render())
        assert status.startswith("Status: failed   accounts complete: 1/2   last run: ")


async def test_filters_by_account_severity_and_search(mailmig_home):
    make_task()
    write_log(history())
    app = MailmigApp()
    async with app.run_test(size=(140, 40)) as pilot:
        info = await open_info(pilot, app)
        assert len(lines_of(app)) == 7

        info.query_one("#log-account", Select).value = "bob"
        await wait_for(pilot, lambda: len(lines_of(app)) == 2)
        assert all(" bob " in line for line in lines_of(app))
        await pilot.press("enter")  # on the summary's first row (alice): the log shows alice only
        await wait_for(pilot, lambda: info.pane.account == "alice")
        assert [line[15:] for line in lines_of(app)] == [
            "INFO    alice account started",
            "INFO    alice [[Gmail]/Sent Mail] folder done → Sent: 20 copied, 0 failed",
            f"ERROR   alice [[Gmail]/Sent Mail] {BRACKETS_ERROR}",
        ]
        await pilot.press("enter")  # again: every account
        await wait_for(pilot, lambda: len(lines_of(app)) == 7)

        await pilot.press("v")  # info -> warning
        await wait_for(pilot, lambda: len(lines_of(app)) == 2)
        await pilot.press("v", "v")  # -> error -> debug
        await wait_for(pilot, lambda: len(lines_of(app)) == 8)
        assert info.pane.min_severity == "debug"

        await pilot.press("slash")
        assert isinstance(app.screen.focused, Input)
        await pilot.press(*"URGENT")  # case-insensitive, and typing does not trigger the screen's keys
        await wait_for(pilot, lambda: len(lines_of(app)) == 2)
        assert info.pane.min_severity == "debug"
        await pilot.press("escape")  # leaves the search box, not the screen
        assert isinstance(app.screen, InfoScreen)
        assert isinstance(app.screen.focused, Log)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, InfoScreen))


async def test_new_lines_do_not_pull_a_reader_down(mailmig_home):
    make_task()
    write_log([rec(i, text=f"old line {i}") for i in range(300)])
    app = MailmigApp()
    async with app.run_test(size=(100, 30)) as pilot:
        info = await open_info(pilot, app)
        log = info.pane.log_widget
        await wait_for(pilot, lambda: log.line_count == 300)
        assert log.is_vertical_scroll_end
        log.scroll_to(y=10, animate=False)
        await pilot.pause()
        write_log([rec(400 + i, text=f"new line {i}") for i in range(50)])
        await wait_for(pilot, lambda: log.line_count == 350, timeout=5, what="the follower")
        await pilot.pause()
        assert log.scroll_y == 10, "scrolled up: stays where the admin reads"
        await pilot.press("f")  # follow the end again
        await pilot.pause()
        assert log.is_vertical_scroll_end
        write_log([rec(500, text="newest")])
        await wait_for(pilot, lambda: log.line_count == 351, timeout=5)
        await pilot.pause()
        assert log.is_vertical_scroll_end, "at the end: follows new lines"


async def test_the_pane_keeps_a_bounded_log(mailmig_home):
    make_task()
    app = MailmigApp()
    async with app.run_test() as pilot:
        await open_info(pilot, app)
        pane = app.screen.query_one(LogPane)
        pane.add([rec(i % 3600, text=f"l{i}") for i in range(6000)])
        await pilot.pause()
        assert pane.log_widget.line_count == 5000
        assert pane.log_widget.lines[-1].endswith("l5999")


async def test_info_at_80_by_24(mailmig_home):
    make_task()
    write_log(history())
    app = MailmigApp()
    async with app.run_test(size=(80, 24)) as pilot:
        info = await open_info(pilot, app)
        assert info.table.region.height >= 3
        assert info.pane.log_widget.region.height >= 8
        assert info.query_one("#log-search").region.right <= 80
        assert info.query_one("Footer").region.bottom == 24

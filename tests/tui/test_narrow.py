"""Task info at 80x24: every column and the footer readable; the header counts the accounts being copied
(also of another process's run), and Folders shows done/total while an account is copied."""

from __future__ import annotations

import re

import pytest

from mailmig_tui.app import MailmigApp
from mailmig_tui.engine import runner, store
from mailmig_tui.engine.account import Limits
from mailmig_tui.engine.state import StateDB
from mailmig_tui.screens.info import InfoScreen
from tests.integration.conftest import Pair, message, when
from tests.servers import mailbox as mb
from tests.tui.helpers import column, wait_for
from tests.tui.test_info_screen import history, make_state, make_task, open_info, write_log
from tests.tui.test_runs import Gate, status_cell


def screen_lines(app: MailmigApp) -> list[str]:
    return [strip.text for strip in app.screen._compositor.render_strips()]


async def test_info_at_80_by_24_shows_every_column_and_a_readable_footer(mailmig_home):
    make_task()
    write_log(history())
    make_state()
    app = MailmigApp()
    async with app.run_test(size=(80, 24)) as pilot:
        info = await open_info(pilot, app)
        await wait_for(pilot, lambda: column(info.table, "alice", "copied") == "3", timeout=5)
        await pilot.pause(0.2)
        lines = screen_lines(app)
        header = next(line for line in lines if line.lstrip().startswith("Account"))
        assert header.split() == ["Account", "State", "Fold", "Copied", "Skip", "Fail", "Size", "Time", "Error"]
        alice = next(line for line in lines if line.lstrip().startswith("alice "))
        for value in ("failed", "1", "3", "2:", "0", "300 B", "1m 15s", "APPEND"):
            assert value in alice, (value, alice)
        assert alice.rstrip().endswith("…")  # the error is cut, the detail line has it whole
        assert len(alice) <= 80
        footer = lines[-1]
        for key in ("esc Back", "s Start", "x Stop", "/ Search", "f Follow", "^q Quit", "f1 Help", "^p palette"):
            assert key in footer, (key, footer)


async def test_header_counts_the_accounts_being_copied_and_folders_progress(pair: Pair):
    for user in ("alice", "bob", "carol"):
        mb.seed(
            pair.src,
            user,
            {
                "INBOX": [mb.Msg(message(i), (), when(2021, 3, 1)) for i in range(3)],
                "Work": [mb.Msg(message(100 + i), (), when(2021, 3, 1)) for i in range(25)],
            },
        )  # no account is done after the one batch the gate lets through
    task = pair.task(["alice", "bob", "carol"], save=False)
    task.run.concurrency = 3
    store.save_task(task)
    pair.settings()
    gate = Gate(allow=1)
    app = MailmigApp(runner_options={"destination_factory": gate.factory, "limits": Limits(batch_messages=10)})
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("s")
        await wait_for(pilot, lambda: gate.holding.is_set(), what="the run to be mid-way")
        await wait_for(pilot, lambda: status_cell(app) == "running 3, 0/3 done", what="three accounts running")
        await pilot.press("i")
        await wait_for(pilot, lambda: isinstance(app.screen, InfoScreen))
        info = app.screen
        assert isinstance(info, InfoScreen)
        assert "Status: running 3, 0/3 done" in str(info.query_one("#info-status").render())
        await wait_for(
            pilot,
            lambda: any(re.fullmatch(r"[01]/2", column(info.table, u, "folders")) for u in ("alice", "bob", "carol")),
            timeout=10,
            what="folders done/total while copying",
        )
        gate.release()
        await app.workers.wait_for_complete()
        await wait_for(pilot, lambda: not app.runs and column(info.table, "alice", "folders") == "2", what="the end")
        assert column(info.table, "bob", "folders") == "2"


async def test_header_counts_the_accounts_another_process_copies(pair: Pair):
    pair.task(["alice", "bob"])
    pair.settings()
    p = store.paths()
    app = MailmigApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: status_cell(app) == "idle")
        lock = runner.TaskLock(runner.lock_path(p, "acme"), "cli")
        lock.acquire()
        try:
            db = StateDB(p.state_file("acme"))
            try:
                db.start_run(False)
                for account in ("alice", "bob"):
                    db.bind_account(account, "imap://127.0.0.1", account)
                    db.set_account_status(account, "running")
            finally:
                db.close()
            await wait_for(pilot, lambda: status_cell(app) == "running 2, 0/2 done", timeout=5)
        finally:
            lock.release()


pytestmark = pytest.mark.slow

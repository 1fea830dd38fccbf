"""Runs driven from the app against real Dovecot: start, watch, stop, resume, quit, lose the terminal,
and runs of other processes shown as running."""

from __future__ import annotations

import os
import signal
import threading

import pytest
from textual.widgets import Log

from mailmig_tui.app import MailmigApp
from mailmig_tui.engine import runner, store
from mailmig_tui.engine.account import Limits
from mailmig_tui.engine.destination import DestinationMailbox
from mailmig_tui.engine.events import AccountStarted
from mailmig_tui.engine.logfile import LogWriter
from mailmig_tui.engine.model import Settings, User
from mailmig_tui.engine.state import StateDB
from mailmig_tui.screens.info import InfoScreen
from mailmig_tui.screens.modals import ConfirmModal, ErrorModal
from mailmig_tui.screens.tasks import TasksScreen
from mailmig_tui.widgets.summary_table import SummaryTable
from tests.integration.conftest import Pair, contents, message, when
from tests.servers import mailbox as mb
from tests.servers.dovecot import free_port
from tests.tui.helpers import column, wait_for

pytestmark = pytest.mark.slow


def seed_many(server, user: str, n: int, folder: str = "INBOX") -> None:
    """``n`` distinct messages in one MULTIAPPEND (fast, unlike one APPEND per message)."""
    client = mb.connect(server, user)
    try:
        client.multiappend(folder, [{"msg": message(i), "flags": (), "date": when(2020, 1, 1)} for i in range(n)])
    finally:
        client.logout()


class Gate:
    """The real destination, letting ``allow`` APPEND batches through, then holding the next one until
    :meth:`release`: a run is then mid-way, deterministically, for as long as the test needs."""

    def __init__(self, allow: int = 0) -> None:
        self.allow = allow
        self.appends = 0
        self.holding = threading.Event()
        self.released = threading.Event()

    def release(self) -> None:
        self.released.set()

    def factory(self, settings: Settings, user: User) -> DestinationMailbox:
        dest = runner.open_destination(settings, user)
        append = dest.append

        def gated_append(name, items):
            self.appends += 1
            if self.appends > self.allow:
                self.holding.set()
                self.released.wait(60)
            return append(name, items)

        dest.append = gated_append  # type: ignore[method-assign]
        return dest


def status_cell(app: MailmigApp, name: str = "acme") -> str:
    screen = next(s for s in app.screen_stack if isinstance(s, TasksScreen))
    return column(screen.table, name, "status")


def log_lines(app: MailmigApp) -> list[str]:
    return list(app.screen.query_one("#log-lines", Log).lines)


def dest_inbox(pair: Pair, user: str = "alice") -> list[bytes]:
    return [raw for raw, _, _ in contents(pair.dst, user).get("INBOX", [])]


async def test_start_from_the_list_and_watch_the_info_screen(pair: Pair, monkeypatch: pytest.MonkeyPatch):
    mb.seed(
        pair.src,
        "alice",
        {
            "INBOX": [mb.Msg(message(i), (), when(2021, 3, 1)) for i in range(4)],
            "[Gmail]/Sent Mail": [mb.Msg(message(10, subject="Re: [urgent] call"), ("\\Seen",), when(2021, 3, 2))],
        },
    )
    mb.seed(pair.src, "bob", {"INBOX": [mb.Msg(message(20), (), when(2021, 3, 3))]})
    pair.task(["alice", "bob"])
    pair.settings()
    rebuilt: list[int] = []
    original = SummaryTable.set_accounts
    monkeypatch.setattr(SummaryTable, "set_accounts", lambda self, *args: (rebuilt.append(1), original(self, *args)))
    one_by_one: list[str] = []
    monkeypatch.setattr(Log, "write_line", lambda self, line, scroll_end=None: one_by_one.append(line))

    gate = Gate()
    app = MailmigApp(runner_options={"destination_factory": gate.factory})
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()
        await pilot.press("s")
        await wait_for(pilot, lambda: gate.holding.is_set(), what="the run to reach its first APPEND")
        await wait_for(pilot, lambda: status_cell(app) == "running 2, 0/2 done")
        await pilot.press("i")
        await wait_for(pilot, lambda: isinstance(app.screen, InfoScreen))
        info = app.screen
        assert isinstance(info, InfoScreen)
        await wait_for(pilot, lambda: info_states(info) == ["running", "running"], what="live account states")
        await wait_for(pilot, lambda: any("alice account started" in line for line in log_lines(app)))
        assert "Status: running 2, 0/2 done" in str(info.query_one("#info-status").render())
        gate.release()
        await app.workers.wait_for_complete()
        await wait_for(pilot, lambda: not app.runs and status_cell(app) == "completed", what="the run to end")
        await wait_for(pilot, lambda: column(info.table, "alice", "copied") == "5", what="the summary from the state")
        assert column(info.table, "bob", "copied") == "1"
        assert column(info.table, "alice", "state") == "complete"
        assert column(info.table, "alice", "folders") == "3"  # INBOX, [Gmail], [Gmail]/Sent Mail
        lines = log_lines(app)
        assert any("run started: 2 account(s): alice, bob" in line for line in lines)
        # folder names are mail data: shown literally, never eaten as markup
        assert any("alice [[Gmail]/Sent Mail] folder done → Sent: 1 copied" in line for line in lines), "\n".join(lines)
        assert any("run completed: 2 complete, 0 failed" in line for line in lines)
        assert rebuilt == [1], "the summary rows are updated in place, never rebuilt"
        assert one_by_one == [], "log lines are written in batches"
        assert "Status: completed" in str(info.query_one("#info-status").render())
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, TasksScreen))
        assert column(app.screen.table, "acme", "accounts") == "2/2"
        assert column(app.screen.table, "acme", "last") != "-"
    assert contents(pair.dst, "alice")["Sent"] == contents(pair.src, "alice")["[Gmail]/Sent Mail"]


def detail_of(info: InfoScreen) -> str:
    return str(info.query_one("#account-detail").render())


def info_states(info: InfoScreen) -> list[str]:
    return [column(info.table, key, "state") for key, _ in info.users]


async def test_stop_midway_then_resume_to_completion_without_duplicates(pair: Pair):
    seed_many(pair.src, "alice", 200)
    pair.task(["alice"])
    pair.settings()
    gate = Gate(allow=3)
    app = MailmigApp(runner_options={"limits": Limits(batch_messages=10), "destination_factory": gate.factory})
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("s")
        await pilot.press("i")
        await wait_for(pilot, lambda: isinstance(app.screen, InfoScreen))
        info = app.screen
        assert isinstance(info, InfoScreen)
        await wait_for(pilot, lambda: gate.holding.is_set(), what="three batches copied")
        await wait_for(pilot, lambda: column(info.table, "alice", "state") == "running: INBOX 30/200")
        await wait_for(pilot, lambda: "now INBOX 30/200, account 30/200 messages" in detail_of(info), timeout=5)
        assert info.check_action("start", ()) is None and info.check_action("stop", ()) is True
        tasks = app.screen_stack[-2]
        assert isinstance(tasks, TasksScreen)
        assert tasks.check_action("start", ()) is None and tasks.check_action("stop", ()) is True
        assert tasks.check_action("delete", ()) is None
        await pilot.press("x")
        await pilot.pause()
        assert app.runs["acme"].cancel.is_set()
        assert "stopping…" in str(info.query_one("#info-status").render())
        assert status_cell(app) == "stopping…"
        assert info.check_action("stop", ()) is None  # already stopping
        gate.release()
        await app.workers.wait_for_complete()
        await wait_for(pilot, lambda: not app.runs and status_cell(app) == "stopped", what="the stop")
        copied = dest_inbox(pair)
        assert len(copied) == 40  # the batch being appended when Stop was pressed is the last
        await wait_for(pilot, lambda: column(info.table, "alice", "copied") == str(len(copied)))
        assert column(info.table, "alice", "state") == "stopped"
        assert any("run stopped" in line for line in log_lines(app))

        await pilot.press("s")  # resume (it may already be over when the key press returns)
        await app.workers.wait_for_complete()
        await wait_for(pilot, lambda: not app.runs and status_cell(app) == "completed", what="the resumed run")
        await wait_for(pilot, lambda: column(info.table, "alice", "copied") == "200")
    src, dst = contents(pair.src, "alice")["INBOX"], contents(pair.dst, "alice")["INBOX"]
    assert len(dst) == 200
    assert sorted(dst) == sorted(src), "every message exactly once"


async def test_a_destination_that_cannot_be_reached_is_a_clear_error(pair: Pair):
    pair.task(["alice"])
    settings = pair.settings(save=False)
    settings.destination.port = free_port()
    store.save_settings(settings)
    app = MailmigApp()
    async with app.run_test() as pilot:
        await pilot.pause()
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorModal), what="the error")
        body = " ".join(str(s.render()) for s in app.screen.query(".dialog-body"))
        assert "the destination server cannot be reached" in body
        assert "connection refused" in body
        assert not app.runs
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, TasksScreen))
        assert status_cell(app) == "idle"


async def test_quit_while_a_task_runs_asks_then_stops_it(pair: Pair):
    seed_many(pair.src, "alice", 100)
    pair.task(["alice"])
    pair.settings()
    gate = Gate(allow=2)
    app = MailmigApp(runner_options={"limits": Limits(batch_messages=10), "destination_factory": gate.factory})
    async with app.run_test() as pilot:
        await pilot.pause()
        await pilot.press("s")
        await wait_for(pilot, lambda: gate.holding.is_set())
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, TasksScreen))
        assert not app.runs["acme"].cancel.is_set()
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal))
        run = app.runs["acme"]
        await pilot.press("y")
        await wait_for(pilot, lambda: run.cancel.is_set())
        assert status_cell(app) == "stopping…"
        gate.release()
        await app.workers.wait_for_complete()
        await wait_for(pilot, lambda: app._exit, what="the app to exit")
    assert app.return_code == 0
    assert run.result is not None and run.result.status == "stopped"
    assert len(dest_inbox(pair)) == 30


async def test_sighup_stops_the_runs_and_exits_resumably(pair: Pair):
    seed_many(pair.src, "alice", 150)
    pair.task(["alice"])
    settings = pair.settings()
    gate = Gate(allow=2)
    app = MailmigApp(runner_options={"limits": Limits(batch_messages=10), "destination_factory": gate.factory})
    async with app.run_test() as pilot:
        await pilot.pause()
        assert signal.SIGHUP in app._signals, "the handler must be installed before the signal is sent"
        await pilot.press("s")
        await wait_for(pilot, lambda: gate.holding.is_set())
        run = app.runs["acme"]
        os.kill(os.getpid(), signal.SIGHUP)  # what a dropped SSH session sends
        await wait_for(pilot, lambda: run.cancel.is_set(), timeout=5, what="the handler")
        assert app.hung_up
        gate.release()
        await app.workers.wait_for_complete()
        await wait_for(pilot, lambda: app._exit, what="the app to exit")
    assert app.return_code == 130
    p = store.paths()
    assert runner.lock_holder(runner.lock_path(p, "acme")) is None
    db = StateDB.open_readonly(p.state_file("acme"))
    try:
        assert db.last_run()["status"] == "stopped"
        assert db.summaries()["alice"].status == "stopped"
    finally:
        db.close()
    partial = len(dest_inbox(pair))
    assert partial == 30
    again = runner.run_task(store.load_task("acme"), settings)
    assert again.status == "completed"
    assert again.accounts[0].copied == 150 - partial
    assert sorted(contents(pair.dst, "alice")["INBOX"]) == sorted(contents(pair.src, "alice")["INBOX"])


async def test_a_run_of_another_process_shows_as_running_and_its_log_is_followed(pair: Pair):
    pair.task(["alice", "bob"])
    pair.settings()
    p = store.paths()
    app = MailmigApp()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: status_cell(app) == "idle")
        lock = runner.TaskLock(runner.lock_path(p, "acme"), "cli")
        lock.acquire()
        try:
            await wait_for(pilot, lambda: status_cell(app) == "starting…", timeout=5, what="the lock to be seen")
            db = StateDB(p.state_file("acme"))
            db.start_run(False)
            db.close()
            await wait_for(pilot, lambda: status_cell(app) == "running 0, 0/2 done", timeout=5)
            detail = str(app.screen.query_one("#tasks-detail").render())
            assert f"running in another process: cli (pid {os.getpid()} on" in detail
            assert app.screen.check_action("start", ()) is None
            assert app.screen.check_action("delete", ()) is None
            await pilot.press("s")  # dimmed: nothing happens
            assert not app.runs
            writer = LogWriter(p.log_file("acme"))
            writer(AccountStarted("acme", "alice"))
            await pilot.press("i")
            await wait_for(pilot, lambda: isinstance(app.screen, InfoScreen))
            await wait_for(pilot, lambda: any("alice account started" in line for line in log_lines(app)), timeout=5)
            writer(AccountStarted("acme", "bob"))  # appended while the screen is open: followed
            await wait_for(pilot, lambda: any("bob account started" in line for line in log_lines(app)), timeout=5)
            writer.close()
            assert "run by cli" in str(app.screen.query_one("#info-status").render())
        finally:
            lock.release()
        await pilot.press("escape")
        await wait_for(pilot, lambda: status_cell(app) == "stopped", timeout=5, what="the end of the other run")


async def test_a_real_cli_run_is_shown_while_it_goes(pair: Pair):
    import subprocess
    import sys

    seed_many(pair.src, "alice", 2500)
    pair.task(["alice"])
    pair.settings()
    app = MailmigApp()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: status_cell(app) == "idle")
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailmig_tui", "run", "acme"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=os.environ.copy(),
        )
        try:
            seen: set[str] = set()

            def watch() -> bool:
                seen.add(status_cell(app))
                return proc.poll() is not None

            await wait_for(pilot, watch, timeout=60, what="the CLI run to end")
            assert proc.returncode == 0
            assert any(s.startswith("running") or s == "starting…" for s in seen), seen
            await wait_for(pilot, lambda: status_cell(app) == "completed", timeout=5)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    assert len(dest_inbox(pair)) == 2500

"""Folder names with terminal escapes from a real Dovecot, an account name with ESC and the server's
answer about it: the log pane, the summary, the user table and dialogs show them escaped."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from textual.widgets import Log, Static

from mailmig_tui.app import MailmigApp
from mailmig_tui.engine import store
from mailmig_tui.engine.logfile import LogRecord
from mailmig_tui.engine.textsafe import escape_controls
from mailmig_tui.screens.editor import TaskEditorScreen
from mailmig_tui.screens.info import InfoScreen
from mailmig_tui.screens.modals import ErrorModal
from mailmig_tui.screens.tasks import TasksScreen
from mailmig_tui.screens.users import UserListPane
from tests.integration.conftest import Pair
from tests.integration.test_cli_run import save_task
from tests.integration.test_hostile_text import HOSTILE, OSC, RAW, hostile_pair
from tests.servers.dovecot import DovecotServer
from tests.tui.helpers import cells, column, wait_for
from tests.tui.test_editor import SIZE, EditorApp
from tests.tui.test_users import open_users, rows


def assert_escaped(texts: list[str], what: str) -> None:
    bad = [t for t in texts if RAW.search(t)]
    assert not bad, f"{what} shows raw control characters: {bad!r}"


async def test_a_run_in_the_app_shows_hostile_names_escaped(
    dovecot_factory: Callable[..., DovecotServer], mailmig_home: Path
) -> None:
    pair = hostile_pair(dovecot_factory)
    save_task(pair, ("alice",))
    old = LogRecord("2026-01-05T10:00:00.000+00:00", "error", "alice", OSC, "from an older version: \x1b[2J")
    path = store.paths().log_file("acme")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(old.line() + "\n", encoding="utf-8")  # as the file held it before escaping

    app = MailmigApp()
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()
        await pilot.press("s")
        await wait_for(pilot, lambda: column(app.screen.table, "acme", "status") == "completed", what="the run")
        await pilot.press("i")
        await wait_for(pilot, lambda: isinstance(app.screen, InfoScreen) and app.screen.history_loaded)
        info = app.screen
        assert isinstance(info, InfoScreen)
        await wait_for(pilot, lambda: column(info.table, "alice", "copied") == "4", what="the summary")
        lines = list(info.query_one("#log-lines", Log).lines)
        assert_escaped(lines, "the log pane")
        for name in HOSTILE:
            assert any(f"alice [{escape_controls(name)}] folder done → " in line for line in lines), lines
        assert any("from an older version: \\x1b[2J" in line for line in lines)
        assert not any(line.startswith("01-01 00:00:00") for line in lines), "a folder name forged a line"
        assert_escaped(cells(info.table, "alice"), "the summary table")
        assert_escaped([str(info.query_one("#account-detail", Static).render())], "the account detail")


async def test_user_table_verdict_and_dialog_show_an_escape_in_an_account_escaped(pair: Pair) -> None:
    pair.settings()
    task = pair.task(["alice"], save=False)
    evil = "al\x1b]0;pwned\x07ice"
    task.users[0].source = task.users[0].destination = evil
    store.save_task(task)

    app = EditorApp(TaskEditorScreen("acme"))
    async with app.run_test(size=SIZE) as pilot:
        _, pane, table = await open_users(pilot)
        await pilot.press("v")
        await app.workers.wait_for_complete()
        await wait_for(pilot, lambda: bool(pane.verdicts), what="the verdict")
        (row,) = rows(table).values()
        assert row[1] == row[3] == escape_controls(evil)
        assert row[4].startswith("FAILED: ")  # Dovecot refuses the login of an unknown user
        assert_escaped(row, "the user table")
        detail = str(pane.query_one("#users-detail", Static).render())
        assert detail.startswith(escape_controls(evil)) and not RAW.search(detail), repr(detail)
        assert isinstance(pane, UserListPane)

        app.push_screen(ErrorModal(f"Cannot verify {evil}", f"line one\nserver said: {evil}\r"))
        await pilot.pause()
        shown = [str(w.render()) for w in app.screen.query(Static)]
        assert f"Cannot verify {escape_controls(evil)}" in shown
        assert f"line one\nserver said: {escape_controls(evil)}\\r" in shown
        assert_escaped([s.replace("\n", " ") for s in shown], "the dialog")


async def test_task_list_shows_a_broken_task_file_name_escaped(mailmig_home: Path) -> None:
    store.paths().tasks_dir.mkdir(parents=True)
    store.paths().task_file("odd\x1b]0;x\x07").write_text('name = "odd"\n[source]\nport = abc\n')
    app = MailmigApp()
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, TasksScreen)
        (key,) = [str(k.value) for k in screen.table.rows]
        assert column(screen.table, key, "name") == "odd\\x1b]0;x\\x07"
        detail = str(screen.query_one("#tasks-detail", Static).render())
        assert "odd\\x1b]0;x\\x07" in detail and not RAW.search(detail.replace("\n", " ")), repr(detail)

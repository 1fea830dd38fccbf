"""The home screen lists every saved task, broken ones included."""

from __future__ import annotations

from textual.widgets import DataTable, Static

from mailmig_tui.app import MailmigApp
from mailmig_tui.engine import store
from mailmig_tui.engine.model import Source, Task, User
from mailmig_tui.screens.tasks import TasksScreen


def cells(table: DataTable, key: str) -> list[str]:
    return [str(c) for c in table.get_row(key)]


async def test_two_tasks_one_broken(mailmig_home):
    store.save_task(
        Task(
            name="acme",
            source=Source(host="mail.acme.example"),
            users=[User("alice", "alice", password="a"), User("bob", "bob", password="b")],
        )
    )
    broken = store.paths().task_file("broken [tag]")
    broken.write_text('name = "broken [tag]"\n[source]\nport = abc\n')
    app = MailmigApp()
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, TasksScreen)
        table = app.screen.query_one("#tasks-table", DataTable)
        assert table.row_count == 2
        assert cells(table, "acme") == ["acme", "IMAP", "idle", "2"]
        name, source, status, detail = table.get_row("broken [tag]")
        assert (str(name), str(source), str(status)) == ("broken [tag]", "?", "broken")
        assert "red" in str(status.style)
        assert str(detail).startswith(f"{broken}, line 3: TOML syntax error")
        assert not app.screen.query_one("#tasks-empty", Static).display


async def test_reload_picks_up_a_new_task(mailmig_home):
    app = MailmigApp()
    async with app.run_test() as pilot:
        await pilot.pause()
        table = app.screen.query_one("#tasks-table", DataTable)
        assert table.row_count == 0
        store.save_task(Task(name="globex", source=Source(type="google", key_file="/k.json")))
        await pilot.press("r")
        await pilot.pause()
        assert cells(table, "globex") == ["globex", "Google Workspace", "idle", "0"]
        assert not app.screen.query_one("#tasks-empty", Static).display


async def test_no_tasks_shows_the_empty_hint(mailmig_home):
    app = MailmigApp()
    async with app.run_test() as pilot:
        await pilot.pause()
        assert app.screen.query_one("#tasks-table", DataTable).row_count == 0
        hint = app.screen.query_one("#tasks-empty", Static)
        assert hint.display
        assert str(hint.render()) == f"No tasks yet. Task files live in {store.paths().tasks_dir}."


async def test_unknown_source_type_is_shown_as_written(mailmig_home):
    store.paths().tasks_dir.mkdir(parents=True)
    store.paths().task_file("odd").write_text('name = "odd"\n[source]\ntype = "pop3"\n')
    app = MailmigApp()
    async with app.run_test() as pilot:
        await pilot.pause()
        assert cells(app.screen.query_one("#tasks-table", DataTable), "odd") == ["odd", "pop3", "idle", "0"]

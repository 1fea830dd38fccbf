"""The home screen: every saved task (broken ones included), and the keys that act on the highlighted one."""

from __future__ import annotations

import datetime as dt
import sys
import types

import pytest
from textual.command import CommandList
from textual.screen import Screen
from textual.widgets import Checkbox, DataTable, Input, Static

from mailmig_tui.app import MailmigApp
from mailmig_tui.engine import schedule, store
from mailmig_tui.engine.model import DAYS, Schedule, Source, Task, User
from mailmig_tui.engine.state import StateDB
from mailmig_tui.engine.status import StatusReader
from mailmig_tui.runs import when_text
from mailmig_tui.screens.modals import DeleteTaskModal, ErrorModal, HelpScreen, PromptModal
from mailmig_tui.screens.settings import SettingsScreen
from mailmig_tui.screens.tasks import TasksScreen
from tests.tui.helpers import cells, column, wait_for


def acme(name: str = "acme") -> Task:
    return Task(
        name=name,
        source=Source(host="mail.acme.example"),
        users=[User("alice", "alice", password="a-secret"), User("bob", "bob", password="b-secret")],
    )


def table_of(app: MailmigApp) -> DataTable:
    return app.screen.query_one("#tasks-table", DataTable)


async def test_two_tasks_one_broken(mailmig_home):
    store.save_task(acme())
    broken = store.paths().task_file("broken [tag]")
    broken.write_text('name = "broken [tag]"\n[source]\nport = abc\n')
    app = MailmigApp()
    async with app.run_test(size=(120, 30)) as pilot:
        table = table_of(app)
        await wait_for(pilot, lambda: column(table, "acme", "accounts") == "0/2", what="the first status poll")
        assert isinstance(app.screen, TasksScreen)
        assert table.row_count == 2
        assert cells(table, "acme") == ["acme", "IMAP", "idle", "0/2", "-", "-"]
        name, source, status, *_ = table.get_row("broken [tag]")
        assert (str(name), str(source), str(status)) == ("broken [tag]", "?", "broken")
        assert "red" in str(status.style)
        table.move_cursor(row=table.get_row_index("broken [tag]"))
        await pilot.pause()
        detail = str(app.screen.query_one("#tasks-detail", Static).render())
        assert detail.startswith(f"{broken}, line 3: TOML syntax error")
        assert not app.screen.query_one("#tasks-empty", Static).display
        # a broken task cannot be started, edited or duplicated; it can be deleted or inspected
        assert app.screen.check_action("start", ()) is None
        assert app.screen.check_action("edit", ()) is None
        assert app.screen.check_action("delete", ()) is True


async def test_reload_picks_up_a_new_task(mailmig_home):
    app = MailmigApp()
    async with app.run_test() as pilot:
        await pilot.pause()
        table = table_of(app)
        assert table.row_count == 0
        store.save_task(Task(name="globex", source=Source(type="google", key_file="/k.json")))
        await pilot.press("r")
        await wait_for(pilot, lambda: table.row_count == 1 and column(table, "globex", "accounts") == "0/0")
        assert cells(table, "globex") == ["globex", "Google Workspace", "idle", "0/0", "-", "-"]
        assert not app.screen.query_one("#tasks-empty", Static).display


async def test_a_task_saved_outside_the_app_appears_by_itself(mailmig_home):
    app = MailmigApp()
    async with app.run_test() as pilot:
        await pilot.pause()
        store.save_task(acme("from-the-cli"))
        await wait_for(pilot, lambda: table_of(app).row_count == 1, timeout=5, what="the poll to notice the file")


async def test_a_user_list_edited_outside_the_app_is_read_again_and_a_return_reads_nothing(mailmig_home, monkeypatch):
    store.save_task(acme())
    loads: list[str] = []
    real_load = store.load_task
    monkeypatch.setattr(store, "load_task", lambda name, *a, **k: loads.append(name) or real_load(name, *a, **k))
    app = MailmigApp()
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: column(table_of(app), "acme", "accounts").endswith("/2"))
        assert loads == ["acme"]  # once at start, not again when the screen is first shown
        app.push_screen(SettingsScreen())
        await pilot.pause()
        app.pop_screen()
        await pilot.pause()
        assert loads == ["acme"]  # back from another screen with no file changed: nothing read again
        path = store.paths().task_users_file("acme")
        path.write_text(path.read_text() + "carol,carol\n")  # as an admin's editor would
        await wait_for(pilot, lambda: column(table_of(app), "acme", "accounts").endswith("/3"), timeout=5)


async def test_no_tasks_shows_the_empty_hint(mailmig_home):
    app = MailmigApp()
    async with app.run_test() as pilot:
        await pilot.pause()
        assert table_of(app).row_count == 0
        hint = app.screen.query_one("#tasks-empty", Static)
        assert hint.display
        assert str(hint.render()) == (
            f"No tasks yet. Task files live in {store.paths().tasks_dir}. Press n to create one."
        )
        for action in ("edit", "start", "stop", "delete", "info", "duplicate"):
            assert app.screen.check_action(action, ()) is None, action


async def test_unknown_source_type_is_shown_as_written(mailmig_home):
    store.paths().tasks_dir.mkdir(parents=True)
    store.paths().task_file("odd").write_text('name = "odd"\n[source]\ntype = "pop3"\n')
    app = MailmigApp()
    async with app.run_test() as pilot:
        table = table_of(app)
        await wait_for(pilot, lambda: column(table, "odd", "accounts") == "0/0")
        assert cells(table, "odd") == ["odd", "pop3", "idle", "0/0", "-", "-"]


# ------------------------------------------------------------------------------------------------
# The task editor is another module: it is opened with the task's name (None for a new task).


class FakeEditor(Screen[None]):
    opened: list[str | None] = []

    loaded: list[Task | None] = []

    def __init__(
        self, task_name: str | None, *, loaded: Task | None = None, reader: StatusReader | None = None
    ) -> None:
        super().__init__()
        FakeEditor.opened.append(task_name)
        FakeEditor.loaded.append(loaded)


@pytest.fixture
def fake_editor(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    module = types.ModuleType("mailmig_tui.screens.editor")
    module.TaskEditorScreen = FakeEditor  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mailmig_tui.screens.editor", module)
    FakeEditor.opened, FakeEditor.loaded = [], []
    return FakeEditor.opened


async def test_new_edit_and_enter_open_the_editor(mailmig_home, fake_editor):
    store.save_task(acme())
    app = MailmigApp()
    async with app.run_test() as pilot:
        await pilot.pause()
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, FakeEditor))
        app.pop_screen()
        await pilot.press("e")
        await wait_for(pilot, lambda: len(fake_editor) == 2)
        app.pop_screen()
        path = store.paths().task_users_file("acme")
        path.write_text(path.read_text() + "carol,carol\n")  # changed since the list read it
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(fake_editor) == 3)
        assert fake_editor == [None, "acme", "acme"]
        # the task as the list read it when its files are unchanged (not read again), never a stale one
        first, second = FakeEditor.loaded[1:]
        assert first is not None and [u.source for u in first.users] == ["alice", "bob"]
        assert first.users[0].password == "a-secret"
        assert second is None or [u.source for u in second.users] == ["alice", "bob", "carol"]


async def test_without_the_editor_module_new_says_so(mailmig_home, monkeypatch):
    monkeypatch.setitem(sys.modules, "mailmig_tui.screens.editor", None)  # import fails as if absent
    app = MailmigApp()
    async with app.run_test(notifications=True) as pilot:
        await pilot.pause()
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, TasksScreen)
        assert any("editor" in n.message for n in app._notifications)


async def test_duplicate_asks_a_new_name_and_opens_the_copy(mailmig_home, fake_editor):
    store.save_task(acme())
    app = MailmigApp()
    async with app.run_test() as pilot:
        await pilot.pause()
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptModal))
        name_input = app.screen.query_one("#prompt-input", Input)
        assert name_input.value == "acme 2"
        name_input.value = "ACME"  # names are unique without regard to case
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, PromptModal)
        assert "already exists" in str(app.screen.query_one("#prompt-error", Static).render())
        name_input.value = "acme-copy"
        await pilot.press("enter")
        await wait_for(pilot, lambda: fake_editor == ["acme-copy"])
    copy = store.load_task("acme-copy")
    assert [(u.source, u.password) for u in copy.users] == [("alice", "a-secret"), ("bob", "b-secret")]
    assert store.load_task("acme").name == "acme"


async def test_delete_asks_first_and_can_take_the_state_along(mailmig_home):
    store.save_task(acme())
    store.save_task(acme("beta"))
    p = store.paths()
    for name in ("acme", "beta"):
        p.state_dir.mkdir(parents=True, exist_ok=True)
        p.state_file(name).write_bytes(b"")
    app = MailmigApp()
    async with app.run_test() as pilot:
        await pilot.pause()
        await pilot.press("delete")
        await wait_for(pilot, lambda: isinstance(app.screen, DeleteTaskModal))
        await pilot.press("n")  # cancel: nothing happens
        await wait_for(pilot, lambda: isinstance(app.screen, TasksScreen))
        assert store.list_tasks() == ["acme", "beta"]

        await pilot.press("delete")
        await wait_for(pilot, lambda: isinstance(app.screen, DeleteTaskModal))
        await pilot.press("y")  # the task only
        await wait_for(pilot, lambda: store.list_tasks() == ["beta"])
        assert p.state_file("acme").exists()

        await pilot.press("delete")
        await wait_for(pilot, lambda: isinstance(app.screen, DeleteTaskModal))
        app.screen.query_one("#with-state", Checkbox).value = True
        await pilot.press("y")
        await wait_for(pilot, lambda: store.list_tasks() == [])
        assert not p.state_file("beta").exists()
        assert not p.task_secrets_file("beta").exists()


async def test_starting_an_invalid_task_explains_why(mailmig_home):
    store.save_task(Task(name="empty", source=Source(host="")))
    app = MailmigApp()
    async with app.run_test() as pilot:
        await pilot.pause()
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorModal))
        body = " ".join(str(s.render()) for s in app.screen.query(".dialog-body"))
        assert "source.host: the server address is missing" in body
        assert not app.runs
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, TasksScreen))


async def test_settings_open_with_g_and_with_shift_s(mailmig_home):
    app = MailmigApp()
    async with app.run_test() as pilot:
        await pilot.pause()
        for key in ("g", "S"):
            await pilot.press(key)
            await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen))
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, TasksScreen))


async def test_f1_lists_every_key_and_greys_what_does_not_apply(mailmig_home):
    store.save_task(acme())
    app = MailmigApp()
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        table = app.screen.query_one("#help-table", DataTable)
        rows = {str(table.get_row_at(i)[1]): table.get_row_at(i) for i in range(table.row_count)}
        for description in ("New", "Edit", "Start", "Stop", "Info", "Duplicate", "Delete", "Settings", "Quit", "Help"):
            assert description in rows, description
        assert str(rows["Edit"][0]) == "e/enter"
        assert str(rows["Settings"][0]) == "g / S"
        assert rows["Stop"][1].style == "dim"  # nothing runs
        assert rows["Start"][1].style == ""
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, TasksScreen))


async def test_the_command_palette_offers_the_screen_actions(mailmig_home):
    store.save_task(acme())
    app = MailmigApp()
    async with app.run_test() as pilot:
        await pilot.pause()
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for title in ("New", "Edit", "Start", "Info", "Duplicate", "Delete", "Settings", "Help: keys", "Quit"):
            assert title in titles, title
        assert "Stop" not in titles  # nothing to stop
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"settings")
        await wait_for(pilot, lambda: app.screen.query_one(CommandList).option_count > 0, timeout=5)
        best = app.screen.query_one(CommandList).get_option_at_index(0)
        assert "Settings" in str(best.prompt)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen), timeout=5)


async def test_usable_at_80_by_24(mailmig_home):
    store.save_task(acme("a-rather-long-task-name"))
    app = MailmigApp()
    async with app.run_test(size=(80, 24)) as pilot:
        table = table_of(app)
        await wait_for(pilot, lambda: column(table, "a-rather-long-task-name", "accounts") == "0/2")
        assert table.region.width == 80 and table.region.height >= 10
        # name, source, status and accounts fit without scrolling sideways
        widths = [c.get_render_width(table) for c in table.ordered_columns[:4]]
        assert sum(widths) <= 80
        footer = app.screen.query_one("Footer")
        assert footer.region.bottom == 24


async def test_next_run_follows_the_schedule(mailmig_home):
    task = acme()
    task.schedule = Schedule(enabled=True, days=list(DAYS), start="03:17")
    store.save_task(task)
    app = MailmigApp()
    async with app.run_test(size=(120, 30)) as pilot:
        table = table_of(app)
        await wait_for(pilot, lambda: column(table, "acme", "next") != "-")
        expected = schedule.next_run(task.schedule, dt.datetime.now(schedule.local_zone()))
        assert column(table, "acme", "next") == when_text(expected)
        assert column(table, "acme", "next").endswith(" 03:17")


async def test_an_idle_list_reads_no_state_until_a_file_changes(mailmig_home, monkeypatch):
    """An idle app costs a few stat calls a second (issue: 10-22% of a core while idle)."""
    store.save_task(acme())
    reads: list[str] = []
    real = StatusReader.status

    def counting(self, task, now=None):
        reads.append(task.name)
        return real(self, task, now)

    monkeypatch.setattr(StatusReader, "status", counting)
    app = MailmigApp()
    async with app.run_test(size=(120, 30)) as pilot:
        table = table_of(app)
        await wait_for(pilot, lambda: column(table, "acme", "accounts") == "0/2", what="the first status poll")
        screen = app.screen
        assert isinstance(screen, TasksScreen)
        first = len(reads)
        for _ in range(5):
            screen.poll()
            await pilot.pause()
        assert len(reads) == first, "nothing changed: no state was read again"
        assert not app._drain_timer._active.is_set(), "no run: the app's drain timer sleeps"

        state = StateDB(store.paths().state_file("acme"))  # another process starts writing the state
        state.close()
        screen.poll()
        await wait_for(pilot, lambda: len(reads) > first, what="a poll after the state file appeared")

"""The user list at scale: `/` search, the status filter and "N of M"; tables of 100,000 rows that mount and move."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets import Input, Static

from mailmig_tui.engine import model, store
from mailmig_tui.engine.state import StateDB
from mailmig_tui.screens.editor import TaskEditorScreen
from mailmig_tui.screens.users import UserListPane
from mailmig_tui.widgets.summary_table import AccountRow, SummaryTable
from mailmig_tui.widgets.user_table import UserTable
from tests.tui.helpers import wait_for
from tests.tui.test_editor import SIZE, EditorApp, type_text
from tests.tui.test_users import open_users, save

BIG = 100_000


def summary(pane: UserListPane) -> str:
    return str(pane.query_one("#users-summary", Static).render())


def four_users() -> list[model.User]:
    return [
        model.User("alice@acme.example", "alice", password="pw"),
        model.User("Bob@acme.example", "robert", password="pw"),
        model.User("carol@acme.example", "carol.b", password="pw"),
        model.User("dave@acme.example", "dave", password="pw"),
    ]


def seed_statuses(statuses: dict[str, str]) -> None:
    db = StateDB(store.paths().state_file("acme"))
    try:
        for account, status in statuses.items():
            db.bind_account(account, f"imap:mail.acme.example:{account}", account.split("@")[0])
            db.set_account_status(account, status)
    finally:
        db.close()


async def test_search_shows_matches_with_n_of_m_and_enter_keeps_escape_clears():
    save(four_users())
    app = EditorApp(TaskEditorScreen("acme"))
    async with app.run_test(size=SIZE) as pilot:
        screen, pane, table = await open_users(pilot)
        assert summary(pane) == "4 account(s)."
        await pilot.press("slash")
        assert app.focused is pane.search_input
        await type_text(pilot, "BOB")  # any case
        assert table.row_keys() == ["bob@acme.example"]
        assert summary(pane) == "1 of 4 account(s) shown (matching 'BOB')."
        await pilot.press("enter")
        assert app.focused is table and table.row_keys() == ["bob@acme.example"], "enter keeps the search"
        assert pane.search_input.display, "a kept search stays in sight"
        assert table.cursor_key() == "bob@acme.example"

        await pilot.press("slash", "ctrl+u")
        await type_text(pilot, ".b")  # destination "carol.b"; "robert" has no ".b"
        assert table.row_keys() == ["carol@acme.example"]
        await pilot.press("escape")
        assert app.focused is table and app.screen is screen, "escape clears the search, it does not leave"
        assert table.row_keys() == [u.source.casefold() for u in four_users()]
        assert summary(pane) == "4 account(s)." and not pane.search_input.display

        await pilot.press("slash")
        await type_text(pilot, "nobody")
        assert table.row_count == 0 and summary(pane) == "0 of 4 account(s) shown (matching 'nobody')."
        await pilot.press("enter", "enter")  # nothing to edit: nothing opens
        assert app.screen is screen
        assert not screen.dirty, "searching changes nothing in the task"


async def test_status_filter_cycles_through_the_migration_states():
    save(four_users())
    seed_statuses({"alice@acme.example": "complete", "bob@acme.example": "failed", "carol@acme.example": "partial"})
    app = EditorApp(TaskEditorScreen("acme"))
    async with app.run_test(size=SIZE) as pilot:
        _, pane, table = await open_users(pilot)
        seen = {}
        for _ in range(6):
            await pilot.press("s")
            seen[table.status_filter] = (table.row_keys(), summary(pane))
        assert list(seen) == ["failed", "partial", "not started", "running", "complete", "all"]
        assert seen["failed"] == (["bob@acme.example"], "1 of 4 account(s) shown (status failed).")
        assert seen["partial"][0] == ["carol@acme.example"]
        assert seen["not started"][0] == ["dave@acme.example"]
        assert seen["running"] == ([], "0 of 4 account(s) shown (status running).")
        assert seen["complete"][0] == ["alice@acme.example"]
        assert seen["all"] == ([u.source.casefold() for u in four_users()], "4 account(s).")

        await pilot.press("s", "s", "s")  # not started, with a search on top
        await pilot.press("slash")
        await type_text(pilot, "acme")
        await pilot.press("enter")
        assert table.row_keys() == ["dave@acme.example"]
        assert summary(pane) == "1 of 4 account(s) shown (matching 'acme', status not started)."
        await pilot.press("space")
        assert summary(pane) == "1 of 4 account(s) shown (matching 'acme', status not started), 1 marked."


async def test_the_footer_names_search_and_status_filter():
    save(four_users())
    app = EditorApp(TaskEditorScreen("acme"))
    async with app.run_test(size=(160, 24)) as pilot:
        await open_users(pilot)
        shown = {active.binding.description for active in app.active_bindings.values() if active.binding.show}
        assert {"Search", "Status filter"} <= shown


async def test_a_hundred_thousand_accounts_mount_move_search_and_filter():
    users = [model.User(f"user{i:06}@big.example", f"box{i:06}") for i in range(BIG)]

    class Host(App[None]):
        def compose(self) -> ComposeResult:
            yield UserListPane(lambda: (model.Task(name="big", users=list(users)), []), id="users-pane")

    app = Host()
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(UserListPane)
        pane.load(users, "")
        table = pane.table
        table.focus()
        await pilot.pause()
        assert table.row_count == BIG and summary(pane) == "100,000 account(s)."
        await pilot.press("down", "down", "pagedown")
        assert table.cursor_row > 2 and table.cursor_key() == f"user{table.cursor_row:06}@big.example"
        await pilot.press("end")
        assert table.cursor_key() == "user099999@big.example"
        assert table.visible_keys()[-1] == "user099999@big.example", "the cursor's row is on screen"
        await pilot.press("space", "home")
        assert table.marked == {"user099999@big.example"} and table.cursor_row == 0
        await pilot.press("slash")
        await type_text(pilot, "box09999")
        await pilot.press("enter")
        assert table.row_keys() == [f"user{i:06}@big.example" for i in range(99990, BIG)]
        assert summary(pane) == "10 of 100,000 account(s) shown (matching 'box09999'), 1 marked."
        await pilot.press("down", "end")
        assert table.cursor_key() == "user099999@big.example"
        await pilot.press("s")  # failed: nothing has run
        assert table.row_count == 0 and summary(pane).startswith("0 of 100,000 account(s) shown")
        await pilot.press("s", "s")  # not started: all ten again
        assert table.row_count == 10


async def test_a_hundred_thousand_row_summary_draws_and_refreshes_only_the_rows_on_screen():
    accounts = [(f"user{i:06}@big.example", f"User{i:06}@big.example") for i in range(BIG)]
    rows = {key: AccountRow(source) for key, source in accounts}
    asked: list[str] = []

    def row_of(key: str) -> AccountRow:
        asked.append(key)
        return rows[key]

    class Host(App[None]):
        def compose(self) -> ComposeResult:
            yield SummaryTable(id="summary")

    app = Host()
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(SummaryTable)
        table.set_accounts(accounts, row_of)
        table.focus()
        await pilot.pause()
        assert table.row_count == BIG
        on_screen = table.visible_keys()
        assert 0 < len(on_screen) < 30 and set(asked) <= set(on_screen), "only the rows on screen were asked for"

        asked.clear()
        assert table.show() == 0, "nothing changed: nothing redrawn"
        assert len(asked) == len(on_screen)
        first, hidden = on_screen[0], "user050000@big.example"
        rows[first] = AccountRow(accounts[0][1], "running: INBOX 1/2", copied=1)
        rows[hidden] = AccountRow("User050000@big.example", "failed", failed=3, error="refused")
        assert table.show([first, hidden]) == 1, "the off-screen row is drawn when scrolled to"
        await pilot.pause()
        assert str(table.get_cell(first, "state")) == "running: INBOX 1/2"

        table.move_cursor(row=50_000)
        await pilot.press("down", "up")
        assert table.cursor_key() == hidden and hidden in table.visible_keys()
        assert str(table.get_cell(hidden, "error")) == "refused" and str(table.get_cell(hidden, "failed")) == "3"
        await pilot.press("end")
        assert table.cursor_key() == "user099999@big.example"


async def test_search_input_is_plain_text():
    """A search for brackets finds the account: the text is matched, never parsed as markup."""
    save([model.User("[urgent]eve@acme.example", "eve", password="pw"), *four_users()])
    app = EditorApp(TaskEditorScreen("acme"))
    async with app.run_test(size=SIZE) as pilot:
        _, pane, table = await open_users(pilot)
        await pilot.press("slash")
        await type_text(pilot, "[urgent]")
        assert table.row_keys() == ["[urgent]eve@acme.example"]
        assert isinstance(app.focused, Input)
        assert "matching '[urgent]'" in summary(pane)


async def test_the_table_is_there_while_the_migration_state_is_read(monkeypatch):
    """The state database is read in a thread: the accounts show at once, their status when it is read."""
    import threading

    from mailmig_tui.screens import users as users_screen

    save(four_users())
    seed_statuses({"alice@acme.example": "complete"})
    gate = threading.Event()
    read = users_screen.load_statuses

    def slow(task_name: str, reader):
        assert gate.wait(30), "the test never released the state read"
        return read(task_name, reader)

    monkeypatch.setattr(users_screen, "load_statuses", slow)
    app = EditorApp(TaskEditorScreen("acme"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("f5")
        await pilot.pause()
        pane = app.screen.query_one(UserListPane)
        table = pane.table
        assert app.focused is table and table.row_count == 4
        assert str(table.get_cell("alice@acme.example", "status")) == "reading…"
        gate.set()
        await wait_for(pilot, lambda: str(table.get_cell("alice@acme.example", "status")) == "complete")
        assert str(table.get_cell("bob@acme.example", "status")) == "not started"


async def test_the_editor_keeps_full_garbage_collections_off_the_loaded_list_while_open():
    """A full collection walks every object: with 100,000 accounts loaded that is a 0.2 s pause in
    the middle of a key press. The editor freezes what it loaded while open and lets go when it closes."""
    import gc

    save(four_users())
    app = EditorApp(TaskEditorScreen("acme"))
    async with app.run_test(size=SIZE) as pilot:
        await open_users(pilot)
        assert gc.get_freeze_count() > 0
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.results == [None], what="the editor to close")
        await pilot.pause()
        assert gc.get_freeze_count() == 0


class PaneHost(App[None]):
    """The user list pane alone, over ``users``."""

    def __init__(self, users: list[model.User]) -> None:
        super().__init__()
        self.users = users

    def compose(self) -> ComposeResult:
        yield UserListPane(lambda: (model.Task(name="big", users=list(self.users)), []), id="users-pane")


async def open_pane(pilot) -> tuple[UserListPane, UserTable]:
    pane = pilot.app.query_one(UserListPane)
    pane.load(pilot.app.users, "")
    pane.table.focus()
    await pilot.pause()
    return pane, pane.table


async def test_moving_the_cursor_redraws_its_two_rows_not_the_table():
    app = PaneHost([model.User(f"user{i:06}@big.example", f"box{i:06}") for i in range(1000)])
    async with app.run_test(size=SIZE) as pilot:
        _, table = await open_pane(pilot)
        assert len(table.visible_keys()) > 5
        asked: list[str] = []
        cells_of = table._cells_of

        def spy(key: str):
            asked.append(key)
            return cells_of(key)

        table._cells_of = spy
        await pilot.press("down")
        assert table.cursor_row == 1
        assert sorted(set(asked)) == ["user000000@big.example", "user000001@big.example"], "only the two rows"


async def test_a_search_typed_on_or_back_shows_what_a_search_of_the_whole_list_shows():
    """Each key looks only in the rows the last search kept when its text holds the last one's."""
    users = [model.User(f"{name}{i:04}@big.example", f"box{i:04}") for i in range(3000) for name in ["ann"]]
    users += [model.User(f"Bob{i:04}@other.example", f"ANN.{i:04}") for i in range(0, 3000, 7)]
    app = PaneHost(users)
    async with app.run_test(size=SIZE) as pilot:
        pane, table = await open_pane(pilot)
        await pilot.press("slash")
        for typed in [
            "a",
            "an",
            "ann",
            "ann1",
            "ann12",
            "nn12",
            "ann12",
            "ann1",
            "ann.",
            "x",
            "",
            "BOX02",
            "b",
            "box029",
        ]:
            await pilot.press("ctrl+u", *typed)
            needle = typed.casefold()
            expected = [
                model.account_key(u.source) for u in users if needle in f"{u.source}\n{u.destination}".casefold()
            ]
            assert table.row_keys() == expected, typed
            if typed:
                assert summary(pane).startswith(f"{len(expected):,} of {len(users):,} account(s) shown"), typed


async def test_a_search_puts_the_cursor_on_its_first_match_unless_the_cursor_row_is_among_them():
    app = PaneHost([model.User(f"user{i:06}@big.example", f"box{i:06}") for i in range(1000)])
    async with app.run_test(size=SIZE) as pilot:
        pane, table = await open_pane(pilot)
        table.move_cursor(row=500)
        await pilot.press("slash", *"user00001", "enter")  # user000010 … user000019
        assert table.row_count == 10
        assert table.cursor_key() == "user000010@big.example", "the cursor's row is hidden: the first match"
        await pilot.press("down", "down", "down", "down", "down", "slash", "escape")  # escape in the box clears
        assert table.row_count == 1000 and table.cursor_key() == "user000015@big.example"
        await pilot.press("slash", *"box00001", "enter")  # the same ten rows
        assert table.row_count == 10 and table.cursor_key() == "user000015@big.example", "the cursor stays on its row"


async def test_the_summary_line_grows_when_the_search_makes_it_wider_than_the_pane():
    app = PaneHost([model.User(f"user{i:06}@big.example", f"box{i:06}") for i in range(1000)])
    async with app.run_test(size=(44, 24)) as pilot:
        pane, table = await open_pane(pilot)
        line = pane.query_one("#users-summary", Static)
        assert line.size.height == 1
        await pilot.press("slash", *"user0001")
        await pilot.pause()
        assert summary(pane).startswith("100 of 1,000 account(s) shown")
        assert line.size.height > 1, "laid out again: the longer line wraps"
        await pilot.press("escape")
        await pilot.pause()
        assert summary(pane) == "1,000 account(s)." and line.size.height == 1


async def test_the_editor_reads_the_state_once_its_user_list_is_shown(monkeypatch):
    """Opening the editor reads no account's migration state (100,000 of them slow its opening by a third):
    the user list reads it once shown, says "reading…" until then, and reads it again once it changed."""
    from mailmig_tui.app import MailmigApp
    from mailmig_tui.screens.tasks import TasksScreen

    save(four_users())
    seed_statuses({"alice@acme.example": "complete"})
    reads: list[str] = []
    real = StateDB.progress
    monkeypatch.setattr(StateDB, "progress", lambda db: reads.append(str(db.path)) or real(db))
    app = MailmigApp()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, TasksScreen), what="the task list")
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, TaskEditorScreen), what="the editor")
        pane = app.screen.query_one(UserListPane)
        for _ in range(5):
            await pilot.pause(0.02)
        assert reads == [] and not pane.statuses_read, "the state was read before the user list was shown"
        assert str(pane.table.get_cell("alice@acme.example", "status")) == "reading…"
        await pilot.press("f5")
        await wait_for(pilot, lambda: pane.statuses_read, what="the statuses")
        assert str(pane.table.get_cell("alice@acme.example", "status")) == "complete"
        assert len(reads) == 1

        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, TasksScreen), what="the task list")
        seed_statuses({"bob@acme.example": "failed"})  # a run of another process, say
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, TaskEditorScreen), what="the editor again")
        await pilot.press("f5")
        pane = app.screen.query_one(UserListPane)
        await wait_for(pilot, lambda: pane.statuses_read, what="the statuses again")
        await wait_for(pilot, lambda: str(pane.table.get_cell("bob@acme.example", "status")) == "failed")
        assert len(reads) == 2

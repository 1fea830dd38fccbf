"""The editor's User list tab: CSV import with preview, delete, verify against real Dovecot, export."""

from __future__ import annotations

from textual.message import Message
from textual.widgets import Button, Input, Static

from mailmig_tui.engine import model, store
from mailmig_tui.engine.state import StateDB
from mailmig_tui.screens.editor import TaskEditorScreen
from mailmig_tui.screens.editor_modals import PathModal
from mailmig_tui.screens.import_csv import ImportCsvModal
from mailmig_tui.screens.modals import ConfirmModal
from mailmig_tui.screens.users import UserListPane, VerifyFinished, VerifyResult
from mailmig_tui.widgets.user_table import UserTable
from tests.integration.conftest import Pair
from tests.tui.helpers import wait_for
from tests.tui.test_editor import SIZE, EditorApp, start, type_text

BAD_CSV = (
    "source,password,destination\r\n"
    "alice@acme.example,pw-a,alice\r\n"
    "bob@acme.example,,bob\r\n"
    "carol:x@acme.example,pw-c,carol\r\n"
    '"dave@acme.example","p,w ""d""",dave\r\n'
    "[urgent]eve@acme.example,pw-e,eve\r\n"
)


def save(users: list[model.User], **source: object) -> model.Task:
    task = model.Task(name="acme", source=model.Source(host="mail.acme.example", **source), users=users)
    store.save_task(task, old_name="acme" if store.task_exists("acme") else None)
    return task


def rows(table: UserTable) -> dict[str, list[str]]:
    return {key: [str(c) for c in table.get_row(key)] for key in table.row_keys()}


def verify_messages(messages: list[Message]) -> list[Message]:
    """Verify messages in the order they arrived, each once (the hook sees them at every bubbling step)."""
    unique = {id(m): m for m in messages if isinstance(m, VerifyResult | VerifyFinished)}
    return list(unique.values())


async def open_users(pilot) -> tuple[TaskEditorScreen, UserListPane, UserTable]:
    screen = await start(pilot)
    await pilot.press("f5")
    await pilot.pause()
    pane = screen.query_one(UserListPane)
    assert pilot.app.focused is pane.table
    await wait_for(pilot, lambda: pane.statuses_read, what="the migration state to be read")
    return screen, pane, pane.table


async def test_import_csv_preview_then_valid_lines_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "users.csv").write_text(BAD_CSV)
    (tmp_path / "fix.csv").write_text("alice@acme.example,new-pw,alice2\n")
    save([])
    app = EditorApp(TaskEditorScreen("acme"))
    async with app.run_test(size=SIZE) as pilot:
        screen, pane, table = await open_users(pilot)
        await pilot.press("i")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, ImportCsvModal)
        await type_text(pilot, "u")
        await pilot.pause()
        await pilot.press("right")  # accepts the completion from the folder
        await pilot.pause()
        assert modal.query_one("#csv-path", Input).value == "users.csv"
        preview = str(modal.query_one("#csv-preview", Static).render())
        assert preview.startswith("3 valid account(s), 2 bad line(s)")
        assert "line 3: a password is needed for this account" in preview
        assert "line 4: an account may not contain \":\" ('carol:x@acme.example')" in preview
        assert "line 2: alice@acme.example → alice (password set)" in preview
        assert "line 6: [urgent]eve@acme.example → eve (password set)" in preview, "account data is not markup"
        assert "(the first line is a column header and was skipped)" in preview
        assert modal.query_one("#import-all", Button).disabled
        assert not modal.query_one("#import-valid", Button).disabled
        assert pane.users == [] and table.row_count == 0, "nothing changes before a choice"

        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen and pane.users == [] and not screen.dirty

        await pilot.press("i")
        await type_text(pilot, "users.csv")
        await pilot.press("enter")  # to the first button that can be pressed: valid lines only
        assert app.focused.id == "import-valid"
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is screen
        assert rows(table) == {
            "alice@acme.example": ["", "alice@acme.example", "•••", "alice", "", "not started"],
            "dave@acme.example": ["", "dave@acme.example", "•••", "dave", "", "not started"],
            "[urgent]eve@acme.example": ["", "[urgent]eve@acme.example", "•••", "eve", "", "not started"],
        }
        assert store.load_task("acme").users == [], "imported into the form, saved with ctrl+s"
        assert screen.dirty

        await pilot.press("i")
        await type_text(pilot, "fix.csv")
        await pilot.press("enter")
        assert app.focused.id == "import-all"
        await pilot.press("enter")
        await pilot.pause()
        assert rows(table)["alice@acme.example"][3] == "alice2"
        assert table.row_count == 3, "re-importing an account updates it"

        await pilot.press("ctrl+s")
        await pilot.pause()
    users = {u.source: u for u in store.load_task("acme").users}
    assert list(users) == ["alice@acme.example", "dave@acme.example", "[urgent]eve@acme.example"]
    assert (users["alice@acme.example"].password, users["alice@acme.example"].destination) == ("new-pw", "alice2")
    assert users["dave@acme.example"].password == 'p,w "d"'
    toml = store.paths().task_file("acme").read_text()
    assert "new-pw" not in toml and "p,w" not in toml


async def test_delete_marked_accounts_asks_first():
    save([model.User(f"{n}@acme.example", n, password="pw") for n in ("alice", "bob", "carol")])
    app = EditorApp(TaskEditorScreen("acme"))
    async with app.run_test(size=SIZE) as pilot:
        screen, pane, table = await open_users(pilot)
        await pilot.press("space", "down", "space")  # marks alice (cursor moves on), then carol
        assert table.marked == {"alice@acme.example", "carol@acme.example"}
        assert rows(table)["alice@acme.example"][0] == "●" and rows(table)["bob@acme.example"][0] == ""
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("n")
        await pilot.pause()
        assert table.row_count == 3
        await pilot.press("delete")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert list(rows(table)) == ["bob@acme.example"] and not table.marked
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not screen.dirty
    assert [u.source for u in store.load_task("acme").users] == ["bob@acme.example"]


async def test_export_without_passwords_and_migration_status(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save([model.User("alice@acme.example", "alice", password="pw-a"), model.User("bob@acme.example", "bob")])
    db = StateDB(store.paths().state_file("acme"))
    db.bind_account("alice@acme.example", "imap:mail.acme.example:alice@acme.example", "alice")
    db.set_account_status("alice@acme.example", "complete")
    db.close()
    app = EditorApp(TaskEditorScreen("acme"))
    async with app.run_test(size=SIZE) as pilot:
        _, _, table = await open_users(pilot)
        assert rows(table)["alice@acme.example"][5] == "complete"
        assert rows(table)["bob@acme.example"][2:] == ["", "bob", "", "not started"]
        await pilot.press("E")
        await pilot.pause()
        assert isinstance(app.screen, PathModal)
        await pilot.press("enter")
        await pilot.pause()
    assert (tmp_path / "acme-users.csv").read_bytes() == b"alice@acme.example,,alice\r\nbob@acme.example,,bob\r\n"


async def test_verify_against_dovecot_one_wrong_password(pair: Pair, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pair.settings()
    task = pair.task(["alice", "bob", "carol"])
    task.users[1].password = "wrong-pw"
    store.save_task(task, old_name="acme")
    (tmp_path / "bob.csv").write_text("bob,bob-pw,bob\n")

    messages: list[Message] = []
    app = EditorApp(TaskEditorScreen("acme"))
    async with app.run_test(size=SIZE, message_hook=messages.append) as pilot:
        _, pane, table = await open_users(pilot)
        await pilot.press("v")
        await app.workers.wait_for_complete()
        await pilot.pause()
        verify = verify_messages(messages)
        assert [type(m) for m in verify] == [VerifyResult] * 3 + [VerifyFinished]
        cells = {key: r[4] for key, r in rows(table).items()}
        assert cells["alice"] == "OK" and cells["carol"] == "OK"
        assert cells["bob"].startswith("FAILED: source: ")
        assert pane.verdicts["bob"].source_detail in cells["bob"]
        assert "wrong-pw" not in cells["bob"]
        assert not pane.verdicts["bob"].source_ok and pane.verdicts["bob"].dest_ok

        await pilot.press("i")
        await type_text(pilot, "bob.csv")
        await pilot.press("enter", "enter")
        await pilot.pause()
        assert rows(table)["bob"][4] == "", "a changed account loses its old verdict"
        await pilot.press("down", "V")  # the account under the cursor, with the password not yet saved
        await app.workers.wait_for_complete()
        await pilot.pause()
        later = verify_messages(messages)[4:]
        assert [type(m) for m in later] == [VerifyResult, VerifyFinished] and later[0].verdict.account == "bob"
        assert {key: r[4] for key, r in rows(table).items()} == {"alice": "OK", "bob": "OK", "carol": "OK"}


async def test_account_problems_on_save_point_at_the_row():
    save(
        [model.User("alice", "alice"), model.User("bob", "bob", password="pw")], delegate=model.Delegate(True, "admin")
    )
    app = EditorApp(TaskEditorScreen("acme"))
    async with app.run_test(size=SIZE) as pilot:
        screen = await start(pilot)
        await pilot.press("tab", "tab", "tab", "tab", "tab", "tab", "tab", "tab")
        assert app.focused.id == "f-source-delegate-enabled"
        await pilot.press("space", "ctrl+s")  # no delegate: alice now needs a password
        await pilot.pause()
        pane = screen.query_one(UserListPane)
        assert screen.query_one("TabbedContent").active == "tab-users"
        assert app.focused is pane.table and pane.table.cursor_key() == "alice"
        problems = str(pane.query_one("#users-problems", Static).render())
        assert problems.startswith("row 1 (alice): a password is needed for this account")
        assert store.load_task("acme").source.delegate.enabled, "not saved"

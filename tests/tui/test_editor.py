"""The task editor, driven by keyboard only: the General, Filter and Notification tabs, save and leave."""

from __future__ import annotations

import datetime as dt

from textual.app import App
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Input, Select, Static, TabbedContent

from mailmig_tui.engine import model, store
from mailmig_tui.screens.editor import TaskEditorScreen
from mailmig_tui.screens.editor_tabs import NotificationTab
from mailmig_tui.screens.modals import ConfirmModal
from mailmig_tui.widgets.filter_editor import FilterEditor
from mailmig_tui.widgets.form import FieldError, PathSuggester, field_errors, split_list
from tests.fakes.google import make_key
from tests.tui.helpers import wait_for

SIZE = (80, 24)


class EditorApp(App[None]):
    """Just enough app to show the editor; remembers what the editor returned."""

    def __init__(self, editor: TaskEditorScreen) -> None:
        super().__init__()
        self.editor = editor
        self.results: list[str | None] = []

    def on_mount(self) -> None:
        self.push_screen(self.editor, self.results.append)


async def start(pilot: Pilot) -> TaskEditorScreen:
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, TaskEditorScreen)
    return screen


async def type_text(pilot: Pilot, text: str) -> None:
    await pilot.press(*text)


async def clear(pilot: Pilot) -> None:
    """Empty the focused Input."""
    await pilot.press("home", "ctrl+k")


async def choose(pilot: Pilot, label: str) -> None:
    """Pick ``label`` in the focused Select by keyboard (open, move down to it, enter)."""
    select = pilot.app.focused
    assert isinstance(select, Select), select
    await pilot.press("enter")
    await pilot.pause()
    overlay = select.query_one("SelectOverlay")
    for _ in range(12):
        highlighted = overlay.highlighted_option  # type: ignore[attr-defined]
        if highlighted is not None and str(highlighted.prompt) == label:
            break
        await pilot.press("down")
    await pilot.press("enter")
    await pilot.pause()


async def focus(pilot: Pilot, selector: str) -> None:
    pilot.app.screen.query_one(selector).focus()
    await pilot.pause()


def error_of(screen: TaskEditorScreen, path: str) -> str:
    slot = next(s for s in field_errors(screen) if s.path == path)
    return "\n".join(slot.messages) if slot.display and slot.is_attached else ""


def errors(screen: TaskEditorScreen) -> dict[str, str]:
    return {s.path: "\n".join(s.messages) for s in screen.query(FieldError) if s.display}


def shown(screen: TaskEditorScreen, selector: str) -> bool:
    widget: Widget = screen.query_one(selector)
    return all(node.display for node in [widget, *widget.ancestors_with_self] if isinstance(node, Widget))


async def test_create_imap_task_by_keyboard_with_an_error_fixed_in_place():
    app = EditorApp(TaskEditorScreen(None))
    async with app.run_test(size=SIZE) as pilot:
        screen = await start(pilot)
        assert app.focused.id == "f-name"
        await type_text(pilot, "acme-imap")
        await pilot.press("tab", "tab", "tab")  # server type (IMAP), preset, address: left empty
        assert app.focused.id == "f-source-host"
        await pilot.press("tab")
        await clear(pilot)
        await type_text(pilot, "70000")
        await pilot.press("tab")
        await choose(pilot, "STARTTLS")
        await pilot.press("tab")
        await type_text(pilot, "INBOX")
        await pilot.press("tab", "tab", "space")  # fingerprint (empty), delegate on
        assert shown(screen, "#f-source-delegate-login")
        await pilot.press("tab")
        await type_text(pilot, "admin@acme.example")
        await pilot.press("tab")
        await type_text(pilot, "s3cret-delegate")

        await pilot.press("ctrl+s")
        await pilot.pause()
        assert errors(screen) == {
            "source.host": "the server address is missing (a host name or an IP address)",
            "source.port": "a port is a number from 1 to 65535, not 70000",
        }
        assert app.focused.id == "f-source-host", "the first bad field has the focus"
        assert "-problem" in app.focused.classes
        assert store.list_tasks() == [], "nothing is saved while a field is wrong"

        await type_text(pilot, "mail.acme.example")
        await pilot.press("tab")
        await clear(pilot)
        await type_text(pilot, "143")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert errors(screen) == {}
        assert screen.title == "Edit task" and screen.sub_title == "acme-imap"

    task = store.load_task("acme-imap")
    s = task.source
    assert (s.type, s.host, s.port, s.security, s.path_prefix) == (
        "imap",
        "mail.acme.example",
        143,
        "starttls",
        "INBOX",
    )
    assert (s.delegate.enabled, s.delegate.login, s.delegate.method) == (True, "admin@acme.example", "authzid")
    assert s.delegate.password == "s3cret-delegate"
    toml = store.paths().task_file("acme-imap").read_text()
    assert "s3cret-delegate" not in toml and "password" not in toml
    assert "s3cret-delegate" in store.paths().task_secrets_file("acme-imap").read_text()


def saved_task(**filters: object) -> model.Task:
    task = model.Task(
        name="acme",
        source=model.Source(host="mail.acme.example"),
        users=[model.User("alice@acme.example", "alice", password="pw-a")],
    )
    store.save_task(task)
    return task


async def test_edit_the_filters_of_a_saved_task():
    saved_task()
    app = EditorApp(TaskEditorScreen("acme"))
    async with app.run_test(size=SIZE) as pilot:
        screen = await start(pilot)
        await pilot.press("f3")
        await pilot.pause()
        assert app.focused.id == "f-filters-skip_before"
        await type_text(pilot, "2015-01-01")
        await pilot.press("tab")
        await type_text(pilot, "2026-02-30")  # no such day
        await pilot.press("tab", "space", "tab", "tab")  # skip Trash on, skip Junk left off
        await clear(pilot)
        await type_text(pilot, "10240")
        await pilot.press("tab", "space", "tab")  # mailbox filter on
        await choose(pilot, "Migrate only matching folders")
        await pilot.press("tab")
        await type_text(pilot, "Old, /^Projects/20(0|1/")
        await pilot.press("enter")
        await type_text(pilot, "[Gmail]/Sent Mail")
        await pilot.press("tab")
        await type_text(pilot, "Old/Keep")

        await pilot.press("ctrl+s")
        await pilot.pause()
        problems = errors(screen)
        assert set(problems) == {"filters.skip_after", "filters.mailboxes.keywords"}
        assert "'2026-02-30' is not a date" in problems["filters.skip_after"]
        assert problems["filters.mailboxes.keywords"].startswith(
            'keyword "/^Projects/20(0|1/": missing ), unterminated'
        )
        assert app.focused.id == "f-filters-skip_after"
        await clear(pilot)
        await type_text(pilot, "2026-06-30")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert set(errors(screen)) == {"filters.mailboxes.keywords"}
        assert app.focused.id == "f-filters-mailboxes-keywords"
        await pilot.press("up", "end", "backspace")
        await type_text(pilot, ")[0-9]$/")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert errors(screen) == {}
        assert not screen.dirty

    f = store.load_task("acme").filters
    assert (f.skip_before, f.skip_after) == (dt.date(2015, 1, 1), dt.date(2026, 6, 30))
    assert (f.skip_trash, f.skip_junk, f.max_size_kb) == (True, False, 10240)
    assert (f.mailboxes.enabled, f.mailboxes.policy) == (True, "migrate")
    assert f.mailboxes.keywords == ["Old", "/^Projects/20(0|1)[0-9]$/", "[Gmail]/Sent Mail"]
    assert f.mailboxes.exceptions == ["Old/Keep"]
    toml = store.paths().task_file("acme").read_text()
    assert "skip_before = 2015-01-01" in toml and "skip_after = 2026-06-30" in toml
    assert store.load_task("acme").users[0].password == "pw-a", "secrets survive an edit"


async def test_server_type_shows_its_own_fields_and_presets_fill_the_imap_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = EditorApp(TaskEditorScreen(None))
    async with app.run_test(size=SIZE) as pilot:
        screen = await start(pilot)
        assert shown(screen, "#f-source-host") and not shown(screen, "#f-source-key_file")
        assert not shown(screen, "#f-source-delegate-login"), "delegate fields wait for the switch"

        await type_text(pilot, "globex")
        await pilot.press("tab")
        await choose(pilot, "Google Workspace")
        assert shown(screen, "#f-source-key_file") and shown(screen, "#f-source-label_strategy")
        assert not shown(screen, "#f-source-host") and not shown(screen, "#f-source-tenant")
        await pilot.press("tab")
        await type_text(pilot, "missing.json")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert error_of(screen, "source.key_file") == (
            f"{tmp_path / 'missing.json'} does not exist: give the path of the service-account key file"
        )
        assert app.focused.id == "f-source-key_file"
        key = make_key().write(tmp_path / "key.json", "http://127.0.0.1:9/token")
        await clear(pilot)
        await type_text(pilot, "key.json")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert errors(screen) == {}
        assert store.load_task("globex").source.key_file == str(key)

        await focus(pilot, "#f-source-type")
        await choose(pilot, "Microsoft 365")
        assert shown(screen, "#f-source-tenant") and shown(screen, "#f-source-client_secret")
        assert not shown(screen, "#f-source-key_file") and not shown(screen, "#f-source-host")
        assert screen.query_one("#f-source-client_secret", Input).password

        await focus(pilot, "#f-source-type")
        await choose(pilot, "IMAP")
        assert shown(screen, "#f-source-host") and not shown(screen, "#f-source-tenant")
        await pilot.press("tab")
        await choose(pilot, "Gmail")
        assert screen.query_one("#f-source-host", Input).value == "imap.gmail.com"
        assert screen.query_one("#f-source-port", Input).value == "993"
        assert screen.query_one("#f-source-security", Select).value == "ssl"
        assert screen.query_one("#f-source-path_prefix", Input).value == ""
        note = str(screen.query_one("#preset-note", Static).render())
        assert "IMAP must be on" in note and "app password" in note
        assert not shown(screen, "#security-warning")

        await focus(pilot, "#f-source-security")
        await choose(pilot, "None (unencrypted)")
        assert shown(screen, "#security-warning")
        assert screen.query_one("#f-source-port", Input).value == "143", "the standard port follows"

        await focus(pilot, "#f-source-delegate-enabled")
        await pilot.press("space", "tab", "tab", "tab")
        assert not shown(screen, "#f-source-delegate-template")
        await choose(pilot, "Login template")
        assert shown(screen, "#f-source-delegate-template")


async def test_unsaved_changes_guard():
    saved_task()
    app = EditorApp(TaskEditorScreen("acme"))
    async with app.run_test(size=SIZE) as pilot:
        screen = await start(pilot)
        await pilot.press("escape")
        await pilot.pause()
        assert app.results == [None], "nothing changed: escape leaves at once"

        app.push_screen(editor := TaskEditorScreen("acme"), app.results.append)
        await pilot.pause()
        await pilot.press("end")
        await type_text(pilot, "-renamed")
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("n")
        await pilot.pause()
        assert app.screen is editor and editor.query_one("#f-name", Input).value == "acme-renamed"

        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert app.screen is not editor and app.results == [None, None]
        assert store.list_tasks() == ["acme"]
    assert screen is not editor


async def test_rename_and_duplicate():
    task = saved_task()
    app = EditorApp(TaskEditorScreen("acme"))
    async with app.run_test(size=SIZE) as pilot:
        await start(pilot)
        await pilot.press("end")
        await type_text(pilot, "-2026")
        await pilot.press("ctrl+s", "escape")
        await pilot.pause()
        assert app.results == ["acme-2026"]
        assert store.list_tasks() == ["acme-2026"]

        app.push_screen(TaskEditorScreen(None, template=task), app.results.append)
        screen = await start(pilot)
        assert screen.query_one("#f-name", Input).value == "acme-copy"
        await pilot.press("ctrl+s", "escape")
        await pilot.pause()
    assert store.list_tasks() == ["acme-2026", "acme-copy"]
    copy = store.load_task("acme-copy")
    assert copy.source.host == "mail.acme.example" and copy.users[0].password == "pw-a"


async def test_name_taken_and_notifications_without_relay():
    saved_task()
    app = EditorApp(TaskEditorScreen(None))
    async with app.run_test(size=SIZE) as pilot:
        screen = await start(pilot)
        await type_text(pilot, "ACME")
        await pilot.press("f4")
        await pilot.pause()
        assert shown(screen, "#smtp-note")
        assert "SMTP relay is not configured" in str(screen.query_one("#smtp-note", Static).render())
        await pilot.press("tab", "tab", "space", "tab")  # send on failure on
        await type_text(pilot, "it@acme.example, not-an-address")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert screen.query_one(TabbedContent).active == "tab-general"
        assert app.focused.id == "f-name"
        problems = errors(screen)
        assert problems["name"] == 'a task named "ACME" already exists; choose another name'
        assert problems["notifications.failure_to"] == "'not-an-address' is not an e-mail address (user@domain)"
        assert problems["notifications"].startswith("notifications need the SMTP relay")
        assert "source.host" in problems


def test_list_fields_split_on_lines_and_commas_but_keep_regexes_whole():
    text = "Old, /^a,b{1,2}$/\n  Archive ,\n/Archive, Old/2019\n\n [Gmail]/Sent Mail"
    assert split_list(text) == ["Old", "/^a,b{1,2}$/", "Archive", "/Archive", "Old/2019", "[Gmail]/Sent Mail"]


async def test_path_completion(tmp_path):
    tmp_path = tmp_path / "csv"
    tmp_path.mkdir()
    (tmp_path / "users.csv").write_text("")
    (tmp_path / "userdir").mkdir()
    (tmp_path / ".hidden").write_text("")
    suggest = PathSuggester().get_suggestion
    assert await suggest(f"{tmp_path}/users") == f"{tmp_path}/users.csv"
    assert await suggest(f"{tmp_path}/user") == f"{tmp_path}/userdir/"
    assert await suggest(f"{tmp_path}/") == f"{tmp_path}/userdir/", "hidden files only when asked for"
    assert await suggest(f"{tmp_path}/.h") == f"{tmp_path}/.hidden"
    assert await suggest(f"{tmp_path}/nothing") is None


async def test_schedule_days_and_times():
    saved_task()
    app = EditorApp(TaskEditorScreen("acme"))
    async with app.run_test(size=SIZE) as pilot:
        screen = await start(pilot)
        await focus(pilot, "#f-schedule-enabled")
        await pilot.press("space", "tab", "space")  # scheduled; Monday off
        await pilot.press(*["tab"] * 5, "space", "tab", "space")  # Saturday and Sunday on
        assert app.focused.id == "day-sun"
        await pilot.press("tab", "ctrl+a", "ctrl+k")
        await type_text(pilot, "25:00")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert errors(screen) == {"schedule.start": "'25:00' is not a time of day written HH:MM (24-hour clock)"}
        assert app.focused.id == "f-schedule-start"
        await pilot.press("ctrl+a", "ctrl+k")
        await type_text(pilot, "23:30")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert errors(screen) == {}
    schedule = store.load_task("acme").schedule
    assert schedule.enabled and schedule.start == "23:30"
    assert schedule.days == ["tue", "wed", "thu", "fri", "sat", "sun"]


def every_field_task() -> model.Task:
    """An IMAP task with every field of the General, Filter and Notification tabs away from its default."""
    return model.Task(
        name="acme",
        source=model.Source(
            host="mail.acme.example",
            port=143,
            security="starttls",
            path_prefix="INBOX.",
            tls_fingerprint="sha256:" + ":".join(["AB"] * 32),
            delegate=model.Delegate(True, "admin@acme.example", "template", "{user}*{delegate}", password="d-pw"),
        ),
        run=model.RunOptions(accounts_per_period=25, concurrency=2),
        schedule=model.Schedule(True, ["sat", "sun"], "23:30", 4, "05:00"),
        filters=model.Filters(
            skip_before=dt.date(2015, 1, 1),
            skip_after=dt.date(2026, 6, 30),
            skip_trash=True,
            skip_junk=True,
            max_size_kb=10240,
            mailboxes=model.MailboxFilter(True, "migrate", ["Old", "/^Projects/20(0|1)[0-9]$/"], ["Old/Keep"]),
        ),
        notifications=model.Notifications(True, ["it@acme.example"], True, ["boss@acme.example", "it@acme.example"]),
        users=[model.User("alice@acme.example", "alice", password="pw-a")],
    )


def save_smtp_relay() -> None:
    store.save_settings(model.Settings(smtp=model.Smtp(host="127.0.0.1", sender="mailmig@acme.example")))


async def test_a_task_saved_unchanged_whether_its_tabs_were_shown_or_not():
    saved = every_field_task()
    save_smtp_relay()
    for tabs in ([], ["f3", "f4", "f5", "f2"]):
        store.save_task(saved, old_name="acme")
        toml = store.paths().task_file("acme").read_text()
        app = EditorApp(TaskEditorScreen("acme"))
        async with app.run_test(size=SIZE) as pilot:
            screen = await start(pilot)
            if not tabs:
                assert not screen.query_one(FilterEditor).built, "the Filter tab is built when first shown"
                assert not screen.query_one(NotificationTab).built, "the Notification tab is built when first shown"
                assert not screen.query(FieldError), "a field's message slot is mounted when it has a message"
            for key in tabs:
                await pilot.press(key)
                await pilot.pause()
                assert not screen.dirty, f"showing a tab ({key}) changes nothing"
            assert screen.query_one("#f-source-delegate-method", Select).value == "template"
            await pilot.press("ctrl+s")
            await pilot.pause()
            assert errors(screen) == {}
            await pilot.press("escape")
            await pilot.pause()
            assert app.results == ["acme"], f"saved and left at once, tabs shown: {tabs}"
        assert store.load_task("acme") == saved, f"tabs shown: {tabs}"
        assert store.paths().task_file("acme").read_text() == toml, f"tabs shown: {tabs}"


async def test_an_edit_on_a_tab_shown_later_is_unsaved_until_saved():
    save_smtp_relay()
    store.save_task(every_field_task())
    app = EditorApp(TaskEditorScreen("acme"))
    async with app.run_test(size=SIZE) as pilot:
        screen = await start(pilot)
        await pilot.press("f4")
        await pilot.pause()
        assert app.focused.id == "f-notifications-on_success" and not screen.dirty
        await pilot.press("space")  # success notifications off
        assert screen.dirty
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal), "leaving asks first"
        await pilot.press("n")
        await pilot.pause()
        await pilot.press("f3")
        await pilot.pause()
        await pilot.press("tab", "tab", "space")  # skip Trash off
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert errors(screen) == {} and not screen.dirty
    task = store.load_task("acme")
    assert (task.notifications.on_success, task.filters.skip_trash) == (False, False)
    assert task.notifications.success_to == ["it@acme.example"] and task.filters.skip_junk


async def test_problems_on_tabs_not_shown_yet_are_shown_and_the_first_focused():
    task = every_field_task()
    task.filters.mailboxes.keywords = []  # the mailbox filter is on with nothing to match
    store.save_task(task)  # and notifications are on without an SMTP relay in the settings
    app = EditorApp(TaskEditorScreen("acme"))
    async with app.run_test(size=SIZE) as pilot:
        screen = await start(pilot)
        assert app.focused.id == "f-name"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: screen.query_one(TabbedContent).active == "tab-filter", what="the Filter tab")
        await pilot.pause()
        assert errors(screen) == {
            "filters.mailboxes.keywords": "the mailbox filter is on but has no keyword",
            "notifications": "notifications need the SMTP relay: set it in Settings (settings.toml [smtp])",
        }
        assert app.focused.id == "f-filters-mailboxes-keywords", "the first bad field has the focus"
        assert not screen.dirty, "building the tabs to show the problems changes nothing"
        assert store.load_task("acme") == task, "nothing is saved"

        await pilot.press("f4")
        await pilot.pause()
        assert app.focused.id == "f-notifications-on_success"
        assert "-problem" in app.focused.classes

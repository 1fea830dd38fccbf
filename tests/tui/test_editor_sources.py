"""The editor's source sign-in parts, by keyboard, against the fakes: the Google key file (what it says,
the copy kept with the task), the Microsoft 365 device-code sign-in modal, verify from the User list;
and adding or editing one account of the user list."""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from textual.widgets import Input, Static

from mailmig_tui.engine import model, store
from mailmig_tui.engine.sources import gmail_auth, graph_auth
from mailmig_tui.engine.sources.gmail_auth import SCOPE
from mailmig_tui.screens.editor import TaskEditorScreen
from mailmig_tui.screens.editor_modals import SIGNIN_GROUP, SignInModal, UserModal
from mailmig_tui.screens.modals import ConfirmModal
from mailmig_tui.screens.users import UserListPane
from mailmig_tui.widgets.form import FormField
from mailmig_tui.widgets.user_table import UserTable
from tests.fakes.google import FakeGoogle, FakeKey, make_key
from tests.fakes.microsoft import FakeMicrosoft, m365_source, start_trusted
from tests.integration.conftest import Pair, message, when
from tests.servers.dovecot import DovecotServer
from tests.tui.helpers import wait_for
from tests.tui.test_editor import SIZE, EditorApp, choose, clear, error_of, errors, focus, shown, start, type_text
from tests.tui.test_users import open_users

pytestmark = [pytest.mark.timeout(90), pytest.mark.filterwarnings("ignore:Attempted too soon")]
WAIT = 20.0


def text_of(screen: TaskEditorScreen | SignInModal, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


def rows(table: UserTable) -> dict[str, list[str]]:
    return {key: [str(c) for c in table.get_row(key)] for key in table.row_keys()}


async def verify_all(pilot, pane: UserListPane) -> None:
    pane.verdicts.clear()
    await pilot.press("v")

    def done() -> bool:
        return len(pane.verdicts) == len(pane.users) and not pane.verifying

    await wait_for(pilot, done, WAIT, "every account's verdict")
    await pilot.pause()


# --------------------------------------------------------------------------------------------
# Google Workspace: the service-account key file.


@pytest.fixture(scope="module")
def fake_key() -> FakeKey:
    return make_key()


def key_info(screen: TaskEditorScreen) -> str:
    return text_of(screen, "#key-info") if shown(screen, "#key-info") else ""


async def test_google_key_shows_what_to_authorise_and_is_copied_on_save(tmp_path, monkeypatch, fake_key):
    monkeypatch.chdir(tmp_path)
    key = fake_key.write(tmp_path / "key.json", "http://127.0.0.1:9/token")
    (tmp_path / "broken.json").write_text('{"type": "service_account", "client_id": "1"}')
    app = EditorApp(TaskEditorScreen(None))
    async with app.run_test(size=SIZE) as pilot:
        screen = await start(pilot)
        await type_text(pilot, "globex")
        await pilot.press("tab")
        await choose(pilot, "Google Workspace")
        await pilot.press("tab")
        await type_text(pilot, "broken.json")
        await pilot.press("tab")  # leaving the field reads the key in a worker
        await wait_for(pilot, lambda: error_of(screen, "source.key_file"), WAIT, "the key error")
        assert error_of(screen, "source.key_file").startswith(
            f"{tmp_path / 'broken.json'} lacks client_email, private_key, private_key_id, token_uri"
        )
        assert key_info(screen) == ""

        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.focused.id == "f-source-key_file", "the bad key keeps the task from being saved"
        assert "lacks client_email" in error_of(screen, "source.key_file")
        assert store.list_tasks() == []

        await clear(pilot)
        await type_text(pilot, "key.json")
        await pilot.press("enter")
        await wait_for(pilot, lambda: "Client id" in key_info(screen), WAIT, "the key's client id")
        assert error_of(screen, "source.key_file") == ""
        info = key_info(screen).splitlines()
        assert info[:3] == [
            f"Service account: {fake_key.client_email}",
            f"Client id:       {fake_key.client_id}",
            f"Scope:           {SCOPE}",
        ]
        url = gmail_auth.admin_console_url(fake_key.client_id)
        assert info[-1] == url, "the pre-filled Admin console link, whole and plain"
        await pilot.press("ctrl+y")
        assert app.clipboard == url

        key.write_text("not json any more")  # changed behind the editor's back: install_key refuses it
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert error_of(screen, "source.key_file") == (
            f"{key} is not a JSON file; create a JSON key for the service account (Google Cloud console → IAM & "
            "Admin → Service accounts → the account → Keys → Add key → Create new key → JSON)"
        )
        assert app.focused.id == "f-source-key_file"
        assert store.list_tasks() == [] and not gmail_auth.secret_key_path("globex").exists()

        fake_key.write(key, "http://127.0.0.1:9/token")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert errors(screen) == {} and store.list_tasks() == ["globex"]

    copy = gmail_auth.secret_key_path("globex")
    assert copy.read_bytes() == key.read_bytes()
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600 and stat.S_IMODE(copy.parent.stat().st_mode) == 0o700
    assert store.load_task("globex").source.key_file == str(key)

    key.unlink()  # the admin deletes the download: the task lives on with its copy, also when renamed
    app = EditorApp(TaskEditorScreen("globex"))
    async with app.run_test(size=SIZE) as pilot:
        screen = await start(pilot)
        await wait_for(pilot, lambda: "Client id" in key_info(screen), WAIT, "the saved copy's client id")
        assert f"the task uses the copy kept with it ({copy})" in key_info(screen)
        await pilot.press("end")
        await type_text(pilot, "-2")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert errors(screen) == {} and store.list_tasks() == ["globex-2"]
    assert gmail_auth.secret_key_path("globex-2").is_file() and not copy.exists()


async def test_verify_google_accounts_from_the_user_list(
    dovecot_factory: Callable[..., DovecotServer], tmp_path: Path, fake_key: FakeKey
):
    with FakeGoogle(fake_key) as google:
        key = fake_key.write(tmp_path / "key.json", google.token_uri)
        google.mailbox("alice@acme.example").add(message(1))
        google.mailbox("bob@acme.example")
        google.deny("bob@acme.example")
        Pair(None, dovecot_factory(name="dst", autocreate=True)).settings()
        source = model.Source(type="google", key_file=str(key), api_endpoint=google.root)
        users = [model.User(f"{u}@acme.example", u) for u in ("alice", "bob")]
        store.save_task(model.Task(name="globex", source=source, users=users))

        app = EditorApp(TaskEditorScreen("globex"))
        async with app.run_test(size=SIZE) as pilot:
            _, pane, table = await open_users(pilot)
            await verify_all(pilot, pane)
            verdicts = {key: cells[4] for key, cells in rows(table).items()}
            assert verdicts["alice@acme.example"] == "OK"
            assert verdicts["bob@acme.example"].startswith("FAILED: source: Google refused")
            alice = pane.verdicts["alice@acme.example"]
            assert (
                alice.source_detail
                == f"delegation OK for client id {fake_key.client_id}, the mailbox holds 1 message(s)"
            )
            assert "domain-wide delegation is not granted" in pane.verdicts["bob@acme.example"].source_detail


# --------------------------------------------------------------------------------------------
# Microsoft 365: the device-code sign-in.


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMicrosoft]:
    server = start_trusted(tmp_path, monkeypatch, quick_polls=True)
    yield server
    server.stop()


def device_task(fake: FakeMicrosoft, name: str = "contoso") -> model.Task:
    task = model.Task(
        name=name,
        source=m365_source(fake, auth="device"),
        users=[model.User("alice@contoso.example", "alice")],
    )
    store.save_task(task)
    return task


async def open_signin(pilot) -> tuple[SignInModal, graph_auth.DeviceSignIn]:
    await pilot.press("ctrl+g")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, SignInModal), WAIT, "the sign-in modal")
    modal = pilot.app.screen
    assert isinstance(modal, SignInModal)
    await wait_for(pilot, lambda: modal.flow is not None, WAIT, "the device code")
    await pilot.pause()
    assert modal.flow is not None
    return modal, modal.flow


def signin_status(screen: TaskEditorScreen) -> str:
    return text_of(screen, "#signin-status")


async def test_device_code_sign_in_then_verify_and_sign_out(
    fake: FakeMicrosoft, dovecot_factory: Callable[..., DovecotServer]
):
    fake.mailbox("alice@contoso.example").add("inbox", message(1), when(2024, 1, 2))
    Pair(None, dovecot_factory(name="dst", autocreate=True)).settings()
    device_task(fake)
    app = EditorApp(TaskEditorScreen("contoso"))
    async with app.run_test(size=SIZE) as pilot:
        screen = await start(pilot)
        assert shown(screen, "#signin") and signin_status(screen).startswith("Not signed in")
        assert not shown(screen, "#f-source-client_secret") and not shown(screen, "#f-source-certificate_file")
        await pilot.press("end")
        await type_text(pilot, "-eu")  # unsaved: signing in saves the task first

        modal, flow = await open_signin(pilot)
        assert store.list_tasks() == ["contoso-eu"]
        (pending,) = fake.device_codes.values()
        assert text_of(modal, "#signin-url") == f"{fake.base}/devicelogin"
        assert text_of(modal, "#signin-code") == pending.user_code == flow.user_code
        assert "Waiting for the sign-in" in text_of(modal, "#signin-waiting-text")
        await pilot.press("c")
        assert app.clipboard == pending.user_code
        await wait_for(pilot, lambda: pending.polls > 0, WAIT, "a pending poll")
        fake.approve(pending.user_code)
        await wait_for(pilot, lambda: app.screen is screen, WAIT, "the modal to close")
        assert signin_status(screen) == "Signed in as admin@contoso.example."
        cache = graph_auth.cache_file("contoso-eu")
        assert stat.S_IMODE(cache.stat().st_mode) == 0o600

        _, pane, table = await open_users(pilot)
        await verify_all(pilot, pane)
        assert rows(table)["alice@contoso.example"][4] == "OK"
        assert (
            pane.verdicts["alice@contoso.example"].source_detail == "Microsoft Graph OK, the inbox holds 1 message(s)"
        )

        await pilot.press("f2")
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("y")
        await pilot.pause()
        assert not cache.exists() and signin_status(screen).startswith("Not signed in")


async def test_device_code_sign_in_cancelled_or_declined(fake: FakeMicrosoft):
    device_task(fake)
    app = EditorApp(TaskEditorScreen("contoso"))
    async with app.run_test(size=SIZE) as pilot:
        screen = await start(pilot)
        modal, _ = await open_signin(pilot)
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen and modal.cancel_event.is_set()
        stopped = lambda: not any(w.group == SIGNIN_GROUP and w.is_running for w in app.workers)  # noqa: E731
        await wait_for(pilot, stopped, WAIT, "the sign-in thread to stop")
        assert signin_status(screen).startswith("Not signed in")
        assert not graph_auth.cache_file("contoso").exists()

        modal, flow = await open_signin(pilot)
        fake.decline(flow.user_code)
        await wait_for(pilot, lambda: app.screen is screen, WAIT, "the modal to close")
        assert signin_status(screen) == "Sign-in failed: the sign-in was declined in the browser"
        assert not graph_auth.cache_file("contoso").exists()


async def test_app_only_auth_has_secret_and_certificate_fields(fake: FakeMicrosoft):
    store.save_task(model.Task(name="contoso", source=m365_source(fake)))
    app = EditorApp(TaskEditorScreen("contoso"))
    async with app.run_test(size=SIZE) as pilot:
        screen = await start(pilot)
        assert shown(screen, "#f-source-client_secret") and shown(screen, "#f-source-certificate_file")
        assert screen.query_one("#f-source-client_secret", Input).password
        assert not shown(screen, "#signin-group")
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert app.screen is screen, "nobody signs in with app-only access"
        await focus(pilot, "#f-source-auth")
        await choose(pilot, "Device-code sign-in of an admin")
        assert shown(screen, "#signin-group") and not shown(screen, "#f-source-client_secret")


# --------------------------------------------------------------------------------------------
# One account of the user list.


async def test_add_and_edit_an_account_by_keyboard():
    users = [model.User("alice@acme.example", "alice", password="pw-a")]
    store.save_task(model.Task(name="acme", source=model.Source(host="mail.acme.example"), users=users))
    app = EditorApp(TaskEditorScreen("acme"))
    async with app.run_test(size=SIZE) as pilot:
        screen, pane, table = await open_users(pilot)
        await pilot.press("a")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, UserModal)
        assert app.focused.id == "u-source"
        await type_text(pilot, "bob@acme.example")
        await pilot.press("tab", "tab")  # no password
        await type_text(pilot, "bob")
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is modal, "the model's problem keeps the modal open"
        assert app.focused.id == "u-password"
        password_error = modal.query_one("#u-password").query_ancestor(FormField).error
        assert password_error.messages == [
            "a password is needed for this account (or enable the delegate account in the task's General tab)"
        ]
        await type_text(pilot, "pw-b")
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is screen
        assert rows(table)["bob@acme.example"][1:4] == ["bob@acme.example", "•••", "bob"]
        assert table.cursor_key() == "bob@acme.example" and screen.dirty

        await pilot.press("enter")  # edit the account under the cursor
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, UserModal)
        assert modal.query_one("#u-password", Input).value == "pw-b"
        await clear(pilot)
        await type_text(pilot, "ALICE@acme.example")
        await pilot.press("enter")
        await pilot.pause()
        source_error = modal.query_one("#u-source").query_ancestor(FormField).error
        assert source_error.messages[0].startswith("'ALICE@acme.example' is listed twice")
        assert app.focused.id == "u-source"
        await clear(pilot)
        await type_text(pilot, "robert@acme.example")
        await pilot.press("tab", "tab")
        await clear(pilot)
        await type_text(pilot, "robert")
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is screen
        assert list(rows(table)) == ["alice@acme.example", "robert@acme.example"]

        await pilot.press("enter")  # open, then cancel: nothing changes
        await pilot.pause()
        assert isinstance(app.screen, UserModal)
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen and len(pane.users) == 2
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not screen.dirty
    saved = store.load_task("acme").users
    assert [(u.source, u.destination, u.password) for u in saved] == [
        ("alice@acme.example", "alice", "pw-a"),
        ("robert@acme.example", "robert", "pw-b"),
    ]

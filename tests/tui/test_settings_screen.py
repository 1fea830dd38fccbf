"""The settings screen: validation next to the fields, saving, and the connection tests against real
servers (Dovecot with and without a self-signed certificate, an aiosmtpd relay)."""

from __future__ import annotations

import stat
from collections.abc import Iterator

import pytest
from textual.widgets import Input, Select, Static

from mailmig_tui.app import MailmigApp
from mailmig_tui.engine import store
from mailmig_tui.screens.modals import CertificateModal, ConfirmModal
from mailmig_tui.screens.settings import SettingsScreen
from mailmig_tui.screens.tasks import TasksScreen
from tests.integration.conftest import MASTER_PASSWORD
from tests.servers.dovecot import free_port
from tests.servers.smtp import SmtpServer
from tests.tui.helpers import wait_for


async def open_settings(pilot, app: MailmigApp) -> SettingsScreen:
    await pilot.pause()
    await pilot.press("g")
    await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen))
    assert isinstance(app.screen, SettingsScreen)
    return app.screen


def fill(screen: SettingsScreen, **values: str) -> None:
    for wid, value in values.items():
        widget = screen.query_one(f"#{wid}")
        widget.value = value  # type: ignore[attr-defined]


def text_of(screen: SettingsScreen, wid: str) -> str:
    return str(screen.query_one(f"#{wid}", Static).render())


async def test_a_bad_port_is_reported_next_to_the_field_and_nothing_is_saved(mailmig_home):
    app = MailmigApp()
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await open_settings(pilot, app)
        fill(screen, **{"destination-port": "70000", "smtp-host": "relay.example", "smtp-sender": "not an address"})
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert text_of(screen, "destination-port-error") == "a port is a number from 1 to 65535, not 70000"
        assert text_of(screen, "smtp-sender-error").startswith("the sender is an e-mail address")
        assert text_of(screen, "destination-host-error") == ""
        assert screen.query_one("#destination-port").has_class("-invalid")
        assert screen.focused is screen.query_one("#destination-port")  # the first problem gets the focus
        assert not store.paths().settings_file.exists()

        fill(screen, **{"destination-port": "", "smtp-sender": "mailmig@nas.example"})
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert text_of(screen, "destination-port-error") == "a port is a number from 1 to 65535, not ''"

        fill(screen, **{"destination-port": "1993", "destination-password": "s3cret"})
        screen.query_one("#destination-auth", Select).value = "authzid"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert text_of(screen, "destination-port-error") == ""
        assert not screen.query_one("#destination-port").has_class("-invalid")
    saved = store.load_settings()
    assert (saved.destination.port, saved.destination.auth, saved.destination.password) == (1993, "authzid", "s3cret")
    assert (saved.smtp.host, saved.smtp.sender) == ("relay.example", "mailmig@nas.example")
    assert "s3cret" not in store.paths().settings_file.read_text()
    assert stat.S_IMODE(store.paths().settings_secrets_file.stat().st_mode) == 0o600


async def test_leaving_with_unsaved_changes_asks(mailmig_home):
    app = MailmigApp()
    async with app.run_test() as pilot:
        screen = await open_settings(pilot, app)
        fill(screen, **{"destination-host": "mail.example"})
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen is screen)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("y")
        await wait_for(pilot, lambda: isinstance(app.screen, TasksScreen))
    assert not store.paths().settings_file.exists()


async def test_destination_test_connects_and_opens_an_account(dovecot, mailmig_home):
    app = MailmigApp()
    async with app.run_test(size=(120, 50)) as pilot:
        screen = await open_settings(pilot, app)
        fill(screen, **{"destination-port": str(dovecot.port), "destination-password": MASTER_PASSWORD})
        screen.query_one("#destination-security", Select).value = "none"
        screen.query_one("#test-account", Input).value = "alice"
        await pilot.press("ctrl+t")
        await app.workers.wait_for_complete()
        await wait_for(pilot, lambda: text_of(screen, "destination-result").startswith("✔"))
        result = text_of(screen, "destination-result")
        assert f"127.0.0.1:{dovecot.port}: connected with no encryption" in result
        assert "alice: enabled, INBOX holds 0 message(s)" in result

        fill(screen, **{"destination-password": "Hunter2-bad"})
        await pilot.press("ctrl+t")
        await app.workers.wait_for_complete()
        await wait_for(pilot, lambda: text_of(screen, "destination-result").startswith("✘"))
        assert "login refused" in text_of(screen, "destination-result")
        assert "Hunter2" not in text_of(screen, "destination-result")


async def test_a_self_signed_destination_asks_to_trust_its_fingerprint(dovecot_factory, mailmig_home):
    server = dovecot_factory(ssl=True)
    app = MailmigApp()
    async with app.run_test(size=(120, 50)) as pilot:
        screen = await open_settings(pilot, app)
        fill(screen, **{"destination-port": str(server.imaps_port)})
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: isinstance(app.screen, CertificateModal), what="the certificate dialog")
        modal = app.screen
        assert isinstance(modal, CertificateModal)
        assert modal.fingerprint == server.cert_fingerprint
        assert str(modal.query_one("#fingerprint", Static).render()) == server.cert_fingerprint
        await pilot.press("r")  # refuse: nothing pinned
        await wait_for(pilot, lambda: app.screen is screen)
        assert screen.query_one("#destination-tls-fingerprint", Input).value == ""
        assert "certificate not trusted" in text_of(screen, "destination-result")

        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: isinstance(app.screen, CertificateModal))
        await pilot.press("t")  # trust: pinned in the form, and tested again
        await wait_for(pilot, lambda: app.screen is screen)
        assert screen.query_one("#destination-tls-fingerprint", Input).value == server.cert_fingerprint
        await app.workers.wait_for_complete()
        await wait_for(pilot, lambda: text_of(screen, "destination-result").startswith("✔"))
        assert "connected with TLS (pinned certificate)" in text_of(screen, "destination-result")
        await pilot.press("ctrl+s")
        await pilot.pause()
    assert store.load_settings().destination.tls_fingerprint == server.cert_fingerprint


@pytest.fixture
def smtp_relay() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


async def test_smtp_relay_test(smtp_relay: SmtpServer, mailmig_home):
    app = MailmigApp()
    async with app.run_test(size=(120, 50)) as pilot:
        screen = await open_settings(pilot, app)
        fill(screen, **{"smtp-host": "127.0.0.1", "smtp-port": str(smtp_relay.port), "smtp-sender": "m@nas.example"})
        await pilot.press("ctrl+r")  # STARTTLS by default, which this relay does not offer
        await app.workers.wait_for_complete()
        await wait_for(pilot, lambda: text_of(screen, "smtp-result").startswith("✘"))
        assert "does not offer STARTTLS" in text_of(screen, "smtp-result")

        screen.query_one("#smtp-security", Select).value = "none"
        await pilot.pause()
        await pilot.press("ctrl+r")
        await app.workers.wait_for_complete()
        await wait_for(pilot, lambda: text_of(screen, "smtp-result").startswith("✔"))
        assert f"127.0.0.1:{smtp_relay.port}: connected" in text_of(screen, "smtp-result")
        assert "test message sent to m@nas.example" in text_of(screen, "smtp-result")
        (received,) = smtp_relay.wait_for(1)
        assert received.rcpt_tos == ["m@nas.example"] and received.message["Subject"] == "mailmig-tui: test message"

        fill(screen, **{"smtp-port": str(free_port())})
        await pilot.press("ctrl+r")
        await app.workers.wait_for_complete()
        await wait_for(pilot, lambda: text_of(screen, "smtp-result").startswith("✘"))
        assert "connection refused" in text_of(screen, "smtp-result")


async def test_saving_without_the_master_password_says_so(mailmig_home):
    app = MailmigApp()
    async with app.run_test(size=(100, 40)) as pilot:
        await open_settings(pilot, app)
        await pilot.press("ctrl+s")
        await pilot.pause()
        shown = [n.message for n in app._notifications]
        assert any(m.startswith("Saved without a password: the master/admin password is missing") for m in shown)
    assert store.paths().settings_file.exists(), "saved: the password may follow later"

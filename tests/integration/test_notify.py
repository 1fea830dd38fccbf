"""Notifications through a real SMTP server (aiosmtpd on loopback) after real migrations."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mailmig_tui.engine import notify, runner, store
from mailmig_tui.engine.model import Smtp
from tests.integration.conftest import Pair, message, when
from tests.servers import mailbox as mb
from tests.servers.dovecot import free_port
from tests.servers.smtp import SmtpServer


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def _notifying_task(pair: Pair, smtp_port: int):
    task = pair.task(("alice", "bob"), save=False)
    task.users[1].password = "wrong-password-for-bob"
    n = task.notifications
    n.on_success, n.success_to = True, ["it@acme.example"]
    n.on_failure, n.failure_to = True, ["oncall@acme.example", "boss@acme.example"]
    store.save_task(task, old_name=task.name)
    settings = pair.settings(save=False)
    settings.smtp = Smtp(host="127.0.0.1", port=smtp_port, security="none", sender="mailmig@nas.example")
    store.save_settings(settings)
    return task, settings


def test_success_and_failure_messages_are_delivered(pair: Pair, smtp: SmtpServer) -> None:
    mb.seed(pair.src, "alice", {"INBOX": [mb.Msg(message(i), (), when(2020, 1, 1, 0, 0, 0)) for i in range(3)]})
    task, settings = _notifying_task(pair, smtp.port)

    result = runner.run_task(task, settings)

    assert {a.account: a.status for a in result.accounts} == {"alice": "complete", "bob": "failed"}
    received = smtp.wait_for(2)
    by_to = {tuple(r.rcpt_tos): r for r in received}
    ok = by_to[("it@acme.example",)].message
    assert ok["Subject"] == "mailmig-tui: alice migrated (acme)"
    assert ok["From"] == "mailmig@nas.example"
    body = ok.get_content()
    assert "Copied:       3 message(s)" in body and "Account:      alice → alice" in body and "Failed:       0" in body
    bad = by_to[("oncall@acme.example", "boss@acme.example")].message
    assert bad["Subject"] == "mailmig-tui: bob FAILED (acme)"
    text = bad.get_content()
    assert "login refused for bob" in text
    assert "Last log lines of this account:" in text and "account started" in text
    assert "wrong-password-for-bob" not in text and "masterpass" not in text
    log = store.paths().log_file(task.name).read_text()
    assert "notification sent to it@acme.example" in log


def test_unreachable_relay_is_logged_and_migration_completes(pair: Pair) -> None:
    mb.seed(pair.src, "alice", {"INBOX": [mb.Msg(message(1), (), when(2020, 1, 1, 0, 0, 0))]})
    task, settings = _notifying_task(pair, free_port())  # nothing listens there

    result = runner.run_task(task, settings)

    alice = next(a for a in result.accounts if a.account == "alice")
    assert alice.status == "complete" and alice.copied == 1
    log = store.paths().log_file(task.name).read_text()
    assert "notification not sent" in log and "connection refused" in log


def test_send_test_message_and_cli(smtp: SmtpServer, tmp_path) -> None:
    cfg = Smtp(host="127.0.0.1", port=smtp.port, security="none", sender="mailmig@nas.example")
    notify.send(cfg, notify.test_message(cfg, ["admin@acme.example"]))
    (got,) = smtp.wait_for(1)
    assert got.rcpt_tos == ["admin@acme.example"] and got.message["Subject"] == "mailmig-tui: test message"

    starttls_required = Smtp(host="127.0.0.1", port=smtp.port, security="starttls", sender="mailmig@nas.example")
    with pytest.raises(notify.NotifyError, match="does not offer STARTTLS"):
        notify.send(starttls_required, notify.test_message(starttls_required, ["admin@acme.example"]))

"""``x`` on Task info stops a run of another process: a real ``mailmig-tui run`` subprocess copying
through a slow link to the real destination Dovecot. It is asked (and names the process), the run stops
after its current batch with exit status 130, the app says so, and a new run resumes without duplicates."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from mailmig_tui.app import MailmigApp
from mailmig_tui.engine import runner, store
from mailmig_tui.engine.state import StateDB
from mailmig_tui.screens.info import InfoScreen
from mailmig_tui.screens.modals import ConfirmModal
from tests.integration.conftest import Pair, contents, message, when
from tests.integration.test_resume import seed_fast
from tests.servers import mailbox as mb
from tests.servers.relay import SlowRelay
from tests.tui.helpers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

MESSAGES = 400


@pytest.fixture
def relay(pair: Pair) -> Iterator[SlowRelay]:
    link = SlowRelay(("127.0.0.1", pair.dst.port), chunk=4096, delay=0.02)  # about 200 KB/s towards the destination
    yield link
    link.close()


def notifications(app: MailmigApp) -> list[str]:
    return [n.message for n in app._notifications]


async def test_x_on_task_info_stops_a_cli_run_of_another_process(pair: Pair, relay: SlowRelay):
    body = b"".join(b"line %03d of a message body of a few kilobytes\r\n" % i for i in range(100))
    seed_fast(
        pair.src, "alice", {"INBOX": [mb.Msg(message(i, body=body), (), when(2023, 1, 1)) for i in range(MESSAGES)]}
    )
    pair.task(["alice"])
    settings = pair.settings(save=False)
    settings.destination.port = relay.port
    store.save_settings(settings)
    p = store.paths()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailmig_tui", "run", "acme"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    try:
        app = MailmigApp()
        async with app.run_test(size=(120, 30)) as pilot:
            await pilot.pause()
            await pilot.press("i")
            await wait_for(pilot, lambda: isinstance(app.screen, InfoScreen))
            info = app.screen
            assert isinstance(info, InfoScreen)
            await wait_for(
                pilot, lambda: info.status is not None and info.status.state == "running", what="the CLI run"
            )
            assert info.check_action("stop", ()) is True
            await pilot.press("x")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), timeout=5, what="the question")
            question = " ".join(str(s.render()) for s in app.screen.query(".dialog-body"))
            assert f"cli (pid {proc.pid} on" in question
            await pilot.press("y")
            await wait_for(pilot, lambda: isinstance(app.screen, InfoScreen), timeout=5)
            assert any(f"Asked cli (pid {proc.pid}" in n for n in notifications(app))
            await wait_for(pilot, lambda: "stopping…" in str(info.query_one("#info-status").render()), timeout=5)
            await wait_for(pilot, lambda: proc.poll() is not None, timeout=120, what="the CLI run to stop")
            await wait_for(
                pilot,
                lambda: any("stopped" in n and f"pid {proc.pid}" in n for n in notifications(app)),
                timeout=10,
                what="the outcome",
            )
            await wait_for(pilot, lambda: "Status: stopped" in str(info.query_one("#info-status").render()), timeout=10)
            assert any("stop requested by tui" in line for line in info.pane.log_widget.lines)
        assert proc.returncode == 130, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()
    db = StateDB.open_readonly(p.state_file("acme"))
    try:
        assert db.last_run()["status"] == "stopped"
    finally:
        db.close()
    copied = len(contents(pair.dst, "alice").get("INBOX", []))
    assert copied < MESSAGES
    assert not runner.stop_request_path(p, "acme").exists()
    settings.destination.port = pair.dst.port
    again = runner.run_task(store.load_task("acme"), settings)
    assert again.status == "completed"
    assert again.accounts[0].copied == MESSAGES - copied
    assert len(contents(pair.dst, "alice")["INBOX"]) == MESSAGES

"""security = "none" towards a host outside 127.0.0.0/8 is warned about when a run starts, and in its log."""

from __future__ import annotations

from mailmig_tui.engine import imapconn, runner, store
from mailmig_tui.engine.events import Event, LogLine
from tests.integration.conftest import Pair


def test_a_run_with_an_unencrypted_remote_source_warns_at_start_and_in_the_log(pair: Pair) -> None:
    task = pair.task(save=False)
    task.source.host = "mail.acme.example"  # never contacted: the source factory below refuses at once
    store.save_task(task)
    settings = pair.settings()  # the destination: 127.0.0.1 without TLS, which is fine

    def unreachable(task, user):
        raise imapconn.ImapError("connect", "mail.acme.example: not contacted by this test")

    events: list[Event] = []
    result = runner.run_task(task, settings, sink=events.append, source_factory=unreachable)
    assert result.status == "failed"
    warnings = [e for e in events if isinstance(e, LogLine) and e.severity == "warning" and "unencrypted" in e.text]
    assert [w.text.split(":")[0] for w in warnings] == ["source.security"], "one warning: not for 127.0.0.1"
    assert 'security = "none" towards mail.acme.example:' in warnings[0].text
    log = store.paths().log_file(task.name).read_text()
    assert "WARNING" in log.upper() and 'security = "none" towards mail.acme.example:' in log

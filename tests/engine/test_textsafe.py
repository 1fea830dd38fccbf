"""Control characters from outside are shown escaped: the function itself, the log file (one event,
one line), the scheduler's output and notification mails (engine.textsafe and its users)."""

from __future__ import annotations

import re

import pytest

from mailmig_tui.engine import notify
from mailmig_tui.engine.events import AccountResult, LogLine, MessageFailed
from mailmig_tui.engine.logfile import LogWriter, Redactor, read, record_of
from mailmig_tui.engine.logtail import LogFollower
from mailmig_tui.engine.model import Notifications, Smtp, Task
from mailmig_tui.engine.scheduler import print_sink
from mailmig_tui.engine.textsafe import escape_controls

OSC = "Evil\x1b]0;pwned\x07"
FORGED = "x\r\n2026-01-01T00:00:00.000+00:00\tERROR\tbob\tINBOX\tforged"
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")  # every control but the LF ending a line


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (OSC, "Evil\\x1b]0;pwned\\x07"),
        ("a\r\nb\tc", "a\\r\\nb\\tc"),
        ("nul\x00del\x7fcsi\x9b2J", "nul\\x00del\\x7fcsi\\x9b2J"),
        ("line\u2028sep\u2029", "line\\u2028sep\\u2029"),
        ("[Gmail]/Sent Mail", "[Gmail]/Sent Mail"),
        ("Entwürfe · 日本語 \\x1b", "Entwürfe · 日本語 \\x1b"),
    ],
)
def test_escape_controls(text: str, shown: str) -> None:
    assert escape_controls(text) == shown
    assert escape_controls(shown) == shown  # escaping twice changes nothing


def test_a_long_text_is_escaped_as_a_short_one_is() -> None:
    """Each control character (and its neighbours in UTF-8) in a text long enough for the byte check."""
    filler = "user@example.org → Entwürfe · 日本語 ° « » 🙂 \u2027\u202a \n" * 2000
    controls = [chr(c) for c in (*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029)]
    for char in ["", *controls]:
        text = filler + char + filler[:20]
        for keep in (False, True):
            expected = "".join(escape_controls(part, keep_newlines=keep) for part in text.splitlines(keepends=True))
            assert escape_controls(text, keep_newlines=keep) == expected, (repr(char), keep)


def test_one_event_is_one_log_line_and_reads_back(tmp_path) -> None:
    path = tmp_path / "acme.log"
    writer = LogWriter(path, Redactor(["s3cr\tet"]))
    writer(LogLine("acme", "al\x1b[2Jice", severity="warning", text=f"refused: {FORGED} s3cr\tet", folder=OSC))
    writer(MessageFailed("acme", "bob", folder=FORGED, message="7", reason="NO [\x1b]8;;http://x\x07]"))
    writer.close()

    lines = path.read_bytes().decode("utf-8").split("\n")
    assert lines[-1] == "" and len(lines) == 3, lines
    fields = [line.split("\t") for line in lines[:-1]]
    assert all(len(f) == 5 and not any(RAW.search(x) for x in f) for f in fields), fields
    first, second = read(path)
    assert (first.account, first.folder) == ("al\\x1b[2Jice", "Evil\\x1b]0;pwned\\x07")
    assert first.text == "refused: " + escape_controls(FORGED) + " •••"
    assert second.folder == escape_controls(FORGED) and "NO [\\x1b]8;;http://x\\x07]" in second.text
    assert LogFollower(path).history() == [first, second]


def test_records_for_the_log_pane_are_escaped() -> None:
    rec = record_of(LogLine("acme", "bob", text="a\nb", folder=OSC))
    assert (rec.folder, rec.text) == ("Evil\\x1b]0;pwned\\x07", "a\\nb")


def test_scheduler_output_is_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    print_sink(LogLine("acme", "al\x1bice", severity="error", text=f"account failed: {FORGED}"))
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and not RAW.search(out), repr(out)
    assert "acme al\\x1bice: account failed: x\\r\\n2026" in out


def test_notification_subject_and_body_are_escaped() -> None:
    task = Task("acme", notifications=Notifications(on_failure=True, failure_to=["it@acme.example"]))
    smtp = Smtp(host="127.0.0.1", sender="mailmig@nas.example")
    result = AccountResult(f"bob\r\nBcc: victim@example.org{OSC}", "bob", status="failed", error=f"NO {FORGED}")

    msg = notify.account_message(task, smtp, result, [f"2026 ERROR {OSC}: {FORGED}"])

    subject = msg["Subject"]
    assert not RAW.search(subject) and "\n" not in subject and msg["Bcc"] is None
    assert subject == f"mailmig-tui: bob\\r\\nBcc: victim@example.org{escape_controls(OSC)} FAILED (acme)"
    body = msg.get_content()
    assert not RAW.search(body), repr(body)
    assert f"Reason: NO {escape_controls(FORGED)}\n" in body
    assert f"  2026 ERROR {escape_controls(OSC)}: {escape_controls(FORGED)}\n" in body
    assert "forged" not in "".join(line for line in body.splitlines() if line.startswith("2026"))

"""Following a log file: history, then appended lines only, whole lines only, truncation (engine.logtail)."""

from __future__ import annotations

from pathlib import Path

from mailmig_tui.engine.logfile import LogRecord
from mailmig_tui.engine.logtail import LogFollower


def line(n: int, text: str = "") -> str:
    return (
        LogRecord(f"2026-01-05T10:00:{n % 60:02d}.000+00:00", "info", "alice", "INBOX", text or f"l{n}").line() + "\n"
    )


def append(path: Path, data: str) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(data)


def test_history_then_only_new_lines(tmp_path: Path):
    path = tmp_path / "acme.log"
    follower = LogFollower(path)
    assert follower.history() == []  # no file yet
    append(path, "".join(line(i) for i in range(10)))
    assert [r.text for r in follower.history(max_records=3)] == ["l7", "l8", "l9"]
    assert follower.read_new() == []
    append(path, line(10) + "garbage without tabs\n" + line(11, "[Gmail]/Sent Mail"))
    assert [r.text for r in follower.read_new()] == ["l10", "[Gmail]/Sent Mail"]
    assert follower.read_new() == []


def test_a_line_being_written_waits_for_its_end(tmp_path: Path):
    path = tmp_path / "acme.log"
    path.write_text("")
    follower = LogFollower(path)
    follower.history()
    whole = line(1)
    append(path, whole[:20])
    assert follower.read_new() == []
    append(path, whole[20:])
    assert [r.text for r in follower.read_new()] == ["l1"]


def test_history_of_a_big_file_reads_its_end_only(tmp_path: Path):
    path = tmp_path / "acme.log"
    append(path, "".join(line(i, f"l{i}") for i in range(2000)))
    records = LogFollower(path).history(max_bytes=1000)
    assert 0 < len(records) < 20
    assert records[-1].text == "l1999"
    assert all(r.text.startswith("l") and r.account == "alice" for r in records), "no torn first line"


def test_a_truncated_or_replaced_file_is_read_from_its_start(tmp_path: Path):
    path = tmp_path / "acme.log"
    append(path, line(1) + line(2))
    follower = LogFollower(path)
    follower.history()
    path.write_text(line(3))  # shorter: truncated
    assert [r.text for r in follower.read_new()] == ["l3"]
    replacement = tmp_path / "new.log"
    replacement.write_text(line(4) + line(5) + line(6))
    replacement.replace(path)
    assert [r.text for r in follower.read_new()] == ["l4", "l5", "l6"]


def test_skip_to_end(tmp_path: Path):
    path = tmp_path / "acme.log"
    append(path, line(1))
    follower = LogFollower(path)
    append(path, line(2))
    follower.skip_to_end()
    append(path, line(3))
    assert [r.text for r in follower.read_new()] == ["l3"]

"""Folder names with terminal escapes, CR/LF and TABs from a real Dovecot never reach a terminal or the
log file as they are: ``run``, ``run --dry-run``, ``report`` (text and JSON) and the log show them
escaped (``\\x1b``, ``\\n``), and one event stays one log line.

Dovecot refuses such names in CREATE but lists and opens a folder that exists on disk under one
(``make_folder_on_disk``); the copy writes them with each control character as "_" (engine.folders).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path

from mailmig_tui.engine import store
from mailmig_tui.engine.logtail import LogFollower
from mailmig_tui.engine.textsafe import escape_controls
from tests.integration.conftest import Pair, contents, message, when
from tests.integration.test_cli_run import TASK, cli, save_task
from tests.servers import mailbox as mb
from tests.servers.dovecot import DovecotServer

OSC = "Evil\x1b]0;pwned\x07"
FORGED = "Forged\r\n2026-01-01T00:00:00.000+00:00\tERROR\tbob\tINBOX\tfake line"
CSI = "Csi\x9b2J\x7fdel"
HOSTILE = (OSC, FORGED, CSI)
# Every control character except the LF that ends a line of output.
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def hostile_pair(dovecot_factory: Callable[..., DovecotServer], *, max_mail_size: int | None = None) -> Pair:
    """alice's source holds the hostile folders, one message each; the destination has them too."""
    pair = Pair(dovecot_factory(name="src"), dovecot_factory(name="dst", autocreate=True, max_mail_size=max_mail_size))
    for server in (pair.src, pair.dst):
        mb.seed(server, "alice", {"INBOX": [mb.Msg(message(1), (), when(2021, 1, 1))]} if server is pair.src else {})
        for name in HOSTILE:
            server.make_folder_on_disk("alice", name)
    mb.seed(
        pair.src, "alice", {name: [mb.Msg(message(10 + i), (), when(2021, 2, 1))] for i, name in enumerate(HOSTILE)}
    )
    return pair


def assert_escaped(text: str, what: str) -> None:
    raw = RAW.search(text)
    assert raw is None, f"{what} holds a raw {raw.group()!r}:\n{text!r}"


def test_run_dry_run_and_log_show_hostile_folder_names_escaped(
    dovecot_factory: Callable[..., DovecotServer], mailmig_home: Path
) -> None:
    pair = hostile_pair(dovecot_factory)
    save_task(pair, ("alice",))

    plan = cli(mailmig_home, "run", TASK, "--dry-run")

    assert plan.returncode == 0, plan.stderr
    assert_escaped(plan.stdout + plan.stderr, "the dry run's plan")
    assert f"  {escape_controls(OSC)} → " in plan.stdout

    proc = cli(mailmig_home, "run", TASK, "--verbose")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_escaped(proc.stdout + proc.stderr, "the run's output")
    for name in HOSTILE:
        assert f"alice [{escape_controls(name)}]: folder done → " in proc.stdout
    src, dst = contents(pair.src, "alice"), contents(pair.dst, "alice")
    written = {name: "".join("_" if unicodedata.category(c) == "Cc" else c for c in name) for name in HOSTILE}
    assert all(dst[written[name]] == src[name] and len(src[name]) == 1 for name in HOSTILE), "renamed, copied"

    raw_log = store.paths().log_file(TASK).read_bytes().decode("utf-8")
    lines = raw_log.split("\n")
    assert lines.pop() == ""
    for line in lines:
        fields = line.split("\t")
        assert len(fields) == 5 and not any(RAW.search(f) for f in fields), line
    assert not any(line.startswith("2026-01-01T00:00:00.000") for line in lines), "a folder name forged a log line"
    records = LogFollower(store.paths().log_file(TASK)).history()
    assert len(records) == len(lines)
    assert {r.folder for r in records} >= {escape_controls(name) for name in HOSTILE}


def test_report_shows_hostile_folder_names_and_server_texts_escaped(
    dovecot_factory: Callable[..., DovecotServer], mailmig_home: Path
) -> None:
    pair = hostile_pair(dovecot_factory, max_mail_size=50_000)
    mb.seed(pair.src, "alice", {OSC: [mb.Msg(message(9, body=b"b" * 60_000 + b"\r\n"), (), when(2021, 3, 1))]})
    save_task(pair, ("alice",))

    proc = cli(mailmig_home, "run", TASK)

    assert proc.returncode == 1, proc.stdout + proc.stderr  # the big message is refused
    assert_escaped(proc.stdout + proc.stderr, "the run's output")
    assert f"ERROR   alice [{escape_controls(OSC)}]: message " in proc.stderr

    report = cli(mailmig_home, "report", TASK)

    assert report.returncode == 0, report.stderr
    assert_escaped(report.stdout + report.stderr, "the report")
    assert f"      failed: [{escape_controls(OSC)}] message " in report.stdout

    as_json = cli(mailmig_home, "report", TASK, "--json")

    assert as_json.returncode == 0, as_json.stderr
    assert_escaped(as_json.stdout.replace("\n", " "), "the JSON report")
    (alice,) = json.loads(as_json.stdout)["accounts"]
    assert [f["folder"] for f in alice["failed_messages"]] == [OSC], "JSON keeps the exact name, escaped as JSON"

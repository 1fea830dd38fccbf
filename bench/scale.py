"""The scale scenario (issue 14): one task of many accounts, measured from outside.

    python -m bench.scale [--users 20000,100000] [--timeout 300] [--no-state]

Every measure runs in its own child process (the CLI as a user starts it, or a small Python
child for what happens in-process) under a fresh temporary MAILMIG_HOME, with a timeout: a
measure that takes too long is killed and shown as "timeout". Nothing here contacts a server:
a ``sitecustomize`` in every child records (and refuses, unless to loopback) any IP connection
or name lookup, and the table says whether there was any. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench import tools
from bench.report import code_version
from bench.scenarios import say
from mailmig_tui.engine import model, store

REPO = Path(__file__).resolve().parent.parent
TASK = "scale"
SOURCE_HOST = "mail.scale.example"  # never contacted
SIZE = (120, 40)
SEARCH = "user0001"  # 100 accounts of the scale task's list (user000100..user000199)
NETLOG_ENV = "MAILMIG_SCALE_NETLOG"
GUARD = f"""\
import os, socket, sys

_LOG = os.environ.get({NETLOG_ENV!r})
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _note(text):
    fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (str(os.getpid()) + " " + text + "\\n").encode())
    finally:
        os.close(fd)


def _hook(event, args):
    if event == "socket.connect" and args[0].family in (socket.AF_INET, socket.AF_INET6):
        host = str(args[1][0])
        _note("connect " + host)
        if host not in _LOOPBACK:
            raise PermissionError("bench.scale: no network beyond 127.0.0.1 (" + host + ")")
    elif event == "socket.getaddrinfo":
        _note("getaddrinfo " + str(args[0]))


if _LOG:
    sys.addaudithook(_hook)
"""

LOAD_SNIPPET = """\
import json, sys, time
t0 = time.perf_counter()
from mailmig_tui.engine import store
t1 = time.perf_counter()
task = store.load_task(sys.argv[1])
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "seconds": t2 - t1, "users": len(task.users)}))
"""


# --------------------------------------------------------------------------------------------
# The task and its user list.


def user_row(i: int, delegate: bool) -> tuple[str, str, str]:
    """Account ``i``: source address, source password (a tenth hold a comma and a quote), destination."""
    password = "" if delegate else (f'pw,"{i}"' if i % 10 == 0 else f"pw-{i:06}")
    return f"user{i:06}@scale.example", password, f"user{i:06}"


def csv_text(n: int, delegate: bool) -> str:
    lines = ["source,password,destination"]
    for i in range(n):
        src, pw, dst = user_row(i, delegate)
        quoted = '"' + pw.replace('"', '""') + '"' if any(c in pw for c in ',"') else pw
        lines.append(f"{src},{quoted},{dst}")
    return "\r\n".join(lines) + "\r\n"


def task_source(delegate: bool) -> model.Source:
    d = model.Delegate(enabled=True, login="admin@scale.example", password="delegate-pw") if delegate else None
    return model.Source(type="imap", host=SOURCE_HOST, delegate=d or model.Delegate())


# --------------------------------------------------------------------------------------------
# Results.


@dataclass
class Row:
    measure: str
    users: int
    value: float | None = None  # seconds, or ms for the key rows
    unit: str = "s"
    status: str = "ok"  # ok | timeout | failed: … | skipped: …
    rss_mb: float | None = None
    target: float | None = None
    target_text: str = ""
    detail: str = ""

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        if self.status != "ok" or self.value is None:
            return False
        return self.value < self.target if self.unit == "ms" else self.value <= self.target  # "< 100 ms", "<= 3 s"


@dataclass
class Scale:
    args: argparse.Namespace
    workdir: Path
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def netlog(self) -> Path:
        return self.workdir / "network.log"

    def env(self, home: Path) -> dict[str, str]:
        guard = self.workdir / "guard"
        path = [str(guard), str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        return tools.tool_env(
            MAILMIG_HOME=str(home), PYTHONPATH=os.pathsep.join(path), **{NETLOG_ENV: str(self.netlog)}
        )

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        shown = "-" if row.value is None else f"{row.value:.3f} {row.unit}"
        say(
            f"  {row.measure} [{row.users:,}]: {shown} {'' if row.status == 'ok' else row.status} {row.detail}".rstrip()
        )
        return row


def _mb(kb: int) -> float | None:
    return round(kb / 1024, 1) if kb else None


def _timed_out(m: tools.Measured, timeout: float) -> bool:
    return m.rc in (-signal.SIGTERM, -signal.SIGKILL) or m.wall >= timeout


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:160] if lines else ""


# --------------------------------------------------------------------------------------------
# Measures.


def measure_startup(s: Scale, home: Path) -> None:
    walls = []
    for i in range(4):  # the first start may write the bytecode cache
        m = tools.run_measured(
            [*tools.mailmig_command(), "--help"],
            env=s.env(home),
            timeout=60,
            log_dir=s.workdir / "logs",
            label=f"help-{i}",
        )
        walls.append(m.wall)
    s.notes.append(
        f"mailmig-tui start-up alone (`mailmig-tui --help`): {statistics.median(walls[1:]):.3f} s (median of 3)"
    )


def cli(
    s: Scale, home: Path, n: int, label: str, argv: list[str], target: float | None = None, runs: int = 1
) -> tuple[Row, str]:
    """``mailmig-tui ARGV`` as a subprocess: its wall time from spawn to exit (the median of RUNS runs, each
    shown in the detail, for a command that changes nothing), and its stdout."""
    timeout = s.args.timeout
    walls: list[float] = []
    for i in range(runs):
        m = tools.run_measured(
            [*tools.mailmig_command(), *argv],
            env=s.env(home),
            timeout=timeout,
            log_dir=s.workdir / "logs",
            label=f"{label}-{n}" + (f"-{i}" if runs > 1 else ""),
        )
        walls.append(m.wall)
        if _timed_out(m, timeout) or m.rc != 0:
            break
    wall = round(statistics.median(walls), 3)
    row = Row(label, n, wall, rss_mb=_mb(m.peak_rss_kb), target=target, target_text=_le(target))
    if len(walls) > 1:
        row.detail = f"median of {len(walls)} runs: " + ", ".join(f"{w:.3f}" for w in walls) + " s"
    if _timed_out(m, timeout):
        row.value, row.status = None, "timeout"
    elif m.rc != 0:
        row.status = f"failed: exit {m.rc}: {_tail(m.stderr)}"
    return s.add(row), m.stdout


def child(s: Scale, home: Path, n: int, which: str, timeout: float) -> tuple[dict[str, Any], tools.Measured]:
    """``python -m bench.scale --child WHICH``: its results (written as it goes) and the process."""
    result = s.workdir / f"{which}-{n}.json"
    result.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "bench.scale", "--child", which, "--result", str(result)]
    argv += ["--users", str(n), "--timeout", str(s.args.timeout), "--keys", str(s.args.keys)]
    argv += ["--pagedowns", str(s.args.pagedowns)] + (["--delegate"] if s.args.delegate else [])
    m = tools.run_measured(argv, env=s.env(home), timeout=timeout, log_dir=s.workdir / "logs", label=f"{which}-{n}")
    try:
        data = json.loads(result.read_text())
    except (OSError, ValueError):
        data = {}
    if m.rc != 0 and not _timed_out(m, timeout):
        data.setdefault("error", f"exit {m.rc}: {_tail(m.stderr)}")
    return data, m


def _le(target: float | None, unit: str = "s") -> str:
    return "" if target is None else f"<= {target:g} {unit}"


def phase_row(s: Scale, n: int, label: str, data: dict, key: str, m: tools.Measured, target: float, **kw: Any) -> Row:
    """A row from one phase of a child's results: its seconds, or why there are none."""
    row = Row(label, n, rss_mb=_mb(m.peak_rss_kb), target=target, target_text=_le(target), **kw)
    phase = data.get(key)
    if isinstance(phase, dict) and phase.get("seconds") is not None:
        row.value = round(phase["seconds"], 3)
        row.detail = row.detail or phase.get("detail", "")
    else:
        row.status = data.get("error") or (phase.get("status") if isinstance(phase, dict) else None) or "timeout"
    return s.add(row)


def measure_users(s: Scale, n: int) -> None:
    home = s.workdir / f"home-{n}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    paths = store.Paths(home / "config", home / "data", home / "logs")
    store.save_task(model.Task(name=TASK, source=task_source(s.args.delegate)), paths)
    csv_file = s.workdir / f"users-{n}.csv"
    csv_file.write_text(csv_text(n, s.args.delegate), encoding="utf-8")
    say(f"{n:,} users: MAILMIG_HOME {home}, CSV {csv_file} ({csv_file.stat().st_size / 2**20:.1f} MB)")
    s.notes.append(f"{n:,} users: load1 {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs when they started")
    timeout = s.args.timeout

    row, out = cli(s, home, n, "import-users", ["import-users", TASK, str(csv_file), "--json"], target=3.0)
    added = _json_value(out, "added")
    if row.status == "ok" and added != n:
        row.status = f"failed: {added} added, expected {n}"
    if row.status != "ok":
        data, m = child(s, home, n, "write-task", timeout)
        if "write" not in data:
            s.notes.append(
                f"{n:,} users: the task could not be written either ({data.get('error', 'timeout')}); no more rows"
            )
            return
        s.notes.append(
            f"{n:,} users: import-users did not finish, so the bench saved the task itself "
            f"(store.save_task, {data['write']['seconds']:.1f} s) for the other rows"
        )

    m = tools.run_measured(
        [sys.executable, "-c", LOAD_SNIPPET, TASK],
        env=s.env(home),
        timeout=timeout,
        log_dir=s.workdir / "logs",
        label=f"load-{n}",
    )
    data = _json_value(m.stdout, None) or {}
    load = Row("store.load_task", n, rss_mb=_mb(m.peak_rss_kb), target=0.3, target_text=_le(0.3))
    if _timed_out(m, timeout):
        load.status = "timeout"
    elif m.rc != 0 or data.get("users") != n:
        load.status = f"failed: exit {m.rc}, {data.get('users')} users: {_tail(m.stderr)}"
    else:
        load.value = round(data["seconds"], 3)
        load.detail = f"import of store {data['import_s']:.2f} s (not counted)"
    s.add(load)

    cli(s, home, n, "list", ["list"])
    cli(s, home, n, "show", ["show", TASK])
    cli(s, home, n, "report", ["report", TASK], target=1.0, runs=3)
    tui_rows(s, home, n, "")

    if s.args.no_state:
        return
    data, m = child(s, home, n, "seed-state", timeout)
    if "seed" not in data:
        s.notes.append(f"{n:,} users: the state could not be written ({data.get('error', 'timeout')}); no state rows")
        return
    say(f"  (state of {n:,} accounts written in {data['seed']['seconds']:.1f} s)")
    os.sync()  # the state file's pages written out, so the rows after do not share the disk with that writeback
    # the run that wrote it not finished yet (killed, or still going): no account's report text is kept
    cli(s, home, n, "report, every account run once, run not finished", ["report", TASK], target=1.0, runs=3)
    data, m = child(s, home, n, "finish-run", timeout)
    if "finish" not in data:
        s.notes.append(f"{n:,} users: the seeded run could not be finished ({data.get('error', 'timeout')})")
        return
    say(f"  (run finished, its report texts written, in {data['finish']['seconds']:.1f} s)")
    os.sync()
    cli(s, home, n, "report, every account run once", ["report", TASK], target=1.0, runs=3)
    tui_rows(s, home, n, ", every account run once")


def tui_rows(s: Scale, home: Path, n: int, suffix: str) -> None:
    timeout = s.args.timeout
    data, m = child(s, home, n, "first-screen", timeout + 60)
    phase_row(s, n, "first screen" + suffix, data, "first", m, 1.5)
    data, m = child(s, home, n, "editor", 2 * timeout + 60)
    phase_row(s, n, "editor, user list tab" + suffix, data, "editor", m, 1.0)
    if suffix:
        return
    keys = data.get("keys") if isinstance(data.get("keys"), dict) else {}
    for name, count in (("down", s.args.keys), ("pagedown", s.args.pagedowns)):
        handled, piloted = keys.get(f"handled {name}") or [], keys.get(f"pilot {name}") or []
        row = Row(f"per key, {name} x{count} (max)", n, unit="ms", rss_mb=_mb(m.peak_rss_kb), target=100)
        row.target_text = "< 100 ms"
        if handled:
            row.value = round(max(handled), 1)
            row.status = "ok" if len(handled) == count else f"timeout after {len(handled)} keys"
            row.detail = f"mean {statistics.mean(handled):.1f} ms"
        else:
            row.status = data.get("error") or "timeout"
        if piloted:
            row.detail += f"; pilot.press+pause mean {statistics.mean(piloted):.0f}, max {max(piloted):.0f} ms"
        if name == "pagedown" and "cursor_row" in keys:
            row.detail += f"; cursor on row {keys['cursor_row']}"
        s.add(row)
    for name, label, count in (
        ("search", f"per key, typing / search {SEARCH!r} (max)", len(SEARCH) + 1),
        ("down in search", f"per key, down x{s.args.keys} in the search's rows (max)", s.args.keys),
    ):
        handled = keys.get(f"handled {name}") or []
        row = Row(label, n, unit="ms", rss_mb=_mb(m.peak_rss_kb), target=100, target_text="< 100 ms")
        if handled:
            row.value = round(max(handled), 1)
            row.status = "ok" if len(handled) == count else f"timeout after {len(handled)} keys"
            row.detail = f"mean {statistics.mean(handled):.1f} ms" + (
                f"; {keys['search_rows']} rows found" if "search_rows" in keys else ""
            )
        else:
            row.status = data.get("error") or "timeout"
        s.add(row)


def _json_value(text: str, key: str | None) -> Any:
    start = text.find("{")
    try:
        data = json.loads(text[start:]) if start >= 0 else {}
    except ValueError:
        return None
    return data if key is None else data.get(key)


# --------------------------------------------------------------------------------------------
# The children: what runs in-process, under MAILMIG_HOME, writing its results as it goes.


class _Results:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data))
        tmp.replace(self.path)


def child_main(args: argparse.Namespace) -> int:
    out = _Results(Path(args.result))
    if args.child == "write-task":
        began = time.perf_counter()
        users = [
            model.User(src, dst, password=pw)
            for src, pw, dst in (user_row(i, args.delegate) for i in range(args.users))
        ]
        store.save_task(model.Task(name=TASK, source=task_source(args.delegate), users=users), old_name=TASK)
        out.put("write", {"seconds": time.perf_counter() - began})
    elif args.child == "seed-state":
        began = time.perf_counter()
        seed_state(args.users, args.delegate)
        out.put("seed", {"seconds": time.perf_counter() - began})
    elif args.child == "finish-run":
        began = time.perf_counter()
        finish_seeded_run()
        out.put("finish", {"seconds": time.perf_counter() - began})
    else:
        asyncio.run(_first_screen(args, out) if args.child == "first-screen" else _editor(args, out))
        sys.stdout.flush()
        os._exit(0)  # the results are written; tearing down a huge screen is not measured
    return 0


SEED_FOLDERS = {"INBOX": 8, "Sent": 2}  # messages per account and folder in the seeded state


def seed_state(n: int, delegate: bool) -> None:
    """Every account run once, through the state API the runner uses: two folders, ten message records
    (one already at the destination), skips in a third of the accounts, a failed message in one in a
    hundred (partial). The run is left unfinished, as a killed one is (:func:`finish_seeded_run`)."""
    from mailmig_tui.engine.sources.base import SKIP_EXISTING, SKIP_TOO_OLD, identity_of
    from mailmig_tui.engine.state import COPIED, EXISTING, FAILED, MessageRow, StateDB

    source = task_source(delegate)
    db = StateDB(store.paths().state_file(TASK))
    try:
        run_id = db.start_run(False)
        for i in range(n):
            src, pw, dst = user_row(i, delegate)
            key = model.account_key(src)
            db.bind_account(key, identity_of(source, model.User(src, dst, password=pw)), dst)
            db.set_account_status(key, "running")
            rows, failed = [], i % 100 == 0
            for folder, count in SEED_FOLDERS.items():
                skipped = Counter({SKIP_TOO_OLD: 2} if i % 3 == 0 else {})
                skipped[SKIP_EXISTING] = int(folder == "INBOX")
                db.save_folder(key, folder, validity="1", marker="m", filters="", dest_folder=folder,
                               skipped=skipped, clean=not failed)  # fmt: skip
                for uid in range(1, count + 1):
                    status = EXISTING if (folder, uid) == ("INBOX", 1) else FAILED if failed and uid == 2 else COPIED
                    reason = "the destination refused it (message too large)" if status == FAILED else ""
                    rows.append(MessageRow(folder, "1", str(uid), status, folder, 1, uid, f"fp{i}-{folder}-{uid}",
                                           2000 + 37 * uid, reason))  # fmt: skip
            db.record(key, rows)
            status = "partial" if failed else "complete"
            db.set_account_status(key, status, error="1 message(s) could not be copied" if failed else "")
            result = SimpleNamespace(
                account=key,
                status=status,
                folders=len(SEED_FOLDERS),
                copied=sum(r.status == COPIED for r in rows),
                skipped={SKIP_TOO_OLD: 4} if i % 3 == 0 else {},
                failed=int(failed),
                bytes=sum(r.size for r in rows if r.status == COPIED),
                duration=1.0,
                error="",
            )
            db.record_account_run(run_id, result, time.time())
    finally:
        db.close()


def finish_seeded_run() -> None:
    """The end of the run seed_state left open, as the runner ends one (which writes the report texts)."""
    from mailmig_tui.engine.state import StateDB

    db = StateDB(store.paths().state_file(TASK))
    try:
        last = db.last_run()
        assert last is not None and last["finished"] is None, last
        db.finish_run(last["id"], "completed")
    finally:
        db.close()


async def _until(pilot: Any, predicate: Callable[[], bool], deadline: float) -> bool:
    """Let the app run until ``predicate()`` holds (True) or ``deadline`` passes (False)."""
    from textual.pilot import WaitForScreenTimeout

    while time.perf_counter() < deadline:
        try:
            if predicate():
                return True
        except Exception:  # noqa: BLE001 - the screen is not there yet
            pass
        try:
            await pilot.pause(0.01)
        except WaitForScreenTimeout:
            continue
    return False


async def _first_screen(args: argparse.Namespace, out: _Results) -> None:
    from textual.widgets import DataTable

    from mailmig_tui.app import MailmigApp

    n = args.users
    app = MailmigApp()

    def accounts() -> str:
        return str(app.screen.query_one("#tasks-table", DataTable).get_cell(TASK, "accounts"))

    began = time.perf_counter()
    deadline = began + args.timeout
    async with app.run_test(size=SIZE) as pilot:
        if not await _until(pilot, lambda: accounts() == f"-/{n}" or accounts().endswith(f"/{n}"), deadline):
            out.put("first", {"status": "timeout"})
            return
        shown = time.perf_counter() - began
        out.put("first", {"seconds": shown})
        polled = await _until(pilot, lambda: not accounts().startswith("-"), deadline)
        detail = f"status polled at {time.perf_counter() - began:.2f} s ({accounts()})" if polled else "status: timeout"
        out.put("first", {"seconds": shown, "detail": detail})


async def _editor(args: argparse.Namespace, out: _Results) -> None:
    """The admin's way: the app's task list, `e` on the task, F5; timed from `e` (the app's own start is
    the first-screen row)."""
    from textual.widgets import DataTable

    from mailmig_tui.app import MailmigApp
    from mailmig_tui.screens.editor import TaskEditorScreen
    from mailmig_tui.screens.users import UserListPane

    n = args.users
    app = MailmigApp()

    def listed() -> bool:
        table = app.screen.query_one("#tasks-table", DataTable)
        return table.row_count > 0 and str(table.get_cell(TASK, "accounts")).endswith(f"/{n}")

    def table() -> Any:
        return app.screen.query_one(UserListPane).table

    deadline = time.perf_counter() + args.timeout
    async with app.run_test(size=SIZE) as pilot:
        if not await _until(pilot, listed, deadline):
            out.put("editor", {"status": "timeout"})
            return
        began = time.perf_counter()
        await pilot.press("e")
        if not await _until(pilot, lambda: isinstance(app.screen, TaskEditorScreen) and table() is not None, deadline):
            out.put("editor", {"status": "timeout"})
            return
        opened = time.perf_counter() - began
        # as the key rows send keys: pilot.press would also wait out the tab underline's 0.3 s slide, which
        # nobody waits for (the table is there and focused before it ends)
        await _handled_key(pilot, "f5")
        if not await _until(pilot, lambda: table().row_count == n and app.focused is table(), deadline):
            out.put("editor", {"status": "timeout"})
            return
        shown = time.perf_counter() - began
        out.put("editor", {"seconds": shown, "detail": f"from e in the task list; editor open at {opened:.2f} s"})
        await pilot.wait_for_animation()  # the underline's slide is no key's doing
        keys: dict[str, Any] = {}
        deadline = time.perf_counter() + args.timeout
        for way in ("pilot", "handled"):
            for name, count in (("down", args.keys), ("pagedown", args.pagedowns)):
                series: list[float] = keys.setdefault(f"{way} {name}", [])
                for _ in range(count):
                    if time.perf_counter() > deadline:
                        break
                    series.append(await (_pilot_key(pilot, name) if way == "pilot" else _handled_key(pilot, name)))
                    out.put("keys", keys)
        keys["cursor_row"] = table().cursor_row
        out.put("keys", keys)
        # `/`, a search typed key by key, enter; then down keys in the rows it found
        typed: list[float] = keys.setdefault("handled search", [])
        await _handled_key(pilot, "slash")
        for char in [*SEARCH, "enter"]:
            typed.append(await _handled_key(pilot, char, None if char == "enter" else char))
        found: list[float] = keys.setdefault("handled down in search", [])
        for _ in range(args.keys):
            if time.perf_counter() > deadline:
                break
            found.append(await _handled_key(pilot, "down"))
        keys["search_rows"] = table().row_count
        out.put("keys", keys)


async def _pilot_key(pilot: Any, name: str) -> float:
    """ms for ``pilot.press`` + ``pilot.pause``: Textual's own wait for the app to go idle included."""
    began = time.perf_counter()
    await pilot.press(name)
    await pilot.pause()
    return (time.perf_counter() - began) * 1000


async def _handled_key(pilot: Any, name: str, character: str | None = None) -> float:
    """ms from the key's arrival until all it caused is done and painted: the event loop has nothing left to run
    (every message the key caused handled, and those they caused), the screen is laid out and painted, and so on
    while the screen has more to do after a paint (a footer rebuilt after the refresh, say).

    It waits by yielding to the loop, not by ``pilot._wait_for_screen``: that posts a callback to every widget
    of the screen and waits for each to run it, tens of ms on the editor's ~180 widgets on a busy 2-core
    machine with no key at all, work that a real key does not cause."""
    from textual import events

    app = pilot.app
    loop = asyncio.get_running_loop()
    began = time.perf_counter()
    key = events.Key(name, character)
    key.set_sender(app)
    app._driver.send_message(key)
    for _ in range(100):  # paints: a key needs one or two
        for _ in range(1_000_000):  # bounded: the loop goes quiet after a few hundred rounds at most
            await asyncio.sleep(0)
            if not loop._ready:  # type: ignore[attr-defined]  # asyncio's run queue: empty when every task waits
                break
        screen = app.screen
        if not (
            screen._layout_required
            or screen._scroll_required
            or screen._repaint_required
            or screen._recompose_required
            or screen._dirty_widgets
            or screen._callbacks
        ):
            break
        screen._on_timer_update()
    return (time.perf_counter() - began) * 1000


# --------------------------------------------------------------------------------------------
# The table and the command line.


def render(s: Scale) -> str:
    head = ("measure", "users", "value", "peak RSS MB", "target", "", "detail")
    lines = []
    for r in s.rows:
        value = (
            r.status if r.value is None else f"{r.value:.3f} {r.unit}" if r.unit == "s" else f"{r.value:.1f} {r.unit}"
        )
        verdict = "" if r.met is None else ("met" if r.met else "NOT met")
        detail = r.detail if r.status == "ok" or r.value is None else f"{r.status}; {r.detail}"
        rss = "-" if r.rss_mb is None else f"{r.rss_mb:.0f}"
        lines.append((r.measure, f"{r.users:,}", value, rss, r.target_text, verdict, detail))
    widths = [max(len(x[i]) for x in [head, *lines]) for i in range(len(head) - 1)]
    out = []
    for cells in [head, *lines]:
        out.append(
            "  ".join(c.ljust(w) if i != 1 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=False)))
            + "  "
            + cells[-1]
        )
    return "\n".join(line.rstrip() for line in out)


def parse_users(text: str) -> list[int]:
    try:
        values = [int(v.replace("_", "")) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--users takes numbers separated by commas, not {text!r}") from None
    if not values or any(v < 1 or v > 2_000_000 for v in values):
        raise argparse.ArgumentTypeError("--users: each count is 1..2,000,000")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description="mailmig-tui with one task of many accounts")
    p.add_argument("--users", type=parse_users, default=[100_000], help="accounts in the task, e.g. 20000,100000")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds before one measure is killed (default 300)")
    p.add_argument("--keys", type=int, default=50, help="down keys sent in the user table (default 50)")
    p.add_argument("--pagedowns", type=int, default=5, help="pagedown keys sent after them (default 5)")
    p.add_argument(
        "--delegate", action="store_true", help="IMAP source with the delegate account: no passwords in the CSV"
    )
    p.add_argument("--no-state", action="store_true", help="skip the rows measured after every account ran once")
    p.add_argument("--workdir", help="where homes, CSV files and logs go (default: a new temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the homes and CSV files")
    p.add_argument("--json-out", help="results file (default WORKDIR/scale.json)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        args.users = args.users[0]
    if args.timeout <= 0 or not 0 <= args.keys <= 1000 or not 0 <= args.pagedowns <= 100:
        p.error("--timeout must be > 0, --keys 0..1000, --pagedowns 0..100")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="mailmig-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    s = Scale(args, workdir)
    (workdir / "guard").mkdir(exist_ok=True)
    (workdir / "guard" / "sitecustomize.py").write_text(GUARD)
    s.netlog.unlink(missing_ok=True)
    say(f"scale bench work dir {workdir}; {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.2f}")
    try:
        measure_startup(s, workdir / "home-startup")
        for n in args.users:
            measure_users(s, n)
    except KeyboardInterrupt:
        tools.kill_running()
        say("bench.scale: interrupted")
    finally:
        if not args.keep:
            for path in workdir.glob("home-*"):
                shutil.rmtree(path, ignore_errors=True)
            for path in workdir.glob("users-*.csv"):
                path.unlink(missing_ok=True)
    network = s.netlog.read_text().splitlines() if s.netlog.exists() else []
    s.notes.append(
        "network: no child opened an IP connection or looked up a name"
        if not network
        else f"network: {len(network)} attempt(s), see {s.netlog}: {network[:3]}"
    )
    json_out = Path(args.json_out) if args.json_out else workdir / "scale.json"
    json_out.write_text(
        json.dumps(
            {
                "code": code_version(),
                "load1": os.getloadavg()[0],
                "rows": [asdict(r) for r in s.rows],
                "notes": s.notes,
            },
            indent=2,
        )
    )
    say("")
    say(render(s))
    say("")
    for r in s.rows:
        if r.met is not None:
            say(
                f"  [{'met' if r.met else 'NOT met'}] {r.measure}, {r.users:,} users {r.target_text}: {render_value(r)}"
            )
    for note in s.notes:
        say(f"  note: {note}")
    say(f"results: {json_out}")
    return 0


def render_value(r: Row) -> str:
    return r.status if r.value is None else f"{r.value:g} {r.unit}"


if __name__ == "__main__":
    sys.exit(main())

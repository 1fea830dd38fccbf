"""The headless front end: ``mailmig-tui [COMMAND]``. Without a command it starts the terminal app.

Exit codes (DESIGN.md §7): 0 everything succeeded; 1 some accounts failed; 2 invalid input or
configuration (nothing was changed); 3 the run could not start; 130 interrupted (resumable); 141 the
reader of the output went away (``| head``; a run stops cleanly, as for 130).

With ``--json`` an error is also one JSON object on stdout: ``{"error", "exit_code"}`` plus, where known,
``"file"``, ``"line"``, ``"problems"`` (``[{"field", "message"}]``) and ``"lines"`` (an import's bad
lines, ``[{"line", "message"}]``); the message goes to stderr as without ``--json``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import functools
import gc
import math
import os
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TextIO, TypeVar

from mailmig_tui import jsontext
from mailmig_tui.engine import store
from mailmig_tui.engine.model import (
    SOURCE_TYPE_LABELS,
    Problem,
    Task,
    User,
    account_key,
    missing_destination_password,
    settings_warnings,
    task_warnings,
    to_dict,
    validate_settings,
    validate_task,
)
from mailmig_tui.engine.skips import skips_text
from mailmig_tui.engine.state import AccountSummary, StateDB, report_text
from mailmig_tui.engine.textsafe import escape_controls
from mailmig_tui.engine.units import human_bytes, tenths

# What only some commands need is imported by them: report and show of 100,000 accounts have to
# finish within a second (issue 14), and the runner, the sources and the user-list parser take a
# tenth of it to import.
if TYPE_CHECKING:
    from mailmig_tui.engine import events, runner, userlist

T = TypeVar("T")

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_INVALID = 2
EXIT_CANNOT_START = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell shows for a tool whose reader went away


class CliError(Exception):
    """A message for the admin and the exit code; ``where`` (file, line, problems, lines) goes into --json."""

    def __init__(self, message: str, code: int = EXIT_INVALID, **where: Any) -> None:
        super().__init__(message)
        self.code = code
        self.where = {k: v for k, v in where.items() if v not in (None, "", [], ())}


class _Parser(argparse.ArgumentParser):
    """Bad arguments: the usage on stderr, then a CliError (so that --json gets its JSON error too)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise CliError(f"{message} (see: {self.prog} --help)")


def _say(text: str = "", file: TextIO | None = None, *, flush: bool = False) -> None:
    """Print one line; control characters in it (from a folder name, a server's reply) show escaped."""
    print(escape_controls(text), file=file, flush=flush)


def _say_lines(lines: Sequence[str], batch: int = 4096) -> None:
    """Print lines on stdout as :func:`_say` prints each, escaped and written ``batch`` lines at a time:
    100,000 lines one by one take a second, and in one text they cost three copies of a report's size
    (a page fault for each of its 4 KiB pages)."""
    for start in range(0, len(lines), batch):
        part = lines[start : start + batch]
        text = "\n".join(part) + "\n"
        if text.count("\n") == len(part):  # no line holds a newline of its own: the others are ours
            text = escape_controls(text, keep_newlines=True)
        else:
            text = "".join([escape_controls(line) + "\n" for line in part])
        _write_out(text)


def _err(message: str) -> None:
    print(escape_controls(f"mailmig-tui: {message}", keep_newlines=True), file=sys.stderr)


def _load(name: str, *, secrets: bool = True) -> Task:
    return store.load_task(name, secrets=secrets)


# JSON escapes C0 itself; DEL, C1 and the line separators are written \uXXXX too (valid JSON: they
# can only be inside strings), so a terminal showing the output gets no control character.
_JSON_CONTROLS = {c: f"\\u{c:04x}" for c in (*range(0x7F, 0xA0), 0x2028, 0x2029)}
_JSON_CONTROL = re.compile("[\x7f-\x9f\u2028\u2029]")


def _emit_json(data: Any) -> None:
    """``data`` as ``json.dumps(data, indent=2, ensure_ascii=False, default=str)`` writes it (made faster)."""
    text = jsontext.dumps(data)
    # scans at C speed (the translation goes through the 40 MB of a large report character by character)
    has_controls = ("\x7f" in text) if text.isascii() else _JSON_CONTROL.search(text) is not None
    if has_controls:
        text = text.translate(_JSON_CONTROLS)
    _write_out(text + "\n")


def _write_out(text: str, piece: int = 65536) -> None:
    """Write ``text`` to stdout in pieces: one big write into a pipe whose reader goes away can end
    short without an error, while a piece after that raises BrokenPipeError (main() exits 141)."""
    for start in range(0, len(text), piece):
        sys.stdout.write(text[start : start + piece])


# --------------------------------------------------------------------------------------------
# Commands.


def cmd_list(args: argparse.Namespace) -> int:
    rows = []
    for name in store.list_tasks():
        try:
            task = _load(name)
            rows.append({"name": name, "type": task.source.type, "accounts": len(task.users), "error": None})
        except store.ConfigError as exc:
            rows.append({"name": name, "type": None, "accounts": None, "error": str(exc)})
            _err(str(exc))
    if args.json:
        _emit_json(rows)
    elif not rows:
        _say(f"No tasks yet (they live in {store.paths().tasks_dir}).")
    else:
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            if r["error"]:
                _say(f"{r['name']:<{width}}  BROKEN")
            else:
                _say(
                    f"{r['name']:<{width}}  {SOURCE_TYPE_LABELS.get(r['type'], r['type']):<16}  {r['accounts']} account(s)"
                )
    return EXIT_INVALID if any(r["error"] for r in rows) else EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    task = _load(args.task)
    if args.json:
        data = to_dict(dataclasses.replace(task, users=[]))
        data["users"] = _shown_users(task.users)
        _emit_json(data)
        return EXIT_OK
    src = task.source
    lines = [f"Task {task.name}: {SOURCE_TYPE_LABELS.get(src.type, src.type)}"]
    if src.type == "imap":
        lines.append(f"  server      {src.host}:{src.port} ({src.security}), path prefix {src.path_prefix or '(auto)'}")
        if src.delegate.enabled:
            lines.append(f"  delegate    {src.delegate.login} ({src.delegate.method})")
        lines += [f"  warning     {w}" for w in task_warnings(task)]
    elif src.type == "google":
        lines.append(f"  key file    {src.key_file}, labels: {src.label_strategy}")
    else:
        lines.append(f"  tenant      {src.tenant}, client {src.client_id}, auth {src.auth}")
    lines.append(
        f"  run         {task.run.accounts_per_period or 'all'} account(s) per period, concurrency {task.run.concurrency}"
    )
    s = task.schedule
    if s.enabled:
        repeat = f", every {s.repeat_hours} h" if s.repeat_hours else ""
        lines.append(f"  schedule    {','.join(s.days)} at {s.start}{repeat}{' until ' + s.end if s.end else ''}")
    else:
        lines.append("  schedule    off")
    f = task.filters
    lines.append(
        f"  filters     before {f.skip_before or '-'}, after {f.skip_after or '-'}, trash {'skip' if f.skip_trash else 'keep'}, "
        f"junk {'skip' if f.skip_junk else 'keep'}, max {f.max_size_kb or 'no limit'} KB"
    )
    if f.mailboxes.enabled:
        lines.append(f"  mailboxes   {f.mailboxes.policy} {f.mailboxes.keywords} except {f.mailboxes.exceptions}")
    lines.append(f"  users       {len(task.users)}")
    lines += [f"    {u.source} -> {u.destination}  password {'•••' if u.password else '(none)'}" for u in task.users]
    _say_lines(lines)
    return EXIT_OK


def _shown_users(users: list[User]) -> list[dict[str, Any]]:
    """show --json's user list: each user's fields as ``to_dict`` gives them (no passwords), with "password":
    "set" or "" and "destination_password": "set" when there is one. The fields are read by name:
    ``to_dict`` user by user takes most of a second for 100,000 users."""
    names = list(to_dict(User("", "")))
    rows = [{name: getattr(u, name) for name in names} for u in users]
    for user, row in zip(users, rows, strict=True):
        row["password"] = "set" if user.password else ""
        if user.destination_password:
            row["destination_password"] = "set"
    return rows


def cmd_validate(args: argparse.Namespace) -> int:
    task = _load(args.task)
    settings = store.load_settings()
    others = [n for n in store.list_tasks() if n != task.name]
    problems = validate_task(task, existing_names=others, settings=settings) + validate_settings(settings)
    problems += missing_destination_password(settings)
    warnings = task_warnings(task) + settings_warnings(settings)
    if args.json:
        _emit_json(
            {
                "task": task.name,
                "problems": _problem_dicts(problems),
                "warnings": _problem_dicts(warnings),
            }
        )
        return EXIT_INVALID if problems else EXIT_OK
    if problems:
        _say(f"{store.paths().task_file(task.name)}: {len(problems)} problem(s)", file=sys.stderr)
        for p in problems:
            _say(f"  - {p}", file=sys.stderr)
    else:
        _say(f"Task {task.name} is valid.")
    for w in warnings:
        _say(f"warning: {w}", file=sys.stderr)
    return EXIT_INVALID if problems else EXIT_OK


def cmd_import_users(args: argparse.Namespace) -> int:
    from mailmig_tui.engine import userlist

    task = _load(args.task)
    name = "<stdin>" if args.file == "-" else args.file
    try:
        text = userlist.decode(sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes())
    except OSError as exc:
        raise CliError(f"cannot read the file: {exc.strerror}", file=name) from None
    except userlist.DecodeError as exc:
        raise CliError(exc.reason, file=name, line=exc.line) from None
    parsed = userlist.parse(text, task.source)
    if not parsed.users and not parsed.errors:
        what = "only a header line" if parsed.header_skipped else "no line with an account"
        raise CliError(
            f"no accounts to import: the file holds {what}; one account per line: "
            "source account, source password, destination account",
            file=name,
        )
    try:
        summary = userlist.apply(task, parsed, valid_only=args.valid_only)
    except userlist.ImportRejected as exc:
        raise CliError(str(exc), file=name, lines=[_line_dict(e) for e in parsed.errors]) from None
    store.save_task(task, old_name=task.name)
    for e in parsed.errors:
        _say(f"{name}: skipped {e}", file=sys.stderr)
    if args.json:
        _emit_json(
            {
                "added": summary.added,
                "updated": summary.updated,
                "rejected": [_line_dict(e) for e in parsed.errors],
                "header_skipped": parsed.header_skipped,
            }
        )
    else:
        header = (
            f" (the first line was taken as a column header and skipped: {parsed.separator.join(parsed.header)})"
            if parsed.header_skipped
            else ""
        )
        _say(
            f"Imported into {task.name}: {summary.added} added, {summary.updated} updated, "
            f"{summary.rejected} line(s) rejected{header}."
        )
    return EXIT_OK


def _line_dict(e: userlist.LineError) -> dict[str, Any]:
    return {"line": e.line, "message": e.message}


def cmd_export_users(args: argparse.Namespace) -> int:
    from mailmig_tui.engine import userlist

    task = _load(args.task)
    _write_out(userlist.export(task, with_passwords=args.with_passwords, exact=args.exact))
    return EXIT_OK


def _human_bytes(n: float) -> str:
    return human_bytes(n, "B")


@functools.cache
def skip_codes() -> dict[str, str]:
    """Reason codes for --json (the table in README "Commands"): the engine words its reasons for people;
    scripts get one stable code per reason the engine distinguishes. (Made when first needed: the
    modules that word them take a twentieth of a second to import.)"""
    from mailmig_tui.engine.account import SKIP_VANISHED
    from mailmig_tui.engine.skips import SKIP_EXISTING, SKIP_TOO_BIG, SKIP_TOO_NEW, SKIP_TOO_OLD
    from mailmig_tui.engine.sources.gmail import SKIP_CHAT

    return {
        SKIP_TOO_OLD: "too_old",
        SKIP_TOO_NEW: "too_new",
        SKIP_TOO_BIG: "too_large",
        SKIP_EXISTING: "duplicate",
        SKIP_VANISHED: "vanished",
        SKIP_CHAT: "not_mail",
    }


FOLDER_SKIP_CODES = (
    ("not selectable", "not_selectable"),
    ("virtual folder", "virtual"),
    ("Trash skipped", "trash"),
    ("Junk skipped", "junk"),
    ("mailbox filter:", "filtered"),
)
FAILURE_CODES = (
    ("over the destination's APPENDLIMIT", "too_large"),
    ("refused by the destination", "refused"),
    ("not appended", "not_appended"),
)


def failure_code(reason: str) -> str:
    return next((code for text, code in FAILURE_CODES if text in reason), "error")


def _skip_codes(counter: Mapping[str, int]) -> dict[str, int]:
    if not counter:
        return {}
    codes = skip_codes()
    out: Counter[str] = Counter()
    for reason, n in counter.items():
        out[codes.get(reason, "other")] += n
    return dict(out)


def _folder_skip_codes(counter: dict[str, int]) -> dict[str, int]:
    out: Counter[str] = Counter()
    for reason, n in counter.items():
        out[next((code for text, code in FOLDER_SKIP_CODES if reason.startswith(text)), "other")] += n
    return dict(out)


def _iso(ts: float | None) -> str | None:
    """An epoch time as ISO 8601 with this machine's UTC offset (2026-03-01T22:00:05+01:00): what
    ``datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")`` writes, in a fifth of
    its time (a report of 100,000 accounts has 200,000 of them)."""
    if not ts:
        return None
    fraction, whole = math.modf(ts)
    us = round(fraction * 1e6)  # datetime rounds to the microsecond, half to even, then drops them
    return _iso_second(int(whole) + (us >= 1_000_000) - (us < 0))


@functools.lru_cache(maxsize=1024)
def _iso_second(second: int) -> str:
    t = time.localtime(second)
    sign, offset = ("-", -t.tm_gmtoff) if t.tm_gmtoff < 0 else ("+", t.tm_gmtoff)
    hours, rest = divmod(offset, 3600)
    zone = f"{sign}{hours:02d}:{rest // 60:02d}" + (f":{rest % 60:02d}" if rest % 60 else "")
    # datetime shows a leap second as :59
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{min(t.tm_sec, 59):02d}{zone}"
    )


class _Printer:
    """Prints the run's events: log lines as they come, and on a terminal a progress line for the
    whole run (messages, MB, MB/s, ETA) summed over the accounts being copied."""

    def __init__(self, verbose: bool, out: TextIO | None, cancel: threading.Event, dry_run: bool) -> None:
        self.tty = sys.stderr.isatty()
        self.min = "debug" if verbose else "info"
        self.out = out
        self.cancel = cancel
        self.dry_run = dry_run  # the plan and the summary say what a dry run found, not "complete"
        self.reader_gone = False
        self._lock = threading.Lock()
        self._progress: dict[str, events.FolderProgress] = {}

    def _status_line(self) -> str:
        ps = list(self._progress.values())
        done, total = sum(p.account_done for p in ps), sum(p.account_total for p in ps)
        done_b, total_b = sum(p.bytes_done for p in ps), sum(p.bytes_total for p in ps)
        rate = sum(p.bytes_per_s for p in ps)
        eta = f", ETA {_duration((total_b - done_b) / rate)}" if rate > 0 else ""
        return (
            f"{len(ps)} account(s) copying: {done}/{total} messages, {_human_bytes(done_b)} of "
            f"{_human_bytes(total_b)}, {_human_bytes(rate)}/s{eta}"
        )

    def __call__(self, event: events.Event) -> None:
        with self._lock:
            if self.reader_gone:
                return
            try:
                self._print(event)
            except BrokenPipeError:  # | head went away: stop cleanly, as for a hangup; main() exits 141
                self.reader_gone = True
                self.cancel.set()
                _silence_stdout()
                _say(
                    "mailmig-tui: the output's reader went away: stopping after the current batch "
                    "(everything done so far is kept; run again to resume)",
                    file=sys.stderr,
                )

    def _print(self, event: events.Event) -> None:
        from mailmig_tui.engine import events

        if isinstance(event, events.FolderProgress):
            self._progress[event.account] = event
            if self.tty:
                sys.stderr.write("\r\x1b[K" + self._status_line())
                sys.stderr.flush()
            return
        if isinstance(event, events.AccountFinished):
            self._progress.pop(event.account, None)
        if self.dry_run and isinstance(event, events.AccountFinished | events.RunFinished):
            return
        severity, folder, text = events.describe(event)
        if events.SEVERITIES.index(severity) < events.SEVERITIES.index(self.min):
            return
        if self.tty:
            sys.stderr.write("\r\x1b[K")
        where = " ".join(x for x in (event.account, f"[{folder}]" if folder else "") if x)
        stream = sys.stderr if severity in ("warning", "error") else self.out
        _say(f"{severity.upper():7} {where + ': ' if where else ''}{text}", stream, flush=True)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _install_stop_handlers(cancel: threading.Event) -> None:
    def stop(signum: int, _frame: object) -> None:
        if cancel.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        cancel.set()
        _say(
            "mailmig-tui: stopping after the current batch (everything done so far is kept; run again to resume)",
            file=sys.stderr,
        )

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
            continue  # started under nohup: the admin wants the run to outlive the session
        signal.signal(sig, stop)


def cmd_run(args: argparse.Namespace) -> int:
    from mailmig_tui.engine import runner

    task = _load(args.task)
    settings = store.load_settings()
    problems = validate_task(task, settings=settings) + validate_settings(settings)
    problems += missing_destination_password(settings)
    if problems:
        raise CliError(
            f"task {task.name} cannot run:\n"
            + "\n".join(f"  - {escape_controls(str(p))}" for p in problems)
            + "\n(see: mailmig-tui validate)",
            problems=_problem_dicts(problems),
        )
    cancel = threading.Event()
    _install_stop_handlers(cancel)
    printer = _Printer(args.verbose, sys.stderr if args.json else None, cancel, args.dry_run)
    try:
        result = runner.run_task(
            task, settings, accounts=args.account or (), dry_run=args.dry_run, cancel=cancel, sink=printer
        )
    except runner.RunError as exc:
        raise CliError(str(exc), EXIT_CANNOT_START) from None
    except runner.RunConfigError as exc:
        raise CliError(str(exc)) from None
    if printer.reader_gone:
        return EXIT_BROKEN_PIPE
    if args.dry_run:
        _print_plan(result, sys.stderr if args.json else sys.stdout)
    rows = [_result_dict(r, result.reports.get(r.account) if args.dry_run else None) for r in result.accounts]
    if args.json:
        _emit_json(rows)
    else:
        _say()
        for r, row in zip(result.accounts, rows, strict=True):
            done = f"{row['would_copy']} would copy" if args.dry_run else f"{r.copied} copied"
            line = (
                f"{r.account} → {r.destination}: {row['status']}; {r.folders} folder(s), {done}, "
                f"skipped: {skips_text(r.skipped)}, {r.failed} failed, {_human_bytes(r.bytes)}, {tenths(r.duration)} s"
            )
            _say(line + (f"\n    {r.error}" if r.error else ""))
    if result.status == "stopped":
        return EXIT_INTERRUPTED
    return EXIT_SOME_FAILED if any(r.status in ("failed", "partial") or r.failed for r in result.accounts) else EXIT_OK


def _result_dict(r: events.AccountResult, plan: list[Any] | None = None) -> dict[str, Any]:
    """An account's result for --json; with a dry run's ``plan``, its status is "planned" (not
    "complete": nothing was copied) and ``would_copy`` counts what a run would copy."""
    row = {
        "account": r.account,
        "destination": r.destination,
        "status": "planned" if plan is not None and r.status == "complete" else r.status,
        "folders": r.folders,
        "copied": r.copied,
        "skipped": _skip_codes(r.skipped),
        "skipped_folders": _folder_skip_codes(r.skipped_folders),
        "failed_folders": dict(r.folder_errors),
        "failed": r.failed,
        "bytes": r.bytes,
        "duration": r.duration,
        "error": r.error,
    }
    if plan is not None:
        row["would_copy"] = sum(f.to_copy for f in plan)
        row["would_copy_bytes"] = sum(f.to_copy_bytes for f in plan)
    return row


def _print_plan(result: runner.RunResult, out: TextIO) -> None:
    for account, reports in result.reports.items():
        _say(file=out)
        _say(f"Plan for {account} (nothing was written):", file=out)
        for f in reports:
            if f.skip_reason:
                action = f"skipped: {f.skip_reason}"
            elif f.error:
                action = f"failed: {f.error}"
            elif f.unchanged:
                action = "unchanged since the last run"
            else:
                size = ("at most " if f.to_copy_at_most else "") + _human_bytes(f.to_copy_bytes)
                action = f"copy {f.to_copy} ({size}), skip: {skips_text(f.skipped)}"
            _say(f"  {f.source} → {f.dest}: {action}", file=out)
            for note in f.notes:
                _say(f"      note: {note}", file=out)


def cmd_verify(args: argparse.Namespace) -> int:
    from mailmig_tui.engine import verify

    task = _load(args.task)
    settings = store.load_settings()
    users = task.users
    if args.account:
        users = [u for u in task.users if u.source in args.account]
        missing = set(args.account) - {u.source for u in users}
        if missing:
            raise CliError(f"not in the user list: {', '.join(sorted(missing))}")
    verdicts = verify.verify_users(task, settings, users)
    if args.json:
        _emit_json(
            [
                {
                    "account": v.account,
                    "destination": v.destination,
                    "ok": v.ok,
                    "source_ok": v.source_ok,
                    "source": v.source_detail,
                    "destination_ok": v.dest_ok,
                    "destination_detail": v.dest_detail,
                }
                for v in verdicts
            ]
        )
    else:
        for v in verdicts:
            _say(f"{'OK  ' if v.ok else 'FAIL'} {v.account} → {v.destination}: {v.text()}")
    return EXIT_OK if all(v.ok for v in verdicts) else EXIT_SOME_FAILED


# The figures of an account the state knows nothing of (never run, or forgotten).
_NOT_STARTED = AccountSummary("", "", "not started", 0, 0, 0, {}, 0, 0, None, None, 0.0, "")


class _InThread(Generic[T]):
    """``fn()`` run in a thread of its own from now on; :meth:`result` waits for it, then returns what it
    returned or raises what it raised."""

    def __init__(self, fn: Callable[[], T], name: str) -> None:
        self._fn, self._out = fn, list[T]()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._out.append(self._fn())
        except BaseException as exc:  # handed to the waiting thread
            self._error = exc

    def result(self) -> T:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._out[0]


def cmd_report(args: argparse.Namespace) -> int:
    if args.json:
        return _report_json(args)
    if store.validate_task_name(args.task):
        _load(args.task)  # raises: the name's problem, as every command says it
    state_file = store.paths().state_file(args.task)

    def read_texts() -> dict[str, str]:
        with contextlib.closing(StateDB.open_readonly(state_file)) as db:
            return db.report_texts()

    # SQLite writes every account's line in a thread (0.1-0.35 s for 100,000 accounts, mostly without
    # holding the interpreter: StateDB.report_texts) while the rest is done here.
    reading = _InThread(read_texts, "report-texts")
    try:
        task = _load(args.task, secrets=False)  # a report shows no password
        users = task.users
        keys = [u.source.strip().casefold() for u in users]  # account_key, inlined: 100,000 calls
        heads = [f"  {u.source} → {u.destination}: " for u in users]
        with contextlib.closing(StateDB.open_readonly(state_file)) as db:
            last, errors, failures = db.last_run(), db.last_errors(), db.failed_by_account()
        noted = [i for i, k in enumerate(keys) if k in errors or k in failures]
    except BaseException:
        with contextlib.suppress(Exception):  # the task's error is the one to show
            reading.result()
        raise
    texts = reading.result()
    never = report_text(_NOT_STARTED)
    # the accounts' lines in one comprehension (100,000 of them); the lines of the accounts with an error
    # or failed messages are put under theirs after
    accounts = [head + texts.get(k, never) for head, k in zip(heads, keys, strict=True)]
    header = f"Task {task.name}: last run {_when(last['started']) if last else 'never'}" + (
        f" ({last['status']})" if last else ""
    )
    lines, done = [header], 0
    for i in noted:  # the lines up to this account's, then its notes (slices: a few thousand steps, not 100,000)
        error = errors.get(keys[i], "")
        lines += accounts[done : i + 1]
        lines += [f"      last error: {error}"] * bool(error)
        lines += [f"      failed: [{f}] message {m}: {reason}" for f, m, reason in failures.get(keys[i], ())[:20]]
        done = i + 1
    lines += accounts[done:]
    _say_lines(lines)
    return EXIT_OK


def _report_json(args: argparse.Namespace) -> int:
    task = _load(args.task, secrets=False)  # a report shows no password
    with contextlib.closing(StateDB.open_readonly(store.paths().state_file(task.name))) as db:
        summaries, last, failures = db.summaries(), db.last_run(), db.failed_by_account()
    users = task.users
    keys = [u.source.strip().casefold() for u in users]  # account_key, inlined: 100,000 calls
    states = [summaries.get(k, _NOT_STARTED) for k in keys]
    if last:
        last = last | {"started": _iso(last["started"]), "finished": _iso(last["finished"])}

    def column(name: str) -> list[Any]:
        return list(map(attrgetter(name), states))

    accounts = jsontext.Columns(
        {
            "account": [u.source for u in users],
            "destination": [u.destination for u in users],
            "status": column("status"),
            "folders": column("folders"),
            "copied": column("copied"),
            "skipped": [_skip_codes(s.skipped) for s in states],
            "last_started": [_iso(s.last_started) for s in states],
            "last_finished": [_iso(s.last_finished) for s in states],
            "failed": column("failed"),
            "bytes": column("bytes"),
            "duration": column("last_duration"),
            "last_error": column("last_error"),
            "failed_messages": [
                [{"folder": f, "id": i, "code": failure_code(r), "reason": r} for f, i, r in failures[k]]
                if k in failures
                else []
                for k in keys
            ],
        }
    )
    _emit_json({"task": task.name, "last_run": last, "accounts": accounts})
    return EXIT_OK


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return dt.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M")


def cmd_forget(args: argparse.Namespace) -> int:
    from mailmig_tui.engine import runner

    task = _load(args.task)
    p = store.paths()
    with runner.TaskLock(runner.lock_path(p, task.name), "forget"):
        db = StateDB(p.state_file(task.name))
        try:
            for account in args.account or [None]:
                db.forget(account_key(account) if account else None)
        finally:
            db.close()
    what = ", ".join(args.account) if args.account else "every account"
    _say(f"Forgot the saved state of {what} in {task.name}; the next run rescans (nothing is copied twice).")
    return EXIT_OK


def cmd_scheduler(args: argparse.Namespace) -> int:
    from mailmig_tui.engine import events
    from mailmig_tui.engine.scheduler import Scheduler, print_sink

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        print_sink(events.LogLine("scheduler", severity="info", text=f"signal {signum}: stopping the runs cleanly"))
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    Scheduler(print_sink).serve(stop, once=args.once, tick_s=args.tick)
    return EXIT_OK


def cmd_test_smtp(args: argparse.Namespace) -> int:
    settings = store.load_settings()
    if not settings.smtp.host:
        raise CliError(
            f"no SMTP relay is set: fill in its host in Settings (g), or [smtp] host in {store.paths().settings_file}"
        )
    to = args.to or [settings.smtp.sender]
    from mailmig_tui.engine import notify  # smtplib and ssl: only for this command

    try:
        notify.send(settings.smtp, notify.test_message(settings.smtp, to))
    except notify.NotifyError as exc:
        raise CliError(str(exc), EXIT_SOME_FAILED) from None
    _say(f"Test message sent to {', '.join(to)} through {settings.smtp.host}:{settings.smtp.port}.")
    return EXIT_OK


def cmd_signin(args: argparse.Namespace) -> int:
    from mailmig_tui.engine.sources import graph_auth

    task = _load(args.task)
    if task.source.type != "microsoft365" or task.source.auth != "device":
        raise CliError(f'task {task.name} does not use the device-code sign-in (Microsoft 365 with auth = "device")')
    cancel = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda _signum, _frame: cancel.set())
    try:
        flow = graph_auth.start_signin(task)
        _say(flow.message or f"To sign in, open {flow.verification_uri} and enter the code {flow.user_code}.")
        _say(f"Waiting for the sign-in (the code is valid for {flow.expires_in // 60} minutes; Ctrl-C cancels)…")
        account = flow.wait(cancel)
    except graph_auth.SignInCancelled:
        _err("sign-in cancelled; nothing was saved")
        return EXIT_INTERRUPTED
    except graph_auth.GraphError as exc:
        raise CliError(f"sign-in failed: {exc}", EXIT_SOME_FAILED) from None
    finally:
        signal.signal(signal.SIGINT, previous)
    _say(f"Signed in as {account}; the sign-in is kept in {graph_auth.cache_file(task.name)} (mode 0600).")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from mailmig_tui.demo import run_demo

    return run_demo(headless=args.headless, per_user=args.messages)


def cmd_app(args: argparse.Namespace) -> int:
    from mailmig_tui.app import MailmigApp

    for name in ("COLUMNS", "LINES"):  # an exported size would pin the screen and ignore resizes
        os.environ.pop(name, None)
    app = MailmigApp()
    app.run()
    return app.return_code or EXIT_OK  # 130 when a hangup stopped the runs


# --------------------------------------------------------------------------------------------
# Parser.


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("mailmig-tui")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


class _VersionAction(argparse.Action):
    """``--version``: argparse's, but the version is looked up only when asked for (not at every start)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        kwargs.setdefault("help", "show program's version number and exit")
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> NoReturn:
        print(f"{parser.prog} {_version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mailmig-tui",
        description="Migrate whole organisations' mailboxes into this mail server. Without a command, start the app.",
        epilog="Exit codes: 0 all succeeded, 1 some accounts failed, 2 invalid input/configuration, "
        "3 run could not start, 130 interrupted (resumable), 141 the output's reader went away. With --json an "
        'error is a JSON object on stdout: {"error", "exit_code", "file", "line", "problems", "lines"}.',
    )
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help_text: str, *, json_out: bool = False):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        if json_out:
            p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
        return p

    add("list", cmd_list, "list the tasks", json_out=True)
    p = add("show", cmd_show, "show a task (passwords are never shown)", json_out=True)
    p.add_argument("task")
    p = add(
        "validate", cmd_validate, "check a task and the global settings; exit 2 when something is wrong", json_out=True
    )
    p.add_argument("task")
    p = add(
        "import-users",
        cmd_import_users,
        "import a CSV user list (source account, source password, destination account[, destination password])",
        json_out=True,
    )
    p.add_argument("task")
    p.add_argument("file", help='the CSV file; "-" reads it from standard input')
    p.add_argument("--valid-only", action="store_true", help="import the valid lines even if some lines are bad")
    p = add("run", cmd_run, "migrate the task's accounts now (resumes where an earlier run stopped)", json_out=True)
    p.add_argument("task")
    p.add_argument("--account", action="append", metavar="A", help="only this source account (repeatable)")
    p.add_argument(
        "--dry-run", action="store_true", help="print the folder mapping and what would be copied; write nothing"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="also print debug lines")
    p = add(
        "verify",
        cmd_verify,
        "check each account's source login and that its destination account is enabled",
        json_out=True,
    )
    p.add_argument("task")
    p.add_argument("--account", action="append", metavar="A", help="only this source account (repeatable)")
    p = add(
        "signin",
        cmd_signin,
        'sign in to Microsoft 365 for a task with auth = "device": prints a URL and a code, waits (Ctrl-C cancels)',
    )
    p.add_argument("task")
    p = add("report", cmd_report, "per-account summary of what was migrated", json_out=True)
    p.add_argument("task")
    p = add("forget", cmd_forget, "drop the saved state of a task's accounts (after pointing it at another source)")
    p.add_argument("task")
    p.add_argument("--account", action="append", metavar="A", help="only this source account (repeatable)")
    p = add("scheduler", cmd_scheduler, "start scheduled tasks when due (runs in the foreground; for systemd or tmux)")
    p.add_argument("--once", action="store_true", help="run whatever is due now, wait for it, and exit (for cron)")
    p.add_argument("--tick", type=float, default=20.0, help=argparse.SUPPRESS)
    p = add("test-smtp", cmd_test_smtp, "send a test message through the SMTP relay of the settings")
    p.add_argument("--to", action="append", metavar="ADDR", help="recipient (repeatable; default: the sender)")
    p = add("demo", cmd_demo, "a whole migration between two throwaway local IMAP servers, for a first try")
    p.add_argument("--headless", action="store_true", help="run the demo task without the app and print the report")
    p.add_argument("--messages", type=int, default=120, help="sample messages per demo user (default 120)")
    p = add("export-users", cmd_export_users, "write the user list as CSV on stdout (without passwords)")
    p.add_argument("task")
    p.add_argument("--with-passwords", action="store_true", help="include the passwords (handle the output with care)")
    p.add_argument(
        "--exact",
        action="store_true",
        help="values exactly as they are, for import-users (by default a cell a spreadsheet would run as a "
        "formula, starting with = + - @ tab or CR, gets a ' in front)",
    )
    return parser


# Commands that read (or write) a task, print and exit. Python's cycle collector, run again and again
# while 100,000 accounts are loaded and printed, takes half of their time; they make no garbage it
# would free before they exit anyway.
_ONE_SHOT = {cmd_list, cmd_show, cmd_validate, cmd_import_users, cmd_export_users, cmd_report}


def _problem_dicts(problems: Sequence[Problem]) -> list[dict[str, str]]:
    return [{"field": p.field, "message": p.message} for p in problems]


def _fail(message: str, code: int, as_json: bool, where: dict[str, Any]) -> int:
    """The error on stderr ("file, line N: message"), the same text with --json as a JSON object on
    stdout, with the place in fields; returns ``code``."""
    place = f"{where['file']}" + (f", line {where['line']}" if where.get("line") else "") if "file" in where else ""
    text = f"{place}: {message}" if place else message
    _err(text)
    if as_json:
        _emit_json({"error": text, "exit_code": code, **where})
    return code


def _leave(code: int) -> NoReturn:
    """End the process now, its output flushed (the kernel closes its files): the interpreter's teardown would
    first collect and then free the objects of 100,000 accounts one by one (a tenth of a second of a
    report) for memory the kernel takes back at once."""
    sys.stderr.flush()
    if "logging" in sys.modules:  # its handlers flushed and closed, as at a normal exit
        sys.modules["logging"].shutdown()
    os._exit(code)


def _silence_stdout() -> None:
    """The reader of stdout went away: what is still buffered (and any later write) goes nowhere, so
    Python's flush at exit raises nothing."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def run() -> NoReturn:
    """The ``mailmig-tui`` command: :func:`main` with its exit status, a one-shot command's without the
    interpreter's teardown."""
    sys.exit(main(leave=True))


def main(argv: Sequence[str] | None = None, *, leave: bool = False) -> int:
    """Run the command line ``argv``; its exit status. ``leave``: the process ends as soon as a one-shot
    command is done (see :func:`_leave`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    collecting = gc.isenabled()
    try:
        args = build_parser().parse_args(argv)
        one_shot = getattr(args, "func", None) in _ONE_SHOT
        if one_shot:
            gc.disable()
        code = getattr(args, "func", cmd_app)(args)
        sys.stdout.flush()  # here, so that a reader gone away is seen (and not at interpreter exit)
        if leave and one_shot:
            _leave(code)
        return code
    except store.ConfigError as exc:
        _err(str(exc))
        if as_json:
            where = {"file": str(exc.path), "line": exc.line, "problems": _problem_dicts(exc.problems)}
            _emit_json({"error": str(exc), "exit_code": EXIT_INVALID, **{k: v for k, v in where.items() if v}})
        return EXIT_INVALID
    except CliError as exc:
        return _fail(str(exc), exc.code, as_json, exc.where)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED, as_json, {})
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    finally:
        if collecting:  # main() called in a process that goes on (a test, a script)
            gc.enable()


if __name__ == "__main__":
    sys.exit(main())

"""The headless front end: ``mailmig-tui [COMMAND]``. Without a command it starts the terminal app.

Exit codes (DESIGN.md §7): 0 everything succeeded; 1 some accounts failed; 2 invalid input or
configuration (nothing was changed); 3 the run could not start; 130 interrupted (resumable).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from mailmig_tui.engine import events, notify, runner, store, userlist, verify
from mailmig_tui.engine.model import (
    SOURCE_TYPE_LABELS,
    Task,
    account_key,
    missing_destination_password,
    settings_warnings,
    task_warnings,
    to_dict,
    validate_settings,
    validate_task,
)
from mailmig_tui.engine.state import StateDB
from mailmig_tui.engine.textsafe import escape_controls

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_INVALID = 2
EXIT_CANNOT_START = 3
EXIT_INTERRUPTED = 130


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_INVALID) -> None:
        super().__init__(message)
        self.code = code


def _say(text: str = "", file: TextIO | None = None, *, flush: bool = False) -> None:
    """Print one line; control characters in it (from a folder name, a server's reply) show escaped."""
    print(escape_controls(text), file=file, flush=flush)


def _err(message: str) -> None:
    print(escape_controls(f"mailmig-tui: {message}", keep_newlines=True), file=sys.stderr)


def _load(name: str) -> Task:
    return store.load_task(name)


# JSON escapes C0 itself; DEL, C1 and the line separators are written \uXXXX too (valid JSON: they
# can only be inside strings), so a terminal showing the output gets no control character.
_JSON_CONTROLS = {c: f"\\u{c:04x}" for c in (*range(0x7F, 0xA0), 0x2028, 0x2029)}


def _emit_json(data: Any) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write(text.translate(_JSON_CONTROLS) + "\n")


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
    data = to_dict(task)
    for user, row in zip(task.users, data["users"], strict=True):
        row["password"] = "set" if user.password else ""
        if user.destination_password:
            row["destination_password"] = "set"
    if args.json:
        _emit_json(data)
        return EXIT_OK
    src = task.source
    _say(f"Task {task.name}: {SOURCE_TYPE_LABELS.get(src.type, src.type)}")
    if src.type == "imap":
        _say(f"  server      {src.host}:{src.port} ({src.security}), path prefix {src.path_prefix or '(auto)'}")
        if src.delegate.enabled:
            _say(f"  delegate    {src.delegate.login} ({src.delegate.method})")
        for w in task_warnings(task):
            _say(f"  warning     {w}")
    elif src.type == "google":
        _say(f"  key file    {src.key_file}, labels: {src.label_strategy}")
    else:
        _say(f"  tenant      {src.tenant}, client {src.client_id}, auth {src.auth}")
    _say(
        f"  run         {task.run.accounts_per_period or 'all'} account(s) per period, concurrency {task.run.concurrency}"
    )
    s = task.schedule
    if s.enabled:
        repeat = f", every {s.repeat_hours} h" if s.repeat_hours else ""
        _say(f"  schedule    {','.join(s.days)} at {s.start}{repeat}{' until ' + s.end if s.end else ''}")
    else:
        _say("  schedule    off")
    f = task.filters
    _say(
        f"  filters     before {f.skip_before or '-'}, after {f.skip_after or '-'}, trash {'skip' if f.skip_trash else 'keep'}, "
        f"junk {'skip' if f.skip_junk else 'keep'}, max {f.max_size_kb or 'no limit'} KB"
    )
    if f.mailboxes.enabled:
        _say(f"  mailboxes   {f.mailboxes.policy} {f.mailboxes.keywords} except {f.mailboxes.exceptions}")
    _say(f"  users       {len(task.users)}")
    for u in task.users:
        _say(f"    {u.source} -> {u.destination}  password {'•••' if u.password else '(none)'}")
    return EXIT_OK


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
                "problems": [{"field": p.field, "message": p.message} for p in problems],
                "warnings": [{"field": w.field, "message": w.message} for w in warnings],
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
    task = _load(args.task)
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
        text = userlist.decode(data)
    except OSError as exc:
        raise CliError(f"{args.file}: cannot read the file: {exc.strerror}") from None
    except ValueError as exc:
        raise CliError(f"{args.file}: {exc}") from None
    parsed = userlist.parse(text, task.source)
    if not parsed.users and not parsed.errors:
        what = "only a header line" if parsed.header_skipped else "no line with an account"
        raise CliError(
            f"{args.file}: no accounts to import: the file holds {what}; one account per line: "
            "source account, source password, destination account"
        )
    try:
        summary = userlist.apply(task, parsed, valid_only=args.valid_only)
    except userlist.ImportRejected as exc:
        raise CliError(f"{args.file}: {exc}") from None
    store.save_task(task, old_name=task.name)
    for e in parsed.errors:
        _say(f"{args.file}: skipped {e}", file=sys.stderr)
    if args.json:
        _emit_json(
            {
                "added": summary.added,
                "updated": summary.updated,
                "rejected": [{"line": e.line, "message": e.message} for e in parsed.errors],
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


def cmd_export_users(args: argparse.Namespace) -> int:
    task = _load(args.task)
    sys.stdout.write(userlist.export(task, with_passwords=args.with_passwords, exact=args.exact))
    return EXIT_OK


def _human_bytes(n: float) -> str:
    return notify.human_bytes(n, "B")


def _skips(counter: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in sorted(counter.items())) or "none"


class _Printer:
    """Prints the run's events: log lines as they come, and on a terminal a progress line for the
    whole run (messages, MB, MB/s, ETA) summed over the accounts being copied."""

    def __init__(self, verbose: bool, out: TextIO | None) -> None:
        self.tty = sys.stderr.isatty()
        self.min = "debug" if verbose else "info"
        self.out = out
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
            if isinstance(event, events.FolderProgress):
                self._progress[event.account] = event
                if self.tty:
                    sys.stderr.write("\r\x1b[K" + self._status_line())
                    sys.stderr.flush()
                return
            if isinstance(event, events.AccountFinished):
                self._progress.pop(event.account, None)
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
    task = _load(args.task)
    settings = store.load_settings()
    problems = validate_task(task, settings=settings) + validate_settings(settings)
    if problems:
        raise CliError(
            f"task {task.name} cannot run:\n"
            + "\n".join(f"  - {escape_controls(str(p))}" for p in problems)
            + "\n(see: mailmig-tui validate)"
        )
    cancel = threading.Event()
    _install_stop_handlers(cancel)
    try:
        result = runner.run_task(
            task,
            settings,
            accounts=args.account or (),
            dry_run=args.dry_run,
            cancel=cancel,
            sink=_Printer(args.verbose, sys.stderr if args.json else None),
        )
    except runner.RunError as exc:
        raise CliError(str(exc), EXIT_CANNOT_START) from None
    except runner.RunConfigError as exc:
        raise CliError(str(exc)) from None
    if args.dry_run:
        _print_plan(result, sys.stderr if args.json else sys.stdout)
    if args.json:
        _emit_json([_result_dict(r) for r in result.accounts])
    else:
        _say()
        for r in result.accounts:
            verb = "would copy" if args.dry_run else "copied"
            line = (
                f"{r.account} → {r.destination}: {r.status}; {r.folders} folder(s), {r.copied if not args.dry_run else sum(f.to_copy for f in result.reports.get(r.account, []))} {verb}, "
                f"skipped: {_skips(r.skipped)}, {r.failed} failed, {_human_bytes(r.bytes)}, {r.duration:.1f} s"
            )
            _say(line + (f"\n    {r.error}" if r.error else ""))
    if result.status == "stopped":
        return EXIT_INTERRUPTED
    return EXIT_SOME_FAILED if any(r.status in ("failed", "partial") or r.failed for r in result.accounts) else EXIT_OK


def _result_dict(r: events.AccountResult) -> dict[str, Any]:
    return {
        "account": r.account,
        "destination": r.destination,
        "status": r.status,
        "folders": r.folders,
        "copied": r.copied,
        "skipped": dict(r.skipped),
        "skipped_folders": dict(r.skipped_folders),
        "failed_folders": dict(r.folder_errors),
        "failed": r.failed,
        "bytes": r.bytes,
        "duration": r.duration,
        "error": r.error,
    }


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
                action = f"copy {f.to_copy} ({size}), skip: {_skips(f.skipped)}"
            _say(f"  {f.source} → {f.dest}: {action}", file=out)
            for note in f.notes:
                _say(f"      note: {note}", file=out)


def cmd_verify(args: argparse.Namespace) -> int:
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


def cmd_report(args: argparse.Namespace) -> int:
    task = _load(args.task)
    p = store.paths()
    db = StateDB.open_readonly(p.state_file(task.name))
    try:
        summaries = db.summaries()
        last = db.last_run()
        failures = db.failed_by_account()
    finally:
        db.close()
    rows = []
    for user in task.users:
        s = summaries.get(account_key(user.source))
        rows.append(
            {
                "account": user.source,
                "destination": user.destination,
                "status": s.status if s else "not started",
                "folders": s.folders if s else 0,
                "copied": s.copied if s else 0,
                "skipped": dict(s.skipped) if s else {},
                "failed": s.failed if s else 0,
                "bytes": s.bytes if s else 0,
                "duration": s.last_duration if s else 0.0,
                "last_error": s.last_error if s else "",
                "failed_messages": [
                    {"folder": f, "id": i, "reason": r} for f, i, r in failures.get(account_key(user.source), [])
                ],
            }
        )
    if args.json:
        _emit_json({"task": task.name, "last_run": last, "accounts": rows})
        return EXIT_OK
    _say(
        f"Task {task.name}: last run {_when(last['started']) if last else 'never'}"
        + (f" ({last['status']})" if last else "")
    )
    for r in rows:
        _say(
            f"  {r['account']} → {r['destination']}: {r['status']}; {r['folders']} folder(s), {r['copied']} copied, "
            f"skipped: {_skips(r['skipped'])}, {r['failed']} failed, {_human_bytes(r['bytes'])}, last run {r['duration']:.1f} s"
        )
        if r["last_error"]:
            _say(f"      last error: {r['last_error']}")
        for fm in r["failed_messages"][:20]:
            _say(f"      failed: [{fm['folder']}] message {fm['id']}: {fm['reason']}")
    return EXIT_OK


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return dt.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M")


def cmd_forget(args: argparse.Namespace) -> int:
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
    from mailmig_tui.engine import notify

    settings = store.load_settings()
    if not settings.smtp.host:
        raise CliError(
            f"no SMTP relay is configured: set [smtp] host (and sender) in {store.paths().settings_file} "
            "or in the app's Settings (s)",
            EXIT_INVALID,
        )
    to = args.to or [settings.smtp.sender]
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
    try:
        return importlib.metadata.version("mailmig-tui")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailmig-tui",
        description="Migrate whole organisations' mailboxes into this mail server. Without a command, start the app.",
        epilog="Exit codes: 0 all succeeded, 1 some accounts failed, 2 invalid input/configuration, "
        "3 run could not start, 130 interrupted (resumable).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
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


def _fail(args: argparse.Namespace, message: str, code: int, config: store.ConfigError | None = None) -> int:
    """Report an error: as text on stderr, or with ``--json`` as one JSON object on stdout."""
    if getattr(args, "json", False):
        data: dict[str, Any] = {"error": message, "exit_code": code}
        if config is not None:
            data["file"], data["line"] = str(config.path), config.line
            data["problems"] = [{"field": p.field, "message": p.message} for p in config.problems]
        _emit_json(data)
    else:
        _err(message)
    return code


def _closed_output() -> int:
    """The reader of stdout went away (``| head``): stop quietly, as other Unix tools do."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush must not raise again
    except (OSError, ValueError):
        pass
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", cmd_app)
    try:
        code = func(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _closed_output()
    except store.ConfigError as exc:
        return _fail(args, str(exc), EXIT_INVALID, exc)
    except CliError as exc:
        return _fail(args, str(exc), exc.code)
    except KeyboardInterrupt:
        return _fail(args, "interrupted", EXIT_INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())

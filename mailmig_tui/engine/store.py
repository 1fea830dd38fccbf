"""Where mailmig-tui keeps its files, and reading/writing them (DESIGN.md §7).

Layout (under ``$MAILMIG_HOME`` when set, else the platformdirs locations)::

    config/settings.toml            destination server and SMTP relay
    config/tasks/<task>.toml        one task, no secrets
    config/tasks/<task>.users.csv   its user list: source,destination (one account a line)
    config/secrets/settings.toml    destination / SMTP passwords            (0600, dir 0700)
    config/secrets/<task>.toml      delegate password, client secret…       (0600, dir 0700)
    config/secrets/<task>.users.csv the accounts' passwords: source,password,destination_password (0600)
    data/state/<task>.sqlite        what was copied
    logs/<task>.log                 one line per event

Every write is atomic (temp file, fsync, rename), so a crash leaves the old file or the new one.
A file that cannot be used raises :class:`ConfigError` naming the file, the line or field, and the fix;
the file itself is never touched by a failed load.

The user list is CSV, not TOML: 100,000 accounts load in a fraction of a second (tomllib needs
seconds for as many tables) and a spreadsheet or a text editor opens it. A task file of an older
version keeps its users as ``[[users]]`` tables and their passwords in the secrets file's
``[users]`` table: both are read, and the next save writes the CSV files and drops them.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import gc
import io
import os
import re
import stat
import tempfile
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs
import tomli_w

from mailmig_tui.engine.model import (
    Problem,
    Settings,
    Task,
    User,
    ValidationError,
    account_key,
    from_dict,
    to_dict,
    validate_task_name,
)

APP_NAME = "mailmig-tui"
HOME_ENV = "MAILMIG_HOME"
USERS_SUFFIX = ".users.csv"
USERS_HEADER = ["source", "destination"]
USER_SECRETS_HEADER = ["source", "password", "destination_password"]


class ConfigError(Exception):
    """A configuration or secrets file that cannot be used, with where and how to fix it."""

    def __init__(self, path: Path | str, problems: Iterable[Problem | str], line: int | None = None) -> None:
        self.path = Path(path)
        self.problems = [p if isinstance(p, Problem) else Problem("", p) for p in problems]
        self.line = line
        super().__init__(self._text())

    def _text(self) -> str:
        where = str(self.path) + (f", line {self.line}" if self.line else "")
        if len(self.problems) == 1:
            return f"{where}: {self.problems[0]}"
        return where + ":\n" + "\n".join(f"  - {p}" for p in self.problems)


@dataclass(frozen=True)
class Paths:
    config: Path
    data: Path
    logs: Path

    @property
    def tasks_dir(self) -> Path:
        return self.config / "tasks"

    @property
    def secrets_dir(self) -> Path:
        return self.config / "secrets"

    @property
    def state_dir(self) -> Path:
        return self.data / "state"

    @property
    def settings_file(self) -> Path:
        return self.config / "settings.toml"

    @property
    def settings_secrets_file(self) -> Path:
        return self.secrets_dir / "settings.toml"

    def task_file(self, name: str) -> Path:
        return self.tasks_dir / f"{name}.toml"

    def task_secrets_file(self, name: str) -> Path:
        return self.secrets_dir / f"{name}.toml"

    def task_users_file(self, name: str) -> Path:
        return self.tasks_dir / f"{name}{USERS_SUFFIX}"

    def task_user_secrets_file(self, name: str) -> Path:
        return self.secrets_dir / f"{name}{USERS_SUFFIX}"

    def state_file(self, name: str) -> Path:
        return self.state_dir / f"{name}.sqlite"

    def log_file(self, name: str) -> Path:
        return self.logs / f"{name}.log"


def paths() -> Paths:
    """The locations in force: ``$MAILMIG_HOME/{config,data,logs}`` or the platform's own."""
    home = os.environ.get(HOME_ENV)
    if home:
        base = Path(home).expanduser()
        return Paths(base / "config", base / "data", base / "logs")
    return Paths(
        Path(platformdirs.user_config_dir(APP_NAME)),
        Path(platformdirs.user_data_dir(APP_NAME)),
        Path(platformdirs.user_log_dir(APP_NAME)),
    )


# --------------------------------------------------------------------------------------------
# Low-level file handling.


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read_toml(path: Path, *, quote_lines: bool = True) -> dict[str, Any]:
    """The parsed file; ``quote_lines=False`` keeps the offending line (a password) out of the error."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            path, [f"the file is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"]
        ) from None
    except OSError as exc:
        raise ConfigError(path, [f"cannot read the file: {exc.strerror}"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _error_line(str(exc))
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        fix = _toml_fix_hint(text, line) if quote_lines else ""
        raise ConfigError(path, [f"TOML syntax error: {reason}{fix}"], line=line) from None


def _error_line(message: str) -> int | None:
    m = re.search(r"line (\d+)", message)
    return int(m.group(1)) if m else None


def _toml_fix_hint(text: str, line: int | None) -> str:
    if not line:
        return ""
    lines = text.splitlines()
    if not 0 < line <= len(lines):
        return ""
    src = lines[line - 1].strip()
    hint = f" — the line reads: {src[:80]!r}"
    if re.match(r"^[\w.\"-]+\s*=\s*[^\"'\[\{\d\-tf+in]", src):
        hint += '; text values need double quotes, e.g. key = "value"'
    return hint


def _line_of(text: str, field: str) -> int | None:
    """Best-effort line of a dotted field path (``source.port``, ``users[2].source``) in TOML text."""
    parts = re.findall(r"([^.\[\]]+)(?:\[(\d+)\])?", field)
    if not parts:
        return None
    key = parts[-1][0]
    table = ".".join(name for name, _ in parts[:-1])
    index = int(parts[-2][1]) if len(parts) > 1 and parts[-2][1] else None
    lines = text.splitlines()
    in_table = table == ""
    seen = 0
    for number, raw in enumerate(lines, start=1):
        s = raw.strip()
        header = re.match(r"^\[\[?\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$", s)
        if header:
            in_table = header.group(1) == table
            if in_table and index is not None:
                in_table = seen == index
                seen += 1
            continue
        if in_table and re.match(rf"^{re.escape(key)}\s*=", s):
            return number
    return None


def _check_private(path: Path) -> None:
    """Refuse a secrets file others could read or replace: readable by group or others, a symbolic
    link, owned by another user, or in a directory others can write (they could swap the file)."""
    st = path.lstat()
    fix = ""
    if stat.S_ISLNK(st.st_mode):
        problem = f"this secrets file is a symbolic link (to {os.readlink(path)})"
        fix = f"put the file itself there: mv --remove-destination $(readlink -f {path}) {path}"
    elif not stat.S_ISREG(st.st_mode):
        problem = "this secrets file is not a regular file"
        fix = f"remove it and save the task or settings again: rm -r {path}"
    elif st.st_uid != os.geteuid():
        problem = f"this secrets file belongs to another user (uid {st.st_uid}, mailmig-tui runs as {os.geteuid()})"
        fix = f"chown {os.geteuid()} {path}"
    elif st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        problem = f"this secrets file can be read by other users (mode {stat.S_IMODE(st.st_mode):04o})"
        fix = f"chmod 600 {path}"
    else:
        parent = path.parent.stat()
        if parent.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            problem = (
                f"the directory of this secrets file can be written by other users "
                f"(mode {stat.S_IMODE(parent.st_mode):04o}): they could replace the file"
            )
            fix = f"chmod 700 {path.parent}"
        elif parent.st_uid != os.geteuid():
            problem = f"the directory of this secrets file belongs to another user (uid {parent.st_uid})"
            fix = f"chown {os.geteuid()} {path.parent}"
        else:
            return
    raise ConfigError(path, [f"{problem}; mailmig-tui refuses to use it. Fix: {fix}"])


def read_secrets(path: Path) -> dict[str, Any]:
    """A secrets file's content, or {} when there is none; refuses files others could read or replace."""
    if not path.exists() and not path.is_symlink():
        return {}
    _check_private(path)
    return _read_toml(path, quote_lines=False)


def write_secrets(path: Path, data: Mapping[str, Any]) -> None:
    _write_private(path, tomli_w.dumps(_prune(data)).encode())


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    atomic_write(path, data, mode=0o600)


# --------------------------------------------------------------------------------------------
# The user list's CSV files.


def _csv_rows(path: Path, *, quote_lines: bool = True) -> tuple[list[list[str]], Callable[[int], int]]:
    """The file's rows (a blank line is ``[]``) and the line number of row i; ConfigError naming the line
    for bad UTF-8 or quoting. ``quote_lines=False`` keeps cell text (passwords) out of the errors."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(path, [f"cannot read the file: {exc.strerror}"]) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            path, [f"the file is not UTF-8 (byte 0x{data[exc.start]:02x}); save it as UTF-8 CSV"], line=line
        ) from None
    # The whole file at once (100,000 lines in tens of ms): row i is line i + 1 unless a quoted value
    # spans lines; only then, or for broken quoting, is the file read again row by row, noting lines.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        rows = list(reader)
        if reader.line_num == len(rows):
            return rows, lambda i: i + 1
    except csv.Error:
        pass
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows, starts = [], list[int]()
    while True:
        start = reader.line_num + 1
        try:
            rows.append(next(reader))
        except StopIteration:
            return rows, starts.__getitem__
        except csv.Error as exc:
            reason = f" ({exc})" if quote_lines else ""
            raise ConfigError(
                path,
                [f'broken CSV quoting{reason}; close the quotes around the value ("" inside quotes is one ")'],
                line=start,
            ) from None
        starts.append(start)


def _is_header_row(row: list[str], header: list[str]) -> bool:
    return [c.strip().casefold() for c in row] == header


def _blank(row: list[str]) -> bool:
    return not any(cell.strip() for cell in row)


def read_users_csv(path: Path) -> list[User]:
    """A task's user list (``source,destination``, an optional header line); every bad line is named."""
    rows, line_of = _csv_rows(path)
    users: list[User] = []
    bad: list[tuple[int, str]] = []  # (line, message)
    first = True
    for i, row in enumerate(rows):
        if len(row) == 2:
            source, destination = row[0].strip(), row[1].strip()
            if not (source or destination):
                continue
        elif _blank(row):
            continue
        if first:
            first = False
            if _is_header_row(row, USERS_HEADER):
                continue
        if len(row) != 2:
            bad.append(
                (
                    line_of(i),
                    f"{len(row)} field(s); a line is: source account,destination account "
                    "(passwords go in the secrets file; quote a value that holds a comma)",
                )
            )
            continue
        users.append(User(source, destination))
    if bad:
        _raise_lines(path, bad)
    return users


def _raise_lines(path: Path, bad: list[tuple[int, str]]) -> None:
    """Every bad line (line number, message): one names its line in the error's place, several are listed."""
    if len(bad) == 1:
        raise ConfigError(path, [Problem("", bad[0][1])], line=bad[0][0])
    raise ConfigError(path, [Problem(f"line {line}", message) for line, message in bad])


def users_csv(users: Iterable[User]) -> str:
    """The user list file's text: a header line, then ``source,destination`` per account."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(USERS_HEADER)
    writer.writerows((u.source, u.destination) for u in users)
    return out.getvalue()


def read_user_secrets(path: Path) -> dict[str, tuple[str, str]]:
    """(password, destination password) by account key; {} when there is no file. Refuses a file others
    could read or replace, and never quotes a password in an error."""
    if not path.exists() and not path.is_symlink():
        return {}
    _check_private(path)
    rows, line_of = _csv_rows(path, quote_lines=False)
    out: dict[str, tuple[str, str]] = {}
    bad: list[tuple[int, str]] = []  # (line, message)
    first = True
    for i, row in enumerate(rows):
        key = row[0].strip().casefold() if row else ""  # account_key, inlined: 100,000 calls
        if not key and _blank(row):
            continue
        if first:
            first = False
            if _is_header_row(row, USER_SECRETS_HEADER):
                continue
        if len(row) == 3:
            out[key] = (row[1], row[2])
        elif len(row) == 2:
            out[key] = (row[1], "")
        else:
            bad.append(
                (
                    line_of(i),
                    f"{len(row)} field(s); a line is: source account,password,destination password "
                    "(quote a password that holds a comma or a quote)",
                )
            )
    if bad:
        _raise_lines(path, bad)
    return out


def user_secrets_csv(users: Iterable[User]) -> str:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(USER_SECRETS_HEADER)
    writer.writerows(
        (u.source, u.password, u.destination_password) for u in users if u.password or u.destination_password
    )
    return out.getvalue()


def _prune(data: Mapping[str, Any]) -> dict[str, Any]:
    """Drop empty values and empty tables so secrets files hold only what is set."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            inner = _prune(value)
            if inner:
                out[key] = inner
        elif value not in ("", None):
            out[key] = value
    return out


def _raise_validation(path: Path, text: str, exc: ValidationError) -> None:
    lines = [_line_of(text, p.field) for p in exc.problems]
    problems = [
        Problem(p.field + (f" (line {ln})" if ln and len(exc.problems) > 1 else ""), p.message)
        for p, ln in zip(exc.problems, lines, strict=True)
    ]
    raise ConfigError(path, problems, line=lines[0] if len(exc.problems) == 1 else None) from None


# --------------------------------------------------------------------------------------------
# Tasks.


def list_tasks(p: Paths | None = None) -> list[str]:
    """Names of the saved tasks, sorted."""
    p = p or paths()
    if not p.tasks_dir.is_dir():
        return []
    return sorted(f.stem for f in p.tasks_dir.glob("*.toml") if f.is_file())


def task_exists(name: str, p: Paths | None = None) -> bool:
    return (p or paths()).task_file(name).exists()


def load_task(name: str, p: Paths | None = None, *, secrets: bool = True) -> Task:
    """The task with its secrets merged in; ConfigError when a file is missing or broken. With
    ``secrets=False`` no secrets file is read (a third of the load of 100,000 accounts), and every
    password is left empty: for what only shows the task."""
    # 100,000 accounts are some 400,000 new objects, nearly all of them strings and lists that form
    # no cycle; the cycle collector would walk the growing heap over and over meanwhile (a third of
    # the load). It is held off while the files are read, and left as it was.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _load_task(name, p or paths(), secrets)
    finally:
        if collecting:
            gc.enable()


def _load_task(name: str, p: Paths, secrets: bool) -> Task:
    path = p.task_file(name)
    problems = validate_task_name(name)
    if problems:
        raise ConfigError(path, problems)
    if not path.exists():
        raise ConfigError(path, [f'there is no task named "{name}" (see "mailmig-tui list")'])
    data = _read_toml(path)
    try:
        task: Task = from_dict(Task, data)
    except ValidationError as exc:
        _raise_validation(path, path.read_text(encoding="utf-8"), exc)
    if task.name != name:
        raise ConfigError(
            path,
            [Problem("name", f'the file is {path.name} but its name is "{task.name}"; make them the same')],
            line=_line_of(path.read_text(encoding="utf-8"), "name"),
        )
    users_path = p.task_users_file(name)
    if users_path.exists():
        # [[users]] left in the task file (an older version's, or a save cut short): kept, after the CSV's
        listed = read_users_csv(users_path)
        if task.users:
            keys = {account_key(u.source) for u in listed}
            listed += [u for u in task.users if account_key(u.source) not in keys]
        task.users = listed
    if not secrets:
        return task
    _merge_task_secrets(
        task,
        read_secrets(p.task_secrets_file(name)),
        p.task_secrets_file(name),
        read_user_secrets(p.task_user_secrets_file(name)),
    )
    return task


def _merge_task_secrets(
    task: Task, secrets: Mapping[str, Any], path: Path, user_secrets: Mapping[str, tuple[str, str]]
) -> None:
    """The secrets into ``task``; the accounts' passwords from ``user_secrets`` (the CSV), else from the
    secrets file's ``[users]`` table (an older version's)."""

    def text(table: Any, key: str, where: str) -> str:
        if not isinstance(table, Mapping):
            raise ConfigError(path, [Problem(where, "this must be a table")])
        value = table.get(key, "")
        if not isinstance(value, str):
            raise ConfigError(path, [Problem(f"{where}.{key}", "a password is a quoted string")])
        return value

    task.source.delegate.password = text(secrets.get("delegate", {}), "password", "delegate")
    task.source.client_secret = text(secrets.get("microsoft365", {}), "client_secret", "microsoft365")
    users = secrets.get("users", {})
    if not isinstance(users, Mapping):
        raise ConfigError(path, [Problem("users", "this must be a table of accounts")])
    by_key = {account_key(k): v for k, v in users.items()}
    for user in task.users:
        key = user.source.strip().casefold()  # account_key, inlined: 100,000 calls
        found = user_secrets.get(key)
        if found is not None:
            user.password, user.destination_password = found
            continue
        entry = by_key.get(key, {})
        where = f'users."{user.source}"'
        user.password = text(entry, "password", where)
        user.destination_password = text(entry, "destination_password", where)


_SOURCE_KEYS = {
    "imap": ("host", "port", "security", "path_prefix", "tls_fingerprint", "delegate"),
    "google": ("key_file", "label_strategy", "quota_units_per_minute", "api_endpoint"),
    "microsoft365": ("tenant", "client_id", "auth", "authority", "graph_url", "certificate_file"),
}


def task_toml(task: Task) -> str:
    """The task file's text: the source keys of its server type only; the users are in the CSV beside it."""
    data = to_dict(dataclasses.replace(task, users=[]))
    data.pop("users", None)
    keep = _SOURCE_KEYS.get(task.source.type, ())
    data["source"] = {k: v for k, v in data["source"].items() if k == "type" or k in keep}
    return tomli_w.dumps(data)


def task_secrets(task: Task) -> dict[str, Any]:
    """The secrets file's content; the accounts' passwords are in the secrets CSV (:func:`user_secrets_csv`)."""
    return {
        "delegate": {"password": task.source.delegate.password},
        "microsoft365": {"client_secret": task.source.client_secret},
    }


def save_task(task: Task, p: Paths | None = None, *, old_name: str | None = None) -> None:
    """Write the task (and its secrets) atomically; ``old_name`` renames an existing task."""
    p = p or paths()
    problems = validate_task_name(task.name, [n for n in list_tasks(p) if n != old_name])
    if problems:
        raise ConfigError(p.task_file(task.name or "?"), problems)
    # The CSV files first: a save cut short leaves users in both places, which a load merges
    atomic_write(p.task_users_file(task.name), users_csv(task.users).encode())
    _write_private(p.task_user_secrets_file(task.name), user_secrets_csv(task.users).encode())
    atomic_write(p.task_file(task.name), task_toml(task).encode())
    write_secrets(p.task_secrets_file(task.name), task_secrets(task))
    if old_name and old_name != task.name:
        _rename_companions(p, old_name, task.name)
        delete_task(old_name, p)


def _state_files(p: Paths, name: str) -> list[Path]:
    """The state database with its SQLite WAL companions, which belong to it and travel with it."""
    db = p.state_file(name)
    return [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]


# Secrets a source keeps beside the task's secrets file (a copied Google key, the MSAL token cache).
SECRET_COMPANIONS = (".google-key.json", ".msal-cache.json")


def _secret_files(p: Paths, name: str) -> list[Path]:
    return [
        p.task_secrets_file(name),
        p.task_user_secrets_file(name),
        *(p.secrets_dir / f"{name}{suffix}" for suffix in SECRET_COMPANIONS),
    ]


def _rename_companions(p: Paths, old: str, new: str) -> None:
    moves = [(_state_files(p, old), _state_files(p, new)), ([p.log_file(old)], [p.log_file(new)])]
    moves += [([o], [n]) for o, n in zip(_secret_files(p, old)[2:], _secret_files(p, new)[2:], strict=True)]
    for olds, news in moves:
        if any(n.exists() for n in news):
            continue
        for old_path, new_path in zip(olds, news, strict=True):
            if old_path.exists():
                new_path.parent.mkdir(parents=True, exist_ok=True)
                os.replace(old_path, new_path)


def delete_task(name: str, p: Paths | None = None, *, with_state: bool = False) -> None:
    p = p or paths()
    problems = validate_task_name(name)
    if problems:  # never let a name like "../settings" reach a path
        raise ConfigError(p.task_file(name or "?"), problems)
    files = [p.task_file(name), p.task_users_file(name), *_secret_files(p, name)]
    if with_state:
        files += [*_state_files(p, name), p.log_file(name)]
    for f in files:
        f.unlink(missing_ok=True)


def copy_task(task: Task, new_name: str) -> Task:
    """A duplicate of ``task`` under another name (users and secrets included)."""
    return dataclasses.replace(copy.deepcopy(task), name=new_name)


# --------------------------------------------------------------------------------------------
# Settings.


def load_settings(p: Paths | None = None) -> Settings:
    p = p or paths()
    data = _read_toml(p.settings_file) if p.settings_file.exists() else {}
    try:
        settings: Settings = from_dict(Settings, data)
    except ValidationError as exc:
        _raise_validation(p.settings_file, p.settings_file.read_text(encoding="utf-8"), exc)
    secrets = read_secrets(p.settings_secrets_file)
    for section in ("destination", "smtp"):
        table = secrets.get(section, {})
        value = table.get("password", "") if isinstance(table, Mapping) else None
        if not isinstance(value, str):
            raise ConfigError(
                p.settings_secrets_file, [Problem(f"{section}.password", "a password is a quoted string")]
            )
        getattr(settings, section).password = value
    return settings


def save_settings(settings: Settings, p: Paths | None = None) -> None:
    p = p or paths()
    atomic_write(p.settings_file, tomli_w.dumps(to_dict(settings)).encode())
    write_secrets(
        p.settings_secrets_file,
        {"destination": {"password": settings.destination.password}, "smtp": {"password": settings.smtp.password}},
    )

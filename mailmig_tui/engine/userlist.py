"""The user list: CSV import with line-numbered errors, and export (DESIGN.md §2 "User list CSV").

One account per line: ``source account, source password, destination account[, destination password]``.
RFC 4180 quoting (passwords may hold commas and quotes, even line breaks), UTF-8 with or without a BOM,
blank lines ignored, blanks after a comma ignored (quote a password that starts with a blank).
A first line that is a column header (``source,password,destination``) is recognised and skipped.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

from mailmig_tui.engine.model import Source, Task, User, account_key, validate_user

_HEADER_WORDS = {"source", "source account", "source_account", "account", "user", "username", "login", "email"}


@dataclass(frozen=True)
class LineError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class ParsedList:
    """What a CSV file holds: the valid users (with their line numbers) and every bad line."""

    users: list[tuple[int, User]] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    header_skipped: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class ImportSummary:
    added: int
    updated: int
    rejected: int


class ImportRejected(ValueError):
    """The file has bad lines and the admin did not ask for the valid lines only: nothing was imported."""

    def __init__(self, parsed: ParsedList) -> None:
        self.parsed = parsed
        lines = "\n".join(f"  {e}" for e in parsed.errors)
        super().__init__(
            f"{len(parsed.errors)} line(s) cannot be imported, so nothing was imported:\n{lines}\n"
            "Fix these lines, or import the valid lines only (--valid-only)."
        )


def decode(data: bytes) -> str:
    """UTF-8 text with an optional BOM; a clear error for anything else."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ValueError(
            f"line {line}: the file is not UTF-8 (byte 0x{data[exc.start]:02x}); save it as UTF-8 CSV and import again"
        ) from None


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _shown_control(cell: str) -> str:
    m = _CONTROL.search(cell)
    assert m is not None
    return f"U+{ord(m.group()):04X}"


def _is_header(row: list[str]) -> bool:
    return len(row) >= 3 and row[0].strip().casefold() in _HEADER_WORDS and "@" not in row[0]


def parse(text: str, source: Source) -> ParsedList:
    """Check every line of a CSV user list against the task's source type."""
    result = ParsedList()
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True, strict=True)
    seen: dict[str, int] = {}
    first = True
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                result.errors.append(
                    LineError(
                        start,
                        f"a field is longer than {csv.field_size_limit() // 1024} KB: is this a CSV user list? "
                        "(a quote left open makes the rest of the file one field)",
                    )
                )
            else:
                result.errors.append(LineError(start, f"broken CSV quoting ({exc}); close the quotes around the value"))
            continue
        if not any(cell.strip() for cell in row):
            continue
        if first and _is_header(row):
            result.header_skipped = True
            first = False
            continue
        first = False
        if len(row) < 3:
            result.errors.append(
                LineError(start, f"{len(row)} field(s); expected source account, source password, destination account")
            )
            continue
        if len(row) > 4:
            result.errors.append(
                LineError(
                    start,
                    f"{len(row)} fields; at most 4 (the 4th is the destination password); quote values with commas",
                )
            )
            continue
        controls = [n for n, cell in enumerate(row, 1) if _CONTROL.search(cell)]
        if controls:
            result.errors.append(
                LineError(
                    start,
                    f"field {controls[0]} holds a control character ({_shown_control(row[controls[0] - 1])}); "
                    "remove it (a tab, a line break inside quotes, an escape sequence…)",
                )
            )
            continue
        user = User(
            source=row[0].strip(),
            password=row[1],
            destination=row[2].strip(),
            destination_password=row[3] if len(row) == 4 else "",
        )
        problems = validate_user(user, source)
        if problems:
            result.errors.extend(LineError(start, p.message) for p in problems)
            continue
        key = account_key(user.source)
        if key in seen:
            result.errors.append(LineError(start, f"{user.source} is already on line {seen[key]}"))
            continue
        seen[key] = start
        result.users.append((start, user))
    return result


def apply(task: Task, parsed: ParsedList, *, valid_only: bool = False) -> ImportSummary:
    """Add or update the parsed users in ``task`` (in place); all-or-nothing unless ``valid_only``."""
    if parsed.errors and not valid_only:
        raise ImportRejected(parsed)
    added = updated = 0
    by_key = task.users_by_key()
    for _, new in parsed.users:
        existing = by_key.get(account_key(new.source))
        if existing is None:
            task.users.append(new)
            by_key[account_key(new.source)] = new
            added += 1
        else:
            existing.source = new.source
            existing.password = new.password
            existing.destination = new.destination
            existing.destination_password = new.destination_password
            updated += 1
    return ImportSummary(added, updated, len({e.line for e in parsed.errors}))


# A spreadsheet takes a cell starting with one of these as a formula (CSV injection, OWASP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: str) -> str:
    """``value`` with a ``'`` in front when a spreadsheet would run it as a formula."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def export(task: Task, *, with_passwords: bool = False, exact: bool = False) -> str:
    """The user list as CSV (passwords left empty unless asked for).

    Cells a spreadsheet would take as a formula get a ``'`` in front, unless ``exact`` (for a file
    to import again: the values as they are). A value starting with a blank is quoted, since
    :func:`parse` ignores blanks after a comma.
    """
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    quoting_writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_ALL)
    for u in task.users:
        row = [u.source, u.password if with_passwords else "", u.destination]
        if with_passwords and u.destination_password:
            row.append(u.destination_password)
        if not exact:
            row = [spreadsheet_safe(v) for v in row]
        (quoting_writer if any(v[:1].isspace() for v in row) else writer).writerow(row)
    return out.getvalue()


def remove(task: Task, accounts: list[str]) -> int:
    """Delete the given source accounts from the list; returns how many were removed."""
    keys = {account_key(a) for a in accounts}
    before = len(task.users)
    task.users = [u for u in task.users if account_key(u.source) not in keys]
    return before - len(task.users)


__all__ = ["ImportRejected", "ImportSummary", "LineError", "ParsedList", "apply", "decode", "export", "parse", "remove"]

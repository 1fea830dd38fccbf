"""The user list: CSV import with line-numbered errors, and export (DESIGN.md §2 "User list CSV").

One account per line: ``source account, source password, destination account[, destination password]``.
RFC 4180 quoting (passwords may hold commas and quotes, even line breaks), blank lines ignored, blanks
after a separator ignored (quote a password that starts with a blank). Files as spreadsheets write them
are read too: the separator is ``,``, ``;`` or a tab (found on the first lines), the text UTF-8 with
or without a BOM, UTF-16 with a BOM, or Windows-1252/Latin-1. A first line that is a column header,
in any language, is recognised and skipped.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
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
    header: list[str] = field(default_factory=list)  # the cells of the skipped header line
    separator: str = ","

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


# A UTF-8 sequence of two to four bytes: in a file that is not valid UTF-8, one of these means the
# file mixes UTF-8 with a one-byte encoding (Windows-1252 text almost never holds one).
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


class DecodeError(ValueError):
    """A file whose bytes are no text this module reads; ``line`` is where it goes wrong, when known."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {reason}" if line else reason)
        self.reason = reason
        self.line = line


def decode(data: bytes) -> str:
    """The text of a user-list file as spreadsheets save it: UTF-8 (with or without a BOM), UTF-16 with
    a BOM (Excel's "Unicode text"), or else Windows-1252 (Excel's "CSV" on Western Windows), with
    Latin-1 for the five bytes Windows-1252 leaves undefined; a clear error for a file that mixes them."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise DecodeError(
                f"the file starts as UTF-16 but is not (byte {exc.start}); save it as UTF-8 CSV and import again"
            ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if not _UTF8_SEQUENCE.search(data):
            try:
                return data.decode("cp1252")
            except UnicodeDecodeError:
                return data.decode("latin-1")
        raise DecodeError(
            f"the file mixes UTF-8 with another encoding (byte 0x{data[exc.start]:02x}); "
            "save it as UTF-8 CSV and import again",
            data[: exc.start].count(b"\n") + 1,
        ) from None


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _shown_control(cell: str) -> str:
    m = _CONTROL.search(cell)
    assert m is not None
    return f"U+{ord(m.group()):04X}"


SEPARATORS = (",", ";", "\t")
_SAMPLE_ROWS = 50


def _sample(text: str, separator: str) -> list[list[str]]:
    """The first non-blank rows of ``text`` split on ``separator`` (as far as the CSV reads cleanly)."""
    rows: list[list[str]] = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator, skipinitialspace=True)
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append(row)
                if len(rows) == _SAMPLE_ROWS:
                    break
    except csv.Error:
        pass
    return rows


def _separator(text: str) -> tuple[str, list[list[str]]]:
    """The separator that splits the most of the first rows into 3 or 4 fields with no stray quote (a
    quote left in a cell means the quoting did not line up with that separator: a ``;`` inside a quoted
    password does not fool it), and those rows; on a tie ``,`` then ``;`` then tab."""
    best: tuple[int, str, list[list[str]]] | None = None
    for separator in SEPARATORS:
        rows = _sample(text, separator)
        score = sum(1 for row in rows if 3 <= len(row) <= 4 and not any('"' in cell for cell in row))
        if best is None or score > best[0]:
            best = (score, separator, rows)
    assert best is not None
    return best[1], best[2]


def _is_header(rows: list[list[str]]) -> bool:
    """Whether the first of these rows (the file's first non-blank ones) names the columns, in any language:
    known English words; or source and destination cells that are words, not accounts (blanks, no ``@``
    and no ``:``: "compte source"); or, when neither cell holds an ``@`` and they differ, a column whose
    cells all hold one below ("Quellkonto;Passwort;Zielkonto" above addresses)."""
    first, below = rows[0], [row for row in rows[1:] if 3 <= len(row) <= 4]
    if len(first) < 3:
        return False
    source, destination = first[0].strip(), first[2].strip()
    if source.casefold() in _HEADER_WORDS and "@" not in source:
        return True
    if "@" in source + destination or ":" in source + destination:
        return False
    if all(cell and any(c.isspace() for c in cell) for cell in (source, destination)):
        return True
    return source.casefold() != destination.casefold() and any(
        below and all("@" in row[column] for row in below) for column in (0, 2)
    )


def parse(text: str, source: Source) -> ParsedList:
    """Check every line of a CSV user list against the task's source type."""
    separator, sample = _separator(text)
    result = ParsedList(separator=separator)
    header = bool(sample) and _is_header(sample)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator, skipinitialspace=True, strict=True)
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
        if first and header:
            result.header_skipped = True
            result.header = row
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
    # an updated account is a new User in its place: the old object may be shared (the app's task list
    # and the editor hold the same loaded users) and must not change under the other holder
    index = {account_key(u.source): i for i, u in enumerate(task.users)}
    for _, new in parsed.users:
        key = account_key(new.source)
        at = index.get(key)
        if at is None:
            index[key] = len(task.users)
            task.users.append(new)
            added += 1
        else:
            task.users[at] = dataclasses.replace(new)
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


__all__ = [
    "DecodeError",
    "ImportRejected",
    "ImportSummary",
    "LineError",
    "ParsedList",
    "apply",
    "decode",
    "export",
    "parse",
    "remove",
]

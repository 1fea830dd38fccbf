"""The task's log file: one line per event, appended by every run, read back for history.

Line format (tab-separated, so folder names with blanks survive)::

    2026-11-27T22:00:01.123+01:00<TAB>INFO<TAB>alice@acme.example<TAB>INBOX<TAB>text

Every line passes through a redactor that replaces any known secret with ``•••``: passwords never
reach the file even if a server echoes one back. Control characters in a field (a folder name with
ESC, a server reply with CR/LF or a TAB) are written escaped (``\\x1b``, ``\\n``,
:mod:`~mailmig_tui.engine.textsafe`), so one event is always exactly one line of five fields.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mailmig_tui.engine.events import SEVERITIES, Event, describe
from mailmig_tui.engine.textsafe import escape_controls

MASK = "•••"


class Redactor:
    """Replaces known secret strings (longest first) in text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text


@dataclass(frozen=True)
class LogRecord:
    time: str
    severity: str
    account: str
    folder: str
    text: str

    def line(self) -> str:
        return "\t".join((self.time, self.severity.upper(), self.account, self.folder, self.text))

    @classmethod
    def parse(cls, line: str) -> LogRecord | None:
        parts = line.rstrip("\n").split("\t", 4)
        if len(parts) != 5:
            return None
        return cls(parts[0], parts[1].lower(), parts[2], parts[3], parts[4])


def record_of(event: Event, redact: Redactor | None = None) -> LogRecord:
    severity, folder, text = describe(event)
    stamp = dt.datetime.fromtimestamp(event.time).astimezone().isoformat(timespec="milliseconds")
    if redact is not None:
        text = redact(text)
    return LogRecord(stamp, severity, escape_controls(event.account), escape_controls(folder), escape_controls(text))


class LogWriter:
    """An event sink appending to the task's log file (thread-safe, line-buffered)."""

    def __init__(
        self,
        path: Path,
        redact: Redactor | None = None,
        min_severity: str = "info",
        on_error: Callable[[OSError], None] | None = None,
    ) -> None:
        """Opens ``path`` (OSError when it cannot be). A write that fails later (a full disk) calls
        ``on_error`` once; nothing more is written."""
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = path.open("a", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()
        self._redact = redact or Redactor()
        self._min = SEVERITIES.index(min_severity)
        self._on_error = on_error
        self.error: OSError | None = None

    def __call__(self, event: Event) -> None:
        rec = record_of(event, self._redact)
        if SEVERITIES.index(rec.severity) < self._min:
            return
        with self._lock:
            if self.error is not None:
                return
            try:
                self._fh.write(rec.line() + "\n")
            except OSError as exc:
                self.error = exc
        if self.error is not None and self._on_error is not None:
            callback, self._on_error = self._on_error, None
            callback(self.error)

    def close(self) -> None:
        with self._lock:
            try:
                self._fh.close()
            except OSError as exc:  # the last buffered line could not be written either
                self.error = self.error or exc


def read(
    path: Path, *, account: str | None = None, min_severity: str = "debug", tail: int | None = None
) -> list[LogRecord]:
    """Records of a log file, optionally filtered by account and severity, the last ``tail`` only."""
    if not path.exists():
        return []
    floor = SEVERITIES.index(min_severity)
    out: deque[LogRecord] = deque(maxlen=tail)
    for rec in _records(path):
        if account and rec.account != account:
            continue
        if rec.severity in SEVERITIES and SEVERITIES.index(rec.severity) < floor:
            continue
        out.append(rec)
    return list(out)


def _records(path: Path) -> Iterator[LogRecord]:
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            rec = LogRecord.parse(line)
            if rec is not None:
                yield rec

"""Following a task's log file: its recent history first, then the lines appended after it.

A front end uses this to show the log of a run going on in another process (the CLI, the scheduler)
as it is written. Only complete lines are returned; a line being written is picked up on the next
call. A file that was truncated or replaced is read again from its start.
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path

from mailmig_tui.engine.logfile import LogRecord

HISTORY_BYTES = 8 * 1024 * 1024
READ_BYTES = 1024 * 1024


class LogFollower:
    """Incremental reader of one log file (not thread-safe: one caller at a time)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._inode: int | None = None

    def history(self, max_records: int = 10_000, max_bytes: int = HISTORY_BYTES) -> list[LogRecord]:
        """The last ``max_records`` records within the file's last ``max_bytes``; following continues after them."""
        self._offset, self._inode = 0, None
        try:
            size = self.path.stat().st_size
        except OSError:
            return []
        self._offset = max(0, size - max_bytes)
        if self._offset:
            self._skip_fragment()
        records: deque[LogRecord] = deque(maxlen=max_records)
        while True:
            before = self._offset
            records.extend(self._read(READ_BYTES * 4))
            if self._offset <= before:
                return list(records)

    def read_new(self, max_bytes: int = READ_BYTES) -> list[LogRecord]:
        """Records appended since the last call (at most about ``max_bytes`` of them)."""
        return self._read(max_bytes)

    def skip_to_end(self) -> None:
        """Forget what is in the file now: the next :meth:`read_new` returns only later lines."""
        try:
            st = self.path.stat()
        except OSError:
            self._offset, self._inode = 0, None
            return
        self._offset, self._inode = st.st_size, st.st_ino

    def _skip_fragment(self) -> None:
        """Move past the rest of the line the offset points into."""
        with self.path.open("rb") as fh:
            fh.seek(self._offset - 1)
            while block := fh.read(64 * 1024):
                newline = block.find(b"\n")
                if newline >= 0:
                    self._offset = fh.tell() - len(block) + newline + 1
                    return
            self._offset = fh.tell()

    def _read(self, max_bytes: int) -> list[LogRecord]:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            self._offset, self._inode = 0, None
            return []
        try:
            st = os.fstat(fd)
            if (self._inode is not None and st.st_ino != self._inode) or st.st_size < self._offset:
                self._offset = 0  # replaced or truncated: start again
            self._inode = st.st_ino
            if st.st_size <= self._offset:
                return []
            os.lseek(fd, self._offset, os.SEEK_SET)
            data = os.read(fd, max_bytes)
        finally:
            os.close(fd)
        end = data.rfind(b"\n")
        if end < 0:
            if len(data) < max_bytes:
                return []  # a line still being written
            end = len(data) - 1  # one line longer than a whole read: take it as it is
        self._offset += end + 1
        records = []
        for line in data[: end + 1].decode("utf-8", errors="replace").splitlines():
            rec = LogRecord.parse(line)
            if rec is not None:
                records.append(rec)
        return records

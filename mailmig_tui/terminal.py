"""Surviving the loss of the terminal (an SSH session dropped: SIGHUP, then EIO on every write).

Textual's output thread dies on the first failed write, after which the UI thread blocks on its full
queue and the app can neither stop its runs nor exit. :class:`HangupSafeDriver` hands that thread a
stream that drops output once the terminal is gone, so the app keeps running long enough to stop its
migrations cleanly (see ``MailmigApp.hangup``).
"""

from __future__ import annotations

from typing import IO, Any

from textual.drivers.linux_driver import LinuxDriver


class _TolerantStream:
    """A text stream whose writes are dropped, instead of raising, once the terminal has gone away."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self._stream.write(text)
            except OSError:
                self.broken = True
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except OSError:
                self.broken = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class HangupSafeDriver(LinuxDriver):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._file = _TolerantStream(self._file)  # type: ignore[assignment,arg-type]

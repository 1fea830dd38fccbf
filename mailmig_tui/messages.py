"""Messages the app sends its screens about runs, and the ones thread workers post back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from textual.message import Message

from mailmig_tui.engine.events import Event

if TYPE_CHECKING:
    from mailmig_tui.runs import Run


class RunEvents(Message, bubble=False):
    """A batch of a run's events, drained on the UI thread (about every 100 ms)."""

    def __init__(self, run: Run, events: Sequence[Event]) -> None:
        super().__init__()
        self.run = run
        self.events = tuple(events)


class RunStateChanged(Message, bubble=False):
    """A run of this app started, is stopping, or ended (``run.ended``)."""

    def __init__(self, run: Run) -> None:
        super().__init__()
        self.run = run

"""The per-account summary of a task: one row per account of the user list, drawn only when on screen.

A row's figures come from the owner (``row_of(key)``), asked only for the rows being drawn: 100,000
accounts cost nothing until they are scrolled to, and a refresh during a run redraws only the rows on
screen whose figures changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from rich.cells import cell_len
from rich.text import Text
from textual import events

from mailmig_tui.engine.account import SKIP_VANISHED
from mailmig_tui.engine.skips import SKIP_EXISTING, SKIP_TOO_BIG, SKIP_TOO_NEW, SKIP_TOO_OLD
from mailmig_tui.engine.textsafe import escape_controls
from mailmig_tui.engine.units import human_bytes
from mailmig_tui.runs import duration_text
from mailmig_tui.widgets.virtual_table import CELL_PADDING, VirtualTable

STATE_WIDTH = 22
SKIPPED_WIDTH = 18
ERROR_WIDTH = 40
ACCOUNT_WIDTH_MAX = 60

# (key, label, width): every live column has a fixed width, so updating a cell never re-measures the table;
# the account column is as wide as the longest account (up to ACCOUNT_WIDTH_MAX).
COLUMNS = (
    ("account", "Account", 0),
    ("state", "State", STATE_WIDTH),
    ("folders", "Folders", 7),
    ("copied", "Copied", 7),
    ("skipped", "Skipped", SKIPPED_WIDTH),
    ("failed", "Failed", 6),
    ("bytes", "Size", 9),
    ("duration", "Time", 7),
    ("error", "Last error", ERROR_WIDTH),
)
# Narrower than the wide columns' sum (an 80-column terminal): shorter labels and widths, every column on
# screen; Account and Last error share what is left. Cells too long end with "…".
NARROW = {
    "state": ("State", 9),
    "folders": ("Fold", 5),
    "copied": ("Copied", 6),
    "skipped": ("Skip", 5),
    "failed": ("Fail", 4),
    "bytes": ("Size", 7),
    "duration": ("Time", 6),
}
MIN_ACCOUNT, MIN_ERROR = 9, 8

# Short words for the engine's skip reasons, for a table cell; the detail line shows the full reasons.
SHORT_REASONS = {
    SKIP_TOO_OLD: "old",
    SKIP_TOO_NEW: "new",
    SKIP_TOO_BIG: "big",
    SKIP_EXISTING: "there",
    SKIP_VANISHED: "gone",
}
STATE_STYLES = {"running": "bold green", "failed": "red", "partial": "yellow", "complete": "green", "stopped": "yellow"}


@dataclass(frozen=True)
class AccountRow:
    """What one row shows; ``state`` may carry live progress ("running: INBOX 120/400")."""

    account: str
    state: str = "not started"
    folders: int | str = 0  # "3/12" while the account is copied
    copied: int = 0
    skipped: Mapping[str, int] = field(default_factory=dict)
    failed: int = 0
    bytes: int = 0
    duration: float = 0.0
    error: str = ""

    def cells(self) -> dict[str, Text]:
        base = self.state.split(":", 1)[0]
        return {
            "account": Text(escape_controls(self.account), no_wrap=True, overflow="ellipsis"),
            "state": Text(_clip(self.state, STATE_WIDTH), style=STATE_STYLES.get(base, ""), overflow="ellipsis"),
            "folders": Text(str(self.folders), justify="right"),
            "copied": Text(str(self.copied), justify="right"),
            "skipped": Text(_clip(skipped_cell(self.skipped), SKIPPED_WIDTH), overflow="ellipsis"),
            "failed": Text(str(self.failed), justify="right", style="red" if self.failed else ""),
            "bytes": Text(human_bytes(self.bytes, "B") if self.bytes else "-", justify="right"),
            "duration": Text(duration_text(self.duration), justify="right"),
            "error": Text(_clip(self.error, ERROR_WIDTH), style="red" if self.error else "", overflow="ellipsis"),
        }


def skipped_cell(skipped: Mapping[str, int]) -> str:
    total = sum(skipped.values())
    if not total:
        return "0"
    parts = ", ".join(f"{n} {SHORT_REASONS.get(reason, reason)}" for reason, n in sorted(skipped.items()) if n)
    return f"{total}: {parts}"


def skipped_detail(skipped: Mapping[str, int]) -> str:
    return "; ".join(f"{n} {reason}" for reason, n in sorted(skipped.items()) if n) or "nothing skipped"


def _clip(text: str, width: int) -> str:
    text = escape_controls(" ".join(text.split()))
    return text if len(text) <= width else text[: width - 1] + "…"


class SummaryTable(VirtualTable):
    """Rows keyed by account key, in user-list order; :meth:`show` redraws the rows whose figures changed."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(COLUMNS, self._cells, id=id)
        self._row_of: Callable[[str], AccountRow] = AccountRow
        self._drawn: dict[str, AccountRow] = {}
        self._account_width = 0

    def set_accounts(self, accounts: Sequence[tuple[str, str]], row_of: Callable[[str], AccountRow]) -> None:
        """(Re)build the rows: ``(key, account)`` pairs in display order; ``row_of(key)`` gives a row's figures."""
        self._row_of = row_of
        self._drawn.clear()
        widest = max((cell_len(escape_controls(account)) for _, account in accounts), default=0)
        self._account_width = min(widest, ACCOUNT_WIDTH_MAX)
        self.set_keys([key for key, _ in accounts])
        self.fit(self.scrollable_content_region.width)

    def on_resize(self, event: events.Resize) -> None:
        self.fit(self.scrollable_content_region.width)
        super().on_resize(event)

    def fit(self, width: int) -> None:
        """Column widths for ``width`` cells: the wide ones when they fit, else the narrow ones (every column shown)."""
        if width <= 0:
            return  # not laid out yet: the first resize fits
        pad = 2 * CELL_PADDING * len(COLUMNS)
        wide = {key: (label, w) for key, label, w in COLUMNS}
        wide["account"] = ("Account", max(self._account_width, len("Account")))
        if sum(w for _, w in wide.values()) + pad <= width:
            chosen = wide
        else:
            free = max(MIN_ACCOUNT + MIN_ERROR, width - pad - sum(w for _, w in NARROW.values()))
            account = max(MIN_ACCOUNT, min(wide["account"][1], free // 2))
            chosen = {"account": ("Account", account), **NARROW, "error": ("Error", free - account)}
        for key, (label, w) in chosen.items():
            self.set_column(key, label, w)

    def show(self, keys: Iterable[str] | None = None) -> int:
        """Redraw the rows of ``keys`` (of every account when None) that are on screen and changed since drawn;
        returns how many were redrawn."""
        on_screen = self.visible_keys()
        shown = set(on_screen)
        wanted = on_screen if keys is None else [k for k in keys if k in shown]
        self._drawn = {k: self._drawn[k] for k in on_screen if k in self._drawn}
        changed = 0
        for key in wanted:
            if self._drawn.get(key) != self._row_of(key):
                self.refresh_key(key)
                changed += 1
        return changed

    def _cells(self, key: str) -> tuple[Text, ...]:
        row = self._row_of(key)
        self._drawn[key] = row
        cells = row.cells()
        return tuple(cells[c] for c in self.columns)

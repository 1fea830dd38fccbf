"""The per-account summary of a task: one row per account of the user list, updated cell by cell."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

from mailmig_tui.engine.account import SKIP_VANISHED
from mailmig_tui.engine.sources.base import SKIP_EXISTING, SKIP_TOO_BIG, SKIP_TOO_NEW, SKIP_TOO_OLD
from mailmig_tui.engine.textsafe import escape_controls
from mailmig_tui.runs import duration_text, size_text

STATE_WIDTH = 22
SKIPPED_WIDTH = 18
ERROR_WIDTH = 40

# (key, label, width): every live column has a fixed width, so updating a cell never re-measures the table.
COLUMNS = (
    ("account", "Account", 24),
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
    skipped: Counter[str] = field(default_factory=Counter)
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
            "bytes": Text(size_text(self.bytes) if self.bytes else "-", justify="right"),
            "duration": Text(duration_text(self.duration), justify="right"),
            "error": Text(_clip(self.error, ERROR_WIDTH), style="red" if self.error else "", overflow="ellipsis"),
        }


def skipped_cell(skipped: Counter[str]) -> str:
    total = sum(skipped.values())
    if not total:
        return "0"
    parts = ", ".join(f"{n} {SHORT_REASONS.get(reason, reason)}" for reason, n in sorted(skipped.items()) if n)
    return f"{total}: {parts}"


def skipped_detail(skipped: Counter[str]) -> str:
    return "; ".join(f"{n} {reason}" for reason, n in sorted(skipped.items()) if n) or "nothing skipped"


def _clip(text: str, width: int) -> str:
    text = escape_controls(" ".join(text.split()))
    return text if len(text) <= width else text[: width - 1] + "…"


class SummaryTable(DataTable):
    """Rows keyed by account key, in user-list order; :meth:`show` touches only the cells that changed."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row")
        self._shown: dict[str, dict[str, str]] = {}

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)

    def on_resize(self) -> None:
        self.fit(self.scrollable_content_region.width)

    def fit(self, width: int) -> None:
        """Column widths for ``width`` cells: the wide ones when they fit, else the narrow ones (every column shown)."""
        pad = 2 * self.cell_padding * len(COLUMNS)
        wide = {key: (label, w) for key, label, w in COLUMNS}
        if sum(w for _, w in wide.values()) + pad <= width:
            chosen = wide
        else:
            free = max(MIN_ACCOUNT + MIN_ERROR, width - pad - sum(w for _, w in NARROW.values()))
            account = max(MIN_ACCOUNT, min(wide["account"][1], free // 2))
            chosen = {"account": ("Account", account), **NARROW, "error": ("Error", free - account)}
        changed = False
        for key, (label, w) in chosen.items():
            column = self.columns[ColumnKey(key)]
            if column.width != w or column.label.plain != label:
                column.width, column.label, changed = w, Text(label), True
        if changed:
            self._require_update_dimensions = True
            self.refresh()

    def set_accounts(self, rows: Iterable[tuple[str, AccountRow]]) -> None:
        """(Re)build the rows: ``(key, row)`` pairs in display order."""
        self.clear()
        self._shown.clear()
        for key, row in rows:
            cells = row.cells()
            self.add_row(*(cells[c] for c, _, _ in COLUMNS), key=key)
            self._shown[key] = {c: _signature(t) for c, t in cells.items()}

    def show(self, rows: Mapping[str, AccountRow]) -> int:
        """Update the rows given (by key); returns how many cells changed."""
        changed = 0
        for key, row in rows.items():
            shown = self._shown.get(key)
            if shown is None:
                continue
            for column, text in row.cells().items():
                sig = _signature(text)
                if shown.get(column) != sig:
                    self.update_cell(key, column, text)
                    shown[column] = sig
                    changed += 1
        return changed


def _signature(text: Text) -> str:
    return f"{text.plain}\x00{text.style}"

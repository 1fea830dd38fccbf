"""The user-list table: one row per account, keyed by ``model.account_key``; cells are plain Text."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from rich.text import Text
from textual.widgets import DataTable

from mailmig_tui.engine import model
from mailmig_tui.engine.state import AccountSummary
from mailmig_tui.engine.textsafe import escape_controls
from mailmig_tui.engine.verify import Verdict

COLUMNS = (
    ("mark", "✓", None),
    ("source", "Source", None),
    ("password", "Password", None),
    ("destination", "Destination", None),
    ("verify", "Verify", 24),
    ("status", "Migration", None),
)
"""Key, label and fixed width; a long verdict is cut in the table and shown whole under it."""
MARK = "●"
HIDDEN_PASSWORD = "•••"


def verdict_cell(verdict: Verdict | None, *, checking: bool = False) -> Text:
    if checking:
        return Text("checking…", style="italic")
    if verdict is None:
        return Text("")
    if verdict.ok:
        return Text("OK", style="green")
    return Text("FAILED: " + escape_controls(verdict.text()), style="red")


def status_cell(summary: AccountSummary | None) -> Text:
    if summary is None:
        return Text("not started", style="dim")
    text = summary.status
    if summary.copied:
        text += f", {summary.copied} copied"
    if summary.failed:
        text += f", {summary.failed} failed"
    style = {"complete": "green", "partial": "yellow", "failed": "red", "running": "bold"}.get(summary.status, "")
    return Text(text, style=style)


class UserTable(DataTable[Text]):
    """Accounts with a selection mark per row (``toggle_mark``) and cells updated in place."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.marked: set[str] = set()

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)

    def show(
        self,
        users: Iterable[model.User],
        verdicts: Mapping[str, Verdict],
        statuses: Mapping[str, AccountSummary],
    ) -> None:
        """Rebuild every row (cheaper than removing rows one by one), keeping the cursor's place."""
        row = self.cursor_row
        self.clear()
        rows = []
        keys = []
        for u in users:
            key = model.account_key(u.source)
            keys.append(key)
            rows.append(
                (
                    Text(MARK if key in self.marked else ""),
                    Text(escape_controls(u.source)),
                    Text(HIDDEN_PASSWORD if u.password else ""),
                    Text(escape_controls(u.destination)),
                    verdict_cell(verdicts.get(key)),
                    status_cell(statuses.get(key)),
                )
            )
        self.marked &= set(keys)
        for key, cells in zip(keys, rows, strict=True):
            self.add_row(*cells, key=key)
        if self.row_count:
            self.move_cursor(row=min(row, self.row_count - 1))

    def cursor_key(self) -> str | None:
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value

    def toggle_mark(self) -> None:
        key = self.cursor_key()
        if key is None:
            return
        self.marked ^= {key}
        self.update_cell(key, "mark", Text(MARK if key in self.marked else ""))

    def has_row(self, key: str) -> bool:
        return key in self.rows

    def set_verdict(self, key: str, verdict: Verdict | None, *, checking: bool = False) -> None:
        if self.has_row(key):
            self.update_cell(key, "verify", verdict_cell(verdict, checking=checking))

    def cell_text(self, key: str, column: str) -> str:
        return str(self.get_cell(key, column))

"""The user-list table: one row per account, keyed by ``model.account_key``; cells are plain Text.

It draws only the rows on screen (:class:`~mailmig_tui.widgets.virtual_table.VirtualTable`), from
the owner's list and mappings, kept by reference: after changing a verdict, call
:meth:`UserTable.refresh_key`. A search (account or destination, any case) and a migration-status
filter pick the rows shown, over the plain list, never over widgets.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from itertools import compress

from rich.cells import cell_len
from rich.text import Text

from mailmig_tui.engine import model
from mailmig_tui.engine.state import AccountProgress
from mailmig_tui.engine.textsafe import escape_controls
from mailmig_tui.engine.verify import Verdict
from mailmig_tui.widgets.virtual_table import VirtualTable

MARK = "●"
HIDDEN_PASSWORD = "•••"
NOT_STARTED = "not started"
READING = "reading…"
AUTO_WIDTH_MAX = 60
COLUMNS = (
    ("mark", "✓", 1),
    ("source", "Source", 0),
    ("password", "Password", 0),
    ("destination", "Destination", 0),
    ("verify", "Verify", 24),
    ("status", "Migration", len(NOT_STARTED)),
)
"""Key, label and width; 0: as wide as the widest value (up to AUTO_WIDTH_MAX). A long verdict is cut
in the table and shown whole under it."""

STATUS_FILTERS = ("all", "failed", "partial", NOT_STARTED, "running", "complete")
"""What the status filter cycles through: the words the Migration column (and Task info) shows."""
STATUS_STYLES = {"complete": "green", "partial": "yellow", "failed": "red", "running": "bold"}


def verdict_cell(verdict: Verdict | None, *, checking: bool = False) -> Text:
    if checking:
        return Text("checking…", style="italic")
    if verdict is None:
        return Text("")
    if verdict.ok:
        return Text("OK", style="green")
    return Text("FAILED: " + escape_controls(verdict.text()), style="red")


def status_words(state: AccountProgress | None) -> str:
    if state is None:
        return NOT_STARTED
    text = state.status
    if state.copied:
        text += f", {state.copied} copied"
    if state.failed:
        text += f", {state.failed} failed"
    return text


def status_cell(state: AccountProgress | None) -> Text:
    if state is None:
        return Text(NOT_STARTED, style="dim")
    return Text(escape_controls(status_words(state)), style=STATUS_STYLES.get(state.status, ""))


def status_group(state: AccountProgress | None) -> str:
    """The status filter an account falls under: a pending account (bound, never run) is not started."""
    if state is None or state.status == "pending":
        return NOT_STARTED
    return state.status


def _width(values: list[str]) -> int:
    """The widest of ``values`` as shown (escaped), in cells; plain ASCII (the usual case) is measured by len.
    (An ASCII text is printable when it holds no control character: a quarter of the time of looking for one.)"""
    joined = "".join(values)
    if joined.isascii() and joined.isprintable():
        return min(AUTO_WIDTH_MAX, max(map(len, values), default=0))
    return min(AUTO_WIDTH_MAX, max((cell_len(escape_controls(v)) for v in values), default=0))


class UserTable(VirtualTable):
    """Accounts with a selection mark per row (``toggle_mark``), a search and a status filter."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(COLUMNS, self._cells, zebra_stripes=True, id=id)
        self.marked: set[str] = set()
        self.search = ""
        self.status_filter = "all"
        self._order: list[str] = []
        self._users: dict[str, model.User] = {}
        self._haystacks: list[str] = []
        self._found: tuple[str, list[str], list[str]] = ("", [], [])
        """The last search: its needle, and the keys and haystacks of the rows it kept."""
        self._verdicts: Mapping[str, Verdict] = {}
        self._statuses: Mapping[str, AccountProgress] | None = None
        self._checking: Collection[str] = ()

    @property
    def total(self) -> int:
        """How many accounts the list holds, shown or not."""
        return len(self._order)

    def has_account(self, key: str) -> bool:
        """Whether the list holds the account (shown or hidden by the search or filter)."""
        return key in self._users

    @property
    def filtered(self) -> bool:
        return bool(self.search) or self.status_filter != "all"

    def show(
        self,
        users: list[model.User],
        verdicts: Mapping[str, Verdict],
        statuses: Mapping[str, AccountProgress] | None,
        checking: Collection[str] = (),
    ) -> None:
        """Take the list (and the mappings, by reference) and show the rows the search and filter keep;
        ``statuses`` None: not read yet."""
        self._users = {model.account_key(u.source): u for u in users}
        self._order = list(self._users)
        self._haystacks = [f"{u.source}\n{u.destination}".casefold() for u in self._users.values()]
        self._found = ("", [], [])
        self._verdicts, self._checking = verdicts, checking
        self.marked &= self._users.keys()
        self.set_width("source", _width([u.source for u in users]))
        self.set_width("destination", _width([u.destination for u in users]))
        self.set_width("password", len(HIDDEN_PASSWORD))
        self.set_statuses(statuses)

    def set_statuses(self, statuses: Mapping[str, AccountProgress] | None) -> None:
        """The migration state of the accounts (None: not read yet)."""
        self._statuses = statuses
        # "not started" for the accounts the state does not know yet ("reading…" is shorter)
        widest = max((cell_len(status_words(s)) for s in (statuses or {}).values()), default=0)
        self.set_width("status", max(widest, cell_len(NOT_STARTED)))
        self._apply()

    def set_search(self, text: str) -> None:
        self.search = text
        self._apply()

    def set_status_filter(self, status: str) -> None:
        self.status_filter = status
        self._apply()

    def _apply(self) -> None:
        keys = self._searched(self.search.strip().casefold())
        if self.status_filter != "all":
            statuses, wanted = self._statuses or {}, self.status_filter
            keys = [k for k in keys if status_group(statuses.get(k)) == wanted]
        self.set_keys(keys)

    def _searched(self, needle: str) -> list[str]:
        """The keys of the accounts whose source or destination holds ``needle``, in list order. A needle that holds
        the last one (typed on, key by key) is looked for in the rows the last one kept, not in the whole list."""
        if not needle:
            return self._order
        last, keys, haystacks = self._found
        if needle == last:
            return keys
        if not (last and last in needle):
            keys, haystacks = self._order, self._haystacks
        kept = [needle in hay for hay in haystacks]
        if not all(kept):
            keys, haystacks = list(compress(keys, kept)), list(compress(haystacks, kept))
        self._found = (needle, keys, haystacks)
        return keys

    def _cells(self, key: str) -> tuple[Text, ...]:
        u = self._users[key]
        return (
            Text(MARK if key in self.marked else ""),
            Text(escape_controls(u.source)),
            Text(HIDDEN_PASSWORD if u.password else ""),
            Text(escape_controls(u.destination)),
            verdict_cell(self._verdicts.get(key), checking=key in self._checking),
            status_cell(self._statuses.get(key)) if self._statuses is not None else Text(READING, style="dim"),
        )

    def toggle_mark(self) -> None:
        key = self.cursor_key()
        if key is None:
            return
        self.marked ^= {key}
        self.refresh_key(key)

    def cell_text(self, key: str, column: str) -> str:
        return str(self.get_cell(key, column))

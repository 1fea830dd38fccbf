"""A task's log: history from the log file, then live lines, filtered by account, severity and a search text.

Lines go into a :class:`~textual.widgets.Log` (plain text: a folder called ``[Gmail]/Sent Mail`` is
shown as it is), always in batches through ``write_lines``. The pane keeps the records it was given
(up to ``keep``) so that changing a filter re-shows them; the ``Log`` holds at most ``max_lines``.
The ``Log`` follows the end (new lines, a resize, a refilter) until the admin scrolls up; scrolling back
to the end, or ``follow()`` (the ``f`` key of Task info), follows again. An admin reading further up is
never pulled down by new lines.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Sequence

from rich.highlighter import Highlighter
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.color import Color
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Log, Select

from mailmig_tui.engine.events import SEVERITIES
from mailmig_tui.engine.logfile import LogRecord
from mailmig_tui.engine.textsafe import escape_controls

ALL_ACCOUNTS = "*"
RUN_LINES = ""  # records without an account: run started/finished
SEARCH_DELAY = 0.15

_SEVERITY_RE = re.compile(r"^\S+ \S+ (DEBUG|INFO|WARNING|ERROR)\b")


def format_record(rec: LogRecord) -> str:
    """``01-05 10:00:01 INFO    alice [INBOX] text`` — the date and time as written in the file.

    Control characters show escaped, also in lines an older version wrote to the file as they came.
    """
    stamp = f"{rec.time[5:10]} {rec.time[11:19]}" if len(rec.time) >= 19 else rec.time
    where = " ".join(x for x in (rec.account, f"[{rec.folder}]" if rec.folder else "") if x)
    return escape_controls(f"{stamp} {rec.severity.upper():<7} {where + ' ' if where else ''}{rec.text}")


class SeverityHighlighter(Highlighter):
    """Colours the severity word (and an error line's text) with the theme's colours."""

    def __init__(self, styles: dict[str, Style]) -> None:
        self.styles = styles

    def highlight(self, text: Text) -> None:
        match = _SEVERITY_RE.match(text.plain)
        if match is None:
            return
        style = self.styles.get(match.group(1).lower())
        if style is not None:
            start, end = match.span(1)
            text.stylize(style, start, end)
            if match.group(1) == "ERROR":
                text.stylize(style, end)
        dim = self.styles.get("time")
        if dim is not None:
            text.stylize(dim, 0, 14)


class FollowLog(Log):
    """A ``Log`` anchored to its end (Textual's ``Widget.anchor``): it stays there whatever changes its size
    (new lines, a refilter, a resize); a scroll by the admin releases the anchor, scrolling back to the end
    or :meth:`follow` sets it again."""

    def on_mount(self) -> None:
        self.anchor()

    @property
    def following(self) -> bool:
        return self.is_anchored and not self._anchor_released

    def follow(self) -> None:
        self.anchor()


class LogPane(Vertical):
    """Filter bar (account, minimum severity, search) above a ``Log``."""

    def __init__(
        self,
        accounts: Sequence[str] = (),
        *,
        min_severity: str = "info",
        max_lines: int = 5_000,
        keep: int = 50_000,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self._accounts = list(accounts)
        self._records: deque[LogRecord] = deque(maxlen=keep)
        self._account = ALL_ACCOUNTS
        self._min = SEVERITIES.index(min_severity)
        self._search = ""
        self._max_lines = max_lines
        self._search_timer = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="log-filters"):
            options = [(Text("all accounts"), ALL_ACCOUNTS), (Text("run lines only"), RUN_LINES)]
            options += [(Text(escape_controls(a)), a) for a in self._accounts]
            yield Select(options, value=ALL_ACCOUNTS, allow_blank=False, compact=True, id="log-account")
            yield Select(
                [(Text(f"{s} and above" if s != "error" else s), s) for s in SEVERITIES],
                value=SEVERITIES[self._min],
                allow_blank=False,
                compact=True,
                id="log-severity",
            )
            yield Input(placeholder="search the log (/)", compact=True, id="log-search")
        yield FollowLog(max_lines=self._max_lines, highlight=True, id="log-lines")

    def on_mount(self) -> None:
        colors = self.app.get_css_variables()

        def style(name: str, **extra: bool) -> Style:
            return Style(color=Color.parse(colors[name]).rich_color, **extra)

        self.log_widget.highlighter = SeverityHighlighter(
            {
                "error": style("error", bold=True),
                "warning": style("warning"),
                "debug": Style(dim=True),
                "time": Style(dim=True),
            }
        )

    @property
    def log_widget(self) -> FollowLog:
        return self.query_one("#log-lines", FollowLog)

    # ----------------------------------------------------------------------------------------
    # Records.

    def add(self, records: Iterable[LogRecord]) -> None:
        """Append records (one batch: one ``write_lines`` call)."""
        records = list(records)
        if not records:
            return
        self._records.extend(records)
        lines = [format_record(r) for r in records if self.matches(r)]
        if lines:
            self.log_widget.write_lines(lines, scroll_end=False)

    def replace(self, records: Iterable[LogRecord]) -> None:
        """Show these records instead of the ones held."""
        self._records.clear()
        self._records.extend(records)
        self.refilter()

    @property
    def records(self) -> list[LogRecord]:
        return list(self._records)

    # ----------------------------------------------------------------------------------------
    # Filters.

    @property
    def account(self) -> str:
        return self._account

    @property
    def min_severity(self) -> str:
        return SEVERITIES[self._min]

    @property
    def search(self) -> str:
        return self._search

    def set_filters(self, *, account: str | None = None, min_severity: str | None = None, search: str | None = None):
        """Change filters from code (the widgets follow)."""
        if account is not None:
            self.query_one("#log-account", Select).value = account
            self._account = account
        if min_severity is not None:
            self.query_one("#log-severity", Select).value = min_severity
            self._min = SEVERITIES.index(min_severity)
        if search is not None:
            self.query_one("#log-search", Input).value = search
            self._search = search
        self.refilter()

    def matches(self, rec: LogRecord) -> bool:
        if self._account != ALL_ACCOUNTS and rec.account != self._account:
            return False
        if rec.severity in SEVERITIES and SEVERITIES.index(rec.severity) < self._min:
            return False
        return not self._search or self._search.casefold() in format_record(rec).casefold()

    def refilter(self) -> None:
        lines = [format_record(r) for r in self._records if self.matches(r)]
        log = self.log_widget
        log.clear()
        log.write_lines(lines[-self._max_lines :], scroll_end=False)
        log.follow()  # a new filter shows its last lines

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.value is Select.NULL:
            return
        if event.select.id == "log-account" and event.value != self._account:
            self._account = str(event.value)
            self.refilter()
        elif event.select.id == "log-severity" and SEVERITIES.index(str(event.value)) != self._min:
            self._min = SEVERITIES.index(str(event.value))
            self.refilter()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "log-search":
            return
        event.stop()
        if self._search_timer is not None:
            self._search_timer.stop()
        self._search_timer = self.set_timer(SEARCH_DELAY, lambda: self._apply_search(event.value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "log-search":
            event.stop()
            self._apply_search(event.value)
            self.log_widget.focus()

    def _apply_search(self, text: str) -> None:
        if text != self._search:
            self._search = text
            self.refilter()

    def cycle_severity(self) -> str:
        """The next minimum severity (debug → info → warning → error → debug)."""
        self.set_filters(min_severity=SEVERITIES[(self._min + 1) % len(SEVERITIES)])
        return self.min_severity

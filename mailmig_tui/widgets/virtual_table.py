"""A read-only table over a list of row keys that draws only the rows on screen.

Textual's DataTable measures every cell of the rows it is given and, after each ``update_cell``,
rebuilds a line index over all rows: at 100,000 accounts that is seconds at mount and about a
second per marked row. Here the rows are a plain list of keys; the table asks ``cells_of(key)`` for
the cells of the rows being drawn, and nothing else. Showing other rows (a filter) is one
:meth:`set_keys`; a changed row is redrawn with :meth:`refresh_key`. Column widths are fixed, or
set from the data by the owner (:meth:`set_width`), so no cell is ever measured.

The look and the keys follow DataTable's (header, row cursor, zebra stripes, enter selects).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

CELL_PADDING = 1
ELLIPSIS = "…"


class _RowMessage(Message):
    """What the table's row messages carry: the table, the cursor's row and its key."""

    def __init__(self, table: VirtualTable, row: int, key: str | None) -> None:
        super().__init__()
        self.table = table
        self.cursor_row = row
        self.key = key

    @property
    def control(self) -> VirtualTable:
        return self.table


class VirtualTable(ScrollView, can_focus=True):
    """Rows are keys (strings); ``columns`` are ``(key, label, width)`` with widths in cells."""

    COMPONENT_CLASSES = {"vtable--header", "vtable--cursor", "vtable--even-row", "vtable--odd-row"}

    DEFAULT_CSS = """
    VirtualTable {
        background: $surface;
        color: $foreground;
        height: auto;
        max-height: 100%;
        & > .vtable--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        &:ansi > .vtable--header {
            background: ansi_bright_blue;
            color: ansi_default;
        }
        & > .vtable--even-row {
            background: $surface-lighten-1 50%;
        }
        &:dark > .vtable--even-row {
            background: $surface-darken-1 40%;
        }
        & > .vtable--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        &:focus {
            background-tint: $foreground 5%;
            & > .vtable--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .vtable--header {
                background-tint: $foreground 5%;
            }
        }
    }
    """

    BINDINGS = [
        Binding("enter", "select_cursor", "Select", show=False),
        Binding("up", "cursor_up", "Cursor up", show=False),
        Binding("down", "cursor_down", "Cursor down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home,ctrl+home", "first_row", "First row", show=False),
        Binding("end,ctrl+end", "last_row", "Last row", show=False),
        Binding("left", "scroll_left", "Scroll left", show=False),
        Binding("right", "scroll_right", "Scroll right", show=False),
    ]

    cursor_row: reactive[int] = reactive(0, always_update=False, init=False, repaint=False)
    """The watcher redraws the two rows it concerns (and scrolls when the cursor leaves the page), not the table."""

    class RowHighlighted(_RowMessage):
        """The cursor is on another row (or the row under it changed); ``key`` None: the table is empty."""

    class RowSelected(_RowMessage):
        """Enter (or a click) on the cursor's row."""

        key: str

    def __init__(
        self,
        columns: Sequence[tuple[str, str, int]],
        cells_of: Callable[[str], Sequence[Text]],
        *,
        zebra_stripes: bool = False,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.columns = [key for key, _, _ in columns]
        self._labels = {key: label for key, label, _ in columns}
        self._widths = {key: max(width, cell_len(label)) for key, label, width in columns}
        self._cells_of = cells_of
        self._zebra = zebra_stripes
        self._keys: list[str] = []
        self._paint: _Paint | None = None
        self._update_virtual_size()

    # ------------------------------------------------------------------------------------------
    # Rows.

    @property
    def row_count(self) -> int:
        return len(self._keys)

    def row_keys(self) -> list[str]:
        """The keys of the rows shown, in order."""
        return list(self._keys)

    def visible_keys(self) -> list[str]:
        """The keys of the rows on screen."""
        top = round(self.scroll_y)
        return self._keys[top : top + self._page]

    def has_row(self, key: str) -> bool:
        return key in self._keys

    def set_keys(self, keys: list[str]) -> None:
        """Show these rows (the list is kept, not copied); the cursor stays on its row when it is still shown, else
        goes to the first row (a search's first match)."""
        before = self.cursor_key()
        self._keys = keys
        try:
            row = keys.index(before) if before is not None else 0
        except ValueError:
            row = 0
        self.set_reactive(VirtualTable.cursor_row, self.validate_cursor_row(row))
        self._update_virtual_size()
        self.refresh()
        self._cursor_moved()

    def set_width(self, column: str, width: int) -> None:
        """The width (cells) of a column whose values the owner measured; never narrower than its label."""
        self.set_column(column, self._labels[column], width)

    def set_column(self, column: str, label: str, width: int) -> None:
        """A column's label and width (cells; never narrower than the label): a narrow layout, say."""
        width = max(width, cell_len(label))
        if self._widths[column] != width or self._labels[column] != label:
            self._widths[column], self._labels[column] = width, label
            self._update_virtual_size()
            self.refresh()

    def column_width(self, column: str) -> int:
        return self._widths[column]

    def refresh_key(self, key: str) -> None:
        """Draw the row of ``key`` again (when it is on screen)."""
        on_screen = self.visible_keys()  # a row off screen is drawn when it scrolls in
        if key in on_screen:
            self._refresh_row(round(self.scroll_y) + on_screen.index(key))

    def cursor_key(self) -> str | None:
        return self._keys[self.cursor_row] if self._keys else None

    def move_cursor(self, *, row: int) -> None:
        self.cursor_row = self.validate_cursor_row(row)

    def get_row(self, key: str) -> list[Text]:
        return list(self._cells_of(key))

    def get_cell(self, key: str, column: str) -> Text:
        return self._cells_of(key)[self.columns.index(column)]

    # ------------------------------------------------------------------------------------------
    # The cursor and scrolling.

    @property
    def _page(self) -> int:
        """How many rows fit under the header."""
        return max(1, self.scrollable_content_region.height - 1)

    def validate_cursor_row(self, row: int) -> int:
        return max(0, min(row, len(self._keys) - 1))

    def watch_cursor_row(self, old: int, new: int) -> None:
        self._refresh_row(old)
        self._cursor_moved()

    def _cursor_moved(self) -> None:
        self._refresh_row(self.cursor_row)
        self._scroll_to_cursor()
        self.post_message(self.RowHighlighted(self, self.cursor_row, self.cursor_key()))

    def _scroll_to_cursor(self) -> None:
        if not self.scrollable_content_region.height:
            return  # not laid out yet: on_resize does it
        top, row = round(self.scroll_y), self.cursor_row
        if row < top:
            self.scroll_to(y=row, animate=False, immediate=True)
        elif row >= top + self._page:
            self.scroll_to(y=row - self._page + 1, animate=False, immediate=True)

    def on_resize(self, event: events.Resize) -> None:
        self._scroll_to_cursor()

    def _refresh_row(self, row: int) -> None:
        y = row - round(self.scroll_y) + 1
        if 1 <= y < self.size.height:
            self.refresh(Region(0, y, self.size.width, 1))

    def _update_virtual_size(self) -> None:
        width = sum(w + 2 * CELL_PADDING for w in self._widths.values())
        self.virtual_size = Size(width, len(self._keys) + 1)

    def action_cursor_up(self) -> None:
        self.cursor_row = self.validate_cursor_row(self.cursor_row - 1)

    def action_cursor_down(self) -> None:
        self.cursor_row = self.validate_cursor_row(self.cursor_row + 1)

    def action_page_down(self) -> None:
        page = self._page
        self.scroll_to(y=round(self.scroll_y) + page, animate=False, immediate=True)
        self.cursor_row = self.validate_cursor_row(self.cursor_row + page)

    def action_page_up(self) -> None:
        page = self._page
        self.scroll_to(y=max(0, round(self.scroll_y) - page), animate=False, immediate=True)
        self.cursor_row = self.validate_cursor_row(self.cursor_row - page)

    def action_first_row(self) -> None:
        self.cursor_row = 0

    def action_last_row(self) -> None:
        self.cursor_row = self.validate_cursor_row(len(self._keys) - 1)

    def action_select_cursor(self) -> None:
        key = self.cursor_key()
        if key is not None:
            self.post_message(self.RowSelected(self, self.cursor_row, key))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y < 1:
            return
        row = round(self.scroll_y) + offset.y - 1
        if row >= len(self._keys):
            return
        if row == self.cursor_row:
            self.action_select_cursor()
        else:
            self.cursor_row = row

    def _on_focus(self, event: events.Focus) -> None:
        super()._on_focus(event)
        self._refresh_row(self.cursor_row)

    def _on_blur(self, event: events.Blur) -> None:
        super()._on_blur(event)
        self._refresh_row(self.cursor_row)

    # ------------------------------------------------------------------------------------------
    # Drawing.

    def render_lines(self, crop: Region) -> list[Strip]:
        """Lines of one paint: what every line needs (styles, the page) is worked out once, not per line."""
        self._paint = self._paint_now()
        return super().render_lines(crop)

    def _paint_now(self) -> _Paint:
        base = self.rich_style
        component = self.get_component_rich_style
        return _Paint(
            width=self.size.width,
            top=round(self.scroll_y),
            page=self._page,
            base=base,
            header=base + component("vtable--header"),
            rows=(
                (base + component("vtable--even-row"), base + component("vtable--odd-row"))
                if self._zebra
                else (base, base)
            ),
            cursor=component("vtable--cursor"),
        )

    def render_line(self, y: int) -> Strip:
        paint = self._paint or self._paint_now()
        if y == 0:
            return self._strip([Text(self._labels[c]) for c in self.columns], paint.header, None, paint)
        row = paint.top + y - 1
        if row >= len(self._keys) or y > paint.page:  # past the end, or under the horizontal scrollbar
            return Strip.blank(paint.width, paint.base)
        over = paint.cursor if row == self.cursor_row else None
        return self._strip(self._cells_of(self._keys[row]), paint.rows[row % 2], over, paint)

    def _strip(self, cells: Sequence[Text], style: Style, over: Style | None, paint: _Paint) -> Strip:
        """One line: each cell's text in its own style, the padding around it in the row's."""
        segments = []
        pad = " " * CELL_PADDING
        if over is not None:
            style += over
        for column, cell in zip(self.columns, cells, strict=True):
            left, text, right = _fit(cell.plain, self._widths[column], cell.justify)
            cell_style = style if not cell.style else style + _style(cell.style) + (over or Style())
            segments += [Segment(pad + left, style), Segment(text, cell_style), Segment(right + pad, style)]
        strip = Strip(segments, self.virtual_size.width)
        x = round(self.scroll_x)
        return strip.crop(x, x + paint.width).extend_cell_length(paint.width, style)


@dataclass(frozen=True, slots=True)
class _Paint:
    """What the lines of one paint share."""

    width: int
    top: int
    page: int
    base: Style
    header: Style
    rows: tuple[Style, Style]  # even, odd
    cursor: Style


def _style(value: str | Style) -> Style:
    return value if isinstance(value, Style) else Style.parse(value)


def _fit(text: str, width: int, justify: str | None) -> tuple[str, str, str]:
    """``text`` on exactly ``width`` cells, as (fill before, text, fill after): cut with an ellipsis when too long,
    padded on the side its justification says."""
    size = cell_len(text)
    if size > width:
        return "", (set_cell_size(text, width - 1) + ELLIPSIS if width > 1 else set_cell_size(text, width)), ""
    space = " " * (width - size)
    return (space, text, "") if justify == "right" else ("", text, space)

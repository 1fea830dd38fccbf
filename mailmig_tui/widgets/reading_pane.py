"""A scrolling pane of text that is a Tab stop only while it has more to show than fits.

A plain ``VerticalScroll`` around a ``Static`` is always focusable, so a short text (one line of a
preview, a two-line error) became a Tab stop that showed nothing. This pane joins the focus chain
only when it can scroll, where the keys (up/down, page up/down, home/end) are needed, and shows its
focus with the app's focus bar (app.tcss).
"""

from __future__ import annotations

from textual.containers import VerticalScroll


class ReadingPane(VerticalScroll):
    """Scrolls read-only content; focusable only when the content is taller than the pane."""

    def allow_focus(self) -> bool:
        return self.max_scroll_y > 0 or self.max_scroll_x > 0

"""The key footer of every screen, rebuilt only when the keys it shows change.

Textual's Footer builds all its key widgets again on each change of the bindings: every focus move
and every ``refresh_bindings``, dozens of times while the task editor opens (about 0.4 s of the
editor's start on a 2-core server). Most of those changes show the same keys.
"""

from __future__ import annotations

from typing import Any

from textual.screen import Screen
from textual.widgets import Footer


class KeyFooter(Footer):
    """A Footer that recomposes once per refresh at most, and only when its keys differ from the shown ones."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._shown: tuple[object, ...] | None = None
        self._pending = False

    def bindings_changed(self, screen: Screen[Any]) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen and not self._pending:
            self._pending = True
            self.call_after_refresh(self._recompose_if_changed)

    async def _recompose_if_changed(self) -> None:
        self._pending = False
        if not self.is_attached:
            return
        shown = self._keys()
        if shown != self._shown:
            self._shown = shown
            await self.recompose()
            self._forget_removed_keys()

    def _forget_removed_keys(self) -> None:
        """Drop the removed keys' bindings to this footer's reactives (``compact``): Textual prunes them only when
        the value changes (textual#6666), so each rebuild would otherwise keep the keys it replaced alive, and
        every full garbage collection would walk more of them."""
        for watchers in getattr(self, "__watchers", {}).values():
            watchers[:] = [(node, callback) for node, callback in watchers if not node._closing]

    def _keys(self) -> tuple[object, ...]:
        keys = tuple(
            (binding.key, binding.action, binding.description, binding.group, enabled, tooltip)
            for _, binding, enabled, tooltip in self.screen.active_bindings.values()
            if binding.show
        )
        return (self.compact, self.show_command_palette, *keys)

"""The key footer of every screen, rebuilt only when the keys it shows change, and then in place.

Textual's Footer builds all its key widgets again on each change of the bindings: every focus move
and every ``refresh_bindings``, dozens of times while the task editor opens (about 0.4 s of the
editor's start on a 2-core server). Most of those changes show the same keys. The others (the user
list's letter keys hidden while its search box has the focus, say) are shown in the key widgets
there are, the ones left over hidden for later: a rebuild, each new widget styled and laid out,
cost about 35 ms per focus move on a busy 2-core machine. The footer is rebuilt only when it needs
more key widgets than it has, or a binding group.
"""

from __future__ import annotations

from typing import Any

from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

Shown = tuple[Binding, bool, str]
"""A key the footer shows: its binding, whether it is enabled, its tooltip."""


class KeyFooter(Footer):
    """A Footer that updates once per refresh at most, only when its keys differ from the shown ones, in place."""

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
            first = self._shown is None
            self._shown = shown
            if first or not self._update_in_place():
                await self.recompose()
                self._forget_removed_keys()

    def _keys(self) -> tuple[object, ...]:
        keys = tuple(
            (binding.key, binding.action, binding.description, binding.group, enabled, tooltip)
            for _, binding, enabled, tooltip in self.screen.active_bindings.values()
            if binding.show
        )
        return (self.compact, self.show_command_palette, *keys)

    def _update_in_place(self) -> bool:
        """Show the keys in the key widgets there are, hiding the ones left over, as Footer.compose would lay them
        out (one key per action, the command palette's on the right); False when it cannot: more keys than
        widgets, or a binding group (compose lays those out in a group of their own)."""
        active = self.screen.active_bindings
        per_action: dict[str, Shown] = {}
        for _, binding, enabled, tooltip in active.values():
            if binding.show:
                per_action.setdefault(binding.action, (binding, enabled, tooltip))
        wanted = list(per_action.values())
        keys = [child for child in self.children if isinstance(child, FooterKey)]
        if len(keys) != len(self.children) or any(binding.group is not None for binding, _, _ in wanted):
            return False
        plain = [key for key in keys if not key.has_class("-command-palette")]
        palette = [key for key in keys if key.has_class("-command-palette")]
        palette_shown: Shown | None = None
        if self.show_command_palette and self.app.ENABLE_COMMAND_PALETTE and self.app.COMMAND_PALETTE_BINDING in active:
            _, binding, enabled, _ = active[self.app.COMMAND_PALETTE_BINDING]
            palette_shown = (binding, enabled, binding.tooltip or binding.description)  # as Footer.compose
        if len(wanted) > len(plain) or bool(palette) != (palette_shown is not None):
            return False
        for widget, key in zip(plain, wanted, strict=False):
            self._show_key(widget, key)
            widget.display = True
        for widget in plain[len(wanted) :]:
            widget.display = False  # kept for when more keys are shown again
        if palette and palette_shown is not None:
            self._show_key(palette[0], palette_shown)
        return True

    def _show_key(self, widget: FooterKey, shown: Shown) -> None:
        binding, enabled, tooltip = shown
        widget.key, widget.key_display = binding.key, self.app.get_key_display(binding)
        widget.description, widget.action = binding.description, binding.action
        widget._disabled = not enabled  # what FooterKey.__init__ sets: a click on a disabled key rings the bell
        widget.set_class(not enabled, "-disabled")
        widget.tooltip = tooltip or None
        widget.refresh(layout=True)

    def _forget_removed_keys(self) -> None:
        """Drop the removed keys' bindings to this footer's reactives (``compact``): Textual prunes them only when
        the value changes (textual#6666), so each rebuild would otherwise keep the keys it replaced alive, and
        every full garbage collection would walk more of them."""
        for watchers in getattr(self, "__watchers", {}).values():
            watchers[:] = [(node, callback) for node, callback in watchers if not node._closing]

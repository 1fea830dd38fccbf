"""The key footer: updated in place when the keys it shows change, as a rebuild would show them; the keys a
rebuild drops are freed (Textual keeps them otherwise, textual#6666)."""

from __future__ import annotations

import gc
import weakref

from textual.widgets._footer import FooterKey

from mailmig_tui.screens.editor import TaskEditorScreen
from mailmig_tui.widgets.footer import KeyFooter
from tests.tui.test_editor import SIZE, EditorApp
from tests.tui.test_user_search import four_users
from tests.tui.test_users import open_users, save


def shown(footer: KeyFooter) -> list[tuple[str, str, str, bool, object]]:
    return [
        (key.key_display, key.description, key.action, key.has_class("-disabled"), key.tooltip)
        for key in footer.query(FooterKey)
        if key.display
    ]


async def test_focus_moves_show_their_keys_in_the_same_key_widgets_as_a_rebuild_would():
    """While the search box has the focus, the user list's letter keys type text: the footer hides them, and shows
    them again when the table has the focus, in the key widgets it has (no widget built per focus move)."""
    save(four_users())
    app = EditorApp(TaskEditorScreen("acme"))
    async with app.run_test(size=SIZE) as pilot:
        screen, pane, table = await open_users(pilot)
        footer = screen.query_one(KeyFooter)
        on_table = shown(footer)
        assert {"Import CSV", "Search"} <= {description for _, description, _, _, _ in on_table}
        widgets = set(footer.query(FooterKey))
        await pilot.press("slash")
        await pilot.pause()
        assert app.focused is pane.search_input
        typing = shown(footer)
        assert "Import CSV" not in {description for _, description, _, _, _ in typing} and typing
        await pilot.press("escape")
        await pilot.pause()
        assert app.focused is table and shown(footer) == on_table
        await pilot.press("slash")
        await pilot.pause()
        assert shown(footer) == typing
        assert set(footer.query(FooterKey)) == widgets, "the same key widgets"
        footer.refresh(recompose=True)
        await pilot.pause()
        assert set(footer.query(FooterKey)).isdisjoint(widgets), "rebuilt"
        assert shown(footer) == typing, "what a rebuild shows"


async def test_the_keys_a_rebuilt_footer_drops_are_freed():
    """A change the footer cannot make in place (the command palette's key goes) rebuilds it: the keys it showed
    before must not stay alive (the editor's garbage collections would walk more each time)."""
    save(four_users())
    app = EditorApp(TaskEditorScreen("acme"))
    async with app.run_test(size=SIZE) as pilot:
        screen, _, _ = await open_users(pilot)
        footer = screen.query_one(KeyFooter)
        await pilot.press("slash", "escape")  # keys built after the editor froze what it loaded
        await pilot.pause()
        before = [weakref.ref(key) for key in footer.query(FooterKey)]
        assert any(ref().has_class("-command-palette") for ref in before)
        footer.show_command_palette = False
        screen.refresh_bindings()
        await pilot.pause()
        assert not footer.query(FooterKey).filter(".-command-palette") and footer.query(FooterKey)
        gc.collect()
        assert [ref for ref in before if ref() is not None] == [], "the keys shown before are gone"

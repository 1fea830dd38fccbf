"""The key footer: the keys it drops when it is rebuilt are freed (Textual keeps them otherwise, textual#6666)."""

from __future__ import annotations

import gc
import weakref

from textual.widgets._footer import FooterKey

from mailmig_tui.screens.editor import TaskEditorScreen
from mailmig_tui.widgets.footer import KeyFooter
from tests.tui.test_editor import SIZE, EditorApp
from tests.tui.test_user_search import four_users
from tests.tui.test_users import open_users, save


async def test_the_keys_a_rebuilt_footer_drops_are_freed():
    """Each focus move between the user table and its search box shows other keys: the footer is rebuilt. The
    keys it showed before must not stay alive (the editor's garbage collections would walk more each time)."""
    save(four_users())
    app = EditorApp(TaskEditorScreen("acme"))
    async with app.run_test(size=SIZE) as pilot:
        screen, pane, _ = await open_users(pilot)
        footer = screen.query_one(KeyFooter)
        await pilot.press("slash")
        await pilot.pause()
        shown = [weakref.ref(key) for key in footer.query(FooterKey)]
        assert shown and app.focused is pane.search_input
        for _ in range(3):
            await pilot.press("escape", "slash")
            await pilot.pause()
        gc.collect()
        assert [ref for ref in shown if ref() is not None] == [], "the keys shown before are gone"
        assert footer.query(FooterKey), "the footer shows its keys"

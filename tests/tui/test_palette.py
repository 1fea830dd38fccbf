"""F1 and the command palette list the app's own actions with human names first: no framework
internals (Focus Next, the Keys panel), no widget class names, no duplicates."""

from __future__ import annotations

from textual.command import CommandList
from textual.widgets import DataTable

from mailmig_tui.app import MailmigApp
from mailmig_tui.engine import store
from mailmig_tui.screens.modals import HelpScreen
from mailmig_tui.screens.tasks import TasksScreen
from tests.tui.helpers import wait_for
from tests.tui.test_tasks_screen import acme

INTERNALS = ("Focus Next", "Focus Previous", "Keys", "palette")


async def test_the_palette_lists_the_app_actions_first_without_internals_or_duplicates(mailmig_home):
    store.save_task(acme())
    app = MailmigApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: app.screen.query(CommandList) and app.screen.query_one(CommandList).option_count)
        await pilot.pause()
        palette = app.screen.query_one(CommandList)
        titles = [str(palette.get_option_at_index(i).prompt).split("\n")[0] for i in range(palette.option_count)]
        assert titles[:6] == ["New", "Edit", "Start", "Info", "Duplicate", "Delete"], titles
        assert len(titles) == len(set(titles)), titles
        assert not set(INTERNALS) & set(titles), titles
        assert {"Help: keys", "Quit", "Theme"} <= set(titles), titles
        assert titles.index("Help: keys") < titles.index("Theme")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, TasksScreen))


async def test_f1_names_where_a_key_works_in_words_and_hides_framework_keys(mailmig_home):
    store.save_task(acme())
    app = MailmigApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        table = app.screen.query_one("#help-table", DataTable)
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        descriptions = [r[1] for r in rows]
        assert descriptions[0] == "New", descriptions
        assert not set(INTERNALS) & set(descriptions), descriptions
        assert "Command palette" in descriptions
        assert len(descriptions) == len(set(descriptions)), descriptions
        wheres = {r[2] for r in rows}
        assert wheres <= {"this screen", "in the table", "everywhere"}, wheres

"""Notifications never hide a dialog's buttons: over a modal they show at the top right."""

from __future__ import annotations

from textual.widgets import Button
from textual.widgets._toast import Toast

from mailmig_tui.app import MailmigApp
from mailmig_tui.screens.modals import ConfirmModal
from tests.tui.helpers import wait_for


async def test_a_notification_over_a_dialog_leaves_its_buttons_visible(mailmig_home):
    app = MailmigApp()
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        body = "\n".join(f"line {i} of a long question" for i in range(12))  # a tall dialog
        app.push_screen(ConfirmModal("Delete the task?", body))
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal))
        for i in range(3):
            app.notify(f"notification {i}: something happened that takes a few words to say", timeout=30)
        await wait_for(pilot, lambda: len(app.screen.query(Toast)) == 3)
        await pilot.pause(0.2)
        toasts = [t.region for t in app.screen.query(Toast)]
        buttons = [b.region for b in app.screen.query(Button)]
        assert buttons and all(b.height for b in buttons)
        for toast in toasts:
            for button in buttons:
                assert not toast.overlaps(button), (toast, button)

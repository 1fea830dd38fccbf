"""The editor's warning for security "none" says what the model says: shown towards another host,
not towards this machine (127.0.0.0/8, ::1, localhost), following the address as it is typed."""

from __future__ import annotations

from textual.widgets import Static

from mailmig_tui.engine import store
from mailmig_tui.engine.model import Source, Task, User, security_warning
from mailmig_tui.screens.editor import TaskEditorScreen
from tests.tui.test_editor import SIZE, EditorApp, clear, focus, shown, start, type_text


async def test_warning_follows_security_and_host() -> None:
    store.save_task(Task("acme", source=Source(host="127.0.0.1", port=143, security="none"), users=[User("a", "a")]))
    app = EditorApp(TaskEditorScreen("acme"))
    async with app.run_test(size=SIZE) as pilot:
        screen = await start(pilot)
        assert not shown(screen, "#security-warning"), "security none on loopback: no warning"

        await focus(pilot, "#f-source-host")
        await clear(pilot)
        await type_text(pilot, "mail.acme.example")
        await pilot.pause()
        assert shown(screen, "#security-warning")
        expected = security_warning("source.security", "mail.acme.example", "none")
        assert expected is not None
        assert str(screen.query_one("#security-warning", Static).render()) == expected.message

        await clear(pilot)
        await type_text(pilot, "localhost")
        await pilot.pause()
        assert not shown(screen, "#security-warning")

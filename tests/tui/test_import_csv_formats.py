"""The import dialog reads spreadsheet files as the CLI does: a French Excel CSV (BOM, ';', CRLF, a
French header) and a Windows-1252 file show their accounts in the preview and import."""

from __future__ import annotations

from textual.widgets import Static

from mailmig_tui.engine import model, store
from mailmig_tui.screens.editor import TaskEditorScreen
from mailmig_tui.screens.import_csv import ImportCsvModal
from mailmig_tui.screens.users import UserListPane
from tests.test_cli import FRENCH_EXCEL
from tests.tui.test_editor import SIZE, EditorApp, start, type_text


async def test_the_import_dialog_reads_a_french_excel_csv_and_a_windows_1252_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "comptes.csv").write_bytes(FRENCH_EXCEL)
    (tmp_path / "ansi.csv").write_bytes(
        "Compte;Mot de passe;Destination\r\njürgen@acme.example;€uro;j\r\n".encode("cp1252")
    )
    task = model.Task(name="acme", source=model.Source(host="mail.acme.example"))
    store.save_task(task)
    app = EditorApp(TaskEditorScreen("acme"))
    async with app.run_test(size=SIZE) as pilot:
        screen = await start(pilot)
        await pilot.press("f5")
        await pilot.pause()
        pane = screen.query_one(UserListPane)
        for name, expected in (
            ("comptes.csv", ["line 2: alice@acme.example → alice (password set)", "line 3: bob@acme.example → bob"]),
            ("ansi.csv", ["line 2: jürgen@acme.example → j (password set)"]),
        ):
            await pilot.press("i")
            await pilot.pause()
            modal = app.screen
            assert isinstance(modal, ImportCsvModal)
            await type_text(pilot, name)
            await pilot.pause()
            preview = str(modal.query_one("#csv-preview", Static).render())
            assert preview.startswith(f"{len(expected)} valid account(s), 0 bad line(s)"), preview
            assert "(the first line is a column header and was skipped)" in preview
            for line in expected:
                assert line in preview
            await pilot.press("enter", "enter")  # to the import button, and import
            await pilot.pause()
            assert app.screen is screen
    assert [(u.source, u.password) for u in pane.users] == [
        ("alice@acme.example", "pw-é"),
        ("bob@acme.example", 'p;w,"b"'),
        ("jürgen@acme.example", "€uro"),
    ]

"""Tab shows where it is: every stop of the focus chain is a visible control whose look changes with focus.

Each walk presses Tab (at most MAX_STOPS times) until the focus comes back to where it started. At
every stop the focused widget must be a control (a field, a button, the tab bar, a table or a pane
that scrolls), fully on the screen, and drawn differently from the same widget unfocused, as a
16-colour terminal shows it: the changed cells must fill a whole row or a whole column of the widget
or half of it, so a blinking cursor, a selected value or a faint tint is not enough.
"""

from __future__ import annotations

from rich.color import ColorSystem
from rich.style import Style
from textual.app import App
from textual.geometry import Region
from textual.pilot import Pilot
from textual.scroll_view import ScrollView
from textual.widget import Widget
from textual.widgets import (
    Button,
    Checkbox,
    Input,
    ListView,
    RadioButton,
    RadioSet,
    Select,
    Switch,
    Tabs,
    TextArea,
)

from mailmig_tui.app import MailmigApp
from mailmig_tui.engine import model, store
from mailmig_tui.screens.editor import TaskEditorScreen
from mailmig_tui.screens.import_csv import ImportCsvModal
from mailmig_tui.screens.modals import ErrorModal
from mailmig_tui.screens.settings import SettingsScreen
from mailmig_tui.widgets.reading_pane import ReadingPane
from tests.tui.helpers import wait_for
from tests.tui.test_editor import SIZE, clear, type_text

MAX_STOPS = 60
CONTROLS = (Input, Select, Switch, Checkbox, RadioButton, RadioSet, TextArea, Button, Tabs, ListView, ReadingPane)

MIN_DISTANCE = 80  # of 441 (black to white): a colour closer than that to the unfocused one is a tint
Rgb = tuple[int, int, int] | None
Look = tuple[Rgb, Rgb, int | None, int | None, tuple[bool, ...]]


def look(style: Style) -> Look:
    """What a cell shows: its colours as RGB and as a 16-colour terminal has them, reverse applied, and
    its attributes."""
    fg, bg = style.color, style.bgcolor
    if style.reverse:
        fg, bg = bg, fg
    rgb = [tuple(c.get_truecolor()) if c is not None else None for c in (fg, bg)]
    ansi = [c.downgrade(ColorSystem.STANDARD).number if c is not None else None for c in (fg, bg)]
    return rgb[0], rgb[1], ansi[0], ansi[1], (bool(style.bold), bool(style.underline), bool(style.italic))


def far(a: Rgb, b: Rgb) -> bool:
    if a is None or b is None:
        return a != b
    return sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) > MIN_DISTANCE**2


def differs(a: Look, b: Look, *, ansi: bool) -> bool:
    if a[4] != b[4]:
        return True
    return a[2:4] != b[2:4] if ansi else far(a[0], b[0]) or far(a[1], b[1])


def cells(app: App, region: Region) -> list[list[Look]]:
    strips = app.screen._compositor.render_strips()
    grid = []
    for y in range(region.y, region.bottom):
        row: list[Look] = []
        for segment in strips[y].crop(region.x, region.right):
            if not segment.control:
                row += [look(segment.style or Style())] * len(segment.text)
        grid.append(row)
    return grid


async def look_at_focus(pilot: Pilot) -> Widget:
    """Check the focused widget: a control, fully shown, and drawn differently from itself unfocused."""
    app = pilot.app
    widget = app.focused
    assert widget is not None, "Tab left nothing focused"
    name = f"{type(widget).__name__}#{widget.id}"
    # Tables, the log and the virtual table are ScrollViews; a VerticalScroll or a plain container is bare.
    is_view = isinstance(widget, ScrollView) and type(widget) is not ScrollView
    assert isinstance(widget, CONTROLS) or is_view, f"{name} is not a control (a bare container?)"
    if isinstance(widget, ReadingPane):
        assert widget.max_scroll_y > 0 or widget.max_scroll_x > 0, f"{name} stops Tab with nothing to scroll"
    await pilot.wait_for_scheduled_animations()  # focus scrolls the widget into view, animated
    assert widget.display and widget.visible, f"{name} is hidden"
    region = widget.region
    assert region.area > 0, f"{name} has no size"
    assert app.screen.region.contains_region(region), f"{name} at {region} is outside the screen"
    assert app.screen.find_widget(widget).visible_region == region, f"{name} at {region} is partly hidden"
    focused = cells(app, region)
    app.screen.set_focus(None)
    await pilot.pause()
    assert widget.region == region, f"{name} moves when it loses focus"
    blurred = cells(app, region)
    app.screen.set_focus(widget, scroll_visible=False)  # the next key press lets it repaint
    inner = region.shrink(widget.scrollbar_gutter).translate((-region.x, -region.y))
    for ansi, where in ((True, "in 16 colours"), (False, "in true colour")):
        diff = [
            [differs(focused[y][x], blurred[y][x], ansi=ansi) for x in range(inner.x, inner.right)]
            for y in range(inner.y, inner.bottom)
        ]
        full_line = any(all(row) for row in diff) or any(all(col) for col in zip(*diff, strict=True))
        changed = sum(map(sum, diff))
        assert full_line or 2 * changed >= inner.area, (
            f"{name}: focus changes {changed} of {inner.area} cells {where}, neither a whole row or column nor half"
        )
    return widget


async def walk(pilot: Pilot, until: str | None = None) -> list[Widget]:
    """Press Tab from the focused widget until the focus is back there (or on the widget ``until``),
    checking each stop."""
    first = pilot.app.focused
    stops = [await look_at_focus(pilot)]
    for _ in range(MAX_STOPS):
        await pilot.press("tab")
        focused = pilot.app.focused
        if focused is first or (until is not None and focused is not None and focused.id == until):
            return stops
        stops.append(await look_at_focus(pilot))
    raise AssertionError(f"Tab did not come back to {first} within {MAX_STOPS} presses")


def ids(stops: list[Widget]) -> list[str | None]:
    return [w.id for w in stops]


def save_task() -> None:
    users = [model.User(f"user{i}@acme.example", f"user{i}") for i in range(3)]
    store.save_task(model.Task(name="acme", source=model.Source(host="mail.acme.example"), users=users))


async def open_editor(pilot: Pilot) -> TaskEditorScreen:
    """The app's editor for the one task (the whole app, so its style sheet applies)."""
    app = pilot.app
    await wait_for(pilot, lambda: app.screen.query("#tasks-table"), what="the task list")
    await pilot.press("e")
    await wait_for(pilot, lambda: isinstance(app.screen, TaskEditorScreen), what="the editor")
    await pilot.pause()
    assert isinstance(app.screen, TaskEditorScreen)
    return app.screen


FILTER_FIELDS = [
    "f-filters-skip_before",
    "f-filters-skip_after",
    "f-filters-skip_trash",
    "f-filters-skip_junk",
    "f-filters-max_size_kb",
    "f-filters-mailboxes-enabled",
    "f-filters-mailboxes-policy",
    "f-filters-mailboxes-keywords",
    "f-filters-mailboxes-exceptions",
]


async def test_every_tab_stop_of_the_filter_tab_shows_the_focus():
    save_task()
    app = MailmigApp()
    async with app.run_test(size=SIZE) as pilot:
        await open_editor(pilot)
        await pilot.press("f3")
        await pilot.pause()
        stops = await walk(pilot)
        assert ids(stops) == [*FILTER_FIELDS, None]
        assert isinstance(stops[-1], Tabs)
        for box in FILTER_FIELDS[-2:]:  # "one per line": several lines show at 80x24 too
            assert app.screen.query_one(f"#{box}").region.height >= 4, box


async def test_every_tab_stop_of_the_general_tab_shows_the_focus():
    save_task()
    app = MailmigApp()
    async with app.run_test(size=SIZE) as pilot:
        await open_editor(pilot)
        stops = await walk(pilot)
        days = [f"day-{d}" for d in model.DAYS]
        assert {"f-name", "f-source-type", "f-source-host", "f-run-concurrency", *days} <= set(ids(stops))
        assert isinstance(stops[-1], Tabs)


async def test_the_general_tab_of_each_source_type_shows_the_focus():
    save_task()
    app = MailmigApp()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_editor(pilot)
        screen.query_one("#f-source-delegate-enabled", Switch).value = True
        await pilot.pause()
        screen.query_one("#f-source-delegate-method", Select).value = "template"
        await pilot.pause()
        screen.query_one("#f-source-type", Select).focus()
        await pilot.pause()
        assert "f-source-delegate-template" in ids(await walk(pilot, until="f-run-accounts_per_period"))
        for source_type, field_id in (("google", "f-source-label_strategy"), ("microsoft365", "f-source-tenant")):
            screen.query_one("#f-source-type", Select).value = source_type
            await pilot.pause()
            assert field_id in ids(await walk(pilot, until="f-run-accounts_per_period")), source_type


async def test_every_tab_stop_of_the_notification_and_user_tabs_shows_the_focus():
    save_task()
    app = MailmigApp()
    async with app.run_test(size=SIZE) as pilot:
        await open_editor(pilot)
        await pilot.press("f4")
        await pilot.pause()
        assert ids(await walk(pilot)) == [
            "f-notifications-on_success",
            "f-notifications-success_to",
            "f-notifications-on_failure",
            "f-notifications-failure_to",
            None,
        ]
        await pilot.press("f5")
        await pilot.pause()
        assert [type(s).__name__ for s in await walk(pilot)][-1] == "ContentTabs"


async def test_every_tab_stop_of_the_import_dialog_shows_the_focus(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "users.csv").write_text("".join(f"user{i}@acme.example,pw{i},user{i}\n" for i in range(40)))
    (tmp_path / "bad.csv").write_text("alice@acme.example,pw,alice\nbob:x@acme.example,pw,bob\n")
    save_task()
    app = MailmigApp()
    async with app.run_test(size=SIZE) as pilot:
        await open_editor(pilot)
        await pilot.press("f5")
        await pilot.pause()
        await pilot.press("i")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, ImportCsvModal)
        assert ids(await walk(pilot)) == ["csv-path", "cancel"]  # nothing to scroll, nothing to import yet
        await type_text(pilot, "users.csv")
        await pilot.pause()
        assert ids(await walk(pilot)) == ["csv-path", "csv-preview-scroll", "import-all", "import-valid", "cancel"]
        await clear(pilot)
        await type_text(pilot, "bad.csv")
        await pilot.pause()
        assert ids(await walk(pilot)) == ["csv-path", "import-valid", "cancel"]


async def test_every_tab_stop_of_settings_shows_the_focus(mailmig_home):
    app = MailmigApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("g")
        await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen), what="the settings screen")
        await pilot.pause()
        stops = await walk(pilot)
        assert {"destination-host", "destination-password", "test-destination", "smtp-sender", "save"} <= set(
            ids(stops)
        )


async def test_the_task_list_task_info_and_dialogs_show_the_focus(mailmig_home):
    save_task()
    app = MailmigApp()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.screen.query("#tasks-table"), what="the task list")
        assert ids(await walk(pilot)) == ["tasks-table"]
        app.push_screen(ErrorModal("Short", "One line."))
        await pilot.pause()
        assert ids(await walk(pilot)) == ["close"]
        await pilot.press("escape")
        app.push_screen(ErrorModal("Long", "\n".join(f"line {i}" for i in range(60))))
        await pilot.pause()
        assert [type(s) for s in await walk(pilot)] == [Button, ReadingPane]
        await pilot.press("escape")
        await pilot.press("i")
        await wait_for(pilot, lambda: app.screen.query("#log-lines"), what="task info")
        await pilot.pause()
        assert {"summary", "log-lines"} <= set(ids(await walk(pilot)))
        await pilot.press("f1")
        await pilot.pause()
        assert ids(await walk(pilot)) == ["help-table"]

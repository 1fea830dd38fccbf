"""Form helpers: a labelled field that shows the model's message for it, and text <-> value helpers.

The form never decides what is valid: it turns what the admin typed into the TOML-shaped data the
model reads (:func:`build`), and shows each :class:`~mailmig_tui.engine.model.Problem` next to the
field whose dotted path it names (:class:`FieldError`).
"""

from __future__ import annotations

import asyncio
import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.suggester import Suggester
from textual.widget import Widget
from textual.widgets import Checkbox, Input, Label, Select, Static, Switch, TextArea

from mailmig_tui.engine import model

_INDEX_RE = re.compile(r"\[\d+\]")


def widget_id(path: str) -> str:
    """The DOM id of the widget editing a dotted model path: ``source.port`` -> ``f-source-port``."""
    return "f-" + path.replace(".", "-")


def base_path(problem_field: str) -> str:
    """A problem's field without list indices: ``notifications.success_to[1]`` -> ``notifications.success_to``."""
    return _INDEX_RE.sub("", problem_field)


class FieldError(Static):
    """Where the model's messages about one field (a dotted path) appear; hidden while there are none.

    The one of a :class:`FormField` (``field``) is mounted into it the first time it has a message: a
    form of thirty fields that are fine has thirty widgets fewer to mount."""

    def __init__(
        self, path: str, *, target: Widget | None = None, field: FormField | None = None, id: str | None = None
    ) -> None:
        super().__init__("", classes="field-error", id=id, markup=False)
        self.path = path
        self.target = target
        self.field = field
        self.messages: list[str] = []
        self.display = False

    def show(self, messages: list[str]) -> None:
        self.messages = list(messages)
        if self.messages and self.field is not None and self.parent is None and self.field.is_attached:
            self.field.mount(self)
        self.update(Text("\n".join(self.messages)))
        self.display = bool(self.messages)
        for node in self._marked_nodes():
            node.set_class(bool(self.messages), "-problem")

    def _marked_nodes(self) -> list[Widget]:
        """The field (label in red) and its editing widget."""
        return [node for node in (self.field, self.target) if node is not None]


class FormField(Widget):
    """A label, the editing widget, an optional hint, and the model's messages about ``path``."""

    def __init__(self, label: str, widget: Widget, *, path: str, hint: str = "", id: str | None = None) -> None:
        super().__init__(classes="form-field", id=id)
        self.label = label
        self.widget = widget
        self.path = path
        self.hint = hint
        self.error = FieldError(path, target=widget, field=self)

    def compose(self) -> ComposeResult:
        yield Label(Text(self.label), classes="field-label", markup=False)
        yield self.widget
        if self.hint:
            yield Static(Text(self.hint), classes="field-hint", markup=False)
        if self.error.messages:  # shown before the field was mounted
            yield self.error


def field_errors(root: Widget) -> list[FieldError]:
    """The places for the model's messages under ``root``, in the order of the form (mounted or not yet)."""
    slots: list[FieldError] = []
    for node in root.query("FormField, FieldError"):
        if isinstance(node, FormField):
            slots.append(node.error)
        elif isinstance(node, FieldError) and node.field is None:
            slots.append(node)
    return slots


def field(label: str, widget: Widget, *, hint: str = "", path: str | None = None) -> FormField:
    """A FormField for ``widget`` whose id was made with :func:`widget_id` (the path is read back from it)."""
    if path is None:
        assert widget.id and widget.id.startswith("f-"), "give the widget an id made by widget_id()"
        path = widget.id[2:].replace("-", ".")
    return FormField(label, widget, path=path, hint=hint)


class LazyForm(VerticalScroll):
    """A form that edits one table of the task (``PATH``) on a tab, built the first time it is needed.

    A form's fifty widgets take a tenth of a second or more to mount on a 2-core server, and most edits
    never visit most tabs. Until :meth:`build` the form has no widgets and keeps the value it was
    loaded with: :meth:`dump` writes that value back unchanged. Subclasses give the fields (:meth:`fields`), put the value into
    them (:meth:`fill`) and read them back (:meth:`write`).
    """

    can_focus = False
    PATH = ""

    def __init__(self) -> None:
        super().__init__()
        self.loaded: Any = None
        self.built = False
        self._building: asyncio.Event | None = None

    def fields(self) -> ComposeResult:
        raise NotImplementedError

    def fill(self) -> None:
        raise NotImplementedError

    def write(self, data: dict[str, Any]) -> None:
        raise NotImplementedError

    def covers(self, problem_field: str) -> bool:
        """Whether a problem about ``problem_field`` is shown in this form."""
        return problem_field == self.PATH or problem_field.startswith(self.PATH + ".")

    async def build(self) -> None:
        """Mount the fields and fill them with the loaded value (once; later calls wait for the first)."""
        if self._building is None:
            self._building = asyncio.Event()
            await self.mount_compose(self.fields())
            self.built = True
            if self.loaded is not None:
                self.fill()
            self._building.set()
        await self._building.wait()

    def load(self, value: Any) -> None:
        self.loaded = value
        if self.built:
            self.fill()

    def dump(self, data: dict[str, Any]) -> None:
        """Write the form's values into the task's TOML-shaped ``data`` (the loaded value until built)."""
        if self.built:
            self.write(data)
        elif self.loaded is not None:
            set_path(data, self.PATH, model.to_dict(self.loaded))


EDITING = "Input, Select, Switch, Checkbox, TextArea, DataTable, VirtualTable, Button"


def focus_target(widget: Widget | None) -> Widget | None:
    """The first focusable editing widget at or under ``widget``."""
    if widget is None:
        return None
    inner = [w for w in widget.query(EDITING) if w.focusable]
    return inner[0] if inner else widget if widget.focusable else None


def value_of(widget: Widget) -> Any:
    """The raw value of an editing widget, for change detection."""
    if isinstance(widget, Input | Select | Switch | Checkbox):
        return widget.value
    if isinstance(widget, TextArea):
        return widget.text
    return None


def editing_widgets(root: Widget) -> list[Widget]:
    return list(root.query("Input, Select, Switch, Checkbox, TextArea"))


# --------------------------------------------------------------------------------------------
# Text <-> values.  Conversion only: whether a value is acceptable is the model's business.


def number(text: str) -> int | str:
    """A whole number when the text is one, else the text itself (the model then says what is wrong)."""
    stripped = text.strip()
    try:
        return int(stripped)
    except ValueError:
        return stripped


def split_list(text: str) -> list[str]:
    """Items written one per line or separated by commas; a ``/…/`` regular expression may hold commas."""
    items: list[str] = []
    for line in text.splitlines():
        rest = line.strip()
        while rest:
            regex = re.match(r"/.*?/(?=\s*(?:,|$))", rest)
            item = regex.group(0) if regex else rest.split(",", 1)[0]
            rest = rest[len(item) :].strip()
            if rest.startswith(","):
                rest = rest[1:].strip()
            if item.strip():
                items.append(item.strip())
    return items


def split_addresses(text: str) -> list[str]:
    """Recipients separated by commas, semicolons or blanks."""
    return [a for a in re.split(r"[,;\s]+", text) if a]


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set ``data["a"]["b"] = value`` for ``path`` "a.b", creating tables on the way."""
    *tables, key = path.split(".")
    for name in tables:
        data = data.setdefault(name, {})
    data[key] = value


def _drop_path(data: Any, path: str) -> bool:
    parts = base_path(path).split(".")
    for name in parts[:-1]:
        if not isinstance(data, dict) or name not in data:
            return False
        data = data[name]
    if isinstance(data, dict) and parts[-1] in data:
        del data[parts[-1]]
        return True
    return False


def build(cls: type, data: Mapping[str, Any]) -> tuple[Any, list[model.Problem]]:
    """A model object from form data plus the model's conversion problems.

    A value the model cannot convert (``port = "abc"``) is reported and replaced by its default, so
    that the object can still be checked with the model's other rules.
    """
    work = copy.deepcopy(dict(data))
    problems: list[model.Problem] = []
    while True:
        try:
            return model.from_dict(cls, work), problems
        except model.ValidationError as exc:
            problems += exc.problems
            if not any([_drop_path(work, p.field) for p in exc.problems]):
                raise


# --------------------------------------------------------------------------------------------
# Path completion for file inputs.


class PathSuggester(Suggester):
    """Completes the last part of a file path from what is on disk (directories end with "/")."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        typed = Path(value).expanduser()
        folder, stem = (typed, "") if value.endswith("/") else (typed.parent, typed.name)
        try:
            names = sorted(
                p.name + ("/" if p.is_dir() else "")
                for p in folder.iterdir()
                if p.name.startswith(stem) and (stem.startswith(".") or not p.name.startswith("."))
            )
        except OSError:
            return None
        for name in names:
            if name != stem:
                return value + name[len(stem) :]
        return None

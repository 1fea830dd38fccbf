"""The task editor's Filter tab: received-date range, Trash/Junk, size limit, mailbox filter."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.widgets import Input, Select, Static, Switch, TextArea

from mailmig_tui.engine import model
from mailmig_tui.widgets.form import LazyForm, field, number, set_path, split_list
from mailmig_tui.widgets.form import widget_id as wid

POLICIES = [("Skip matching folders", "skip"), ("Migrate only matching folders", "migrate")]
LIST_HINT = "one per line or separated by commas; Old matches Old and Old/2019; /…/ is a regular expression"


class FilterEditor(LazyForm):
    """Edits a task's ``filters`` table; values go to the model as typed, the model judges them."""

    PATH = "filters"
    loaded: model.Filters | None

    def fields(self) -> ComposeResult:
        yield field(
            "Skip mail before",
            Input(id=wid("filters.skip_before"), placeholder="YYYY-MM-DD"),
            hint="received date; empty = no limit",
        )
        yield field(
            "Skip mail after",
            Input(id=wid("filters.skip_after"), placeholder="YYYY-MM-DD"),
            hint="mail received on that day is kept; empty = no limit",
        )
        yield field("Skip Trash", Switch(id=wid("filters.skip_trash")), hint="by the \\Trash special-use attribute")
        yield field("Skip Junk", Switch(id=wid("filters.skip_junk")), hint="by the \\Junk special-use attribute")
        yield field("Max size (KB)", Input(id=wid("filters.max_size_kb"), type="integer"), hint="0 = no limit")
        yield Static("Mailbox filter (for Google Workspace: labels)", classes="editor-section", markup=False)
        yield field("Enabled", Switch(id=wid("filters.mailboxes.enabled")))
        yield field("Policy", Select(POLICIES, id=wid("filters.mailboxes.policy"), allow_blank=False))
        yield field("Keywords", self._list_area("filters.mailboxes.keywords"), hint=LIST_HINT)
        yield field(
            "Exceptions",
            self._list_area("filters.mailboxes.exceptions"),
            hint="folders matching an exception get the opposite decision",
        )

    @staticmethod
    def _list_area(path: str) -> TextArea:
        return TextArea(id=wid(path), soft_wrap=False, tab_behavior="focus", compact=True, classes="list-area")

    def fill(self) -> None:
        filters = self.loaded
        assert filters is not None
        mb = filters.mailboxes
        with self.prevent(Input.Changed, Switch.Changed, Select.Changed, TextArea.Changed):
            self.query_one(f"#{wid('filters.skip_before')}", Input).value = (
                filters.skip_before.isoformat() if filters.skip_before else ""
            )
            self.query_one(f"#{wid('filters.skip_after')}", Input).value = (
                filters.skip_after.isoformat() if filters.skip_after else ""
            )
            self.query_one(f"#{wid('filters.skip_trash')}", Switch).value = filters.skip_trash
            self.query_one(f"#{wid('filters.skip_junk')}", Switch).value = filters.skip_junk
            self.query_one(f"#{wid('filters.max_size_kb')}", Input).value = str(filters.max_size_kb)
            self.query_one(f"#{wid('filters.mailboxes.enabled')}", Switch).value = mb.enabled
            self.query_one(f"#{wid('filters.mailboxes.policy')}", Select).value = (
                mb.policy if mb.policy in model.FILTER_POLICIES else "skip"
            )
            self.query_one(f"#{wid('filters.mailboxes.keywords')}", TextArea).load_text("\n".join(mb.keywords))
            self.query_one(f"#{wid('filters.mailboxes.exceptions')}", TextArea).load_text("\n".join(mb.exceptions))

    def write(self, data: dict[str, Any]) -> None:
        """Write the tab's values into the task's TOML-shaped ``data`` (an empty date means none)."""
        filters = data.setdefault("filters", {})
        for name in ("skip_before", "skip_after"):
            text = self.query_one(f"#{wid('filters.' + name)}", Input).value.strip()
            if text:
                filters[name] = text
            else:
                filters.pop(name, None)
        for path in ("filters.skip_trash", "filters.skip_junk", "filters.mailboxes.enabled"):
            set_path(data, path, self.query_one(f"#{wid(path)}", Switch).value)
        set_path(data, "filters.max_size_kb", number(self.query_one(f"#{wid('filters.max_size_kb')}", Input).value))
        set_path(data, "filters.mailboxes.policy", self.query_one(f"#{wid('filters.mailboxes.policy')}", Select).value)
        for name in ("keywords", "exceptions"):
            path = f"filters.mailboxes.{name}"
            set_path(data, path, split_list(self.query_one(f"#{wid(path)}", TextArea).text))

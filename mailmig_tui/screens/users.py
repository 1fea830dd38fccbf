"""The task editor's User list tab: the accounts, add/edit one, CSV import, delete, verify and export.

The pane edits a working copy of the task's users; the editor saves it with the rest of the task.
Verification runs in a thread worker: each verdict is posted as a message when it arrives and the
row is updated in place on the UI thread. ``/`` searches the list (account or destination, any
case) and ``s`` cycles the migration-status filter; the summary line then says "N of M".
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

from rich.cells import cell_len
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Input, Static
from textual.worker import Worker, WorkerState

from mailmig_tui.engine import model, store, userlist, verify
from mailmig_tui.engine.state import AccountProgress
from mailmig_tui.engine.status import StatusReader
from mailmig_tui.engine.textsafe import escape_controls
from mailmig_tui.screens.editor_modals import PathModal, UserModal
from mailmig_tui.screens.import_csv import ImportCsvModal, ImportDecision
from mailmig_tui.screens.modals import ConfirmModal
from mailmig_tui.widgets.user_table import STATUS_FILTERS, UserTable
from mailmig_tui.widgets.virtual_table import VirtualTable

TaskProvider = Callable[[], tuple[model.Task, list[model.Problem]]]
VERIFY_GROUP = "verify-users"
STATUS_GROUP = "user-statuses"
_USER_FIELD = re.compile(r"^users\[(\d+)\]")


class VerifyResult(Message):
    """One account's verdict, posted from the verification thread."""

    def __init__(self, verdict: verify.Verdict) -> None:
        super().__init__()
        self.verdict = verdict


class VerifyFinished(Message):
    def __init__(self, verdicts: list[verify.Verdict]) -> None:
        super().__init__()
        self.verdicts = verdicts


def copy_users(users: list[model.User]) -> list[model.User]:
    """A working copy of a user list (its fields are strings: a third of the time of copy.deepcopy)."""
    return [model.User(u.source, u.destination, u.password, u.destination_password) for u in users]


def load_statuses(task_name: str, reader: StatusReader) -> dict[str, AccountProgress]:
    """Per account key, where the task's state database says it stands (nothing when it never ran).
    ``reader`` may hold it already: the task list's, which reads it while the task runs."""
    return reader.progress(task_name)[0] if task_name else {}


def _unwrapped_height(text: Text, width: int) -> int | None:
    """How many lines ``text`` takes in ``width`` cells when none of its lines is wider (None: one may wrap)."""
    lines = text.plain.split("\n")
    if width <= 0 or any(cell_len(line) > width for line in lines):
        return None
    return len(lines)


class UserListPane(Vertical):
    """The accounts of the task being edited."""

    BINDINGS = [
        Binding("a", "add_user", "Add", id="users.add"),
        Binding("enter", "edit_user", "Edit", id="users.edit", show=False),
        Binding("i", "import_csv", "Import CSV", id="users.import"),
        Binding("space", "toggle_mark", "Mark", id="users.mark", show=False),
        Binding("delete,d", "delete_selected", "Delete", id="users.delete"),
        Binding("v", "verify_all", "Verify all", id="users.verify_all"),
        Binding("V", "verify_selected", "Verify marked", id="users.verify_selected", show=False),
        Binding("E", "export", "Export", id="users.export"),
        Binding("slash", "search", "Search", id="users.search"),
        Binding("s", "cycle_status", "Status filter", id="users.status_filter"),
        Binding("escape", "clear_search", "Clear search", id="users.clear_search", show=False),
    ]

    verifying: reactive[bool] = reactive(False, bindings=True)

    def __init__(
        self, task_provider: TaskProvider, *, reader: StatusReader | None = None, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.task_provider = task_provider
        self.reader = reader if reader is not None else StatusReader()
        self.users: list[model.User] = []
        self.verdicts: dict[str, verify.Verdict] = {}
        self.statuses: dict[str, AccountProgress] = {}
        self.checking: set[str] = set()
        self.statuses_read = False
        self._shown: dict[str, Text] = {}
        self._unread: str | None = None  # the task whose state is read once the list is first shown
        self._seen = False

    def compose(self) -> ComposeResult:
        yield Static("", id="users-summary", markup=False)
        yield UserTable(id="users-table")
        yield Input(placeholder="search accounts and destinations", id="users-search")
        yield Static("", id="users-detail", markup=False)
        yield Static("", id="users-problems", classes="field-error", markup=False)

    @property
    def table(self) -> UserTable:
        return self.query_one(UserTable)

    @property
    def search_input(self) -> Input:
        return self.query_one("#users-search", Input)

    def on_mount(self) -> None:
        self.search_input.display = False

    # ------------------------------------------------------------------------------------------
    # Contents.

    def load(self, users: list[model.User], task_name: str) -> None:
        """Show ``users``, which the pane owns from now on (the editor copies them for each save)."""
        self.users = list(users)
        self.verdicts.clear()
        self.statuses, self.statuses_read = {}, False
        self.rebuild()  # the Migration column says "reading…" until the state is read
        self.reload_statuses(task_name)

    def reload_statuses(self, task_name: str) -> None:
        """Read the migration state again, in a thread, once the list has been shown and painted: the 100,000
        accounts' read takes a third of a second of the interpreter, which would slow the editor's opening
        and the list's first paint by as much (the Migration column says "reading…" meanwhile)."""
        if self._seen:
            self.call_after_refresh(self._read_statuses, task_name)
        else:
            self._unread = task_name

    def on_show(self) -> None:
        self._seen = True
        if self._unread is not None:
            task_name, self._unread = self._unread, None
            self.call_after_refresh(self._read_statuses, task_name)

    @work(thread=True, exclusive=True, group=STATUS_GROUP, exit_on_error=False, description="read the migration state")
    def _read_statuses(self, task_name: str) -> dict[str, AccountProgress]:
        return load_statuses(task_name, self.reader)

    def _statuses_read(self, statuses: dict[str, AccountProgress]) -> None:
        self.statuses, self.statuses_read = statuses, True
        self.table.set_statuses(statuses)
        self._update_summary()
        self._update_detail()

    def state(self) -> list[model.User]:
        """What is saved of the list, for unsaved-change detection: a copy of the list, not of the users (no
        account is changed in place: an edit or an import puts a new User in its place), which compares by
        identity first (100,000 accounts: a millisecond, where copying their fields takes forty)."""
        return list(self.users)

    def rebuild(self) -> None:
        self.table.show(self.users, self.verdicts, self.statuses if self.statuses_read else None, self.checking)
        self._update_summary()
        self._update_detail()
        self.refresh_bindings()

    def _update_summary(self) -> None:
        table = self.table
        marked = len(table.marked)
        if table.filtered:
            why = [f"matching {table.search!r}"] if table.search else []
            why += [f"status {table.status_filter}"] if table.status_filter != "all" else []
            text = f"{table.row_count:,} of {table.total:,} account(s) shown ({', '.join(why)})"
            text += (f", {marked:,} marked" if marked else "") + "."
        elif self.users:
            text = f"{len(self.users):,} account(s)" + (f", {marked:,} marked" if marked else "") + "."
        else:
            text = (
                "No accounts yet: press a to add one, or i to import a CSV file "
                "(source account, password, destination account)."
            )
        self._set_text("#users-summary", Text(text))

    def _update_detail(self) -> None:
        key = self.table.cursor_key()
        detail = Text("")
        if key is not None:
            verdict, summary = self.verdicts.get(key), self.statuses.get(key)
            if verdict is not None:
                text = escape_controls(f"{verdict.account}: {verdict.text()}")
                detail.append(text, style="green" if verdict.ok else "red")
            if summary is not None and summary.last_error:
                detail.append(("\n" if detail else "") + f"last migration error: {escape_controls(summary.last_error)}")
        self._set_text("#users-detail", detail)

    def _set_text(self, selector: str, text: Text) -> None:
        """Update a line only when it changes, and lay the screen out again only when its height may change (the
        summary's count, typed into the search key by key, keeps its one line): a layout costs tens of ms per key."""
        old = self._shown.get(selector)
        if old == text:
            return
        self._shown[selector] = text
        widget = self.query_one(selector, Static)
        width = widget.content_region.width
        height = _unwrapped_height(text, width)
        widget.update(text, layout=height is None or old is None or _unwrapped_height(old, width) != height)

    def show_problems(self, problems: list[model.Problem]) -> int | None:
        """Show the model's messages about accounts; returns the first account's index, if any."""
        lines: list[str] = []
        first: int | None = None
        for p in problems:
            m = _USER_FIELD.match(p.field)
            if not m:
                continue
            index = int(m.group(1))
            first = index if first is None else min(first, index)
            account = self.users[index].source if index < len(self.users) else "?"
            lines.append(escape_controls(f"row {index + 1} ({account}): {p.message}"))
        widget = self.query_one("#users-problems", Static)
        widget.update(Text("\n".join(lines)))
        widget.display = bool(lines)
        return first

    def focus_row(self, index: int) -> None:
        """Put the cursor on account ``index`` of the list (clearing the search and filter that hide it)."""
        table = self.table
        key = model.account_key(self.users[index].source) if index < len(self.users) else None
        if key is not None and not table.has_row(key):
            self._set_search("")
            table.set_status_filter("all")
            self._update_summary()
        table.focus()
        table.move_cursor(row=table.row_keys().index(key) if key is not None else index)

    @on(VirtualTable.RowHighlighted, "#users-table")
    def _row_highlighted(self) -> None:
        self._update_detail()

    @on(VirtualTable.RowSelected, "#users-table")
    def _row_selected(self) -> None:
        self.action_edit_user()

    # ------------------------------------------------------------------------------------------
    # Search and status filter: over the plain list, in the table.

    def action_search(self) -> None:
        box = self.search_input
        box.display = True
        box.focus()

    @on(Input.Changed, "#users-search")
    def _search_changed(self, event: Input.Changed) -> None:
        self.table.set_search(event.value)
        self._update_summary()
        self._update_detail()

    @on(Input.Submitted, "#users-search")
    def _search_kept(self) -> None:
        self.search_input.display = bool(self.table.search.strip())
        self.table.focus()

    def action_clear_search(self) -> None:
        self._set_search("")
        self._update_summary()
        self._update_detail()
        self.table.focus()

    def _set_search(self, text: str) -> None:
        box = self.search_input
        with box.prevent(Input.Changed):
            box.value = text
        box.display = bool(text)
        self.table.set_search(text)

    def action_cycle_status(self) -> None:
        table = self.table
        table.set_status_filter(STATUS_FILTERS[(STATUS_FILTERS.index(table.status_filter) + 1) % len(STATUS_FILTERS)])
        self._update_summary()
        self._update_detail()
        self.notify(f"Showing {table.status_filter} accounts: {table.row_count:,} of {table.total:,}.", timeout=2)

    # ------------------------------------------------------------------------------------------
    # Actions.

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "clear_search":
            return self.app.focused is self.search_input  # elsewhere escape leaves the editor
        if action in ("verify_all", "verify_selected") and self.verifying:
            return None
        if not self.users and action in (
            "edit_user", "toggle_mark", "delete_selected", "verify_all", "verify_selected", "export"
        ):  # fmt: skip
            return None
        return True

    def _check_user(self, index: int | None) -> Callable[[model.User], list[model.Problem]]:
        """The model's problems with ``user`` as it would stand in the list (replacing row ``index``)."""
        try:
            settings: model.Settings | None = store.load_settings()
        except store.ConfigError:
            settings = None  # the per-user destination password cannot be checked; the rest can

        def check(user: model.User) -> list[model.Problem]:
            task, _ = self.task_provider()
            others = [u for i, u in enumerate(self.users) if i != index]
            task.users = [*others, user]  # last, so that a duplicate is reported against this account
            prefix = f"users[{len(others)}]."
            return [
                model.Problem(p.field.removeprefix(prefix), p.message)
                for p in model.validate_task(task, settings=settings)
                if p.field.startswith(prefix)
            ]

        return check

    def action_add_user(self) -> None:
        self.app.push_screen(UserModal("Add an account", None, self._check_user(None)), self._added)

    def _added(self, user: model.User | None) -> None:
        if user is None:
            return
        self.users.append(user)
        self.verdicts.pop(model.account_key(user.source), None)
        self.rebuild()
        self.focus_row(len(self.users) - 1)
        self.notify(f"Added {user.source} (saved with ctrl+s).", markup=False)

    def action_edit_user(self) -> None:
        key = self.table.cursor_key()
        index = next((i for i, u in enumerate(self.users) if model.account_key(u.source) == key), None)
        if index is None:
            return
        old = self.users[index]

        def edited(user: model.User | None) -> None:
            if user is None:
                return
            self.users[index] = user
            for account in (old.source, user.source):
                self.verdicts.pop(model.account_key(account), None)
            if model.account_key(old.source) in self.table.marked:
                self.table.marked.discard(model.account_key(old.source))
                self.table.marked.add(model.account_key(user.source))
            self.rebuild()
            self.focus_row(index)

        self.app.push_screen(UserModal(f"Edit the account {old.source}", old, self._check_user(index)), edited)

    def action_toggle_mark(self) -> None:
        self.table.toggle_mark()
        self.table.action_cursor_down()
        self._update_summary()

    def _chosen(self) -> list[model.User]:
        """The marked accounts, or the one under the cursor when none is marked."""
        keys = set(self.table.marked) or {k for k in [self.table.cursor_key()] if k}
        return [u for u in self.users if model.account_key(u.source) in keys]

    def action_import_csv(self) -> None:
        task, _ = self.task_provider()
        self.app.push_screen(ImportCsvModal(task.source), self._imported)

    def _imported(self, decision: ImportDecision | None) -> None:
        if decision is None:
            return
        task, _ = self.task_provider()
        task.users = self.users
        summary = userlist.apply(task, decision.parsed, valid_only=decision.valid_only)
        self.users = task.users
        for _, user in decision.parsed.users:
            self.verdicts.pop(model.account_key(user.source), None)
        self.rebuild()
        self.notify(
            f"{decision.path}: {summary.added} added, {summary.updated} updated, {summary.rejected} line(s) rejected.",
            title="CSV import",
            markup=False,
        )

    def action_delete_selected(self) -> None:
        chosen = self._chosen()
        if not chosen:
            return
        names = ", ".join(u.source for u in chosen[:5]) + (f" and {len(chosen) - 5} more" if len(chosen) > 5 else "")

        def done(confirmed: bool | None) -> None:
            if not confirmed:
                return
            task, _ = self.task_provider()
            task.users = self.users
            removed = userlist.remove(task, [u.source for u in chosen])
            self.users = task.users
            self.table.marked.clear()
            self.rebuild()
            self.notify(f"Removed {removed} account(s) from the list (saved with ctrl+s).", markup=False)

        self.app.push_screen(
            ConfirmModal("Delete accounts", f"Remove {len(chosen)} account(s) from the list? {names}", yes="Remove"),
            done,
        )

    def action_verify_all(self) -> None:
        self._verify(list(self.users))

    def action_verify_selected(self) -> None:
        self._verify(self._chosen())

    def _verify(self, users: list[model.User]) -> None:
        if not users or self.verifying:
            return
        task, problems = self.task_provider()
        source_problems = [p for p in problems if p.field.startswith("source")]
        if source_problems:
            self.notify(
                "Fix the source server first (General tab): " + "; ".join(str(p) for p in source_problems),
                severity="error",
                markup=False,
            )
            return
        try:
            settings = store.load_settings()
        except store.ConfigError as exc:
            self.notify(str(exc), title="Settings", severity="error", markup=False)
            return
        users = [dataclasses.replace(u) for u in users]
        task.users = users
        self.checking.clear()
        self.checking.update(model.account_key(u.source) for u in users)
        for key in self.checking:
            self.verdicts.pop(key, None)
            self.table.refresh_key(key)
        self.verifying = True
        self._run_verify(task, settings, users)

    @work(thread=True, exclusive=True, group=VERIFY_GROUP, exit_on_error=False, description="verify accounts")
    def _run_verify(self, task: model.Task, settings: model.Settings, users: list[model.User]) -> None:
        def report(verdict: verify.Verdict) -> None:
            self.post_message(VerifyResult(verdict))

        verdicts = verify.verify_users(task, settings, users, on_result=report)
        self.post_message(VerifyFinished(verdicts))

    def on_verify_result(self, message: VerifyResult) -> None:
        key = model.account_key(message.verdict.account)
        self.checking.discard(key)
        if self.table.has_account(key):
            self.verdicts[key] = message.verdict
            self.table.refresh_key(key)
            self._update_detail()

    def on_verify_finished(self, message: VerifyFinished) -> None:
        failed = sum(not v.ok for v in message.verdicts)
        self.notify(
            f"{len(message.verdicts) - failed} account(s) OK, {failed} failed.",
            title="Verify",
            severity="warning" if failed else "information",
        )

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == STATUS_GROUP:
            if event.state == WorkerState.SUCCESS:
                self._statuses_read(event.worker.result)
            elif event.state == WorkerState.ERROR:  # a broken state DB must not stop editing
                self._statuses_read({})
                self.notify(f"Cannot read the migration state: {event.worker.error}", severity="warning", markup=False)
            return
        if event.worker.group != VERIFY_GROUP:
            return
        if event.state in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            self.verifying = False
        if event.state == WorkerState.ERROR:
            keys = list(self.checking)
            self.checking.clear()
            for key in keys:
                self.table.refresh_key(key)
            self.notify(f"Verification stopped: {event.worker.error}", severity="error", markup=False)

    def action_export(self) -> None:
        task, _ = self.task_provider()
        default = str(Path.cwd() / f"{task.name or 'users'}-users.csv")
        self.app.push_screen(
            PathModal("Export the user list to (passwords are not exported):", value=default, action="Export"),
            self._export_to,
        )

    def _export_to(self, path: str | None) -> None:
        if not path:
            return
        target = Path(path).expanduser()
        if target.exists():
            self.app.push_screen(
                ConfirmModal("Export", f"{target} exists. Replace it?", yes="Replace"),
                lambda ok: self._write_export(target) if ok else None,
            )
        else:
            self._write_export(target)

    def _write_export(self, target: Path) -> None:
        task, _ = self.task_provider()
        task.users = self.users
        try:
            target.write_text(userlist.export(task), encoding="utf-8", newline="")
        except OSError as exc:
            self.notify(f"{target}: cannot write: {exc.strerror}", severity="error", markup=False)
            return
        self.notify(f"Exported {len(self.users)} account(s) to {target} (without passwords).", markup=False)

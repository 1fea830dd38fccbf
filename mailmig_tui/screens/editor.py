"""The task editor: four tabs (General, Filter, Notification, User list) over one task.

Save (ctrl+s) turns the form into the task's TOML-shaped data, lets the model convert and validate
it, shows every message next to its field, focuses the first bad field, and saves through the store
(secrets go to the secrets file; a Google key file is copied into the secrets area). The editor
stays open after saving; escape leaves, asking first when there are unsaved changes. The screen's
result is the name the task was last saved under. The Filter and Notification tabs are built the
first time they are shown or have a problem to show (:class:`~mailmig_tui.widgets.form.LazyForm`):
the editor opens sooner, and a tab never built saves what was loaded.

For a Microsoft 365 task with the device-code sign-in, Sign in (ctrl+g) saves the task when needed
and shows the code in :class:`~mailmig_tui.screens.editor_modals.SignInModal`; the General tab then
says who is signed in, and Sign out (ctrl+o) forgets it.
"""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import Callable
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Header, Static, TabbedContent, TabPane

from mailmig_tui.engine import model, store
from mailmig_tui.engine.sources import gmail_auth, graph_auth
from mailmig_tui.engine.status import StatusReader
from mailmig_tui.screens.editor_modals import EDITOR_CSS, SignInModal
from mailmig_tui.screens.editor_tabs import GeneralTab, NotificationTab, saved_key_copy
from mailmig_tui.screens.modals import ConfirmModal
from mailmig_tui.screens.users import UserListPane, copy_users
from mailmig_tui.widgets.filter_editor import FilterEditor
from mailmig_tui.widgets.footer import KeyFooter
from mailmig_tui.widgets.form import (
    FieldError,
    LazyForm,
    base_path,
    build,
    editing_widgets,
    field_errors,
    focus_target,
    value_of,
)

TABS = ("tab-general", "tab-filter", "tab-notification", "tab-users")
_NOT_SAVED = {"preset", "users-search"}  # inputs that choose or find, not part of the task
_FILE_FIELDS = {"google": ("key_file", "service-account key"), "microsoft365": ("certificate_file", "certificate")}


def _file_problems(task: model.Task, saved_name: str) -> list[model.Problem]:
    """Files the source names must exist now, or the run would fail later (a Google key may live on as
    the copy saved with the task)."""
    name, what = _FILE_FIELDS.get(task.source.type, ("", ""))
    value = getattr(task.source, name, "") if name else ""
    if not value or (task.source.type == "google" and saved_key_copy(value, saved_name)):
        return []
    path = Path(value).expanduser()
    if path.is_file():
        return []
    reason = "is a folder" if path.is_dir() else "does not exist"
    return [model.Problem(f"source.{name}", f"{path} {reason}: give the path of the {what} file")]


def _fields_state(root: Widget) -> tuple[tuple[str, object], ...]:
    """The values of the editing widgets under ``root`` that the task saves, for unsaved-change detection."""
    return tuple((w.id, value_of(w)) for w in editing_widgets(root) if w.id and w.id not in _NOT_SAVED)


class TaskEditorScreen(Screen[str | None]):
    """Create (``task_name=None``), edit, or duplicate (``template=task``) a task."""

    CSS_PATH = EDITOR_CSS
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", id="editor.save"),
        Binding("escape", "leave", "Back", id="editor.back"),
        Binding("f2", "show_tab('tab-general')", "General", id="editor.tab_general", show=False),
        Binding("f3", "show_tab('tab-filter')", "Filter", id="editor.tab_filter", show=False),
        Binding("f4", "show_tab('tab-notification')", "Notify", id="editor.tab_notification", show=False),
        Binding("f5", "show_tab('tab-users')", "Users", id="editor.tab_users", show=False),
        Binding("ctrl+g", "sign_in", "Sign in", id="editor.sign_in"),
        Binding("ctrl+o", "sign_out", "Sign out", id="editor.sign_out"),
        Binding("ctrl+y", "copy_delegation_link", "Copy Admin console link", id="editor.copy_delegation_link"),
    ]

    def __init__(
        self,
        task_name: str | None = None,
        *,
        template: model.Task | None = None,
        loaded: model.Task | None = None,
        reader: StatusReader | None = None,
    ) -> None:
        """``loaded``: the task ``task_name`` as the caller just read it from unchanged files, so that it
        is not read again (100,000 accounts: a third of a second); the editor never changes it.
        ``reader``: the caller's, whose reads the user list's Migration column shares (read once the list
        is shown, again only when the state changed)."""
        super().__init__()
        self.old_name = task_name
        self.template = template
        self.loaded = loaded
        self.reader = reader
        self._gc_threshold: tuple[int, int, int] | None = None
        self.saved_name: str | None = None
        self.base = model.Task(name="")
        self.settings: model.Settings | None = None
        self.signed_in: str | None = None
        self._snapshot: dict[str, object] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="editor-problems", classes="field-error", markup=False)
        with TabbedContent(id="editor-tabs"):
            with TabPane("General F2", id="tab-general"):
                yield GeneralTab()
            with TabPane("Filter F3", id="tab-filter"):
                yield FilterEditor()
            with TabPane("Notification F4", id="tab-notification"):
                yield NotificationTab()
            with TabPane("User list F5", id="tab-users"):
                yield UserListPane(self.current_task, reader=self.reader, id="users-pane")
        yield KeyFooter()

    # ------------------------------------------------------------------------------------------
    # Loading.

    def on_mount(self) -> None:
        self.query_one("#editor-problems").display = False
        if self.old_name is not None:
            try:
                self.base = self.loaded if self.loaded is not None else store.load_task(self.old_name)
            except store.ConfigError as exc:
                self.app.notify(str(exc), title="Cannot edit the task", severity="error", markup=False)
                self.call_later(self.dismiss, None)
                return
        elif self.template is not None:
            self.base = store.copy_task(self.template, f"{self.template.name}-copy")
        settings_error = ""
        try:
            self.settings = store.load_settings()
        except store.ConfigError as exc:
            settings_error = str(exc)
        self.query_one(NotificationTab).show_settings(self.settings, settings_error)
        self._load(self.base)
        self.query_one(GeneralTab).query_one("#f-name").focus()
        # 100,000 accounts are about a million objects: each full garbage collection would walk them
        # all, a 0.2 s pause in the middle of a key press. What is loaded now stays out of those
        # collections while the editor is open (freed objects are still freed); closing lets go.
        # The ~40,000 objects of the screen itself still cost 30-70 ms per full collection: one in ten
        # times as often as by default (still every few hundred keys) keeps keys under 100 ms.
        gc.freeze()
        self._gc_threshold = gc.get_threshold()
        gc.set_threshold(self._gc_threshold[0], self._gc_threshold[1], 10 * self._gc_threshold[2])

    def on_unmount(self) -> None:
        if self._gc_threshold is not None:
            gc.set_threshold(*self._gc_threshold)
        gc.unfreeze()

    def _load(self, task: model.Task) -> None:
        self.query_one(GeneralTab).load(task)
        self.query_one(FilterEditor).load(task.filters)
        self.query_one(NotificationTab).load(task.notifications)
        self.query_one(UserListPane).load(task.users, self.old_name or "")
        self._update_title()
        self.refresh_signin()
        self.call_after_refresh(self._take_snapshot)

    def _update_title(self) -> None:
        if self.old_name:
            self.title, self.sub_title = "Edit task", self.old_name
        else:
            self.title, self.sub_title = "New task", (f"copy of {self.template.name}" if self.template else "")

    def _take_snapshot(self) -> None:
        self._snapshot = self._form_state()

    def _form_state(self) -> dict[str, object]:
        """What the form says, per part: the General tab, each form built so far (one not built yet is
        unchanged by definition), and the user list."""
        parts: list[Widget] = [self.query_one(GeneralTab), *(f for f in self.query(LazyForm) if f.built)]
        state: dict[str, object] = {type(part).__name__: _fields_state(part) for part in parts}
        state["users"] = self.query_one(UserListPane).state()
        return state

    @property
    def dirty(self) -> bool:
        return self._snapshot is not None and self._form_state() != self._snapshot

    async def _build(self, form: LazyForm) -> None:
        """Build a tab's form; what it shows then is what was loaded, so it joins the snapshot as it is."""
        if form.built:
            return
        await form.build()
        if self._snapshot is not None:
            self._snapshot[type(form).__name__] = _fields_state(form)

    async def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        for form in event.pane.query(LazyForm):
            await self._build(form)

    # ------------------------------------------------------------------------------------------
    # From the form to a task.

    def current_task(self) -> tuple[model.Task, list[model.Problem]]:
        """The task as the form now says, with every problem the model (and the file check) finds."""
        data = model.to_dict(dataclasses.replace(self.base, users=[]))  # the users come from the pane
        data.pop("users", None)
        self.query_one(GeneralTab).dump(data)
        self.query_one(FilterEditor).dump(data)
        self.query_one(NotificationTab).dump(data)
        task, problems = build(model.Task, data)
        general = self.query_one(GeneralTab)
        general.apply_secrets(task)
        task.users = copy_users(self.query_one(UserListPane).users)
        unconvertible = {p.field for p in problems}
        others = [n for n in store.list_tasks() if n != self.old_name]
        checked = model.validate_task(task, existing_names=others, settings=self.settings)
        checked += _file_problems(task, self.old_name or "") or general.key_problems(task)
        problems += [p for p in checked if p.field not in unconvertible]
        return task, problems

    def show_problems(self, problems: list[model.Problem]) -> Widget | None:
        """Put each message next to its field; returns the widget to focus (the first bad field)."""
        slots = field_errors(self)
        by_path = {slot.path: slot for slot in slots}
        found: dict[FieldError, list[str]] = {}
        general: list[str] = []
        for p in problems:
            if p.field.startswith("users["):
                continue
            path = base_path(p.field)
            while path and path not in by_path:
                path = path.rpartition(".")[0]
            if path:
                found.setdefault(by_path[path], []).append(p.message)
            else:
                general.append(str(p))
        for slot in sorted(slots, key=lambda s: s in found):  # cleared first: two slots may mark one widget
            slot.show(found.get(slot, []))
        box = self.query_one("#editor-problems", Static)
        box.update(Text("\n".join(general)))
        box.display = bool(general)
        first_user = self.query_one(UserListPane).show_problems(problems)
        first = next((slot for slot in slots if slot in found), None)
        if first is not None:
            return focus_target(first.target)
        if first_user is not None:
            self.query_one(UserListPane).focus_row(first_user)
        return None

    # ------------------------------------------------------------------------------------------
    # Actions.

    async def action_show_tab(self, tab: str) -> None:
        pane = self.query_one(f"#{tab}", TabPane)
        for form in pane.query(LazyForm):
            await self._build(form)  # before the tab shows, so that it never shows empty
        self.query_one(TabbedContent).active = tab
        first = focus_target(pane)
        if first is not None:
            self.call_after_refresh(first.focus)

    def _place_problems(self, problems: list[model.Problem]) -> None:
        """Show the problems and go to the first; a tab's form with one that is not built yet is built first
        (the problems appear once it is)."""
        unbuilt = [f for f in self.query(LazyForm) if not f.built and any(f.covers(p.field) for p in problems)]
        if unbuilt:

            async def build_then_place() -> None:
                for form in unbuilt:
                    await self._build(form)
                self._place_problems(problems)

            self.call_later(build_then_place)
            return
        target = self.show_problems(problems)
        if target is not None:
            self._reveal(target)
        elif any(p.field.startswith("users[") for p in problems):
            self.query_one(TabbedContent).active = "tab-users"

    def _reveal(self, widget: Widget) -> None:
        pane = next((a for a in widget.ancestors if isinstance(a, TabPane)), None)
        if pane is not None and pane.id:
            self.query_one(TabbedContent).active = pane.id
        self.call_after_refresh(widget.focus)

    def action_save(self) -> None:
        self.save()

    def save(self) -> bool:
        """Validate and save the form; False (problems shown, nothing written) when it cannot be saved."""
        task, problems = self.current_task()
        self._place_problems(problems)
        if problems:
            self.notify(f"Not saved: {len(problems)} problem(s), shown next to the fields.", severity="error")
            return False
        try:
            undo = self._install_key(task)
        except gmail_auth.KeyFileError as exc:
            target = self.show_problems([model.Problem("source.key_file", str(exc))])
            if target is not None:
                self._reveal(target)
            self.notify("Not saved: the service-account key cannot be used.", severity="error")
            return False
        except OSError as exc:
            self.notify(f"Cannot copy the key file: {exc}", title="Not saved", severity="error", markup=False)
            return False
        try:
            store.save_task(task, old_name=self.old_name)
        except (store.ConfigError, OSError) as exc:
            undo()
            message = str(exc) if isinstance(exc, store.ConfigError) else f"Cannot write the task files: {exc}"
            self.notify(message, title="Not saved", severity="error", markup=False)
            return False
        self.old_name = self.saved_name = task.name
        self.base = task
        self._update_title()
        self.query_one(UserListPane).reload_statuses(task.name)
        general = self.query_one(GeneralTab)
        general.saved_name = task.name
        general.describe_key(again=True)
        self.refresh_signin()
        self._take_snapshot()
        self.notify(f"Saved task {task.name}.", markup=False)
        return True

    def _install_key(self, task: model.Task) -> Callable[[], None]:
        """Copy a Google task's key file into the secrets area; returns what puts the old copy back."""
        src = task.source
        if src.type != "google" or saved_key_copy(src.key_file, self.old_name or ""):
            return lambda: None  # no key, or the file is gone and the saved copy goes on (moved on rename)
        target = gmail_auth.secret_key_path(task.name)
        before = target.read_bytes() if target.is_file() else None
        gmail_auth.install_key(task.name, src.key_file)

        def undo() -> None:
            if before is None:
                target.unlink(missing_ok=True)
            else:
                store.atomic_write(target, before, mode=0o600)

        return undo

    # ------------------------------------------------------------------------------------------
    # Signing in (Microsoft 365, device code) and the Google delegation link.

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("sign_in", "sign_out"):
            if not self.query_one(GeneralTab).device_signin():
                return False
            if action == "sign_out" and not self.signed_in:
                return None
        if action == "copy_delegation_link":
            return self.query_one(GeneralTab).admin_console_url() is not None
        return True

    def refresh_signin(self, failure: str = "") -> None:
        """Show who is signed in for the saved task (from its token cache, no network), or ``failure``."""
        self.signed_in, problem = None, ""
        if self.old_name is not None:
            try:
                self.signed_in = graph_auth.signed_in_account(self.base)
            except graph_auth.GraphError as exc:
                problem = str(exc)
        if failure:
            text = f"Sign-in failed: {failure}"
        elif problem:
            text = problem
        elif self.signed_in:
            text = f"Signed in as {self.signed_in}."
        else:
            text = "Not signed in: an admin with access to the mailboxes signs in with a code (Sign in, ctrl+g)."
        self.query_one(GeneralTab).show_signin(text, signed_in=bool(self.signed_in))
        self.refresh_bindings()

    def action_sign_in(self) -> None:
        if not self.query_one(GeneralTab).device_signin():
            return
        if (self.old_name is None or self.dirty) and not self.save():
            return  # the sign-in is kept under the task's saved name, for its saved tenant and app
        modal = SignInModal(self.base)

        def done(account: str | None) -> None:
            self.refresh_signin(failure=modal.failure)
            if account:
                self.notify(f"Signed in as {account}.", title="Microsoft 365", markup=False)
            elif modal.failure:
                self.notify(modal.failure, title="Sign-in failed", severity="error", markup=False)
            else:
                self.notify("Sign-in cancelled.", title="Microsoft 365")

        self.app.push_screen(modal, done)

    def action_sign_out(self) -> None:
        account = self.signed_in
        if not account or self.old_name is None:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                graph_auth.sign_out(self.base)
                self.refresh_signin()
                self.notify(f"Signed out {account}.", title="Microsoft 365", markup=False)

        self.app.push_screen(
            ConfirmModal(
                "Sign out",
                f"Forget the sign-in of {account}? Runs of this task fail until an admin signs in again.",
                yes="Sign out",
            ),
            answered,
        )

    def action_copy_delegation_link(self) -> None:
        url = self.query_one(GeneralTab).admin_console_url()
        if url:
            self.app.copy_to_clipboard(url)
            self.notify("The Admin console link is on the clipboard (if the terminal allows it).")

    def action_leave(self) -> None:
        if not self.dirty:
            self.dismiss(self.saved_name)
            return

        def answered(discard: bool | None) -> None:
            if discard:
                self.dismiss(self.saved_name)

        self.app.push_screen(
            ConfirmModal("Unsaved changes", "Leave the editor and discard the changes?", yes="Discard", no="Stay"),
            answered,
        )

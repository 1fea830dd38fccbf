"""The task and settings model: dataclasses plus every validation rule, in one place.

Screens, the CLI and the store show what this module says; none of them invents a rule of its own.
A problem is reported as a :class:`Problem` with a dotted field path (``source.port``,
``users[3].source``) and a sentence a person can act on.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import functools
import ipaddress
import operator
import re
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import cattrs
import cattrs.cols
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError
from cattrs.gen import make_dict_structure_fn, override

SOURCE_TYPES = ("imap", "google", "microsoft365")
SOURCE_TYPE_LABELS = {"imap": "IMAP", "google": "Google Workspace", "microsoft365": "Microsoft 365"}
SECURITY_MODES = ("ssl", "starttls", "none")
DELEGATE_METHODS = ("authzid", "template")
LABEL_STRATEGIES = ("copy", "primary")
M365_AUTH_MODES = ("app", "device")
DEST_AUTH_MODES = ("master", "authzid", "per-user")
FILTER_POLICIES = ("skip", "migrate")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

TASK_NAME_MAX = 64
TASK_NAME_FORBIDDEN = '/\\:"'
# Names of files the whole install shares beside the tasks' own (config/secrets/settings.toml): a task
# of that name would read, overwrite or delete them. Compared case-insensitively (macOS, exFAT…).
TASK_NAMES_RESERVED = ("settings",)

_ADDRESS_RE = re.compile(r"^[^@\s:,;<>\"]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
_HOST_RE = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?|[0-9A-Fa-f:]+)$")
_FINGERPRINT_RE = re.compile(r"^sha256:(?:[0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}$")
_TIME_RE = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a task or the settings: where it is and what to do."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class ValidationError(ValueError):
    """Raised when data cannot become a model object; carries every problem found."""

    def __init__(self, problems: Iterable[Problem], where: str = "") -> None:
        self.problems = list(problems)
        self.where = where
        prefix = f"{where}: " if where else ""
        super().__init__(prefix + "; ".join(str(p) for p in self.problems))


# --------------------------------------------------------------------------------------------
# Dataclasses.  Fields marked secret=True never go into a task or settings TOML file.


def _secret(default: str = "") -> Any:
    return field(default=default, repr=False, metadata={"secret": True})


@dataclass
class Delegate:
    """An account with full access to every source mailbox (Exchange delegate, Dovecot master)."""

    enabled: bool = False
    login: str = ""
    method: str = "authzid"
    template: str = "{user}*{delegate}"
    password: str = _secret()


@dataclass
class Source:
    type: str = "imap"
    # IMAP
    host: str = ""
    port: int = 993
    security: str = "ssl"
    path_prefix: str = ""
    tls_fingerprint: str = ""
    delegate: Delegate = field(default_factory=Delegate)
    # Google Workspace
    key_file: str = ""
    label_strategy: str = "copy"
    quota_units_per_minute: int = 15000
    api_endpoint: str = "https://gmail.googleapis.com/"
    # Microsoft 365
    tenant: str = ""
    client_id: str = ""
    auth: str = "app"
    authority: str = "https://login.microsoftonline.com/{tenant}"
    graph_url: str = "https://graph.microsoft.com"
    certificate_file: str = ""
    client_secret: str = _secret()


@dataclass
class RunOptions:
    accounts_per_period: int = 10
    concurrency: int = 4


@dataclass
class Schedule:
    enabled: bool = False
    days: list[str] = field(default_factory=lambda: ["mon", "tue", "wed", "thu", "fri"])
    start: str = "22:00"
    repeat_hours: int = 0
    end: str = ""


@dataclass
class MailboxFilter:
    enabled: bool = False
    policy: str = "skip"
    keywords: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)


@dataclass
class Filters:
    skip_before: dt.date | None = None
    skip_after: dt.date | None = None
    skip_trash: bool = False
    skip_junk: bool = False
    max_size_kb: int = 0
    mailboxes: MailboxFilter = field(default_factory=MailboxFilter)


@dataclass
class Notifications:
    on_success: bool = False
    success_to: list[str] = field(default_factory=list)
    on_failure: bool = False
    failure_to: list[str] = field(default_factory=list)


@dataclass
class User:
    source: str
    destination: str
    password: str = _secret()
    destination_password: str = _secret()


@dataclass
class Task:
    name: str
    source: Source = field(default_factory=Source)
    run: RunOptions = field(default_factory=RunOptions)
    schedule: Schedule = field(default_factory=Schedule)
    filters: Filters = field(default_factory=Filters)
    notifications: Notifications = field(default_factory=Notifications)
    users: list[User] = field(default_factory=list)

    def users_by_key(self) -> dict[str, User]:
        """The users by :func:`account_key` of their source account (the first one for a key listed twice)."""
        by_key: dict[str, User] = {}
        for u in self.users:
            by_key.setdefault(account_key(u.source), u)
        return by_key


@dataclass
class Destination:
    host: str = "127.0.0.1"
    port: int = 993
    security: str = "ssl"
    tls_fingerprint: str = ""
    auth: str = "master"
    login: str = "mailmig-admin"
    master_separator: str = "*"
    password: str = _secret()


@dataclass
class Smtp:
    host: str = ""
    port: int = 25
    security: str = "starttls"
    login: str = ""
    sender: str = ""
    password: str = _secret()


@dataclass
class Settings:
    destination: Destination = field(default_factory=Destination)
    smtp: Smtp = field(default_factory=Smtp)


def account_key(account: str) -> str:
    """Accounts are compared case-insensitively and without surrounding blanks."""
    return account.strip().casefold()


def account_keys(users: Iterable[User]) -> list[str]:
    """The :func:`account_key` of each user's source account, in order: C-level maps, no Python call per
    account (100,000 accounts: 13 ms; a background thread computing them lets the screen's thread run)."""
    return list(map(str.casefold, map(str.strip, map(_source, users))))


_source = operator.attrgetter("source")


# --------------------------------------------------------------------------------------------
# Validation.


def validate_task_name(name: str, existing: Iterable[str] = ()) -> list[Problem]:
    problems: list[str] = []
    if not name or not name.strip():
        problems.append("the task needs a name")
    elif name in (".", ".."):
        problems.append(f'"{name}" cannot name a task (it is a directory name); choose another name')
    else:
        bad = sorted({c for c in name if c in TASK_NAME_FORBIDDEN})
        if bad:
            shown = " ".join(bad)
            problems.append(
                f"a task name may not contain {shown}; remove or replace {'them' if len(bad) > 1 else 'it'}"
            )
        if any(ord(c) < 32 or ord(c) == 127 for c in name):
            problems.append("a task name may not contain control characters")
        if len(name) > TASK_NAME_MAX:
            problems.append(f"a task name has at most {TASK_NAME_MAX} characters (this one has {len(name)})")
        if name != name.strip():
            problems.append("a task name may not start or end with a blank")
        if name.casefold() in TASK_NAMES_RESERVED:
            problems.append(
                f'a task may not be named "{name}": the global settings use that file name '
                "(config/secrets/settings.toml holds the destination and SMTP passwords); choose another name. "
                "A task file saved under it by an older version: rename the file and the name in it"
            )
        if name.casefold() in {n.casefold() for n in existing}:
            problems.append(f'a task named "{name}" already exists; choose another name')
    return [Problem("name", p) for p in problems]


def is_address(value: str) -> bool:
    return bool(_ADDRESS_RE.match(value))


def _check_port(where: str, port: object) -> list[Problem]:
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        return [Problem(where, f"a port is a number from 1 to 65535, not {port!r}")]
    return []


def _check_choice(where: str, value: str, allowed: Iterable[str]) -> list[Problem]:
    allowed = tuple(allowed)
    if value not in allowed:
        return [Problem(where, f"{value!r} is not one of {', '.join(repr(a) for a in allowed)}")]
    return []


def _check_host(where: str, host: str) -> list[Problem]:
    if not host:
        return [Problem(where, "the server address is missing (a host name or an IP address)")]
    if len(host) > 253 or any(len(label) > 63 for label in host.rstrip(".").split(".")):
        shown = host if len(host) <= 40 else host[:37] + "…"
        return [
            Problem(
                where,
                f"{shown!r} is too long for a host name ({len(host)} characters; at most 253, at most 63 between dots)",
            )
        ]
    if not _HOST_RE.match(host):
        return [Problem(where, f"{host!r} is not a host name or IP address")]
    return []


def _check_fingerprint(where: str, value: str) -> list[Problem]:
    if value and not _FINGERPRINT_RE.match(value):
        return [Problem(where, 'a pinned certificate is written "sha256:" followed by 32 hex pairs separated by ":"')]
    return []


def _check_time(where: str, value: str) -> list[Problem]:
    if not _TIME_RE.match(value):
        return [Problem(where, f"{value!r} is not a time of day written HH:MM (24-hour clock)")]
    return []


def _check_recipients(where: str, recipients: list[str]) -> list[Problem]:
    return [
        Problem(f"{where}[{i}]", f"{r!r} is not an e-mail address (user@domain)")
        for i, r in enumerate(recipients)
        if not is_address(r)
    ]


def _check_keywords(where: str, keywords: list[str]) -> list[Problem]:
    from mailmig_tui.engine.folders import compile_keyword

    problems = []
    for i, kw in enumerate(keywords):
        try:
            compile_keyword(kw)
        except ValueError as exc:
            problems.append(Problem(f"{where}[{i}]", str(exc)))
    return problems


def validate_source(src: Source) -> list[Problem]:
    p = _check_choice("source.type", src.type, SOURCE_TYPES)
    if src.type == "imap":
        p += _check_host("source.host", src.host)
        p += _check_port("source.port", src.port)
        p += _check_choice("source.security", src.security, SECURITY_MODES)
        p += _check_fingerprint("source.tls_fingerprint", src.tls_fingerprint)
        d = src.delegate
        if d.enabled:
            p += _check_choice("source.delegate.method", d.method, DELEGATE_METHODS)
            if not d.login:
                p.append(Problem("source.delegate.login", "the delegate account's login is missing"))
            if d.method == "template" and "{user}" not in d.template:
                p.append(
                    Problem(
                        "source.delegate.template",
                        'the login template must contain "{user}", e.g. "{user}*{delegate}"',
                    )
                )
    elif src.type == "google":
        if not src.key_file:
            p.append(
                Problem(
                    "source.key_file",
                    "choose the service-account key file (JSON) of the Google Cloud project",
                )
            )
        p += _check_choice("source.label_strategy", src.label_strategy, LABEL_STRATEGIES)
        if src.quota_units_per_minute < 1:
            p.append(Problem("source.quota_units_per_minute", "the quota must be at least 1 unit per minute"))
        if not src.api_endpoint.startswith(("https://", "http://")):
            p.append(Problem("source.api_endpoint", "the API endpoint is an http(s) URL"))
    elif src.type == "microsoft365":
        if not src.tenant:
            p.append(Problem("source.tenant", "the tenant (directory) id or domain is missing"))
        if not src.client_id:
            p.append(Problem("source.client_id", "the application (client) id is missing"))
        p += _check_choice("source.auth", src.auth, M365_AUTH_MODES)
        if src.auth == "app" and not src.client_secret and not src.certificate_file:
            p.append(
                Problem(
                    "source.client_secret",
                    "app-only access needs the application's client secret or a certificate file",
                )
            )
        for name in ("authority", "graph_url"):
            if not getattr(src, name).startswith(("https://", "http://")):
                p.append(Problem(f"source.{name}", "this is an http(s) URL"))
    return p


def validate_user(user: User, src: Source, where: str = "user") -> list[Problem]:
    """The per-account rules shared by the user-list editor and the CSV import."""
    p: list[Problem] = []
    for name in ("source", "destination"):
        value = getattr(user, name)
        if not value.strip():
            p.append(Problem(f"{where}.{name}", f"the {name} account is missing"))
        elif ":" in value:
            p.append(Problem(f"{where}.{name}", f'an account may not contain ":" ({value!r})'))
        elif any(c.isspace() for c in value.strip()):
            p.append(Problem(f"{where}.{name}", f"an account may not contain blanks ({value!r})"))
    if src.type in ("google", "microsoft365") and user.source.strip() and not is_address(user.source.strip()):
        label = SOURCE_TYPE_LABELS[src.type]
        p.append(Problem(f"{where}.source", f"{label} accounts are full addresses (user@domain), not {user.source!r}"))
    if not user.password and needs_source_password(src):
        p.append(
            Problem(
                f"{where}.password",
                "a password is needed for this account (or enable the delegate account in the task's General tab)",
            )
        )
    return p


def needs_source_password(src: Source) -> bool:
    return src.type == "imap" and not src.delegate.enabled


def validate_task(task: Task, *, existing_names: Iterable[str] = (), settings: Settings | None = None) -> list[Problem]:
    """Every problem of a task; an empty list means it can be saved and run."""
    p = validate_task_name(task.name, existing_names)
    p += validate_source(task.source)
    run = task.run
    if not isinstance(run.accounts_per_period, int) or run.accounts_per_period < 0:
        p.append(Problem("run.accounts_per_period", "accounts per period is 0 (all) or a positive number"))
    if not isinstance(run.concurrency, int) or not 1 <= run.concurrency <= 64:
        p.append(Problem("run.concurrency", "concurrency is a number from 1 to 64"))
    s = task.schedule
    for i, day in enumerate(s.days):
        if day not in DAYS:
            p.append(Problem(f"schedule.days[{i}]", f"{day!r} is not a day; use {', '.join(DAYS)}"))
    if s.enabled and not s.days:
        p.append(Problem("schedule.days", "a schedule needs at least one day"))
    p += _check_time("schedule.start", s.start)
    if s.end:
        p += _check_time("schedule.end", s.end)
    if not 0 <= s.repeat_hours <= 23:
        p.append(Problem("schedule.repeat_hours", "repeat every 0 (run once) to 23 hours"))
    f = task.filters
    if f.skip_before and f.skip_after and f.skip_after < f.skip_before:
        p.append(
            Problem(
                "filters.skip_after",
                f"skip-after ({f.skip_after}) is before skip-before ({f.skip_before}): no mail would be migrated",
            )
        )
    if f.max_size_kb < 0:
        p.append(Problem("filters.max_size_kb", "the maximum size is 0 (no limit) or a number of KB"))
    mb = f.mailboxes
    p += _check_choice("filters.mailboxes.policy", mb.policy, FILTER_POLICIES)
    p += _check_keywords("filters.mailboxes.keywords", mb.keywords)
    p += _check_keywords("filters.mailboxes.exceptions", mb.exceptions)
    if mb.enabled and not mb.keywords:
        p.append(Problem("filters.mailboxes.keywords", "the mailbox filter is on but has no keyword"))
    n = task.notifications
    p += _check_recipients("notifications.success_to", n.success_to)
    p += _check_recipients("notifications.failure_to", n.failure_to)
    if n.on_success and not n.success_to:
        p.append(Problem("notifications.success_to", "success notifications are on but nobody receives them"))
    if n.on_failure and not n.failure_to:
        p.append(Problem("notifications.failure_to", "failure notifications are on but nobody receives them"))
    if (n.on_success or n.on_failure) and settings is not None and not settings.smtp.host:
        p.append(
            Problem(
                "notifications",
                "notifications need the SMTP relay: set it in Settings (settings.toml [smtp])",
            )
        )
    seen: dict[str, int] = {}
    for i, user in enumerate(task.users):
        p += validate_user(user, task.source, f"users[{i}]")
        key = account_key(user.source)
        if key in seen:
            p.append(
                Problem(
                    f"users[{i}].source",
                    f"{user.source!r} is listed twice (also in row {seen[key] + 1} of the user list)",
                )
            )
        seen.setdefault(key, i)
    if settings is not None and settings.destination.auth == "per-user":
        for i, user in enumerate(task.users):
            if not user.destination_password:
                p.append(
                    Problem(
                        f"users[{i}].destination_password",
                        "the destination logs in per user: give this account's destination password (4th CSV column)",
                    )
                )
    return p


def missing_destination_password(settings: Settings) -> list[Problem]:
    """The master/admin password, when the destination logs in with one and none is stored. Not part
    of :func:`validate_settings`, since the form may be saved before the password is known; ``validate``
    reports it as a problem and the Settings screen warns when it saves without one."""
    d = settings.destination
    if d.auth not in ("master", "authzid") or d.password:
        return []
    return [
        Problem(
            "destination.password",
            "the master/admin password is missing: type it in Settings (g) or put it in "
            "config/secrets/settings.toml as [destination] password",
        )
    ]


def validate_settings(settings: Settings) -> list[Problem]:
    d = settings.destination
    p = _check_host("destination.host", d.host)
    p += _check_port("destination.port", d.port)
    p += _check_choice("destination.security", d.security, SECURITY_MODES)
    p += _check_fingerprint("destination.tls_fingerprint", d.tls_fingerprint)
    p += _check_choice("destination.auth", d.auth, DEST_AUTH_MODES)
    if d.auth in ("master", "authzid") and not d.login:
        p.append(Problem("destination.login", "the master/admin login is missing"))
    if d.auth == "master" and len(d.master_separator) != 1:
        p.append(Problem("destination.master_separator", 'the master-user separator is one character, usually "*"'))
    s = settings.smtp
    if s.host:
        p += _check_host("smtp.host", s.host)
        p += _check_port("smtp.port", s.port)
        p += _check_choice("smtp.security", s.security, SECURITY_MODES)
        if not is_address(s.sender):
            p.append(Problem("smtp.sender", "the sender is an e-mail address (user@domain) notifications come from"))
    return p


# --------------------------------------------------------------------------------------------
# Warnings: what is valid and works, but an admin must know (shown by validate, show, the editor,
# and logged at the start of every run).


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or "localhost": a connection that never leaves this machine."""
    name = host.strip().removeprefix("[").removesuffix("]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def security_warning(where: str, host: str, security: str) -> Problem | None:
    """The warning for ``security = "none"`` towards ``host``, unless that is this machine."""
    if security != "none" or is_loopback(host):
        return None
    return Problem(
        where,
        f'security is "none": passwords and mail to {host} cross the network unencrypted; '
        'use "ssl" or "starttls" ("none" is for 127.0.0.1 only)',
    )


def task_warnings(task: Task) -> list[Problem]:
    src = task.source
    warning = security_warning("source.security", src.host, src.security) if src.type == "imap" else None
    return [warning] if warning else []


def settings_warnings(settings: Settings) -> list[Problem]:
    d, s = settings.destination, settings.smtp
    found = [security_warning("destination.security", d.host, d.security)]
    if s.host:
        found.append(security_warning("smtp.security", s.host, s.security))
    return [w for w in found if w is not None]


# --------------------------------------------------------------------------------------------
# Conversion between dataclasses and plain dicts (the TOML shape of DESIGN.md §7).


def to_dict(obj: Any) -> dict[str, Any]:
    """The TOML shape of a model object, without secrets and without the user list's passwords."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        if f.metadata.get("secret"):
            continue
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = to_dict(value)
        elif isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            out[f.name] = [to_dict(v) for v in value]
        elif value is None:
            continue
        else:
            out[f.name] = list(value) if isinstance(value, list) else value
    return out


def from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """A model dataclass from TOML data. Raises :class:`ValidationError` listing every problem with its
    field path, in the order of the data; a value of the wrong type is refused, never coerced."""
    try:
        return _CONVERTER.structure(data, cls)
    except (ClassValidationError, IterableValidationError, _Refused) as exc:
        found: list[tuple[tuple[int, ...], Problem]] = []
        _collect(exc, "", data, (), found)
        raise ValidationError(p for _, p in sorted(found, key=lambda f: f[0])) from None


_SECRET_KEYS = {"password", "destination_password", "client_secret"}


class _Refused(Exception):
    """A value a strict structure hook refuses; its text is the problem's message."""


def _structure_str(value: Any, _: type) -> str:
    if isinstance(value, str):
        return value
    raise _Refused(f"expected a string, not {value!r}")


def _structure_int(value: Any, _: type) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _Refused(f"expected a whole number, not {value!r}")


def _structure_bool(value: Any, _: type) -> bool:
    if isinstance(value, bool):
        return value
    raise _Refused(f"expected true or false, not {value!r}")


def _structure_date(value: Any, _: type) -> dt.date:
    """A TOML date, or its ISO text (what the editor's form gives); never a date with a time."""
    if isinstance(value, dt.datetime):
        raise _Refused(f"a date without time is expected (YYYY-MM-DD), not {value}")
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise _Refused(f"{value!r} is not a date; write it as YYYY-MM-DD, e.g. 2015-01-31")


def _list_hook(list_type: Any, converter: cattrs.Converter) -> Callable[[Any, Any], list[Any]]:
    """cattrs's own list hook takes any iterable (a string becomes a list of letters): a list only."""
    items = cattrs.cols.list_structure_factory(list_type, converter)

    def structure(value: Any, _: Any) -> list[Any]:
        if not isinstance(value, list):
            raise _Refused(f"this is a list in square brackets, not {value!r}")
        return items(value, list_type)

    return structure


def _table_hook(cls: type, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    """A model dataclass from a TOML table. Its secret fields are left out, so a file that sets one is
    refused like an unknown key."""
    secret: dict[str, Any] = {f.name: override(omit=True) for f in dataclasses.fields(cls) if f.metadata.get("secret")}
    fields: Callable[[Mapping[str, Any], Any], Any] = make_dict_structure_fn(cls, converter, **secret)

    def structure(value: Any, _: Any) -> Any:
        if not isinstance(value, Mapping):
            raise _Refused("this must be a table")
        return fields(value, cls)

    return structure


def _make_converter() -> cattrs.Converter:
    """A strict hook for every type a model field has: cattrs alone would turn "5" into 5, 1 into True
    and "mon" into ["m", "o", "n"]. Unknown keys are errors; every error is kept (detailed validation)."""
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(bool, _structure_bool)
    converter.register_structure_hook(dt.date, _structure_date)
    converter.register_structure_hook_factory(lambda t: typing.get_origin(t) is list, _list_hook)
    converter.register_structure_hook_factory(
        lambda t: isinstance(t, type) and dataclasses.is_dataclass(t), _table_hook
    )
    return converter


_CONVERTER = _make_converter()


@functools.cache
def _loadable_fields(cls: type) -> list[str]:
    """The keys a file may set in the table of ``cls`` (secrets live elsewhere), in field order."""
    return [f.name for f in dataclasses.fields(cls) if not f.metadata.get("secret")]


def _collect(
    exc: Exception, where: str, data: Any, rank: tuple[int, ...], found: list[tuple[tuple[int, ...], Problem]]
) -> None:
    """The problems of cattrs's exception tree for ``data`` (at path ``where``) into ``found``, each ranked
    by its place in the data: the position of each key and index on its path."""
    if isinstance(exc, _Refused):
        found.append((rank, Problem(where, str(exc))))
    elif isinstance(exc, ClassValidationError):
        keys = list(data)
        fields = _loadable_fields(exc.cl)
        at_fields, others = exc.group_exceptions()
        for sub, note in at_fields:
            path = f"{where}.{note.name}" if where else note.name
            if note.name in data:
                _collect(sub, path, data[note.name], (*rank, keys.index(note.name)), found)
            else:  # the KeyError of a required field (one with a default is only read when present)
                found.append(((*rank, len(keys) + fields.index(note.name)), Problem(path, "this key is required")))
        for sub in others:
            if not isinstance(sub, ForbiddenExtraKeysError):
                raise sub
            for key in sub.extra_fields:
                path = f"{where}.{key}" if where else key
                found.append(((*rank, keys.index(key)), Problem(path, _extra_key_message(key, fields))))
    elif isinstance(exc, IterableValidationError):
        at_items, others = exc.group_exceptions()
        if others:
            raise others[0]
        for sub, item in at_items:
            index = int(item.index)
            _collect(sub, f"{where}[{index}]", data[index], (*rank, index), found)
    else:
        raise exc


def _extra_key_message(key: str, fields: list[str]) -> str:
    if key in _SECRET_KEYS:
        return "passwords and secrets do not belong in this file: put it in config/secrets/ (mode 0600)"
    close = difflib.get_close_matches(key, fields, n=1)
    hint = f'; did you mean "{close[0]}"?' if close else f"; known keys: {', '.join(fields)}"
    return f"unknown key{hint}"

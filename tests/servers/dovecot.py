"""A private Dovecot 2.3 instance for tests: own config, dirs, port and users.

Follows /work/shared/research/dovecot-testbed.md.  Everything lives under ``root``:

    root/dovecot.conf   the only config read (``-c``; /etc/dovecot is never used)
    root/run/           base_dir: sockets, master.pid
    root/state/         state_dir
    root/dovecot.log    log_path + info_log_path (the master's stdout/stderr: root/stdio.log)
    root/passwd         passwd-file users ("user:{PLAIN}password::::::")
    root/master-users   the master user: "alice*mailmig-admin" + master password opens alice
    root/mail/<user>/Maildir

The master runs in the foreground (``dovecot -F``) as our child with stdio in a file (a
daemonised dovecot keeps inherited pipes open: ``capture_output`` would hang).  Its children
are titled ``dovecot-<instance_name>/<service>``; ``stop()`` uses that to leave none behind.

Folders: with separator "/" the Maildir uses ``LAYOUT=fs`` (names may contain "."); with
separator "." the classic Maildir++ layout (".Sent", ".A.B"), as Courier-style servers;
there a name may not contain "/".  Special-use folders carry their RFC 6154 attribute in
LIST but exist only once created, unless ``autocreate`` (``auto = subscribe``);
``special_use`` renames them, e.g. ``{"\\Sent": "Sent Items", "\\Trash": "Deleted Items"}``.

TLS: with ``ssl=True`` a self-signed certificate (EC P-256, CN=localhost, SAN DNS:localhost,
IP:127.0.0.1) is made with ``openssl req``; the server listens for implicit TLS on
``imaps_port`` *and* offers STARTTLS on the plain ``port`` (``ssl = yes``, not ``required``,
so plain LOGIN keeps working).  Without ``ssl`` there is no STARTTLS.  Verifying clients use
the name ``tls_hostname`` ("localhost").  ``cert_fingerprint`` is "sha256:AB:CD:..." of the
DER certificate.

Size limit: ``max_mail_size`` sets the quota plugin's ``quota_max_mail_size`` (with a
``count`` quota and no other limit).  APPEND of a bigger message fails with
``NO [LIMIT] Mail size is larger than the maximum size allowed by server configuration``.
Dovecot 2.3 does not implement APPENDLIMIT; ``advertise_appendlimit`` (default on) adds
``imap_capability = +APPENDLIMIT=<max_mail_size>``, so it shows in the post-login CAPABILITY.

UIDVALIDITY: ``set_uidvalidity()`` runs ``doveadm mailbox update --uid-validity``.  New
SELECTs see the new value; a session that has the folder selected gets
``* BYE IMAP session state is inconsistent, please relogin.`` on its next command.

Other behaviour tests must live with (Dovecot 2.3.19, Maildir):
- INTERNALDATE: APPEND replaces a date more than a few hours in the future with "now" (so
  a 2040 date cannot be stored), and dates before 1970 come back wrapped (1969 -> 2038,
  1950 -> 2086); the zone offset is not kept (instants are).
- Logins: ``auth_failure_delay`` is 0 here and anvil's auth penalty (2..15 s on *every*
  login from 127.0.0.1 after a failure) is off unless ``auth_penalty=True``; a failed login
  still takes ~0.5 s (imap-login's check interval).
- ``add_user`` waits for the next whole second: passwd-file is stat()ed at most once a second.

As root, mail is owned by uid/gid 5000 (Dovecot refuses uid 0 for mail), so ``root`` and all
its ancestors must be traversable by others; pytest's ``tmp_path`` is 0700, which is why the
fixtures use their own 0755 directory.  As another user, everything runs as that user.
"""

from __future__ import annotations

import grp
import hashlib
import math
import os
import pwd
import secrets
import signal
import ssl
import stat
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

from imapclient import IMAPClient, imap_utf7

from mailmig_tui.embedded_imap import EmbeddedServerError as ServerStartError
from mailmig_tui.embedded_imap import free_port, wait_for_greeting

DOVECOT = "/usr/sbin/dovecot"
DOVEADM = "/usr/bin/doveadm"
HOST = "127.0.0.1"
TLS_HOSTNAME = "localhost"
MAIL_UID = 5000
MAIL_GID = 5000
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
START_ATTEMPTS = 3

SPECIAL_USE_DEFAULTS: dict[str, str] = {
    "\\Drafts": "Drafts",
    "\\Sent": "Sent",
    "\\Trash": "Trash",
    "\\Junk": "Junk",
    "\\Archive": "Archive",
}


class DovecotError(RuntimeError):
    """The instance did not start, stop or run a doveadm command as asked."""


def make_self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """Write cert.pem/key.pem (EC P-256, CN=localhost, SAN localhost + 127.0.0.1)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "3650", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30,
    )  # fmt: skip
    return cert, key


def cert_fingerprint(cert_pem: Path) -> str:
    """``sha256:AB:CD:...`` of the DER form of a PEM certificate."""
    der = ssl.PEM_cert_to_DER_cert(cert_pem.read_text())
    digest = hashlib.sha256(der).hexdigest().upper()
    return "sha256:" + ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


class DovecotServer:
    """A private Dovecot on 127.0.0.1; ``start()`` it, ``stop()`` it (also a context manager)."""

    host = HOST
    tls_hostname = TLS_HOSTNAME

    def __init__(
        self,
        root: Path | str,
        *,
        users: Mapping[str, str] | None = None,
        separator: str = "/",
        ssl: bool = False,
        special_use: Mapping[str, str] | None = None,
        autocreate: bool = False,
        max_mail_size: int | None = None,
        advertise_appendlimit: bool = True,
        auth_failure_delay: int = 0,
        auth_penalty: bool = False,
        max_userip_connections: int = 100,
        master_user: str = "mailmig-admin",
        master_password: str = "masterpass",
        name: str | None = None,
    ) -> None:
        if separator not in ("/", "."):
            raise ValueError(f"separator must be '/' or '.', not {separator!r}")
        unknown = set(special_use or {}) - set(SPECIAL_USE_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown special-use attributes {sorted(unknown)}")
        self.root = Path(root).resolve()
        self.users: dict[str, str] = dict(users or {})
        self.separator = separator
        self.ssl = ssl
        self.special_use: dict[str, str] = {**SPECIAL_USE_DEFAULTS, **(special_use or {})}
        self.autocreate = autocreate
        self.max_mail_size = max_mail_size
        self.advertise_appendlimit = advertise_appendlimit
        self.auth_failure_delay = auth_failure_delay
        self.auth_penalty = auth_penalty
        self.max_userip_connections = max_userip_connections
        self.master_user = master_user
        self.master_password = master_password
        token = secrets.token_hex(4)
        self.instance_name = f"mailmig-test-{name}-{token}" if name else f"mailmig-test-{token}"
        self.port = 0
        self.imaps_port: int | None = None
        self.cert_path: Path | None = None
        self.key_path: Path | None = None
        self.cert_fingerprint: str | None = None
        self.startup_seconds: float | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # -- paths ------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        return self.root / "dovecot.log"

    @property
    def mail_root(self) -> Path:
        return self.root / "mail"

    def maildir(self, user: str) -> Path:
        """The user's Maildir (INBOX) on disk."""
        return self.mail_root / user / "Maildir"

    @property
    def starttls(self) -> bool:
        """STARTTLS is offered on the plain port exactly when ``ssl`` is enabled."""
        return self.ssl

    def master_login(self, user: str) -> str:
        """The login name that opens ``user``'s mailbox with the master password."""
        return f"{user}*{self.master_user}"

    def login(self, client: IMAPClient, user: str, password: str | None = None, *, master: bool = False) -> None:
        """Log ``client`` in as ``user``: own password, or ``user*master`` + master password."""
        if master:
            client.login(self.master_login(user), password if password is not None else self.master_password)
        else:
            client.login(user, password if password is not None else self.users[user])

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> Self:
        """Write the config, start the master (foreground child) and wait for ``* OK``."""
        if self._process is not None:
            raise DovecotError("already started")
        began = time.monotonic()
        self._prepare_dirs()
        if self.ssl and self.cert_path is None:
            self.cert_path, self.key_path = make_self_signed_cert(self.root)
            self.cert_fingerprint = cert_fingerprint(self.cert_path)
        self._write_passwd()
        for attempt in range(START_ATTEMPTS):
            self.port = free_port()
            self.imaps_port = free_port() if self.ssl else None
            self.config_path.write_text(self._config_text())
            try:
                self._spawn_and_wait()
            except DovecotError as exc:
                if attempt + 1 == START_ATTEMPTS or "address already in use" not in str(exc).lower():
                    raise
                continue  # a port was taken between free_port() and bind()
            break
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop the instance and make sure no process of it is left.

        The master gets SIGKILL (SIGTERM costs Dovecot ~1.1 s and it would respawn killed
        children), then every ``dovecot-<instance_name>/...`` process SIGTERM, and SIGKILL
        after a grace second: imap processes serving a connected client outlive even a
        cleanly stopped master.
        """
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=STOP_TIMEOUT)
        began = time.monotonic()
        while pids := self._instance_pids():
            waited = time.monotonic() - began
            if waited > STOP_TIMEOUT:
                raise DovecotError(f"processes of {self.instance_name} still running: {pids}")
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGTERM if waited < 1.0 else signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)

    def restart(self) -> Self:
        """Stop, then start again with the same ports, users and mail."""
        self.stop()
        self._spawn_and_wait()
        return self

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- users and admin --------------------------------------------------------------------
    def add_user(self, user: str, password: str) -> None:
        """Add a user or change a password; true for new logins once this returns.

        Dovecot's passwd-file driver re-reads the file when its mtime or size changed, but
        stats it at most once per second; so the mtime is bumped and this waits for the
        next whole second (at most 1 s).
        """
        self.users[user] = password
        self._write_passwd()
        now = time.time()
        time.sleep(math.floor(now) + 1.01 - now)

    def doveadm(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run ``doveadm -c <this config> ARGS`` and return its output (text)."""
        result = subprocess.run(
            [DOVEADM, "-c", str(self.config_path), *args],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise DovecotError(f"doveadm {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    def create_folder_on_disk(self, user: str, wire_name: str) -> None:
        """A folder Dovecot holds but would refuse to CREATE (``Bad&AAE-Name``: a control character),
        made as a Maildir directory; ``wire_name`` is the IMAP (modified UTF-7) name, which Dovecot
        also uses on disk (a name that is not modified UTF-7 is listed but cannot be opened). The
        user must have logged in once (the Maildir exists)."""
        owner = self.maildir(user).stat()
        directory = self.maildir(user) / (wire_name if self.separator == "/" else "." + wire_name)
        for path in (directory, *(directory / sub for sub in ("cur", "new", "tmp"))):
            path.mkdir()
            os.chown(path, owner.st_uid, owner.st_gid)  # Dovecot's mail user, when the tests run as root

    def uidvalidity(self, user: str, folder: str) -> int:
        """The folder's current UIDVALIDITY; ``folder`` is the IMAP (modified UTF-7) name."""
        out = self.doveadm("-f", "flow", "mailbox", "status", "-u", user, "uidvalidity", folder).stdout
        return int(out.strip().split("=", 1)[1])

    def set_uidvalidity(self, user: str, folder: str, value: int | None = None) -> int:
        """Change the folder's UIDVALIDITY (to ``value`` or old + 1) and return the new one."""
        new = value if value is not None else self.uidvalidity(user, folder) + 1
        self.doveadm("mailbox", "update", "-u", user, "--uid-validity", str(new), folder)
        actual = self.uidvalidity(user, folder)
        if actual != new:
            raise DovecotError(f"UIDVALIDITY of {folder!r} is {actual}, wanted {new}")
        return new

    def make_folder_on_disk(self, user: str, name: str) -> None:
        """Create folder ``name`` (logical, "/"-separated) as a Maildir directory, behind Dovecot's back.

        IMAP CREATE refuses control characters ("Control characters not allowed in new mailbox
        names"), but Dovecot lists and opens a folder that exists on disk under such a name: the way
        a hostile name (ESC, CR, LF) reaches a client. The user's Maildir must exist (seed INBOX first).
        """
        parts = [imap_utf7.encode(part).decode("ascii") for part in name.split("/")]
        leaf = Path(*parts) if self.separator == "/" else Path("." + ".".join(parts))
        folder = self.maildir(user) / leaf
        for sub in ("cur", "new", "tmp"):
            (folder / sub).mkdir(parents=True)
        if os.geteuid() == 0:
            for path in [folder, *folder.parents]:
                if path == self.maildir(user):
                    break
                os.chown(path, MAIL_UID, MAIL_GID)
            for sub in ("cur", "new", "tmp"):
                os.chown(folder / sub, MAIL_UID, MAIL_GID)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the Dovecot log and of the master's stdout/stderr."""
        texts = []
        for path in (self.log_path, self.root / "stdio.log"):
            if path.exists():
                texts.extend(path.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(texts)

    # -- internals --------------------------------------------------------------------------
    def _prepare_dirs(self) -> None:
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        (self.root / "run").chmod(0o755)
        if os.geteuid() == 0:
            os.chown(self.mail_root, MAIL_UID, MAIL_GID)
            self._check_traversable()

    def _check_traversable(self) -> None:
        for directory in [self.root, *self.root.parents]:
            if not directory.stat().st_mode & stat.S_IXOTH:
                raise DovecotError(
                    f"{directory} is not traversable by uid {MAIL_UID}; "
                    "put the instance under a 0755 directory (pytest's tmp_path is 0700)"
                )

    def _write_passwd(self) -> None:
        for value in (*self.users, self.master_user):
            if not value or any(ch in value for ch in ":*\n\r\t "):
                raise ValueError(f"user names must be non-empty, without ':', '*' or whitespace: {value!r}")
        for value in (*self.users.values(), self.master_password):
            if not value or any(ch in value for ch in ":\n\r"):
                raise ValueError(f"passwords must be non-empty, without ':' or newlines: {value!r}")
        passwd = self.root / "passwd"
        previous = passwd.stat().st_mtime if passwd.exists() else 0.0
        tmp = self.root / "passwd.tmp"
        tmp.write_text("".join(f"{user}:{{PLAIN}}{password}::::::\n" for user, password in self.users.items()))
        tmp.chmod(0o644)
        mtime = max(math.floor(time.time()), math.floor(previous) + 1)
        os.utime(tmp, (mtime, mtime))
        os.replace(tmp, passwd)
        master = self.root / "master-users"
        master.write_text(f"{self.master_user}:{{PLAIN}}{self.master_password}::::::\n")
        master.chmod(0o644)

    def _spawn_and_wait(self) -> None:
        with (self.root / "stdio.log").open("ab") as stdio:
            self._process = subprocess.Popen(
                [DOVECOT, "-F", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=stdio, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            wait_for_greeting(self.host, self.port, READY_TIMEOUT, process=self._process)
        except ServerStartError as exc:
            self.stop()
            raise DovecotError(f"Dovecot did not start: {exc}\n{self.log_tail()}") from exc

    def _instance_pids(self) -> list[int]:
        result = subprocess.run(
            ["pgrep", "-f", f"{self.instance_name}/"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        return [int(pid) for pid in result.stdout.split()]

    def _config_text(self) -> str:
        root = self.root
        if os.geteuid() == 0:
            uid, gid, own_user = MAIL_UID, MAIL_GID, ""
        else:
            uid, gid = os.getuid(), os.getgid()
            user_name, group_name = pwd.getpwuid(uid).pw_name, grp.getgrgid(gid).gr_name
            own_user = (
                f"default_login_user = {user_name}\n"
                f"default_internal_user = {user_name}\n"
                f"default_internal_group = {group_name}\n"
                f"first_valid_uid = {uid}\nfirst_valid_gid = {gid}\n"
            )
        layout = ":LAYOUT=fs" if self.separator == "/" else ""
        auto = "  auto = subscribe\n" if self.autocreate else ""
        mailboxes = "".join(
            f'  mailbox "{name}" {{\n    special_use = {attr}\n{auto}  }}\n' for attr, name in self.special_use.items()
        )
        if self.ssl:
            ssl_settings = f"ssl = yes\nssl_cert = <{self.cert_path}\nssl_key = <{self.key_path}\n"
            imaps = f"    address = {HOST}\n    port = {self.imaps_port}\n    ssl = yes\n"
        else:
            ssl_settings = "ssl = no\n"
            imaps = "    port = 0\n"
        chroot = "  chroot =\n" if own_user else ""
        # anvil's auth penalty delays *every* login from an IP by 2..15 s after failures
        penalty = "" if self.auth_penalty else "  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n"
        if self.max_mail_size is not None:
            quota = (
                "mail_plugins = $mail_plugins quota\n"
                "plugin {\n  quota = count:User quota\n  quota_vsizes = yes\n"
                f"  quota_max_mail_size = {self.max_mail_size}\n}}\n"
            )
            if self.advertise_appendlimit:
                quota += f"imap_capability = +APPENDLIMIT={self.max_mail_size}\n"
        else:
            quota = ""
        return f"""\
instance_name = {self.instance_name}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
protocols = imap
listen = {HOST}
{ssl_settings}disable_plaintext_auth = no
auth_failure_delay = {self.auth_failure_delay}
auth_mechanisms = plain login
auth_master_user_separator = *
mail_location = maildir:~/Maildir{layout}
mail_max_userip_connections = {self.max_userip_connections}
{quota}{own_user}namespace inbox {{
  inbox = yes
  separator = {self.separator}
{mailboxes}}}
passdb {{
  driver = passwd-file
  args = {root}/master-users
  master = yes
  pass = yes
}}
passdb {{
  driver = passwd-file
  args = {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
service anvil {{
{chroot}{penalty}}}
service imap-login {{
{chroot}  inet_listener imap {{
    address = {HOST}
    port = {self.port}
  }}
  inet_listener imaps {{
{imaps}  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service submission-login {{
  inet_listener submission {{
    port = 0
  }}
}}
"""

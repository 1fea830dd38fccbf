"""Text from outside (folder and account names, server replies) made safe to show on a terminal.

A folder called ``"\\x1b]0;pwned\\x07"``, an error text holding a CR or an LF, a NUL in an account
name: written as they are, they would retitle or repaint the admin's terminal, or forge lines in the
log file. Every front end passes such text through :func:`escape_controls` on its way out (the log
file, the CLI, the scheduler's output, notification mails, the TUI's widgets), so each control
character shows as a visible escape (``\\x1b``, ``\\n``) and one event stays one line.
"""

from __future__ import annotations

import re

# C0 (with TAB, LF, CR, ESC, NUL), DEL and C1 (0x80-0x9f, where 0x9b is an 8-bit CSI); and the
# Unicode line and paragraph separators, at which str.splitlines() breaks a line.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_BUT_LF = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")


def escape_controls(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control character written as a visible escape; other text unchanged.

    ``keep_newlines`` leaves LF alone, for a text made of several lines on purpose (a dialog's body);
    a text that must stay one line (a log field, a mail subject) escapes it too.
    """
    if len(text) > _LONG and not _has_controls(text, keep_newlines):
        return text
    return (_CONTROL_BUT_LF if keep_newlines else _CONTROL).sub(_escape, text)


# A long text (a report of 100,000 lines) is first checked at C speed: its UTF-8 bytes without the
# printable ASCII ones, searched for a control character's encoding (a third of a regex's time).
_LONG = 65536
_PLAIN = bytes(range(0x20, 0x7F))
_CONTROL_BYTES = re.compile(rb"[\x00-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xa8\xa9]")
_CONTROL_BYTES_BUT_LF = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xa8\xa9]")


def _has_controls(text: str, keep_newlines: bool) -> bool:
    rest = text.encode("utf-8", "surrogatepass").translate(None, _PLAIN)
    return (_CONTROL_BYTES_BUT_LF if keep_newlines else _CONTROL_BYTES).search(rest) is not None

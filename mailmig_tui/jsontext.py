"""JSON text for ``--json``: what ``json.dumps(data, indent=2, ensure_ascii=False, default=str)`` writes,
character for character, several times faster.

With ``indent`` the standard library leaves its C encoder for a pure-Python one that yields every
bracket, key and value as a separate piece: seconds for the report of 100,000 accounts (issue 14).
Here a list of many dicts with the same keys (a report's accounts, a task's users) is made column by
column: a column of plain values (strings, numbers, true/false/null) is one call of json's C encoder,
and the rows are one join of those values between their keys. :class:`Columns` gives such a list
column by column in the first place, without making its dicts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

_INDENT = "  "
_LEAF_TYPES = frozenset({str, int, float, bool, type(None)})
_MIN_ROWS = 16  # below this a list of dicts is made dict by dict
# The C encoder (indent=None) with a separator that cannot be in its output otherwise: it writes a
# control character inside a string as an escape.
_COLUMN = json.JSONEncoder(ensure_ascii=False, separators=("\x00", ": "))
_encode_str = json.encoder.encode_basestring  # ensure_ascii=False: json's C function when there is one
_EMPTY: dict[type, str] = {dict: "{}", list: "[]", tuple: "[]"}


class Columns:
    """A list of dicts with the same keys, given as ``{key: [each dict's value], ...}`` (columns of one
    length): written as that list, ``[{key: value, ...}, ...]``."""

    def __init__(self, columns: dict[str, Sequence[Any]]) -> None:
        lengths = {len(c) for c in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns of different lengths: {sorted(lengths)}")
        self.columns = columns
        self.rows = lengths.pop() if lengths else 0


def dumps(data: Any) -> str:
    """``data`` as ``json.dumps(data, indent=2, ensure_ascii=False, default=str)`` writes it; a
    :class:`Columns` in it as the list of dicts it stands for."""
    out: list[str] = []
    _write(data, "\n", out)
    return "".join(out)


def value(o: Any, pad: str) -> str:
    """``o``'s JSON text; ``pad`` is a newline and the indentation of the line ``o`` starts on."""
    out: list[str] = []
    _write(o, pad, out)
    return "".join(out)


def _write(o: Any, pad: str, out: list[str]) -> None:
    """Append the pieces of ``o``'s text to ``out`` (joined once at the end: a report is 40 MB)."""
    if isinstance(o, str):
        out.append(_encode_str(o))
    elif o is None or o is True or o is False or isinstance(o, int | float):
        out.append(_COLUMN.encode(o))
    elif isinstance(o, list | tuple):
        if not o:
            out.append("[]")
        elif len(o) >= _MIN_ROWS and _same_keys(o):
            _write_table(Columns({k: [r[k] for r in o] for k in o[0]}), pad, out)
        else:
            inner = pad + _INDENT
            for i, v in enumerate(o):
                out.append(("," if i else "[") + inner)
                _write(v, inner, out)
            out.append(pad + "]")
    elif isinstance(o, dict):
        if not o:
            out.append("{}")
        else:
            inner = pad + _INDENT
            for head, v in zip(_heads(tuple(o), inner), o.values(), strict=True):
                out.append(head)
                _write(v, inner, out)
            out.append(pad + "}")
    elif isinstance(o, Columns):
        _write_table(o, pad, out)
    else:
        out.append(_encode_str(str(o)))  # default=str


def _heads(keys: tuple[Any, ...], inner: str) -> list[str]:
    """Per key, what comes before its value: "{" or ",", the line's indentation, the key and ": "."""
    return [("," if i else "{") + inner + _encode_str(_key(k)) + ": " for i, k in enumerate(keys)]


def _key(k: Any) -> str:
    """A key as json writes it: a string as it is, a number or true/false/null as its JSON text."""
    if isinstance(k, str):
        return k
    if k is None or k is True or k is False or isinstance(k, int | float):
        return _COLUMN.encode(k)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(k).__name__}")


def _same_keys(items: list[Any] | tuple[Any, ...]) -> bool:
    """Whether ``items`` are non-empty dicts (not a subclass) with the same keys in the same order."""
    first = items[0]
    if type(first) is not dict or not first:
        return False
    keys = tuple(first)
    return all(type(r) is dict and tuple(r) == keys for r in items)


def _write_table(table: Columns, pad: str, out: list[str]) -> None:
    """The pieces of the list of dicts ``table`` stands for (``pad``: the list's line)."""
    n, keys = table.rows, tuple(table.columns)
    if not n:
        out.append("[]")
        return
    row, inner = pad + _INDENT, pad + _INDENT + _INDENT
    if not keys:
        out.append("[" + row + ("," + row).join(["{}"] * n) + pad + "]")
        return
    # per row each key's head and its value, then the end of the row
    width = 2 * len(keys) + 1
    parts: list[str] = [""] * (width * n)
    for i, (head, column) in enumerate(zip(_heads(keys, inner), table.columns.values(), strict=True)):
        parts[2 * i :: width] = [head] * n
        parts[2 * i + 1 :: width] = _column(column, inner)
    parts[width - 1 :: width] = [row + "}," + row] * n
    parts[-1] = row + "}" + pad + "]"
    out.append("[" + row)
    out.extend(parts)


def _column(values: Sequence[Any], pad: str) -> list[str]:
    """Each value's text: of plain values in one call of the C encoder, split at its separators."""
    types = set(map(type, values))
    if types == {str}:
        return list(map(_encode_str, values))
    if types <= _LEAF_TYPES:
        return _COLUMN.encode(list(values))[1:-1].split("\x00")
    return [_EMPTY[type(v)] if not v and type(v) in _EMPTY else value(v, pad) for v in values]

"""mailmig_tui/jsontext.py: the text of ``--json`` is what ``json.dumps(indent=2)`` writes, character for character."""

from __future__ import annotations

import enum
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from mailmig_tui import jsontext


class Level(enum.IntEnum):
    HIGH = 3


class Word(enum.StrEnum):
    ZED = "zed"


def reference(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)


ODD_STRINGS = [
    "",
    "plain",
    'quote " and \\',
    "ctl \x00\x1b[2J\n\t\x7f\x9b",
    "\u2028\u2029 é ß 日本 🙂",
    "%s %(x)s %%",
    "\ud800",
]
LEAVES: list[Any] = [
    None,
    True,
    False,
    0,
    -7,
    2**80,
    1.5,
    -0.0,
    1e-310,
    float("nan"),
    float("inf"),
    float("-inf"),
    Level.HIGH,
    Word.ZED,
    Path("/tmp/x"),
    *ODD_STRINGS,
]


def random_data(rnd: random.Random, depth: int = 0) -> Any:
    roll = rnd.random()
    if depth > 3 or roll < 0.35:
        return rnd.choice(LEAVES)
    if roll < 0.55:
        return [random_data(rnd, depth + 1) for _ in range(rnd.choice([0, 1, 2, 5]))]
    if roll < 0.7:  # a table: many dicts with the same keys, as a report's accounts
        keys = rnd.sample(["account", "n", "k%s", "x\n", "skipped"], rnd.choice([1, 3, 5]))
        return [{k: random_data(rnd, depth + 2) for k in keys} for _ in range(rnd.choice([16, 17, 40]))]
    if roll < 0.75:
        return (rnd.choice(LEAVES), Counter(a=2))
    keys: list[Any] = ["a", "b\x1b", 1, 2.5, True, False, None, Level.HIGH]
    return {rnd.choice(keys): random_data(rnd, depth + 1) for _ in range(rnd.choice([0, 1, 3]))}


@pytest.mark.parametrize("data", [*LEAVES, [], {}, [[]], {"a": {}}, {"a": [{}]}, [{} for _ in range(20)]])
def test_a_value_is_written_as_json_writes_it(data):
    assert jsontext.dumps(data) == reference(data)


def test_random_data_is_written_as_json_writes_it():
    rnd = random.Random(14)
    for _ in range(400):
        data = random_data(rnd)
        assert jsontext.dumps(data) == reference(data), data


def test_a_table_is_written_row_by_row_as_json_writes_it():
    """Rows with the same keys go column by column; a column may mix plain values and nested ones."""
    rows = [
        {
            "account": f"user{i}@acme.example" + ODD_STRINGS[i % len(ODD_STRINGS)],
            "status": ["complete", None, 3, 2.5, True][i % 5],
            "skipped": {} if i % 3 else {"too_old": i, "x%": [1, {"y": []}]},
            "failed_messages": [] if i % 4 else [{"folder": "INBOX", "id": str(j)} for j in range(i % 20)],
            "duration": i / 7,
        }
        for i in range(60)
    ]
    data = {"task": "acme", "accounts": rows, "tail": [rows[:3], rows[3:40]]}
    assert jsontext.dumps(data) == reference(data)


def test_rows_that_differ_in_keys_or_their_order_are_written_as_json_writes_them():
    same = [{"a": i, "b": str(i)} for i in range(20)]
    for odd in ({"b": "x", "a": 1}, {"a": 1}, {"a": 1, "b": "x", "c": None}, Counter(a=1, b=2), {}, [1], "s"):
        rows = [*same[:10], odd, *same[10:]]
        assert jsontext.dumps(rows) == reference(rows)


def test_columns_are_written_as_the_list_of_dicts_they_stand_for():
    columns = {
        "account": [f"user{i}" for i in range(30)],
        "copied": list(range(30)),
        "skipped": [{} if i % 2 else {"too_old": i} for i in range(30)],
        "last_started": [None if i % 3 else "2026-03-01T22:00:05+01:00" for i in range(30)],
    }
    rows = [{k: c[i] for k, c in columns.items()} for i in range(30)]
    data = {"task": "acme", "accounts": rows}
    assert jsontext.dumps({"task": "acme", "accounts": jsontext.Columns(columns)}) == reference(data)
    assert jsontext.dumps(jsontext.Columns({"a": []})) == "[]"
    assert jsontext.dumps(jsontext.Columns({})) == "[]"


def test_columns_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="columns of different lengths"):
        jsontext.Columns({"a": [1, 2], "b": [1]})

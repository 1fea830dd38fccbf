"""The engine knows nothing of the UI: no engine module may pull in Textual or Rich (STYLE.md "Shape")."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import mailmig_tui.engine

UI_PACKAGES = ("textual", "rich")

PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def engine_modules() -> list[str]:
    names = [mailmig_tui.engine.__name__]
    for info in pkgutil.walk_packages(mailmig_tui.engine.__path__, prefix="mailmig_tui.engine."):
        names.append(info.name)
    return sorted(names)


def top_level_modules_after_import(module: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, module], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"importing {module} failed:\n{result.stderr}"
    return set(json.loads(result.stdout))


def test_the_walk_finds_the_engine():
    modules = engine_modules()
    for name in ("model", "store", "userlist", "folders", "sources"):
        assert f"mailmig_tui.engine.{name}" in modules


@pytest.mark.parametrize("module", engine_modules())
def test_engine_module_does_not_import_the_ui(module):
    loaded = top_level_modules_after_import(module)
    assert "mailmig_tui" in loaded
    assert not loaded & set(UI_PACKAGES), f"{module} imports {sorted(loaded & set(UI_PACKAGES))}"


def test_the_probe_sees_the_ui_when_it_is_imported():
    assert set(UI_PACKAGES) <= top_level_modules_after_import("mailmig_tui.app")

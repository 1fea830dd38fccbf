"""Fixtures for the app's tests: a source and a destination Dovecot, and quiet, fast inputs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import Pair
from tests.servers.dovecot import DovecotServer


@pytest.fixture
def pair(dovecot_factory: Callable[..., DovecotServer], mailmig_home: Path) -> Pair:
    """Two private Dovecots: a source (alice, bob, carol) and a destination with special-use folders."""
    return Pair(dovecot_factory(name="src"), dovecot_factory(name="dst", autocreate=True))

"""Fixtures for the provider tests: a fal connection in the environment and an in-memory fal."""

from __future__ import annotations

import pytest
from fal_fakes import BASE, KEY, FakeFal, set_connection


@pytest.fixture
def fal_conn(monkeypatch: pytest.MonkeyPatch) -> str:
    """``fal_default`` pointing at the fake https base used by requests-mock and MockTransport."""
    set_connection(monkeypatch, BASE, KEY)
    return BASE


@pytest.fixture
def fake_fal(fal_conn: str) -> FakeFal:
    return FakeFal()

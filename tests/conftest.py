"""Shared fixtures: an isolated AIRFLOW_HOME and a real fal emulator on a loopback port."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Airflow reads its configuration at import time: point it at a private home before any test imports it.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="fal-video-tests-airflow-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
for sub in ("plugins", "include"):
    if str(ROOT / sub) not in sys.path:
        sys.path.insert(0, str(ROOT / sub))

TEST_KEY = "test-key-0123:secret-abcdef"


@pytest.fixture(scope="session")
def emulator_server():
    """One emulator process for the session (fast, time-scaled); tests reset it through `emulator`."""
    from fal_emulator.testing import EmulatorServer

    with EmulatorServer(keys=[TEST_KEY], time_scale=0.002, seed=7) as server:
        yield server


@pytest.fixture
def emulator(emulator_server):
    """The session emulator with its jobs, records, faults and settings reset before the test."""
    emulator_server.reset()
    return emulator_server


@pytest.fixture
def airflow_home() -> Path:
    return _AIRFLOW_HOME


@pytest.fixture
def fal_key() -> str:
    """The key the session emulator accepts (a distinctive value, so leak scans can find it)."""
    return TEST_KEY

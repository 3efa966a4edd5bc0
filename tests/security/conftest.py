"""Fixtures of the security tests: a distinctive fal key, an emulator that accepts only it, a DAG runner."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from security_helpers import DagRun, RecordingServer, dags_test, distinctive_key
from stack.local_airflow import migrate


@pytest.fixture(scope="session")
def sec_key() -> str:
    return distinctive_key()


@pytest.fixture(scope="session")
def sec_emulator_server(sec_key: str):
    from fal_emulator.testing import EmulatorServer

    with EmulatorServer(keys=[sec_key], time_scale=0.002, seed=11) as server:
        yield server


@pytest.fixture
def sec_emulator(sec_emulator_server):
    sec_emulator_server.reset()
    return sec_emulator_server


@pytest.fixture(scope="session")
def sec_dag_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite metadata DB for every `dags test` run of these tests."""
    home = tmp_path_factory.mktemp("airflow-security")
    migrate(home)
    return home


@pytest.fixture
def run_dag(sec_dag_home: Path, sec_emulator, sec_key: str, tmp_path: Path):
    """``run_dag(csv, archive=None, extra=None, **params)``: the real DAG under `airflow dags test`."""

    def run(csv_path: Path, archive: Path | None = None, *, extra: dict[str, Any] | None = None, **params) -> DagRun:
        return dags_test(sec_dag_home, sec_emulator.base_url, sec_key, csv_path, archive or tmp_path / "archive",
                         extra=extra, **params)  # fmt: skip

    return run


@pytest.fixture
def recorder() -> Iterator[RecordingServer]:
    with RecordingServer() as server:
        yield server

"""Run the real DAG with `airflow dags test` (SQLite metadata DB) against the emulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from stack.local_airflow import DagRun, airflow_env, dags_test, migrate


@pytest.fixture(scope="session")
def dag_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite metadata DB for every `dags test` run of the session."""
    home = tmp_path_factory.mktemp("airflow-e2e")
    migrate(home)
    return home


@pytest.fixture
def run_dag(dag_home: Path, emulator, fal_key: str, tmp_path: Path):
    """Call with a CSV path and params; returns the DagRun of the run folder it created."""

    def run(csv_path: Path, archive: Path | None = None, **params: Any) -> DagRun:
        conf = {"prompts_csv": str(csv_path), "archive_root": str(archive or tmp_path / "archive"),
                "poll_interval_seconds": 0.2, "chunk_size": 4, **params}  # fmt: skip
        return dags_test(dag_home, airflow_env(dag_home, emulator.base_url, fal_key), conf, timeout=600)

    return run

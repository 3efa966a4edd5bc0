"""Fixtures for the fault scenarios: the fal connection in this process, and `airflow dags test` runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stack.local_airflow import migrate


@pytest.fixture
def fal_conn(emulator, fal_key, monkeypatch):
    """fal_default points at the session emulator (reset), for the DAG steps run in this process."""
    conn = {"conn_type": "fal", "host": emulator.base_url, "password": fal_key, "extra": {"allow_http": True}}
    monkeypatch.setenv("AIRFLOW_CONN_FAL_DEFAULT", json.dumps(conn))
    return emulator


@pytest.fixture(scope="session")
def faults_dag_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite metadata DB for the `dags test` runs of this suite."""
    home = tmp_path_factory.mktemp("airflow-faults")
    migrate(home)
    return home

"""Run the real DAG with `airflow dags test` (SQLite metadata DB) against the emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


@dataclass
class DagRunResult:
    returncode: int
    output: str
    run_dir: Path | None

    @property
    def manifest(self) -> list[dict[str, Any]]:
        assert self.run_dir is not None, self.output[-3000:]
        lines = (self.run_dir / "manifest.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    @property
    def summary(self) -> dict[str, Any]:
        assert self.run_dir is not None, self.output[-3000:]
        return json.loads((self.run_dir / "summary.json").read_text())

    def by_id(self) -> dict[str, dict[str, Any]]:
        return {row["row_id"]: row for row in self.manifest}


def airflow_env(home: Path, base_url: str, key: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT / "include")]),
        "AIRFLOW_CONN_FAL_DEFAULT": json.dumps({
            "conn_type": "fal", "host": base_url, "password": key, "extra": {"allow_http": True},
        }),
    })  # fmt: skip
    return env


@pytest.fixture(scope="session")
def dag_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite metadata DB for every `dags test` run of the session."""
    home = tmp_path_factory.mktemp("airflow-e2e")
    env = airflow_env(home, "http://127.0.0.1:9", "unused")
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True)
    return home


@pytest.fixture
def run_dag(dag_home: Path, emulator, fal_key: str, tmp_path: Path):
    """Call with a CSV path and params; returns a DagRunResult for the newest run folder."""

    def run(csv_path: Path, archive: Path | None = None, **params: Any) -> DagRunResult:
        archive = archive or tmp_path / "archive"
        conf = {"prompts_csv": str(csv_path), "archive_root": str(archive), "poll_interval_seconds": 0.2,
                "chunk_size": 4, **params}  # fmt: skip
        before = set((archive / "runs").glob("*")) if (archive / "runs").exists() else set()
        done = subprocess.run(
            [AIRFLOW, "dags", "test", "fal_video_batch", "-c", json.dumps(conf)],
            env=airflow_env(dag_home, emulator.base_url, fal_key), capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        new = sorted(set((archive / "runs").glob("*")) - before) if (archive / "runs").exists() else []
        return DagRunResult(done.returncode, done.stdout + done.stderr, new[-1] if new else None)

    return run

"""Run this repository's Airflow on one machine: the airflow CLI's environment and `airflow dags test`.

One definition of "this repo's dags/ and plugins/, a private AIRFLOW_HOME, and the fal_default connection
pointing at a fal emulator (or any queue URL)", used by `make demo`, `make airflow-ui`, the chaos run and
the tests.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
DAG_ID = "fal_video_batch"


def fal_connection(base_url: str, key: str, extra: dict[str, Any] | None = None) -> str:
    """AIRFLOW_CONN_FAL_DEFAULT in JSON form. Plain http (the emulator) needs allow_http."""
    extra = {"allow_http": True} if extra is None else extra
    return json.dumps({"conn_type": "fal", "host": base_url, "password": key, "extra": extra})


def airflow_env(
    home: Path | None, base_url: str, key: str, *, extra: dict[str, Any] | None = None, pythonpath: tuple[str, ...] = ()
) -> dict[str, str]:
    """Environment for an airflow process (CLI, `dags test`, a script) working on this repository."""
    env = dict(os.environ)
    paths = [str(ROOT / "plugins"), str(ROOT / "include"), *pythonpath, env.get("PYTHONPATH", "")]
    env.update({
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": os.pathsep.join(p for p in paths if p),
        "AIRFLOW_CONN_FAL_DEFAULT": fal_connection(base_url, key, extra),
    })  # fmt: skip
    if home is not None:
        env["AIRFLOW_HOME"] = str(home)
    return env


def migrate(home: Path) -> None:
    """A fresh SQLite metadata database in ``home``."""
    env = airflow_env(home, "http://127.0.0.1:9", "unused")
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True)


@dataclass
class DagRun:
    """What one `airflow dags test` left behind: its exit code, its output and its run folder."""

    returncode: int
    output: str
    run_dir: Path | None

    @property
    def manifest(self) -> list[dict[str, Any]]:
        assert self.run_dir is not None, self.output[-3000:]
        lines = (self.run_dir / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    @property
    def summary(self) -> dict[str, Any]:
        assert self.run_dir is not None, self.output[-3000:]
        return json.loads((self.run_dir / "summary.json").read_text())

    def manifest_csv(self) -> list[list[str]]:
        assert self.run_dir is not None, self.output[-3000:]
        with open(self.run_dir / "manifest.csv", encoding="utf-8-sig", newline="") as handle:
            return list(csv.reader(handle))

    def by_id(self) -> dict[str, dict[str, Any]]:
        return {row["row_id"]: row for row in self.manifest}


def dags_test(home: Path, env: dict[str, str], conf: dict[str, Any], *, timeout: float = 900) -> DagRun:
    """`airflow dags test fal_video_batch -c CONF` in a subprocess; the run folder it created is the result."""
    runs = Path(conf["archive_root"]) / "runs"
    before = set(runs.glob("*")) if runs.exists() else set()
    command = [AIRFLOW, "dags", "test", DAG_ID, "-c", json.dumps(conf)]
    env = {**env, "AIRFLOW_HOME": str(home)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    new = sorted(set(runs.glob("*")) - before) if runs.exists() else []
    return DagRun(done.returncode, done.stdout + done.stderr, new[-1] if new else None)


def write_csv(path: Path, rows: list[dict[str, str]], *, bom: bool = False, quote_all: bool = False) -> Path:
    """A prompt CSV with the union of the rows' keys as columns."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
        writer.writeheader()
        writer.writerows(rows)
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()

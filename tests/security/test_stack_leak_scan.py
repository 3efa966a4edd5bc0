"""Issue 5 item 7, the full scan: a real distributed run (scheduler, triggerer, two Celery workers,
Postgres, Redis) with a distinctive key, then the key is looked for everywhere the run left data.

Scanned: every file under the stack's AIRFLOW_HOME (component logs: scheduler, dag-processor,
triggerer, api-server, workers; Airflow's task logs), every row of every table of the run's Postgres
database (xcom, task_instance incl. next_kwargs, rendered_task_instance_fields, dag_run.conf, log,
celery results, ...), the trigger rows (sampled while the chunks wait, as the triggerer deletes them
afterwards; their kwargs are Fernet-encrypted, so they are decrypted with the stack's key and
scanned both ways), the archive, and the emulator's request records.

Not scanned: ``env.json``, the harness's record of the environment it gave every process (mode
0600). It holds the connection by design, so it is the positive control: the same scan finds the
key there, proving the needles match what the stack really used.
"""

from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from cryptography.fernet import Fernet
from security_helpers import LeakScan, distinctive_key, write_csv
from stack import topology as T
from stack.harness import AirflowStack

from fal_emulator.testing import EmulatorServer

pytestmark = [pytest.mark.stack, pytest.mark.timeout(900)]

DAG_ID = "fal_video_batch"
STACK_NAME = "security_scan"


class TriggerSampler(threading.Thread):
    """Polls the trigger table and task_instance.next_kwargs while the run goes on."""

    def __init__(self, db_name: str) -> None:
        super().__init__(daemon=True)
        self.db_name = db_name
        self.triggers: dict[int, str] = {}  # id -> kwargs column as stored
        self.next_kwargs: list[Any] = []
        self.stop = threading.Event()

    def run(self) -> None:
        conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=self.db_name)
        conn.autocommit = True
        try:
            while not self.stop.is_set():
                with conn.cursor() as cur:
                    cur.execute("SELECT id, kwargs FROM trigger")
                    self.triggers.update(dict(cur.fetchall()))
                    cur.execute("SELECT next_kwargs FROM task_instance WHERE next_kwargs IS NOT NULL")
                    self.next_kwargs += [row[0] for row in cur.fetchall()]
                self.stop.wait(0.3)
        finally:
            conn.close()


def scan_database(db_name: str, scan: LeakScan) -> dict[str, int]:
    """Every value of every row of every table in the public schema; returns the row count per table."""
    counts: dict[str, int] = {}
    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=db_name)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
            tables = [row[0] for row in cur.fetchall()]
            for table in tables:
                cur.execute(f'SELECT * FROM "{table}"')
                names = [d.name for d in cur.description]
                rows = cur.fetchall()
                counts[table] = len(rows)
                for i, row in enumerate(rows):
                    for name, value in zip(names, row, strict=True):
                        scan.value(f"db {table}[{i}].{name}", value)
    finally:
        conn.close()
    return counts


def test_real_stack_run_leaves_the_key_nowhere(tmp_path: Path) -> None:
    key = distinctive_key()
    scan = LeakScan(key)
    # Jobs take ~6 s to generate, so the chunks sit deferred in the triggerer long enough to be sampled.
    settings = {"generation_seconds": 600, "queue_seconds": 0}
    with EmulatorServer(keys=[key], time_scale=0.01, seed=5, settings=settings) as emulator:
        conn = {"conn_type": "fal", "host": emulator.base_url, "password": key, "extra": {"allow_http": True}}
        rows = [{"id": f"ok-{i}", "prompt": f"a glass bird number {i} over a city", "team": f"t{i}"} for i in range(4)]
        rows += [
            {"id": "broken", "prompt": "a glass tree [fal-fault:model_error]", "team": "x"},
            {"id": "expired", "prompt": "a glass kite [fal-fault:media_expired]", "team": "y"},
        ]
        archive = tmp_path / "archive"
        conf = {"prompts_csv": str(write_csv(tmp_path / "prompts.csv", rows)), "archive_root": str(archive),
                "chunk_size": 2, "poll_interval_seconds": 0.5, "failure_policy": "never"}  # fmt: skip

        stack = AirflowStack(STACK_NAME, env_extra={T.CONN_ENV: json.dumps(conn)}, workers=2)
        stack.start()
        sampler = None
        try:
            sampler = TriggerSampler(stack.native.state.db_name)
            sampler.start()
            run_id = stack.trigger_dag(DAG_ID, conf)
            state = stack.wait_for_run(DAG_ID, run_id, timeout=600)
            sampler.stop.set()
            sampler.join(10)
            states = stack.task_states(DAG_ID, run_id)
            assert state == "success", (states, stack.log_text("scheduler")[-3000:])
            manifest = [json.loads(line) for p in archive.glob("runs/*/manifest.jsonl")
                        for line in p.read_text().splitlines() if line.strip()]  # fmt: skip
            statuses = {r["row_id"]: r["status"] for r in manifest}
            assert statuses == {**{f"ok-{i}": "succeeded" for i in range(4)}, "broken": "rejected",
                                "expired": "media_expired"}, statuses  # fmt: skip

            # --- Postgres: every table, then the trigger rows seen while the chunks waited ---
            counts = scan_database(stack.native.state.db_name, scan)
            for table in ("xcom", "task_instance", "rendered_task_instance_fields", "dag_run", "log"):
                assert counts.get(table, 0) > 0, (table, counts)
            assert sampler.triggers, "no trigger row was seen while the chunks were deferred"
            fernet = Fernet(stack.env["AIRFLOW__CORE__FERNET_KEY"].encode())
            for trigger_id, stored in sampler.triggers.items():
                scan.text(f"trigger[{trigger_id}].kwargs (stored)", stored)
                plain = stored if stored.startswith("{") else fernet.decrypt(stored.encode()).decode()
                assert "fal_conn_id" in plain or "conn_id" in plain, plain[:500]  # decrypted for real
                scan.text(f"trigger[{trigger_id}].kwargs (decrypted)", plain)
            for i, kwargs in enumerate(sampler.next_kwargs):
                scan.value(f"task_instance.next_kwargs sample {i}", kwargs)

            # --- files: component logs and task logs under the stack's AIRFLOW_HOME ---
            home = stack.native.home
            env_file = home / "env.json"
            before = len(scan.scanned)
            scan.tree(home, skip=[env_file])
            scanned_files = scan.scanned[before:]
            for component in ("scheduler", "triggerer", "api-server", "dag-processor", "worker-1", "worker-2"):
                assert str(stack.logs_dir / f"{component}.log") in scanned_files, component
            task_logs = [p for p in scanned_files if p.startswith(str(stack.task_logs_dir)) and "run_id=" in p]
            for task in ("plan_jobs", "chunk.generate", "chunk.archive", "write_manifest"):
                assert any(f"task_id={task}" in p for p in task_logs), (task, task_logs[:20])
            control = LeakScan(key).bytes("env.json", env_file.read_bytes())
            assert "key" in {f.form for f in control}, "positive control: env.json holds the configured key"

            # --- the archive and the emulator's records ---
            scan.tree(archive)
            records = emulator.requests()
            assert {r["headers"].get("authorization") for r in records if r["kind"] != "media"} == {"Key ***"}
            assert all("authorization" not in r["headers"] for r in records if r["kind"] == "media")
            scan.text("emulator records", json.dumps(records))
        finally:
            if sampler is not None:
                sampler.stop.set()
            with contextlib.suppress(Exception):
                stack.stop()
        assert stack.leftover_pids == []

    print(f"\nscanned {len(scan.scanned)} files/values; trigger rows sampled: {len(sampler.triggers)}")
    assert scan.findings == [], "\n".join(map(str, scan.findings[:50]))

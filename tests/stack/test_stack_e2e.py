"""fal_video_batch end to end on the distributed stack (CeleryExecutor, real scheduler + triggerer) and the emulator.

Triggered through the REST API like a user would; the deferrable `wait` tasks run in the real triggerer.
The larger scenarios of issue 6 (100 prompts, triggerer restart, mark failed, in-flight cap) build on the same
fixtures: see docs/running_at_scale.md.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from stack import topology as T
from stack.harness import AirflowStack

from fal_emulator.testing import EmulatorServer

pytestmark = [pytest.mark.stack, pytest.mark.timeout(600)]

KEY = "stack-key-0001:stack-secret-0001"
DAG_ID = "fal_video_batch"


@pytest.fixture(scope="module")
def emulator():
    with EmulatorServer(keys=[KEY], time_scale=0.01, seed=3, concurrency=10) as server:
        yield server


@pytest.fixture(scope="module")
def stack(emulator):
    conn = {"conn_type": "fal", "host": emulator.base_url, "password": KEY, "extra": {"allow_http": True}}
    with AirflowStack("e2e", env_extra={T.CONN_ENV: json.dumps(conn)}, workers=2) as af:
        yield af
    assert af.leftover_pids == []


def small_csv(path: Path, n: int) -> Path:
    rows = [{"id": f"p{i:03d}", "prompt": f"a red fox number {i} running through snow", "endpoint": "fal-ai/mochi-v1"}
            for i in range(n)]  # fmt: skip
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_small_batch_through_rest_scheduler_triggerer_and_celery(stack, emulator, tmp_path):
    emulator.reset()
    archive = tmp_path / "archive"
    conf = {"prompts_csv": str(small_csv(tmp_path / "prompts.csv", 6)), "archive_root": str(archive),
            "chunk_size": 2, "poll_interval_seconds": 0.5}  # fmt: skip
    run_id = stack.trigger_dag(DAG_ID, conf)
    state = stack.wait_for_run(DAG_ID, run_id, timeout=420)
    states = stack.task_states(DAG_ID, run_id)
    assert state == "success", (states, stack.log_text("scheduler")[-3000:])
    assert {s for (task, _), s in states.items()} == {"success"}
    assert sum(1 for (task, _) in states if task == "wait") == 3  # 6 rows / chunk_size 2

    (run_dir,) = [p.parent for p in (archive / "runs").glob("*/manifest.jsonl")]
    manifest = [json.loads(line) for line in (run_dir / "manifest.jsonl").read_text().splitlines() if line.strip()]
    assert sorted(r["row_id"] for r in manifest) == [f"p{i:03d}" for i in range(6)]
    assert {r["status"] for r in manifest} == {"succeeded"}
    assert len(list((archive / "videos").rglob("*.mp4"))) == 6
    assert emulator.counts()["submit"] == 6, emulator.counts()

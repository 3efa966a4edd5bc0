"""Processes that die mid-step, and two runs at once (issue 5 items 2, 3 and 5).

The killed process runs the DAG's own code (the operator's submit loop with a real Ledger; the
archive task's ``archive_chunk``) and is SIGKILLed, as when a worker dies: no ``finally``, no
cleanup. The retry / rerun then runs the DAG's steps again (faults_pipeline).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from faults_helpers import (
    assert_archive_clean,
    assert_one_terminal_row_per_csv_row,
    fal_env,
    jobs_per_prompt,
    write_csv,
)
from faults_pipeline import DEFAULT_PARAMS, generate, run_pipeline

from fal_video.batch import plan_jobs

HERE = Path(__file__).resolve().parent


def wait_for(condition, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)  # reaped: its pid is dead for the archive's sweep


SUBMIT_LOOP = """
import json, sys
from fal_video.hook import FalHook
from fal_video.ledger import Ledger
from fal_video.operators import submit_chunk, _parse_jobs
import logging; logging.basicConfig(level=logging.INFO)
chunk = json.load(open(sys.argv[2]))
# exactly what FalSubmitOperator.execute does for try 1 of generate[0]
owner = "fal_video_batch/manual__kill/generate/0#try1"
submit_chunk(FalHook("fal_default"), Ledger(sys.argv[1]), _parse_jobs(chunk), owner, logging.getLogger("submit"),
             run_scope="fal_video_batch/manual__kill")
"""


def test_worker_killed_mid_submit_the_retry_reattaches_and_each_job_is_submitted_once(fal_conn, fal_key, tmp_path):
    rows = [{"id": f"k{i}", "prompt": f"a paper boat number {i}"} for i in range(5)]
    csv_path = write_csv(tmp_path / "p.csv", rows)
    archive = tmp_path / "archive"
    params = {**DEFAULT_PARAMS, "prompts_csv": str(csv_path), "archive_root": str(archive)}
    (chunk,) = plan_jobs(params, "manual__kill", None, None)
    (tmp_path / "chunk.json").write_text(json.dumps(chunk))
    fal_conn.add_fault("slow", on="submit", start=3, count=1, seconds=30)  # the 3rd submit hangs

    command = [sys.executable, "-c", SUBMIT_LOOP, str(archive), str(tmp_path / "chunk.json")]
    log = (tmp_path / "submit.log").open("w")
    proc = subprocess.Popen(command, env=fal_env(fal_conn.base_url, fal_key), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: len(fal_conn.requests("submit")) >= 3, what="the third submit to reach fal")
        ledger = archive / "ledger"
        wait_for(lambda: sum(1 for _ in ledger.glob("*.json")) >= 2, what="two request ids in the ledger")
        assert proc.poll() is None  # still hanging in the 3rd submit
    finally:
        kill(proc)
    third = chunk[2]["job_key"]
    assert (archive / "ledger" / f"{third}.claim").exists()  # the dead try's claim, no request id

    # The task retries: try 2, as FalSubmitOperator with the same run, task and map index.
    out = generate(chunk, params, "manual__kill", try_number=2)
    by_key = {s["job_key"]: s for s in out["submissions"]}
    assert by_key[chunk[0]["job_key"]]["reattached"] and by_key[chunk[1]["job_key"]]["reattached"]
    assert not by_key[chunk[3]["job_key"]]["reattached"] and not by_key[chunk[4]["job_key"]]["reattached"]
    (unknown,) = out["not_submitted"]
    assert unknown["job_key"] == third and unknown["reason_code"] == "submit_unknown"
    assert "#try1" in unknown["reason"]  # names the attempt that died mid-submit
    assert sorted(o["state"] for o in out["outcomes"]) == ["succeeded"] * 4
    submits = fal_conn.counts(by="prompt")
    assert submits == {r["prompt"]: 1 for r in rows}, submits  # exactly one submit per job, ever


ARCHIVE_STEP = """
import json, sys
from fal_video.batch import archive_chunk
generated, params = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
archive_chunk(generated, params, "fal_default")  # the DAG's archive[chunk] task body
"""


def test_archive_killed_mid_download_then_rerun_completes_with_nothing_partial(fal_conn, fal_key, tmp_path):
    fal_conn.configure(media_pad_to_bytes=6_000_000, media_chunk_delay_seconds=0.05)  # ~1.2 s per video
    rows = [{"id": f"big{i}", "prompt": f"a long slow river {i}"} for i in range(3)]
    csv_path = write_csv(tmp_path / "p.csv", rows)
    archive = tmp_path / "archive"
    params = {**DEFAULT_PARAMS, "prompts_csv": str(csv_path), "archive_root": str(archive)}
    (chunk,) = plan_jobs(params, "manual__first", None, None)
    generated = generate(chunk, params, "manual__first")
    assert {o["state"] for o in generated["outcomes"]} == {"succeeded"}
    (tmp_path / "generated.json").write_text(json.dumps(generated))
    (tmp_path / "params.json").write_text(json.dumps(params))

    proc = subprocess.Popen([sys.executable, "-c", ARCHIVE_STEP, str(tmp_path / "generated.json"),
                             str(tmp_path / "params.json")], env=fal_env(fal_conn.base_url, fal_key))  # fmt: skip
    partial = archive / ".partial"
    try:
        wait_for(lambda: any(p.is_file() and p.stat().st_size > 1_000_000 for p in partial.rglob("*.mp4")),
                 what="bytes flowing into .partial")  # fmt: skip
    finally:
        kill(proc)
    assert [p.name for p in (archive / "videos").glob("*.mp4")] == [] if (archive / "videos").exists() else True
    assert any(p.is_file() for p in partial.rglob("*"))  # the killed download left its temporary file behind
    media_before = len(fal_conn.requests("media"))

    # The run is rerun (a new run over the same CSV): it re-attaches to the paid jobs and archives them.
    fal_conn.configure(media_chunk_delay_seconds=0.0)
    out = run_pipeline(csv_path, archive, "manual__rerun")
    assert out["errors"] == {}, out["errors"]
    assert_one_terminal_row_per_csv_row(out["manifest"], [r["id"] for r in rows])
    assert {r["status"] for r in out["manifest"]} == {"succeeded"}
    assert all(c == 1 for c in fal_conn.counts(by="prompt").values())  # no job resubmitted
    assert len(fal_conn.requests("submit")) == 3
    assert len(fal_conn.requests("media")) > media_before
    assert_archive_clean(archive, out["manifest"])  # .partial swept: the dead process's file is gone
    assert all((archive / r["video_path"]).stat().st_size >= 6_000_000 for r in out["manifest"])


def test_two_runs_at_once_over_the_same_csv_submit_each_job_once(fal_conn, fal_key, tmp_path):
    fal_conn.configure(queue_seconds=200, generation_seconds=300)  # jobs stay in flight ~1 s: the runs overlap
    rows = [{"id": f"c{i}", "prompt": f"two runs, one clip {i}"} for i in range(6)]
    csv_path = write_csv(tmp_path / "p.csv", rows)
    archive = tmp_path / "archive"
    env = fal_env(fal_conn.base_url, fal_key)
    script = str(HERE / "faults_pipeline.py")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                script,
                str(csv_path),
                str(archive),
                f"manual__together_{n}",
                json.dumps({"chunk_size": 3}),
            ],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in (1, 2)
    ]
    outputs = [json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1]) for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert [o["errors"] for o in outputs] == [{}, {}]
    assert jobs_per_prompt(fal_conn) == {r["prompt"]: 1 for r in rows}
    assert fal_conn.counts(by="prompt") == {r["prompt"]: 1 for r in rows}  # no second submit request either
    for n in (1, 2):
        manifest = [json.loads(line) for line in (archive / "runs" / f"manual__together_{n}" / "manifest.jsonl")
                    .read_text().splitlines()]  # fmt: skip
        assert_one_terminal_row_per_csv_row(manifest, [r["id"] for r in rows])
        assert {r["status"] for r in manifest} <= {"succeeded", "reused"}
        assert_archive_clean(archive, manifest)

"""fal_video_batch end to end on the distributed stack (CeleryExecutor, Postgres, Redis, two Celery workers,
the real scheduler and triggerer) against the fal emulator, driven through the REST API and the CLI like a user.

Issue 6 "Done when" and issue 5 item 6:

- 100 prompts through the REST API; manifest (100 rows, statuses) and files (sha256) verified;
- the triggerer is restarted (SIGTERM, as a deploy does: `cleanup()` runs in every trigger) while >= 20 jobs
  wait: no cancel reaches the emulator and every job completes (A1);
- one waiting `generate` task instance is marked failed through the REST API: exactly its unfinished jobs are
  cancelled (`on_kill`), its rows end failed/cancelled with a reason, every other row succeeds;
- the emulator's own records show the jobs in flight never exceeded pool slots x chunk_size, and the pool
  shows the cap binding (chunks waiting for a slot while several chunks wait deferred);
- `airflow backfill create` over 2026-12-01..03 reads each date's CSV; a second backfill reuses everything.

One stack for the module (start-up is the expensive part). Scheduled runs are off
(`[scheduler] use_job_schedule = False`): unpausing the @daily DAG would otherwise start today's run, which
would submit jobs of its own to the emulator and make the counts below meaningless. Manual and backfill runs
are unaffected by that setting.
"""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
import requests
from stack import topology as T
from stack.harness import AirflowStack
from stack.native import ROOT, airflow_bin

from fal_emulator.testing import EmulatorServer

pytestmark = [pytest.mark.stack, pytest.mark.timeout(900)]

KEY = "stack-key-0001:stack-secret-0001"
DAG_ID = "fal_video_batch"
TIME_SCALE = 0.1  # emulator seconds x 0.1 = real seconds
POOL_SLOTS = 6
CHUNK_SIZE = 5
CAP = POOL_SLOTS * CHUNK_SIZE  # fal jobs in flight, at most
EMULATOR_CONCURRENCY = 10  # below the cap: jobs queue at "fal", so in-flight climbs to the cap and the pool binds
N_PROMPTS = 100


@pytest.fixture(scope="module")
def emulator():
    with EmulatorServer(keys=[KEY], time_scale=TIME_SCALE, seed=3, concurrency=EMULATOR_CONCURRENCY) as server:
        yield server


@pytest.fixture(scope="module")
def archive_root(tmp_path_factory) -> Path:
    """$FAL_VIDEO_ARCHIVE of the stack: where runs without an archive_root param (backfills) write."""
    return tmp_path_factory.mktemp("stack-archive")


@pytest.fixture(scope="module")
def stack(emulator, archive_root):
    conn = {"conn_type": "fal", "host": emulator.base_url, "password": KEY, "extra": {"allow_http": True}}
    env = {
        T.CONN_ENV: json.dumps(conn),
        T.ARCHIVE_ENV: str(archive_root),
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",  # no automatic @daily run when the DAG is unpaused
    }
    af = AirflowStack("e2e", env_extra=env, workers=2, pool_slots=POOL_SLOTS)
    af.start()
    print(f"\nstack ready in {af.startup_seconds:.1f}s")
    try:
        yield af
    finally:
        left = af.stop()
    assert left == [], f"processes left running: {left}"


def write_csv(path: Path, n: int) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "prompt", "endpoint"])
        writer.writeheader()
        for i in range(n):
            writer.writerow({"id": f"r{i:03d}", "prompt": f"a red fox number {i} running through fresh snow",
                             "endpoint": "fal-ai/mochi-v1"})  # fmt: skip
    return path


def read_manifest(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "manifest.jsonl").read_text().splitlines() if line.strip()]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def video_file(archive: Path, row: dict) -> Path:
    path = Path(row["video_path"])
    return path if path.is_absolute() else archive / path


class Sampler(threading.Thread):
    """Every `every` seconds: fal jobs in flight (emulator) and the fal_jobs pool's slots (REST)."""

    def __init__(self, af: AirflowStack, emulator: EmulatorServer, every: float = 1.5):
        super().__init__(daemon=True)
        self.af, self.base, self.every = af, emulator.base_url, every
        self.samples: list[dict] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as fal, requests.Session() as api:
            while not self.stopped.wait(self.every):
                try:
                    jobs = fal.get("/_emulator/jobs").json()
                    pool = api.get(f"{self.af.api_url}/api/v2/pools/{T.POOL_NAME}", timeout=10,
                                   headers={"Authorization": f"Bearer {self.af.token()}"}).json()  # fmt: skip
                except Exception:  # a sample lost while a component restarts
                    continue
                jobs = jobs.get("jobs", jobs) if isinstance(jobs, dict) else jobs
                self.samples.append({
                    "t": time.time(),
                    "fal_in_flight": sum(1 for j in jobs if j["state"] != "COMPLETED"),
                    **{k: pool.get(k) for k in ("deferred_slots", "running_slots", "queued_slots",
                                                "scheduled_slots", "open_slots")},
                })  # fmt: skip

    def stop(self) -> list[dict]:
        self.stopped.set()
        self.join(timeout=30)
        return self.samples


def emulator_jobs(emulator: EmulatorServer) -> dict[str, dict]:
    jobs = emulator.jobs()
    jobs = jobs.get("jobs", jobs) if isinstance(jobs, dict) else jobs
    return {j["request_id"]: j for j in jobs}


def poll(condition, timeout: float, every: float = 1.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached after {timeout:.0f}s")
        time.sleep(every)


def test_100_prompts_triggerer_restart_mark_failed_and_in_flight_cap(stack, emulator, tmp_path):
    t_start = time.monotonic()
    emulator.reset()
    emulator.configure(generation_seconds=50, queue_seconds=0)  # x TIME_SCALE: 5 s of real generation per job
    archive = tmp_path / "archive"
    conf = {"prompts_csv": str(write_csv(tmp_path / "prompts.csv", N_PROMPTS)), "archive_root": str(archive),
            "chunk_size": CHUNK_SIZE, "poll_interval_seconds": 1.0, "deadline_minutes": 15,
            "max_cost_usd": None, "failure_policy": "never"}  # fmt: skip
    pool = stack.pool(T.POOL_NAME)
    assert pool["slots"] == POOL_SLOTS and pool["include_deferred"] is True, pool

    sampler = Sampler(stack, emulator)
    sampler.start()
    run_id = stack.trigger_dag(DAG_ID, conf)

    # --- 1. triggerer restart while >= 20 jobs wait --------------------------------------------------------
    def enough_waiting():
        in_flight = sum(1 for j in emulator_jobs(emulator).values() if j["state"] != "COMPLETED")
        if in_flight < 20:
            return None
        deferred = [ti for ti in stack.task_instances(DAG_ID, run_id, "chunk.generate") if ti["state"] == "deferred"]
        return (in_flight, len(deferred)) if len(deferred) * CHUNK_SIZE >= 20 else None

    in_flight_at_restart, deferred_at_restart = poll(enough_waiting, 300, what=">= 20 fal jobs waiting in triggers")
    old_pid = stack.pids()["triggerer"]
    t_restart = time.time()
    new_pid = stack.restart_triggerer(kill=False)  # SIGTERM: every trigger's cleanup() runs; waits for the new one
    restart_seconds = time.time() - t_restart
    print(f"triggerer restarted with {in_flight_at_restart} fal jobs in flight, {deferred_at_restart} chunks "
          f"deferred ({restart_seconds:.1f}s)")  # fmt: skip
    assert new_pid != old_pid
    assert emulator.requests("cancel") == [], "a triggerer restart sent cancels to fal (A1)"

    # --- 2. mark one waiting generate task failed: exactly its unfinished jobs are cancelled ---------------
    def pick_waiting_chunk():
        """A deferred chunk followed by the NEW triggerer (status polls since the restart) with jobs still queued
        at fal, the one with the most queued jobs first (so some are surely unfinished when the cancel lands)."""
        jobs = emulator_jobs(emulator)
        best = None
        for ti in stack.task_instances(DAG_ID, run_id, "chunk.generate"):
            triggerer = ti.get("triggerer_job") or {}
            if ti["state"] != "deferred" or not triggerer.get("start_date") or triggerer.get("end_date"):
                continue
            if _epoch(triggerer["start_date"]) < t_restart:  # still assigned to the stopped triggerer
                continue
            submitted = stack.xcom(DAG_ID, run_id, "chunk.generate", "submitted", ti["map_index"])
            ids = [s["request_id"] for s in submitted["submissions"]]
            queued = sum(jobs[i]["state"] == "IN_QUEUE" for i in ids)
            if len(ids) == CHUNK_SIZE and queued and (best is None or queued > best[0]):
                best = (queued, ti["map_index"], ids)
        if best is None:
            return None
        polled = {r["request_id"] for r in emulator.requests("status") if r["time"] > t_restart + restart_seconds}
        return best if set(best[2]) <= polled else None  # its trigger runs (polls) in the new triggerer

    _queued, victim, victim_ids = poll(pick_waiting_chunk, 300, every=1.0, what="a deferred chunk still queued at fal")
    before = emulator_jobs(emulator)
    t_mark = time.time()
    stack.mark_task_failed(DAG_ID, run_id, "chunk.generate", map_index=victim)
    # on_kill runs in the triggerer: wait until every job of the chunk has ended at fal (cancelled or done).
    poll(lambda: all(emulator_jobs(emulator)[i]["state"] == "COMPLETED" for i in victim_ids), 120,
         what=f"generate[{victim}]'s jobs ended after it was marked failed")  # fmt: skip
    print(f"marked generate[{victim}] failed; its jobs before: {[before[i]['state'] for i in victim_ids]}")

    # --- 3. the run finishes --------------------------------------------------------------------------------
    state = stack.wait_for_run(DAG_ID, run_id, timeout=600)
    samples = sampler.stop()
    wall = time.monotonic() - t_start
    states = stack.task_states(DAG_ID, run_id)
    print(f"run {state} in {wall:.0f}s (from trigger); generate[{victim}] marked failed")
    assert state == "success", states  # failure_policy=never: write_manifest accounts for every row and succeeds
    generate = {i: st for (task, i), st in states.items() if task == "chunk.generate"}
    archive_states = {i: st for (task, i), st in states.items() if task == "chunk.archive"}
    assert len(generate) == N_PROMPTS // CHUNK_SIZE
    assert generate.pop(victim) == "failed" and set(generate.values()) == {"success"}, states
    # each chunk archives right after its generate task (all_done): the marked chunk too (nothing to archive).
    assert set(archive_states.values()) == {"success"} and len(archive_states) == N_PROMPTS // CHUNK_SIZE, states
    assert states[("plan_jobs", -1)] == states[("write_manifest", -1)] == "success"

    # Cancels: only for the marked chunk, only for its jobs not COMPLETED at that moment, once, none earlier.
    cancels = emulator.requests("cancel")
    cancelled_ids = [r["request_id"] for r in cancels]
    assert cancels, "marking a waiting task failed sent no cancel to fal (on_kill)"
    assert len(cancelled_ids) == len(set(cancelled_ids)), "a job was cancelled twice"
    assert set(cancelled_ids) <= set(victim_ids), "a cancel reached a job of another chunk"
    assert all(r["time"] >= t_mark for r in cancels), "a cancel reached fal before the task was marked failed"
    jobs = emulator_jobs(emulator)
    first_cancel = min(r["time"] for r in cancels)
    accepted = {r["request_id"] for r in cancels if r["status_code"] in (200, 202)}
    for r in cancels:  # a cancel may only lose the race against a job that was already running at the mark
        if r["request_id"] not in accepted:
            assert r["status_code"] == 400 and before[r["request_id"]]["state"] == "IN_PROGRESS", r
    for rid in victim_ids:  # queued at the mark => cancelled; not cancelled => it finished, successfully
        if before[rid]["state"] == "IN_QUEUE":
            assert rid in accepted, f"{rid} was still queued at the mark but was not cancelled"
        if rid in accepted:
            assert jobs[rid]["cancelled"] and jobs[rid]["error_type"] == "client_cancelled", jobs[rid]
        else:
            assert not jobs[rid]["cancelled"] and jobs[rid]["error_type"] is None, jobs[rid]
            assert rid in cancelled_ids or jobs[rid]["completed_at"] < first_cancel, jobs[rid]
    assert {i for i, j in jobs.items() if j["cancelled"]} == accepted
    unfinished_at_mark = accepted

    # Every other job: submitted once, completed without error (nothing lost across the triggerer restart).
    assert len(jobs) == N_PROMPTS and emulator.counts()["submit"] == N_PROMPTS
    assert set(emulator.counts(by="prompt").values()) == {1}, "a prompt was submitted twice"
    for rid, job in jobs.items():
        if rid not in unfinished_at_mark:
            assert job["state"] == "COMPLETED" and job["error_type"] is None and not job["cancelled"], job

    # The in-flight cap, from the emulator's own records, and the pool binding while chunks wait deferred.
    stats = emulator.stats()
    print(
        f"fal max in flight {stats['max_in_flight']} (cap {CAP}), max running {stats['max_running']}; "
        f"max chunks deferred {max(s['deferred_slots'] or 0 for s in samples)}; {len(samples)} samples"
    )
    assert stats["max_in_flight"] <= CAP, stats
    assert in_flight_at_restart >= 20 and deferred_at_restart * CHUNK_SIZE >= 20
    assert max(s["deferred_slots"] or 0 for s in samples) >= 3, "never several chunks deferred at once"
    assert any(s["open_slots"] == 0 and (s["scheduled_slots"] or 0) > 0 for s in samples), (
        "the pool never held chunks back: the cap did not bind"
    )
    assert max(s["fal_in_flight"] for s in samples) <= CAP

    # The manifest: 100 rows; the marked chunk's rows failed/cancelled with a reason; every other row
    # succeeded with its file on disk matching the manifest's sha256.
    (run_dir,) = [p.parent for p in (archive / "runs").glob("*/manifest.jsonl")]
    manifest = read_manifest(run_dir)
    assert [r["row_id"] for r in manifest] == [f"r{i:03d}" for i in range(N_PROMPTS)]
    victim_rows = [r for r in manifest if r["request_id"] in victim_ids]
    assert len(victim_rows) == CHUNK_SIZE
    for row in victim_rows:
        assert row["status"] in ("failed", "cancelled") and row["reason"], row
    others = [r for r in manifest if r["request_id"] not in victim_ids]
    assert {r["status"] for r in others} == {"succeeded"}, {r["status"] for r in others}
    for row in others:
        assert row["request_id"] in jobs
        assert sha256(video_file(archive, row)) == row["sha256"], row["row_id"]
    videos = list((archive / "videos").rglob("*.mp4"))
    assert len(videos) == N_PROMPTS - CHUNK_SIZE, "a partial, stray or duplicate video in the archive"
    print(f"test wall time {time.monotonic() - t_start:.0f}s")


def _backfill(stack: AirflowStack, *extra: str) -> str:
    conf = json.dumps({"poll_interval_seconds": 0.5})
    argv = [airflow_bin(), "backfill", "create", "--dag-id", DAG_ID, "--from-date", "2026-12-01",
            "--to-date", "2026-12-03", "--dag-run-conf", conf, *extra]  # fmt: skip
    done = subprocess.run(argv, env=stack.env, cwd=ROOT, capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _wait_backfill_runs(stack: AirflowStack, after: float, timeout: float = 360) -> list[dict]:
    """Until three backfill runs ended (successfully or not) after `after` (epoch seconds)."""

    def ended():
        runs = stack.dag_runs(DAG_ID, run_type="backfill")
        done = [r for r in runs if r["state"] in ("success", "failed") and r["end_date"]
                and _epoch(r["end_date"]) > after]  # fmt: skip
        if len(runs) != 3 or len(done) != 3:
            return None
        # The scheduler marks the backfill completed a loop later; until then a new one is refused.
        backfills = stack.request("GET", "/backfills", params={"dag_id": DAG_ID})["backfills"]
        return runs if backfills and all(b["completed_at"] for b in backfills) else None

    return poll(ended, timeout, every=2.0, what="three backfill runs finished")


def _epoch(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_backfill_reads_each_dated_csv_and_a_second_backfill_reuses_everything(stack, emulator, archive_root):
    t_start = time.monotonic()
    emulator.reset()
    emulator.configure(generation_seconds=20, queue_seconds=0)  # 2 s
    stack.wait_for_dag(DAG_ID)
    stack.set_paused(DAG_ID, False)  # queued backfill runs only start on an unpaused DAG
    dates = ["2026-12-01", "2026-12-02", "2026-12-03"]
    daily = {d: ROOT / "include" / "prompts" / "daily" / f"{d}.csv" for d in dates}
    expected_ids = {d: [row["id"] for row in csv.DictReader(daily[d].read_text().splitlines())] for d in dates}

    t0 = time.time()
    _backfill(stack)
    runs = _wait_backfill_runs(stack, t0)
    assert [r["logical_date"][:10] for r in runs] == dates
    assert {r["state"] for r in runs} == {"success"}, [(r["dag_run_id"], r["state"]) for r in runs]
    from fal_video.batch import run_folder_name

    submitted = 0
    for run, d in zip(runs, dates, strict=True):
        manifest = read_manifest(archive_root / "runs" / run_folder_name(run["dag_run_id"]))
        assert [r["row_id"] for r in manifest] == expected_ids[d]
        assert {r["source"] for r in manifest} == {str(daily[d])}, "a run did not read its own date's CSV"
        assert {r["status"] for r in manifest} == {"succeeded"}
        for row in manifest:
            assert sha256(video_file(archive_root, row)) == row["sha256"]
        submitted += len({r["job_key"] for r in manifest})
    first_submits = emulator.counts().get("submit", 0)
    assert first_submits == submitted == sum(len(v) for v in expected_ids.values())
    print(f"first backfill: {len(runs)} runs, {first_submits} jobs ({time.monotonic() - t_start:.0f}s)")

    # The same dates again: the completed runs are re-run; every row is served from the archive.
    t1 = time.time()
    _backfill(stack, "--reprocess-behavior", "completed")
    rerun = _wait_backfill_runs(stack, t1)
    assert {r["dag_run_id"] for r in rerun} == {r["dag_run_id"] for r in runs}
    assert {r["state"] for r in rerun} == {"success"}
    for run, d in zip(rerun, dates, strict=True):
        manifest = read_manifest(archive_root / "runs" / run_folder_name(run["dag_run_id"]))
        assert [r["row_id"] for r in manifest] == expected_ids[d]
        assert {r["status"] for r in manifest} == {"reused"}, {r["status"] for r in manifest}
        assert {r["source"] for r in manifest} == {str(daily[d])}
    assert emulator.counts().get("submit", 0) == first_submits, "the second backfill submitted new jobs"
    print(f"backfill test wall time {time.monotonic() - t_start:.0f}s")

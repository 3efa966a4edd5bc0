"""Benchmark (not a test): fal_video_batch on the distributed stack, 500 prompts, fal concurrency 50.

Starts the native topology (CeleryExecutor, Postgres, Redis, two Celery workers, scheduler, triggerer,
dag-processor, api-server) against the fal emulator with a real 10 s of generation per job (time-scaled)
and a per-key concurrency of 50, triggers one run through the REST API and prints:

- total wall time (trigger -> run finished) against the ideal ceil(500 / 50) x 10 s, and the target
  wall <= 1.3 x ideal + start-up, where start-up is the DAG's fixed cost before fal starts working
  (trigger -> first submit: scheduling, plan_jobs, the first generate task starting). The stack's own
  start-up is printed too, but is not part of a run;
- worker slots held while jobs wait (target 0): the fal_jobs pool is sampled every second; its
  running_slots are generate tasks on a worker (submitting), deferred_slots are chunks waiting in the
  triggerer. Reported: worker-slot-seconds held by generate while its jobs were at fal;
- triggerer CPU per job: user+system CPU of the triggerer's process group (psutil) over the run / 500;
- fal utilisation: the emulator's max running and max in flight.

    .venv/bin/python benchmarks/bench_stack.py [--prompts 500] [--concurrency 50] [--generation 10]
        [--chunk-size 25] [--pool-slots 4] [--poll 2.0]

Defaults: chunks of 25, 4 pool slots: up to 100 jobs in flight, so fal (50) always has a backlog and never
idles while a chunk turns over. The emulator renders a small MP4 per job (96 px, 5 fps here) so its CPU
does not compete with Airflow's on a small machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "include")]

import httpx  # noqa: E402
import psutil  # noqa: E402
import requests  # noqa: E402
from stack import topology as T  # noqa: E402
from stack.harness import AirflowStack  # noqa: E402
from stack.native import group_members  # noqa: E402

from fal_emulator.testing import EmulatorServer  # noqa: E402

KEY = "bench-stack-key:bench-stack-secret"
DAG_ID = "fal_video_batch"
TIME_SCALE = 0.1
IDLE_SECONDS = 15.0


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system, children included) of every live process in a process group."""
    total = 0.0
    for pid in group_members(pgid):
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


class Sampler(threading.Thread):
    def __init__(self, af: AirflowStack, fal_url: str, pgid: int, every: float = 1.0):
        super().__init__(daemon=True)
        self.af, self.fal_url, self.pgid, self.every = af, fal_url, pgid, every
        self.samples: list[dict] = []
        self.max_cpu = 0.0
        self.stopped = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.fal_url, timeout=10) as fal, requests.Session() as api:
            while not self.stopped.wait(self.every):
                self.max_cpu = max(self.max_cpu, group_cpu(self.pgid))  # the group's CPU only grows
                try:
                    pool = api.get(f"{self.af.api_url}/api/v2/pools/{T.POOL_NAME}", timeout=10,
                                   headers={"Authorization": f"Bearer {self.af.token()}"}).json()  # fmt: skip
                    jobs = fal.get("/_emulator/jobs").json()
                except Exception:
                    continue
                self.samples.append({
                    "t": time.time(),
                    "running": pool.get("running_slots") or 0,
                    "deferred": pool.get("deferred_slots") or 0,
                    "fal_in_flight": sum(1 for j in jobs if j["state"] != "COMPLETED"),
                })  # fmt: skip

    def stop(self) -> list[dict]:
        self.stopped.set()
        self.join(timeout=30)
        return self.samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=50, help="fal (emulator) concurrency per key")
    parser.add_argument("--generation", type=float, default=10.0, help="real seconds of generation per job")
    parser.add_argument("--chunk-size", type=int, default=25)
    parser.add_argument("--pool-slots", type=int, default=4)
    parser.add_argument("--poll", type=float, default=2.0, help="poll_interval_seconds")
    parser.add_argument("--worker-concurrency", type=int, default=T.WORKER_CONCURRENCY)
    args = parser.parse_args()
    ideal = math.ceil(args.prompts / args.concurrency) * args.generation

    with tempfile.TemporaryDirectory(prefix="bench-stack-") as tmp:
        tmp_path = Path(tmp)
        prompts = tmp_path / "prompts.csv"
        with open(prompts, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["id", "prompt", "endpoint"])
            for i in range(args.prompts):
                writer.writerow([f"b{i:04d}", f"a paper boat number {i} drifting down a rainy street",
                                 "fal-ai/ltx-video"])  # fmt: skip
        settings = {"render_short_side": 96, "render_fps": 5}
        with EmulatorServer(keys=[KEY], time_scale=TIME_SCALE, seed=11, concurrency=args.concurrency,
                            settings=settings) as fal:  # fmt: skip
            fal.configure(generation_seconds=args.generation / TIME_SCALE, queue_seconds=0)
            conn = {"conn_type": "fal", "host": fal.base_url, "password": KEY, "extra": {"allow_http": True}}
            env = {T.CONN_ENV: json.dumps(conn), T.ARCHIVE_ENV: str(tmp_path / "archive"),
                   "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"}  # fmt: skip
            af = AirflowStack("bench", env_extra=env, workers=2, pool_slots=args.pool_slots,
                              worker_concurrency=args.worker_concurrency)  # fmt: skip
            af.start()
            try:
                af.wait_for_dag(DAG_ID)
                pgid = af.native.state.procs["triggerer"].pgid
                idle0, idle_t0 = group_cpu(pgid), time.monotonic()
                time.sleep(IDLE_SECONDS)  # the triggerer's own loop (heartbeats, DB sync) with no trigger
                cpu0 = group_cpu(pgid)
                idle_rate = (cpu0 - idle0) / (time.monotonic() - idle_t0)
                sampler = Sampler(af, fal.base_url, pgid)
                sampler.start()
                conf = {"prompts_csv": str(prompts), "archive_root": str(tmp_path / "archive"),
                        "chunk_size": args.chunk_size, "poll_interval_seconds": args.poll,
                        "max_cost_usd": None, "deadline_minutes": 30}  # fmt: skip
                t0 = time.time()
                run_id = af.trigger_dag(DAG_ID, conf)
                state = af.wait_for_run(DAG_ID, run_id, timeout=1800, poll=1.0)
                wall = time.time() - t0
                samples = sampler.stop()
                cpu = max(sampler.max_cpu, group_cpu(pgid)) - cpu0
                submits = fal.requests("submit")
                stats = fal.stats()
                statuses = fal.counts().get("status", 0)
                states = af.task_states(DAG_ID, run_id)
            finally:
                af.stop()

    first_submit = min(r["time"] for r in submits) - t0 if submits else float("nan")
    last_done = max((s["t"] for s in samples if s["fal_in_flight"]), default=t0) - t0
    waiting = [s for s in samples if s["fal_in_flight"] > 0]
    held = [s["running"] for s in waiting if s["deferred"] > 0]
    dt = 1.0
    print(f"stack start-up (not part of the run)     {af.startup_seconds:7.1f} s")
    print(
        f"run state                                 {state}  ({len(submits)} submits, "
        f"{sum(1 for v in states.values() if v == 'success')}/{len(states)} task instances succeeded)"
    )
    print(f"wall time, trigger -> run finished        {wall:7.1f} s")
    print(f"ideal ceil({args.prompts}/{args.concurrency}) x {args.generation:g} s               {ideal:7.1f} s")
    print(f"fixed start-up (trigger -> first submit)  {first_submit:7.1f} s")
    target = 1.3 * ideal + first_submit
    print(
        f"target 1.3 x ideal + start-up             {target:7.1f} s  -> {'MET' if wall <= target else 'MISSED'}"
        f"  (wall / ideal = {wall / ideal:.2f}; (wall - start-up) / ideal = {(wall - first_submit) / ideal:.2f})"
    )
    print(
        f"fal busy until (last job in flight)       {last_done:7.1f} s after trigger; "
        f"tail after that {wall - last_done:.1f} s (last archive + manifest)"
    )
    print(
        f"fal max running / max in flight          {stats['max_running']:4d} / {stats['max_in_flight']}  "
        f"(concurrency {args.concurrency}, cap {args.pool_slots} slots x {args.chunk_size} = "
        f"{args.pool_slots * args.chunk_size})"
    )
    print(
        f"worker slots held by generate while fal jobs wait (pool running_slots, sampled each second): "
        f"mean {sum(held) / max(len(held), 1):.2f}, peak {max(held, default=0)} (chunks being submitted); "
        f"chunks waiting deferred, on no worker slot: "
        f"mean {sum(s['deferred'] for s in waiting) / max(len(waiting), 1):.2f}, "
        f"peak {max((s['deferred'] for s in waiting), default=0)}"
    )
    print(
        f"worker-slot-seconds in generate (submit phase) ~{sum(s['running'] for s in samples) * dt:.0f} s vs "
        f"job-seconds waited at fal ~{sum(s['fal_in_flight'] for s in samples) * dt:.0f} s"
    )
    net = cpu - idle_rate * wall
    print(
        f"triggerer CPU                             {cpu:7.1f} s total, {1000 * cpu / args.prompts:.1f} ms per job, "
        f"{1000 * cpu / max(statuses, 1):.2f} ms per status request ({statuses} status requests)"
    )
    print(
        f"triggerer CPU net of its idle loop        {net:7.1f} s ({idle_rate * 100:.1f}% of a core when idle): "
        f"{1000 * net / args.prompts:.1f} ms per job, {1000 * net / max(statuses, 1):.2f} ms per status request"
    )
    return 0 if state == "success" else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark (not a test): 1,000 fal jobs in flight in ONE FalJobsTrigger, against the local emulator.

Prints status requests per job (target <= 1.2 x generation / poll interval + 2), detection latency
from the emulator's completion time to the trigger noticing, p50/p95 as a fraction of the poll
interval (target p95 <= 1), and the trigger process's CPU seconds per job and per status request
(target < 5 ms). Loopback only; bounded by ``--deadline``.

    .venv/bin/python benchmarks/bench_trigger.py [--jobs 1000] [--poll 2.0] [--generation 20.0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "include")]
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / ".airflow-bench"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

import httpx  # noqa: E402

from fal_emulator.testing import EmulatorServer  # noqa: E402
from fal_video.protocol import COMPLETED, QueueStatus  # noqa: E402
from fal_video.triggers import FalJobsTrigger, _Watch  # noqa: E402

KEY = "bench-key:bench-secret-0000"
APP = "fal-ai/ltx-video"


class TimedTrigger(FalJobsTrigger):
    """Records the wall time at which each job's COMPLETED status was first seen."""

    noticed: dict[str, float]

    def _observe(self, w: _Watch, status: QueueStatus) -> None:
        if status.status == COMPLETED:
            self.noticed.setdefault(w.request_id, time.time())
        super()._observe(w, status)


async def submit_all(base: str, n: int) -> list[dict]:
    """Set-up, not measured: submit n jobs concurrently (one prompt: the emulator renders one MP4 for all)."""
    async with httpx.AsyncClient(headers={"Authorization": f"Key {KEY}"}, timeout=30) as client:
        sem = asyncio.Semaphore(50)

        async def one(i: int) -> dict:
            async with sem:
                r = await client.post(f"{base}/{APP}", json={"prompt": "benchmark clip", "seed": 1})
                body = r.json()
                return {"job_key": f"job-{i}", **{k: body[k] for k in
                        ("request_id", "status_url", "response_url", "cancel_url")}}  # fmt: skip

        return await asyncio.gather(*(one(i) for i in range(n)))


async def _first(trigger: FalJobsTrigger) -> dict:
    async for event in trigger.run():
        return event.payload
    raise RuntimeError("the trigger yielded no event")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--poll", type=float, default=2.0, help="poll interval, seconds")
    parser.add_argument("--generation", type=float, default=20.0, help="generation time per job, wall seconds")
    parser.add_argument("--concurrency", type=int, default=20, help="trigger's max requests in flight")
    parser.add_argument("--deadline", type=float, default=120.0)
    args = parser.parse_args()

    scale = 0.01  # emulator seconds -> wall seconds
    settings = {"generation_seconds": args.generation / scale, "queue_seconds": 0.0, "render_short_side": 32}
    with EmulatorServer(keys=[KEY], time_scale=scale, concurrency=args.jobs, settings=settings) as emu:
        os.environ["AIRFLOW_CONN_FAL_DEFAULT"] = json.dumps(
            {"conn_type": "fal", "host": emu.base_url, "password": KEY, "extra": {"allow_http": True}}
        )
        warm = asyncio.run(submit_all(emu.base_url, 1))  # imports + connection lookup: not part of the figures
        asyncio.run(_first(FalJobsTrigger(jobs=warm, deadline=time.time() + 30, poll_interval=0.2)))
        jobs = asyncio.run(submit_all(emu.base_url, args.jobs))
        trigger = TimedTrigger(jobs=jobs, deadline=time.time() + args.deadline, poll_interval=args.poll,
                               max_concurrency=args.concurrency, forward_logs=False, progress_interval=10)  # fmt: skip
        trigger.noticed = {}

        cpu0, wall0, started = time.process_time(), time.monotonic(), time.time()
        event = asyncio.run(_first(trigger))
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        emulator_jobs = {j["request_id"]: j for j in emu.jobs()}
        status_calls = emu.counts().get("status", 0)

    states: dict[str, int] = {}
    for outcome in event["outcomes"]:
        states[outcome["state"]] = states.get(outcome["state"], 0) + 1
    lat = sorted(
        (trigger.noticed[rid] - job["completed_at"]) / args.poll
        for rid, job in emulator_jobs.items()
        if rid in trigger.noticed and (job.get("completed_at") or 0) > started + args.poll
    )  # jobs that finished while the trigger was already polling them
    n = args.jobs
    per_job = status_calls / n
    target = 1.2 * args.generation / args.poll + 2
    print(f"latency measured on {len(lat)} jobs that completed while being polled")
    print(f"jobs {n}, poll interval {args.poll}s, generation {args.generation}s, wall {wall:.1f}s, outcomes {states}")
    print(f"status requests per job: {per_job:.2f} (target <= {target:.1f})")
    if lat:
        p50, p95 = statistics.median(lat), lat[int(0.95 * (len(lat) - 1))]
        print(f"detection latency / poll interval: p50 {p50:.2f}, p95 {p95:.2f} (target p95 <= 1.0)")
    print(f"CPU: {cpu / n * 1000:.2f} ms per job, {cpu / max(status_calls, 1) * 1000:.2f} ms per status request "
          f"(target < 5 ms), {cpu:.1f} s total in the trigger process")  # fmt: skip


if __name__ == "__main__":
    main()

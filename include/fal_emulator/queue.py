"""The job state machine and the per-key scheduler: IN_QUEUE -> IN_PROGRESS -> COMPLETED.

Time is wall-clock and simulated lazily: ``advance(now)`` replays every start and completion
that should have happened by ``now``, at the instant it should have happened, so answers do not
depend on how often anyone polls. A background loop calls it too (to start renders and serve SSE).

Rules (reference sections 3.2, 3.6, 4.3):
* each job first waits a queue time (runner acquisition), then needs a free slot of its key
  (``concurrency``, default 10; fal queues instead of answering 429);
* ``queue_position`` = queued jobs of the same key submitted earlier; new jobs go behind, so it
  never increases;
* a job's MP4 is rendered (on a worker thread) from the moment it starts, and the job completes
  when its generation time has passed *and* the MP4 is ready;
* failures are COMPLETED with an error; there is no FAILED or CANCELLED state.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fal_video.catalog import ModelSpec

from .faults import Armed
from .protocol import FalError, cancelled_error, runner_error, user_timeout_error
from .settings import Settings, mask_key

STEPS = 8  # progress log lines per job
FAIL_AT = 0.3  # failing jobs stop after this fraction of their generation time


@dataclass
class Job:
    """One submitted request and everything the emulator decided about it."""

    request_id: str
    endpoint: str
    app: str
    key: str
    arguments: dict[str, Any]
    prompt: str
    spec: ModelSpec
    base_url: str
    submitted_at: float
    ready_at: float  # end of the queue wait; the job may start once a slot is free
    run_seconds: float  # scaled generation time
    stuck: bool = False  # F3: never leaves the queue
    planned_error: FalError | None = None  # how the job will end, decided at submit
    start_deadline: float | None = None  # X-Fal-Request-Timeout (scaled)
    armed: list[Armed] = field(default_factory=list)  # marker faults for later requests
    media_ttl: float | None = None  # seconds the media URL lives after completion (None = forever)
    state: str = "IN_QUEUE"
    started_at: float | None = None
    finish_at: float | None = None
    completed_at: float | None = None
    cancelled: bool = False
    error: FalError | None = None  # set when the job ended with an error
    render: Future[Path] | None = None
    render_done_at: float | None = None
    output_seed: int | None = None

    @property
    def completed(self) -> bool:
        return self.state == "COMPLETED"

    def log_entries(self, now: float) -> list[dict[str, Any]]:
        """Every runner log line emitted by ``now`` (none while queued: logs come from the runner).

        Each line's timestamp is fixed when the job starts (from the planned finish time), so a line
        keeps its timestamp across polls, as on fal; clients dedupe on (timestamp, message).
        """
        if self.started_at is None:
            return []
        span = max((self.finish_at or now) - self.started_at, 1e-6)
        visible_until = min(now, self.completed_at) if self.completed_at is not None else now
        steps = max(1, int(STEPS * FAIL_AT)) if self.planned_error else STEPS
        plan = [(self.started_at, "INFO", f"Loading {self.spec.title} weights")]
        plan += [(self.started_at + i / (steps + 1) * span, "INFO", f"Denoising step {i}/{steps}")
                 for i in range(1, steps + 1)]  # fmt: skip
        if self.completed_at is not None:
            last = (
                "Encoding video and uploading to the CDN"
                if self.error is None
                else f"Request failed: {self.error.error}"
            )
            plan.append((self.completed_at, "INFO" if self.error is None else "ERROR", last))
        entries = []
        for at, level, message in plan:
            if at <= visible_until:
                stamp = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
                entries.append({"message": message, "level": level, "source": "USER", "timestamp": stamp, "labels": {}})
        return entries


@dataclass
class KeyStats:
    max_running: int = 0
    max_in_flight: int = 0


class JobQueue:
    """All jobs of the emulator, the waiting line per key, and the running set per key."""

    def __init__(self, settings: Settings, on_start: Callable[[Job], None], on_complete: Callable[[Job], None]) -> None:
        self.settings = settings
        self._on_start, self._on_complete = on_start, on_complete
        self.reset()

    def reset(self) -> None:
        self.jobs: dict[str, Job] = {}
        self._waiting: dict[str, list[Job]] = {}
        self._running: dict[str, list[Job]] = {}
        self._slot_free_at: dict[str, float] = {}
        self._stats: dict[str, KeyStats] = {}
        self._submits = 0

    # --- submit -------------------------------------------------------------------------------

    def new_job(
        self,
        *,
        endpoint: str,
        app: str,
        key: str,
        arguments: dict[str, Any],
        spec: ModelSpec,
        base_url: str,
        now: float,
        timeout_header: str | None = None,
    ) -> Job:
        """Create and enqueue a job with seeded queue and generation times (scaled)."""
        rng = random.Random(f"{self.settings.seed}:{self._submits}")
        self._submits += 1
        s = self.settings
        queue_s = s.queue_seconds if s.queue_seconds is not None else _lognormal(rng, s.queue_seconds_median, 0.5)
        gen_s = s.generation_seconds if s.generation_seconds is not None else _lognormal(rng, spec.generation_seconds)
        prompt = str(arguments.get("prompt", ""))
        job = Job(
            request_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            endpoint=endpoint, app=app, key=key, arguments=arguments, prompt=prompt, spec=spec,
            base_url=base_url, submitted_at=now, ready_at=now + queue_s * s.time_scale,
            run_seconds=gen_s * s.time_scale,
        )  # fmt: skip
        if job.request_id in self.jobs:  # the same seed after a reset: keep ids unique anyway
            job.request_id = str(uuid.uuid4())
        job.start_deadline = _deadline(timeout_header, now, s.time_scale)
        self.jobs[job.request_id] = job
        self._waiting.setdefault(key, []).append(job)
        self._note(key)
        return job

    # --- lookups ------------------------------------------------------------------------------

    def get(self, request_id: str) -> Job | None:
        return self.jobs.get(request_id)

    def position(self, job: Job) -> int:
        """Queued jobs of the same key ahead of this one (0 = next)."""
        line = self._waiting.get(job.key, [])
        return line.index(job) if job in line else 0

    # --- time ---------------------------------------------------------------------------------

    def advance(self, now: float | None = None) -> None:
        """Replay every start, completion and start-deadline expiry due by ``now``."""
        now = time.time() if now is None else now
        while True:
            self._expire_deadlines(now)
            self._fill_slots(now)
            finished = [j for jobs in self._running.values() for j in jobs if self._finish_time(j, now) is not None]
            if not finished:
                return
            job = min(finished, key=lambda j: self._finish_time(j, now) or 0.0)
            at = self._finish_time(job, now) or now
            self._slot_free_at[job.key] = at
            self._complete(job, at, job.planned_error)

    def _finish_time(self, job: Job, now: float) -> float | None:
        """When a running job completes, if that is by ``now`` (its render must be done too)."""
        assert job.finish_at is not None
        if job.finish_at > now:
            return None
        if job.render is not None and job.planned_error is None:
            if not job.render.done():
                return None
            if job.render.cancelled() or job.render.exception() is not None:
                job.planned_error = runner_error()
            return max(job.finish_at, min(job.render_done_at or now, now))
        return job.finish_at

    def _fill_slots(self, now: float) -> None:
        limit = self.settings.concurrency
        for key, line in self._waiting.items():
            running = self._running.setdefault(key, [])
            for job in list(line):
                if len(running) >= limit:
                    break
                if job.stuck or job.ready_at > now:
                    continue
                line.remove(job)
                job.state = "IN_PROGRESS"
                job.started_at = max(job.ready_at, self._slot_free_at.get(key, 0.0))
                fraction = FAIL_AT if job.planned_error else 1.0
                job.finish_at = job.started_at + job.run_seconds * fraction
                running.append(job)
                self._note(key)
                self._on_start(job)

    def _expire_deadlines(self, now: float) -> None:
        for line in self._waiting.values():
            for job in list(line):
                due = job.start_deadline is not None and job.start_deadline <= now
                if due and (job.stuck or job.ready_at > job.start_deadline or self._would_wait(job)):
                    line.remove(job)
                    self._complete(job, job.start_deadline, user_timeout_error())

    def _would_wait(self, job: Job) -> bool:
        return len(self._running.get(job.key, [])) >= self.settings.concurrency

    def _complete(self, job: Job, at: float, error: FalError | None) -> None:
        running = self._running.get(job.key, [])
        if job in running:
            running.remove(job)
        line = self._waiting.get(job.key, [])
        if job in line:
            line.remove(job)
        job.state, job.completed_at, job.error = "COMPLETED", at, error
        self._on_complete(job)

    # --- cancel -------------------------------------------------------------------------------

    def cancel(self, job: Job, now: float) -> tuple[int, dict[str, str]]:
        """fal's cancel answers: 202 CANCELLATION_REQUESTED (or 200 OK, [UNVERIFIED]), 400 ALREADY_COMPLETED."""
        self.advance(now)
        if job.completed:
            return 400, {"status": "ALREADY_COMPLETED"}
        job.cancelled = True
        if job.state == "IN_QUEUE":
            self._complete(job, now, cancelled_error())
            if self.settings.cancel_queued == "200":
                return 200, {"status": "OK"}
            return 202, {"status": "CANCELLATION_REQUESTED"}
        if self.settings.cancel_running == "cancel":
            self._slot_free_at[job.key] = now
            self._complete(job, now, cancelled_error())
        return 202, {"status": "CANCELLATION_REQUESTED"}

    # --- reporting ----------------------------------------------------------------------------

    def _note(self, key: str) -> None:
        stats = self._stats.setdefault(key, KeyStats())
        running = len(self._running.get(key, []))
        stats.max_running = max(stats.max_running, running)
        stats.max_in_flight = max(stats.max_in_flight, running + len(self._waiting.get(key, [])))

    def stats(self) -> dict[str, Any]:
        per_key = {
            mask_key(key): {
                "max_running": s.max_running,
                "max_in_flight": s.max_in_flight,
                "running": len(self._running.get(key, [])),
                "queued": len(self._waiting.get(key, [])),
            }
            for key, s in self._stats.items()
        }
        return {
            "max_running": max((s.max_running for s in self._stats.values()), default=0),
            "max_in_flight": max((s.max_in_flight for s in self._stats.values()), default=0),
            "per_key": per_key,
            "jobs": len(self.jobs),
        }

    def describe(self, job: Job, media_url: str | None) -> dict[str, Any]:
        return {
            "request_id": job.request_id, "endpoint": job.endpoint, "app": job.app, "key": mask_key(job.key),
            "prompt": job.prompt, "state": job.state,
            "queue_position": self.position(job) if job.state == "IN_QUEUE" else None,
            "submitted_at": job.submitted_at, "started_at": job.started_at, "completed_at": job.completed_at,
            "cancelled": job.cancelled, "error_type": job.error.error_type if job.error else None,
            "status_code": job.error.status_code if job.error else (200 if job.completed else None),
            "media_url": media_url,
        }  # fmt: skip


def _lognormal(rng: random.Random, median: float, sigma: float = 0.25) -> float:
    """A right-skewed duration around ``median`` (most jobs near it, a few much slower)."""
    return median * math.exp(rng.gauss(0.0, sigma)) if median > 0 else 0.0


def _deadline(header: str | None, now: float, scale: float) -> float | None:
    try:
        seconds = float(header) if header else None
    except ValueError:
        return None
    return None if seconds is None else now + seconds * scale

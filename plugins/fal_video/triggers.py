"""FalJobsTrigger: wait for every fal job of one chunk in the triggerer, then fire ONE event.

Each job gets a small coroutine that polls its ``status_url`` (async HTTP only: ``run()`` never
blocks the triggerer's loop), sharing one httpx client and a semaphore that bounds concurrent
requests. Polls are jittered *downwards* (0.8-1.0 x the interval, so a completion is noticed
within one interval) and slowed down while a job is far back in the queue. New fal log lines are
forwarded (deduplicated on timestamp + message: fal returns a moving window) and a progress line
is logged at most every ``progress_interval`` seconds.

The deadline is absolute (wall clock, so it survives a triggerer restart) and enforced on the
loop's monotonic clock. When a job is COMPLETED its result is fetched: transient errors are
retried (F6), errors are classified (F5/F7 -> rejected, 500 -> failed, 499 -> cancelled) and the
body is checked with :func:`fal_video.catalog.extract_video`.

The event is ``{"status": "success", "outcomes": [Outcome dicts]}``: one outcome per job, in any
state. ``{"status": "error", ...}`` only when nothing can be learned (bad connection, key refused).
``run()`` only observes; cancelling remote jobs happens in ``on_kill`` (a user killed the task)
and never in ``cleanup`` (which also runs on a triggerer restart, A1).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from fal_video.catalog import OutputShapeError, extract_video
from fal_video.errors import FalError, Reason
from fal_video.hook import FalHook
from fal_video.http import RetryPolicy, same_origin
from fal_video.protocol import COMPLETED, IN_PROGRESS, IN_QUEUE, QueueStatus, parse_status
from fal_video.records import Outcome

FATAL = (Reason.AUTH, Reason.ACCOUNT_LOCKED)  # the key is refused: no job can be followed
MAX_BAD_BODIES = 3  # consecutive malformed status bodies before a job is given up as failed
_CANCELLING: set[asyncio.Task[None]] = set()  # on_kill's cancel tasks, kept alive while they run
STATE_BY_REASON = {
    Reason.INPUT_REJECTED: "rejected",
    Reason.CONTENT_POLICY: "rejected",
    Reason.CANCELLED: "cancelled",
}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class _Fatal(Exception):
    def __init__(self, error: FalError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass
class _Watch:
    """What the trigger knows about one job while it waits."""

    job_key: str
    request_id: str
    status_url: str
    response_url: str
    cancel_url: str
    state: str = "unknown"  # IN_QUEUE / IN_PROGRESS / COMPLETED as last seen
    position: int | None = None
    started_at: str | None = None
    completed_at: str | None = None
    inference_seconds: float | None = None
    last_error: str | None = None
    seen_logs: set[tuple[str, str]] = field(default_factory=set)
    outcome: Outcome | None = None

    def end(self, state: str, reason: Reason | None = None, text: str | None = None, **extra: Any) -> Outcome:
        self.outcome = Outcome(
            job_key=self.job_key, request_id=self.request_id, state=state,
            reason_code=reason.value if reason else None, reason=text, started_at=self.started_at,
            completed_at=self.completed_at, inference_seconds=self.inference_seconds, **extra,
        )  # fmt: skip
        return self.outcome

    def timed_out(self) -> Outcome:
        if self.state == COMPLETED:  # finished on fal, but the result could not be fetched in time
            return self.end("failed", Reason.TRANSIENT, f"completed on fal; result not fetched: {self.last_error}")
        where = {IN_QUEUE: f"queued (position {self.position})" if self.position is not None else "queued",
                 IN_PROGRESS: "running"}.get(self.state, "never answered a status poll")  # fmt: skip
        return self.end("timed_out", Reason.TIMED_OUT, f"deadline passed while {where}")


class FalJobsTrigger(BaseTrigger):
    """Wait for a chunk of fal jobs.

    :param jobs: ``[{job_key, request_id, status_url, response_url, cancel_url}]`` (no secrets).
    :param fal_conn_id: the fal connection, looked up asynchronously.
    :param deadline: absolute deadline, seconds since the epoch.
    :param poll_interval: seconds between status polls of one job (before queue slow-down and jitter).
    :param max_concurrency: most HTTP requests in flight at once.
    :param request_timeout: read timeout of one HTTP request (F1: a stalled socket).
    :param forward_logs: ask fal for log lines and forward the new ones.
    :param progress_interval: least seconds between two progress lines.
    """

    def __init__(
        self,
        jobs: list[dict[str, Any]],
        deadline: float,
        fal_conn_id: str = "fal_default",
        poll_interval: float = 10.0,
        max_concurrency: int = 20,
        request_timeout: float = 30.0,
        forward_logs: bool = True,
        progress_interval: float = 60.0,
    ) -> None:
        super().__init__()
        self.jobs = [
            {k: str(j[k]) for k in ("job_key", "request_id", "status_url", "response_url", "cancel_url")} for j in jobs
        ]
        self.deadline = float(deadline)
        self.fal_conn_id = fal_conn_id
        self.poll_interval = float(poll_interval)
        self.max_concurrency = int(max_concurrency)
        self.request_timeout = float(request_timeout)
        self.forward_logs = bool(forward_logs)
        self.progress_interval = float(progress_interval)
        self._watches = [_Watch(**j) for j in self.jobs]
        self._hook: FalHook | None = None
        self.status_requests = 0  # for tests and the benchmark

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "jobs": self.jobs,
                "deadline": self.deadline,
                "fal_conn_id": self.fal_conn_id,
                "poll_interval": self.poll_interval,
                "max_concurrency": self.max_concurrency,
                "request_timeout": self.request_timeout,
                "forward_logs": self.forward_logs,
                "progress_interval": self.progress_interval,
            },
        )

    def _make_hook(self) -> FalHook:
        """One hook (one AsyncClient) per run; tests override this to inject a transport."""
        policy = RetryPolicy(read_timeout=self.request_timeout, connect_timeout=min(10.0, self.request_timeout))
        return FalHook(self.fal_conn_id, policy, max_connections=self.max_concurrency)

    # --- run ---------------------------------------------------------------------------------------

    async def run(self) -> AsyncIterator[TriggerEvent]:
        loop = asyncio.get_running_loop()
        loop_deadline = loop.time() + max(0.0, self.deadline - time.time())
        failure: dict[str, Any] | None = None
        try:
            async with self._make_hook() as hook:
                self._hook = hook
                settings = await hook.asettings()
                progress = asyncio.create_task(self._progress_loop())
                try:
                    async with asyncio.TaskGroup() as group:
                        sem = asyncio.Semaphore(self.max_concurrency)
                        for n, watch in enumerate(self._watches):
                            if watch.outcome is None:
                                group.create_task(self._watch(hook, sem, watch, loop_deadline, settings.base_url))
                            if n % 50 == 49:
                                await asyncio.sleep(0)  # let the loop breathe while starting many jobs
                finally:
                    progress.cancel()
        except* _Fatal as group:
            error = group.exceptions[0].error  # type: ignore[attr-defined]
            failure = {"status": "error", "reason_code": error.reason.value, "message": error.message}
        except* Exception as group:  # connection missing or invalid, or a bug: say so in the event
            first = group.exceptions[0]
            failure = {"status": "error", "reason_code": "config", "message": f"{type(first).__name__}: {first}"}
        finally:
            self._hook = None
        if failure:
            self.log.error("fal trigger cannot follow its jobs: %s", failure["message"])
            yield TriggerEvent(failure)
            return
        self.log.info(self._progress_line())
        yield TriggerEvent({"status": "success", "outcomes": [w.outcome.as_dict() for w in self._watches]})  # type: ignore[union-attr]

    async def _watch(self, hook: FalHook, sem: asyncio.Semaphore, w: _Watch, deadline: float, base: str) -> None:
        if not all(same_origin(url, base) for url in (w.status_url, w.response_url)):
            w.end("failed", Reason.BAD_RESPONSE, "queue URLs are not on the connection's host; the key is not sent")
            return
        timeout = asyncio.timeout_at(deadline)
        try:
            async with timeout:
                await self._follow(hook, sem, w)
        except TimeoutError:
            if not timeout.expired():
                raise
            w.timed_out()

    async def _follow(self, hook: FalHook, sem: asyncio.Semaphore, w: _Watch) -> None:
        await asyncio.sleep(random.uniform(0, min(self.poll_interval, 2.0) * 0.5))  # spread the first polls
        bad_bodies = 0
        while True:
            try:
                async with sem:
                    self.status_requests += 1
                    status = parse_status(await hook.astatus(w.status_url, logs=self.forward_logs))
            except FalError as exc:
                if exc.reason in FATAL:
                    raise _Fatal(exc) from None
                w.last_error = exc.message
                bad_bodies = bad_bodies + 1 if exc.reason is Reason.BAD_RESPONSE else 0
                if exc.reason is Reason.NOT_FOUND or bad_bodies >= MAX_BAD_BODIES:
                    w.end("failed", exc.reason, exc.message)
                    return
                self.log.debug("job %s: status poll failed (%s), polling on", w.job_key, exc.reason.value)
            else:
                bad_bodies = 0
                self._observe(w, status)
                if status.status == COMPLETED:
                    await self._fetch(hook, sem, w, status)
                    return
            await asyncio.sleep(self._interval(w))

    def _observe(self, w: _Watch, status: QueueStatus) -> None:
        if status.status != IN_QUEUE and w.started_at is None:
            w.started_at = _now()
        if status.status == COMPLETED:
            w.completed_at = _now()
            w.inference_seconds = status.inference_seconds
        w.state, w.position = status.status, status.queue_position
        for line in status.logs:
            if line.key not in w.seen_logs and len(w.seen_logs) < 10_000:
                w.seen_logs.add(line.key)
                self.log.info("[%s] %s", w.request_id, line.message)

    async def _fetch(self, hook: FalHook, sem: asyncio.Semaphore, w: _Watch, status: QueueStatus) -> None:
        """Fetch and classify the result of a COMPLETED job; transient errors are retried until the deadline."""
        while True:
            try:
                async with sem:
                    body = await hook.aresult(w.response_url, retry_5xx=not status.failed)
            except FalError as exc:
                if exc.reason in FATAL:
                    raise _Fatal(exc) from None
                transient = exc.reason in (Reason.TRANSIENT, Reason.RATE_LIMITED) or (
                    not status.failed and exc.status_code in (502, 503, 504)
                )
                if not transient:
                    note = f" (fal: {status.error})" if status.error and status.error not in exc.message else ""
                    w.end(STATE_BY_REASON.get(exc.reason, "failed"), exc.reason, exc.message + note)
                    return
                w.last_error = exc.message
                await asyncio.sleep(self._interval(w))
                continue
            try:
                video = extract_video(body)
            except OutputShapeError as exc:
                w.end("failed", Reason.BAD_RESPONSE, f"result of {w.request_id}: {exc}")
                return
            seed = body.get("seed")
            w.end("succeeded", video=video, seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None)
            return

    def _interval(self, w: _Watch) -> float:
        """Poll interval: slower far back in the queue (up to 4x), jittered to 0.8-1.0x."""
        factor = 1.0 + min(w.position or 0, 30) / 10 if w.state == IN_QUEUE else 1.0
        return self.poll_interval * factor * random.uniform(0.8, 1.0)

    # --- progress ----------------------------------------------------------------------------------

    def _progress_line(self) -> str:
        counts = {"queued": 0, "running": 0, "done": 0, "failed": 0, "waiting": 0}
        positions = []
        for w in self._watches:
            if w.outcome is not None:
                counts["done" if w.outcome.state == "succeeded" else "failed"] += 1
            elif w.state == IN_QUEUE:
                counts["queued"] += 1
                positions.append(w.position or 0)
            elif w.state in (IN_PROGRESS, COMPLETED):
                counts["running"] += 1
            else:
                counts["waiting"] += 1
        where = f" (queue positions {min(positions)}-{max(positions)})" if positions else ""
        return (f"fal jobs: {counts['queued']} queued{where}, {counts['running']} running, {counts['done']} done, "
                f"{counts['failed']} failed, {counts['waiting']} not polled yet, of {len(self._watches)}")  # fmt: skip

    async def _progress_loop(self) -> None:
        while True:
            self.log.info(self._progress_line())
            await asyncio.sleep(max(self.progress_interval, 1.0))

    # --- ending ------------------------------------------------------------------------------------

    async def on_kill(self) -> None:
        """A user marked the task failed/success or cleared it: cancel this chunk's unfinished fal jobs.

        The cancels run in a task of their own, awaited through ``asyncio.shield``: Airflow 3.3's triggerer
        re-sends the user-action cancel on every state sync (about once a second) until the trigger has ended,
        which cancels ``on_kill`` itself; the shielded task still sends every cancel.
        """
        pending = [w for w in self._watches if w.outcome is None]
        if not pending:
            return
        task = asyncio.create_task(self._cancel(pending))
        _CANCELLING.add(task)  # a strong reference until it is done
        task.add_done_callback(_CANCELLING.discard)
        await asyncio.shield(task)

    async def _cancel(self, pending: list[_Watch]) -> None:
        sem = asyncio.Semaphore(self.max_concurrency)

        async def cancel(hook: FalHook, w: _Watch) -> str:
            async with sem:
                return await hook.acancel(w.cancel_url)

        async with self._make_hook() as hook, asyncio.timeout(60):
            answers = await asyncio.gather(*(cancel(hook, w) for w in pending), return_exceptions=True)
        for w, answer in zip(pending, answers, strict=True):
            self.log.warning("task killed: cancel of fal request %s -> %s", w.request_id, answer)

    async def cleanup(self) -> None:
        """Release local resources only. Never cancels fal jobs: this also runs on a triggerer restart (A1)."""
        if self._hook is not None:
            await self._hook.aclose()
        await super().cleanup()

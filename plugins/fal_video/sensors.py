"""FalJobsSensor: wait (deferred, no worker slot) for one chunk's fal jobs and return their outcomes.

It defers to ONE :class:`~fal_video.triggers.FalJobsTrigger` for all request ids of the chunk.
``execute_complete`` trusts nothing it is handed (A8): only ``{"status": "success", "outcomes":
[...]}`` passes; a missing job gets a ``failed`` outcome rather than vanishing. Jobs that timed
out are cancelled on fal here (F3), with the sync hook, because the trigger only observes.

A job that fails does not fail the sensor; it fails only when it cannot learn the outcomes at all.
The return value is ``{"outcomes": [Outcome dicts], "not_submitted": [passed through]}``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Protocol

from airflow.sdk import BaseSensorOperator, Context
from airflow.sdk.exceptions import AirflowException

from fal_video.errors import FalError, Reason
from fal_video.hook import FalHook
from fal_video.records import OUTCOME_STATES, Outcome, Submission
from fal_video.triggers import FalJobsTrigger

DEFER_GRACE_SECONDS = 600  # Airflow's own defer timeout: a safety net behind the trigger's deadline


class FalJobsSensor(BaseSensorOperator):
    """Wait for the jobs in ``submissions`` (the submit task's return value).

    :param submissions: ``{"submissions": [...], "not_submitted": [...]}``; templated and mappable.
    :param poll_interval: seconds between status polls of one job.
    :param deadline_seconds: how long to wait for the chunk; unfinished jobs then time out and are cancelled.
    :param max_concurrency: most HTTP requests in flight at once in the trigger.
    :param deferrable: wait in the triggerer (default) or poll in the worker with the same logic.
    """

    # poll_interval and deadline_seconds are templated so a DAG can take them from run params.
    template_fields: Sequence[str] = ("submissions", "poll_interval", "deadline_seconds")
    ui_color = "#e6f0ff"

    def __init__(
        self,
        *,
        submissions: dict[str, Any],
        fal_conn_id: str = FalHook.default_conn_name,
        poll_interval: float = 10.0,
        deadline_seconds: float = 3600.0,
        max_concurrency: int = 20,
        request_timeout: float = 30.0,
        forward_logs: bool = True,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.submissions = submissions
        self.fal_conn_id = fal_conn_id
        self.poll_interval = poll_interval
        self.deadline_seconds = deadline_seconds
        self.max_concurrency = max_concurrency
        self.request_timeout = request_timeout
        self.forward_logs = forward_logs
        self.deferrable = deferrable

    def poke(self, context: Context) -> bool:  # pragma: no cover - execute() is overridden
        raise NotImplementedError("FalJobsSensor waits in execute(); poke() is not used")

    def _submissions(self) -> list[Submission]:
        value = self.submissions or {}
        if not isinstance(value, dict):
            raise AirflowException(f"submissions must be the submit task's dict, got {type(value).__name__}")
        return [Submission.from_dict(s) for s in value.get("submissions") or []]

    def _not_submitted(self) -> list[dict[str, Any]]:
        value = self.submissions if isinstance(self.submissions, dict) else {}
        return list(value.get("not_submitted") or [])

    def build_trigger(self) -> FalJobsTrigger:
        return build_trigger(self, self._submissions())

    def execute(self, context: Context) -> dict[str, Any]:
        self.poll_interval = float(self.poll_interval)  # rendered templates arrive as text or numbers
        self.deadline_seconds = float(self.deadline_seconds)
        if not self._submissions():
            self.log.info("nothing to wait for: no job of this chunk was submitted")
            return {"outcomes": [], "not_submitted": self._not_submitted()}
        trigger = self.build_trigger()
        if not self.deferrable:  # same logic, in this worker's own event loop
            return self.execute_complete(context, asyncio.run(_single_event(trigger)))
        self.defer(
            trigger=trigger,
            method_name="execute_complete",
            timeout=timedelta(seconds=self.deadline_seconds + DEFER_GRACE_SECONDS),
        )
        raise AssertionError("unreachable: defer() raises")  # pragma: no cover

    def execute_complete(self, context: Context, event: Any = None) -> dict[str, Any]:
        outcomes = finish_waiting(self, event, self._submissions())
        return {"outcomes": [o.as_dict() for o in outcomes], "not_submitted": self._not_submitted()}


class WaitSettings(Protocol):
    """What the waiting code needs from the task that waits (the sensor, or the submit operator)."""

    fal_conn_id: str
    poll_interval: float
    deadline_seconds: float
    max_concurrency: int
    request_timeout: float
    forward_logs: bool
    log: Any


def build_trigger(task: WaitSettings, submissions: list[Submission]) -> FalJobsTrigger:
    """One trigger for every request id of the chunk: ids, fal's queue URLs and settings, never the key."""
    return FalJobsTrigger(
        jobs=[s.as_dict() for s in submissions],
        deadline=time.time() + float(task.deadline_seconds),
        fal_conn_id=task.fal_conn_id,
        poll_interval=float(task.poll_interval),
        max_concurrency=int(task.max_concurrency),
        request_timeout=float(task.request_timeout),
        forward_logs=bool(task.forward_logs),
    )


def finish_waiting(task: WaitSettings, event: Any, submissions: list[Submission]) -> list[Outcome]:
    """Check the trigger's event (A8), cancel what timed out (F3), log the counts."""
    outcomes = cancel_timed_out(task, check_event(event, submissions), submissions)
    counts = {state: sum(o.state == state for o in outcomes) for state in OUTCOME_STATES}
    task.log.info("chunk outcomes: %s", ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    return outcomes


def check_event(event: Any, submissions: list[Submission]) -> list[Outcome]:
    """Allow-list the trigger event (A8); fill in a failed outcome for any job it does not mention."""
    if event is None:
        raise AirflowException("the fal wait resumed without a trigger event; job outcomes are unknown")
    if not isinstance(event, dict):
        raise AirflowException(f"the fal wait got a {type(event).__name__} event; expected a dict")
    status = event.get("status")
    if status == "error":
        raise AirflowException(
            f"fal trigger could not follow the jobs ({event.get('reason_code')}): {event.get('message')}"
        )
    if status != "success":
        raise AirflowException(f"the fal wait got a trigger event with status {str(status)[:40]!r}; "
                                   "only 'success' is accepted")  # fmt: skip
    raw = event.get("outcomes")
    if not isinstance(raw, list) or not all(isinstance(o, dict) for o in raw):
        raise AirflowException("the fal wait got a success event without an 'outcomes' list")
    by_request = {}
    for item in raw:
        try:
            outcome = Outcome.from_dict(item)
        except TypeError:  # a required field (job_key, request_id, state) is missing
            raise AirflowException(
                f"the fal wait got an outcome without job_key/request_id/state: keys {sorted(map(str, item))[:8]}"
            ) from None
        if not isinstance(outcome.request_id, str) or not isinstance(outcome.job_key, str):
            raise AirflowException("the fal wait got an outcome whose job_key or request_id is not a string")
        if outcome.state not in OUTCOME_STATES:
            raise AirflowException(f"trigger reported unknown state {outcome.state!r} for {outcome.request_id}")
        by_request[outcome.request_id] = outcome
    result = []
    for sub in submissions:
        outcome = by_request.get(sub.request_id)
        if outcome is None:
            outcome = Outcome(sub.job_key, sub.request_id, "failed", Reason.BAD_RESPONSE.value,
                                  "the trigger event did not report this job")  # fmt: skip
        result.append(outcome)
    return result


def cancel_timed_out(task: WaitSettings, outcomes: list[Outcome], submissions: list[Submission]) -> list[Outcome]:
    """F3: stop paying for jobs we stopped waiting for. A failed cancel is noted, never fatal."""
    timed_out = [o for o in outcomes if o.state == "timed_out"]
    if not timed_out:
        return outcomes
    urls = {s.request_id: s.cancel_url for s in submissions}
    results = {s.request_id: s.response_url for s in submissions}
    hook = FalHook(fal_conn_id=task.fal_conn_id)
    notes: dict[str, str] = {}
    recovered: dict[str, Outcome] = {}
    try:
        for outcome in timed_out:
            try:
                answer = hook.cancel(urls[outcome.request_id])
            except FalError as exc:
                answer = f"cancel failed ({exc.reason.value})"
            task.log.warning("job %s timed out: cancel on fal -> %s", outcome.job_key, answer)
            notes[outcome.request_id] = answer
            if answer == "ALREADY_COMPLETED":  # it finished as the deadline passed: paid for, so keep the video
                found = _finished_result(hook, outcome, results[outcome.request_id])
                if isinstance(found, Outcome):
                    recovered[outcome.request_id] = found
                else:
                    notes[outcome.request_id] += f"; result: {found}"
    finally:
        hook.close()
    return [
        recovered.get(o.request_id)
        or (dataclasses.replace(o, reason=f"{o.reason}; cancel: {notes[o.request_id]}") if o.request_id in notes else o)
        for o in outcomes
    ]


def _finished_result(hook: FalHook, outcome: Outcome, response_url: str) -> Outcome | str:
    """The result of a job that completed just after the deadline: a succeeded Outcome, or why not."""
    from fal_video.catalog import OutputShapeError, extract_video

    try:
        body = hook.result(response_url)
        video = extract_video(body)
    except FalError as exc:
        return exc.message
    except OutputShapeError as exc:
        return str(exc)
    seed = body.get("seed")
    return dataclasses.replace(
        outcome, state="succeeded", reason_code=None, reason=None, video=video,
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
    )  # fmt: skip


async def _single_event(trigger: FalJobsTrigger) -> dict[str, Any] | None:
    """The one event a FalJobsTrigger yields (used by the non-deferrable mode and by tests)."""
    async for event in trigger.run():
        return event.payload
    return None

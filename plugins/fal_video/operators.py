"""FalSubmitOperator: submit one chunk of jobs to fal's queue, paying at most once per job.

For each job it asks the submission store first (``prepare``): a job already submitted is
re-attached, a job whose earlier submit has an unknown outcome is left alone (F4), otherwise it
submits and records the request id at once (``record``). Per-job failures become
:class:`~fal_video.records.NotSubmitted` records; the operator raises only when it cannot work at
all (bad connection, bad ``jobs`` value, a store that cannot record a paid request id).

Account lock (F8) and auth failures stop the chunk, and through the ledger every later chunk of the
same run: every further submit would fail too. The rest is marked NotSubmitted with that reason (jobs
already paid for are still re-attached), an ERROR is logged, and the records are returned; a new run
submits again; the DAG's final (manifest) task fails the run because those rows carry
``account_locked`` / ``auth``. Already running jobs keep being waited for.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException

from fal_video.errors import FalError, Reason
from fal_video.hook import FalHook
from fal_video.records import Job, NotSubmitted, Submission
from fal_video.sensors import DEFER_GRACE_SECONDS, build_trigger, finish_waiting
from fal_video.stores import MemoryStore, SubmissionStore

STOP_REASONS = (Reason.ACCOUNT_LOCKED, Reason.AUTH)
SUBMITTED_XCOM = "submitted"  # the chunk's submit records, pushed before deferring


class FalSubmitOperator(BaseOperator):
    """Submit ``jobs`` (``Job.as_dict()`` values); return ``{"submissions": [...], "not_submitted": [...]}``.

    :param jobs: one chunk of jobs; templated, and mappable with ``.partial(...).expand(jobs=...)``.
    :param fal_conn_id: the fal connection.
    :param ledger_root: where :class:`fal_video.ledger.Ledger` keeps request ids; None keeps them in memory.
    :param resubmit_unknown: submit again jobs whose earlier submit outcome is unknown (they may be paid for).
    :param wait_for_completion: after submitting, defer to a :class:`FalJobsTrigger` in this same task and
        return the outcomes too. The task then holds its pool slot while its jobs are in flight (pools
        created with ``include_deferred`` count deferred tasks), which makes a pool a strict cap on the
        number of fal jobs in flight: slots x jobs per chunk. Without it, use :class:`FalJobsSensor`.
    :param poll_interval, deadline_seconds, max_concurrency, request_timeout, forward_logs: as for the sensor.
    """

    template_fields: Sequence[str] = (
        "jobs", "ledger_root", "resubmit_unknown", "poll_interval", "deadline_seconds",
    )  # fmt: skip
    ui_color = "#f2e6ff"

    def __init__(
        self,
        *,
        jobs: list[dict[str, Any]],
        fal_conn_id: str = FalHook.default_conn_name,
        ledger_root: str | None = None,
        resubmit_unknown: bool | str = False,
        wait_for_completion: bool = False,
        poll_interval: float | str = 10.0,
        deadline_seconds: float | str = 3600.0,
        max_concurrency: int = 20,
        request_timeout: float = 30.0,
        forward_logs: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.wait_for_completion = wait_for_completion
        self.poll_interval = poll_interval
        self.deadline_seconds = deadline_seconds
        self.max_concurrency = max_concurrency
        self.request_timeout = request_timeout
        self.forward_logs = forward_logs
        self.jobs = jobs
        self.fal_conn_id = fal_conn_id
        self.ledger_root = ledger_root
        self.resubmit_unknown = resubmit_unknown

    def get_hook(self) -> FalHook:
        return FalHook(fal_conn_id=self.fal_conn_id)

    def submission_store(self) -> SubmissionStore:
        """The ledger when ``ledger_root`` is set, else a per-attempt in-memory store. Override to change."""
        if self.ledger_root:
            from fal_video.ledger import Ledger  # imported lazily: only runs that persist need it

            return Ledger(self.ledger_root, resubmit_unknown=str(self.resubmit_unknown).lower() == "true")
        return MemoryStore()

    def execute(self, context: Context) -> dict[str, list[dict[str, Any]]]:
        jobs = _parse_jobs(self.jobs)
        hook, store = self.get_hook(), self.submission_store()
        hook.settings()  # a bad connection fails the task before anything is claimed
        ti = context.get("ti")
        owner = f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{ti.map_index}#try{ti.try_number}" if ti else self.task_id
        run_scope = f"{ti.dag_id}/{ti.run_id}" if ti else None
        try:
            submissions, not_submitted = submit_chunk(hook, store, jobs, owner, self.log, run_scope=run_scope)
        finally:
            hook.close()
        self.log.info("chunk: %d submitted or re-attached, %d not submitted", len(submissions), len(not_submitted))
        result: dict[str, list[dict[str, Any]]] = {
            "submissions": [s.as_dict() for s in submissions],
            "not_submitted": [n.as_dict() for n in not_submitted],
        }
        if not self.wait_for_completion:
            return result
        if not submissions:
            return {**result, "outcomes": []}
        self.poll_interval, self.deadline_seconds = float(self.poll_interval), float(self.deadline_seconds)
        # Kept in XCom, not in the defer kwargs: `airflow dags test` resumes with the event alone.
        context["ti"].xcom_push(key=SUBMITTED_XCOM, value=result)
        self.defer(
            trigger=build_trigger(self, submissions),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.deadline_seconds + DEFER_GRACE_SECONDS),
        )
        raise AssertionError("unreachable: defer() raises")  # pragma: no cover

    def execute_complete(self, context: Context, event: Any = None) -> dict[str, list[dict[str, Any]]]:
        """Resume after the trigger: the submissions (kept in XCom while deferred) plus every job's outcome."""
        ti = context["ti"]
        submitted = ti.xcom_pull(task_ids=ti.task_id, key=SUBMITTED_XCOM, map_indexes=ti.map_index)
        if not isinstance(submitted, dict) or not isinstance(submitted.get("submissions"), list):
            raise AirflowException(
                "resumed without this chunk's submissions in XCom; a retry re-attaches from the ledger"
            )
        submissions = [Submission.from_dict(s) for s in submitted["submissions"]]
        outcomes = finish_waiting(self, event, submissions)
        return {**submitted, "outcomes": [o.as_dict() for o in outcomes]}


def submit_chunk(
    hook: FalHook, store: SubmissionStore, jobs: list[Job], owner: str, log: Any, *, run_scope: str | None = None
) -> tuple[list[Submission], list[NotSubmitted]]:
    """The submit loop, outside the operator so it is easy to test and read.

    ``run_scope`` (``dag_id/run_id``) makes an account lock or auth refusal stop the whole run, not only
    this chunk: the store remembers it (``record_stop``) and later chunks of the run submit nothing (F8).
    Jobs the store already holds a request id for are still re-attached after a stop: they are paid for.
    """
    submissions: list[Submission] = []
    not_submitted: list[NotSubmitted] = []
    stop: FalError | None = None
    if run_scope and hasattr(store, "stop_reason"):
        stop = store.stop_reason(run_scope)
        if stop is not None:
            log.error("this run stopped submitting earlier: %s", stop.message)
    for job in jobs:
        if stop is not None:
            live = store.submission(job.job_key) if hasattr(store, "submission") else None
            if isinstance(live, Submission):
                log.info("job %s: re-attached to request %s (no new submit)", job.job_key, live.request_id)
                submissions.append(live)
            else:
                not_submitted.append(NotSubmitted(job.job_key, stop.reason.value, f"not submitted: {stop.message}"))
            continue
        prior = store.prepare(job, owner)
        if isinstance(prior, Submission):
            log.info("job %s: re-attached to request %s (no new submit)", job.job_key, prior.request_id)
            submissions.append(prior)
            continue
        if isinstance(prior, NotSubmitted):
            log.warning("job %s: not submitted: %s", job.job_key, prior.reason)
            not_submitted.append(prior)
            continue
        try:
            submission = hook.submit(job)
        except FalError as exc:
            store.record_failure(job.job_key, exc)
            not_submitted.append(NotSubmitted(job.job_key, exc.reason.value, exc.message))
            if exc.reason in STOP_REASONS:
                stop = exc
                if run_scope and hasattr(store, "record_stop"):
                    store.record_stop(run_scope, exc)
                log.error("job %s: %s; stopping this chunk: the remaining jobs are not submitted", job.job_key, exc)
            else:
                log.warning("job %s: not submitted (%s): %s", job.job_key, exc.reason.value, exc.message)
            continue
        except BaseException:
            store.record_failure(job.job_key, FalError(Reason.SUBMIT_UNKNOWN, "the submit was interrupted"))
            raise
        # The request id is paid for: log it first (last-resort record), then persist before anything else.
        log.info("job %s: submitted as request %s", job.job_key, submission.request_id)
        store.record(submission)
        submissions.append(submission)
    return submissions, not_submitted


def _parse_jobs(raw: Any) -> list[Job]:
    """``Job`` values from the (rendered) ``jobs`` argument; a job listed twice is submitted once."""
    if isinstance(raw, dict) and "job_key" in raw:
        raw = [raw]
    if not isinstance(raw, (list, tuple)):
        raise ValueError(f"jobs must be a list of Job dicts, got {type(raw).__name__}")
    jobs: dict[str, Job] = {}
    for item in raw:
        job = item if isinstance(item, Job) else Job.from_dict(dict(item))
        if not job.endpoint or not isinstance(job.arguments, dict):
            raise ValueError(f"job {job.job_key!r} has no endpoint or its arguments are not an object")
        jobs.setdefault(job.job_key, job)
    return list(jobs.values())

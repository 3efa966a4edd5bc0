"""Where the submit operator records request ids: the protocol, and an in-memory store for tests.

The store is written to the moment fal returns a request id, so a retry of the submit task (or a
later run) re-attaches instead of paying again. :class:`fal_video.ledger.Ledger` is the durable
implementation; :class:`MemoryStore` only lives as long as the operator instance.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from fal_video.errors import FalError, Reason
from fal_video.records import Job, NotSubmitted, Submission


@runtime_checkable
class SubmissionStore(Protocol):
    def prepare(self, job: Job, owner: str) -> Submission | NotSubmitted | None:
        """A recorded Submission (re-attach), a NotSubmitted verdict, or None: the caller holds the claim."""

    def record(self, submission: Submission) -> None:
        """Called the moment fal returns a request id, before anything else."""

    def record_failure(self, job_key: str, error: FalError) -> None:
        """The submit failed: release the claim (SUBMIT_UNKNOWN stays marked so nothing resubmits it)."""


class MemoryStore:
    """A SubmissionStore in a dict: enough for one task attempt, tests and ``ledger_root=None``."""

    def __init__(self) -> None:
        self.submissions: dict[str, Submission] = {}
        self.unknown: dict[str, str] = {}
        self.claims: dict[str, str] = {}

    def prepare(self, job: Job, owner: str) -> Submission | NotSubmitted | None:
        if job.job_key in self.submissions:
            return Submission.from_dict({**self.submissions[job.job_key].as_dict(), "reattached": True})
        if job.job_key in self.unknown:
            return NotSubmitted(job.job_key, Reason.SUBMIT_UNKNOWN.value, self.unknown[job.job_key])
        holder = self.claims.setdefault(job.job_key, owner)
        if holder != owner:
            return NotSubmitted(job.job_key, Reason.SUBMIT_UNKNOWN.value, f"{holder} is submitting this job")
        return None

    def record(self, submission: Submission) -> None:
        self.submissions[submission.job_key] = submission
        self.claims.pop(submission.job_key, None)

    def record_failure(self, job_key: str, error: FalError) -> None:
        if error.reason is Reason.SUBMIT_UNKNOWN:
            self.unknown[job_key] = error.message
        self.claims.pop(job_key, None)

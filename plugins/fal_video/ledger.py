"""The ledger: what was paid for, kept next to the archive, so nothing is paid for twice.

One small JSON file per job (``<archive>/ledger/<job_key>.json``), keyed by the job's content key
(endpoint + canonical arguments). The moment fal returns a request id it is written here; a task
retry, a rerun, a backfill or a second run over the same content finds it and re-attaches to the
running (or finished) job instead of submitting again.

Who may submit is decided by a claim file (``<job_key>.claim``) created exclusively: of two runs
that reach the same job at once, one submits and the other waits for its request id. A claim that
outlives its owner with no request id recorded means the owner died in the middle of a submit: the
job may or may not have been accepted by fal, so it is marked ``submit_unknown`` and never
resubmitted automatically (F4); ``resubmit_unknown=True`` (a deliberate user choice) lifts that.

A job whose run ended without a video (rejected, failed, timed out, cancelled) is *retired* by the
manifest step, so a later run submits it afresh: reruns regenerate only what did not succeed.

Files are replaced atomically on local disk (write a temporary file, then rename) and written in
one PUT on object storage, so a reader never sees half an entry. Exclusive creation of the claim is
exact on local disk; on object stores without conditional writes it is a best-effort check.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fal_video.errors import FalError, Reason
from fal_video.records import Job, NotSubmitted, Submission

log = logging.getLogger(__name__)

CLAIM_TTL_SECONDS = 300.0  # a claim older than this with no request id: its owner died mid-submit
WAIT_FOR_PEER_SECONDS = 120.0  # how long to wait for another run that holds a fresh claim


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class LedgerEntry:
    """Everything recorded about one job."""

    job_key: str
    state: str = "new"  # new | submitted | submit_unknown | retired
    endpoint: str | None = None
    submission: dict[str, Any] | None = None
    final_status: str | None = None  # the manifest status of the job's last run
    reason: str | None = None
    updated_at: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LedgerEntry:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


def _is_local(root: Any) -> bool:
    return getattr(root, "protocol", "file") in ("file", "local", "")


def _storage_path(root: str) -> Any:
    """A pathlib-like path for ``root``: a plain Path on local disk, ObjectStoragePath otherwise."""
    from pathlib import Path

    if "://" not in root or root.startswith("file://"):
        return Path(root.removeprefix("file://"))
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(root)


def _earlier_try_of(claim_owner: str, owner: str) -> bool:
    """True when the claim was left by an earlier try of the same task, which is therefore dead.

    Owners look like ``dag/run/task/map_index#try3``; a retry does not need to wait out the TTL.
    """
    task, _, _ = owner.partition("#")
    claim_task, _, _ = claim_owner.partition("#")
    return bool(task) and task == claim_task and claim_owner != owner


class Ledger:
    """Per-job records under ``<root>/ledger/``; implements the submit operator's store protocol."""

    def __init__(
        self,
        archive_root: str,
        *,
        resubmit_unknown: bool = False,
        claim_ttl: float = CLAIM_TTL_SECONDS,
        wait_for_peer: float = WAIT_FOR_PEER_SECONDS,
    ) -> None:
        self.dir = _storage_path(str(archive_root)) / "ledger"
        self.resubmit_unknown = resubmit_unknown
        self.claim_ttl = claim_ttl
        self.wait_for_peer = wait_for_peer
        self.dir.mkdir(parents=True, exist_ok=True)

    # --- reading -----------------------------------------------------------------------------

    def _entry_path(self, job_key: str) -> Any:
        if not job_key or not all(c in "0123456789abcdef" for c in job_key):
            raise ValueError(f"not a job key: {job_key!r}")
        return self.dir / f"{job_key}.json"

    def get(self, job_key: str) -> LedgerEntry | None:
        path = self._entry_path(job_key)
        try:
            return LedgerEntry.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except ValueError as exc:  # a damaged file must not stop a batch; it is reported and ignored
            log.warning("ledger entry %s is unreadable (%s); treating the job as new", path, exc)
            return None

    def submission(self, job_key: str) -> Submission | None:
        """The live submission of a job (not retired), if any: what a retry re-attaches to."""
        entry = self.get(job_key)
        if entry and entry.state == "submitted" and entry.submission:
            return Submission.from_dict({**entry.submission, "reattached": True})
        return None

    # --- writing -----------------------------------------------------------------------------

    def _write(self, entry: LedgerEntry) -> None:
        entry.updated_at = _now_iso()
        data = json.dumps(entry.__dict__, indent=1, sort_keys=True)
        path = self._entry_path(entry.job_key)
        if _is_local(path):
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        else:
            path.write_text(data)

    def _update(self, job_key: str, event: str, **changes: Any) -> LedgerEntry:
        entry = self.get(job_key) or LedgerEntry(job_key=job_key)
        for name, value in changes.items():
            setattr(entry, name, value)
        noted = {k: v for k, v in changes.items() if k != "submission"}
        entry.history.append({"at": _now_iso(), "event": event, **noted})
        entry.history = entry.history[-50:]
        self._write(entry)
        return entry

    # --- claims ------------------------------------------------------------------------------

    def _claim_path(self, job_key: str) -> Any:
        return self._entry_path(job_key).with_name(f"{job_key}.claim")

    def _try_claim(self, job_key: str, owner: str) -> bool:
        path = self._claim_path(job_key)
        body = json.dumps({"owner": owner, "at": time.time()})
        if _is_local(path):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as handle:
                handle.write(body)
            return True
        if path.exists():
            return False
        path.write_text(body)
        return True

    def _read_claim(self, job_key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._claim_path(job_key).read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            return {"owner": "?", "at": 0.0}

    def _release(self, job_key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._claim_path(job_key).unlink()

    # --- the submit operator's store protocol --------------------------------------------------

    def prepare(self, job: Job, owner: str) -> Submission | NotSubmitted | None:
        """Re-attach, refuse, or claim ``job`` for ``owner`` (None: the caller must submit now).

        ``owner`` names the task attempt, ``dag/run/task/map_index#tryN``, so that a retry recognises
        a claim its own dead predecessor left behind.
        """
        deadline = time.monotonic() + self.wait_for_peer
        while True:
            entry = self.get(job.job_key)
            if entry and entry.state == "submitted" and entry.submission:
                return Submission.from_dict({**entry.submission, "reattached": True})
            if entry and entry.state == "submit_unknown" and not self.resubmit_unknown:
                return NotSubmitted(job.job_key, Reason.SUBMIT_UNKNOWN.value, entry.reason or "submit outcome unknown")
            if self._try_claim(job.job_key, owner):
                return None
            claim = self._read_claim(job.job_key)
            if claim is None:
                continue  # released between our two looks: try again
            age = time.time() - float(claim.get("at", 0))
            if age > self.claim_ttl or _earlier_try_of(str(claim.get("owner")), owner):
                reason = (
                    f"an earlier attempt ({claim.get('owner')}) started submitting this job {age:.0f} s ago and "
                    "recorded no request id: fal may have accepted it. Not resubmitted, to avoid paying twice; "
                    "set resubmit_unknown to submit it again deliberately."
                )
                self._update(job.job_key, "submit_unknown", state="submit_unknown", reason=reason)
                self._release(job.job_key)
                return NotSubmitted(job.job_key, Reason.SUBMIT_UNKNOWN.value, reason)
            if time.monotonic() > deadline:
                return NotSubmitted(
                    job.job_key,
                    Reason.SUBMIT_UNKNOWN.value,
                    f"another run ({claim.get('owner')}) is submitting this job and recorded no request id within "
                    f"{self.wait_for_peer:.0f} s; not submitted here to avoid paying twice",
                )
            time.sleep(0.2)

    def record(self, submission: Submission) -> None:
        """Called the moment fal returns a request id, before anything else can fail."""
        data = {**submission.as_dict(), "reattached": False}
        self._update(
            submission.job_key, "submitted", state="submitted", endpoint=submission.endpoint,
            submission=data, final_status=None, reason=None,
        )  # fmt: skip
        self._release(submission.job_key)

    def record_failure(self, job_key: str, error: FalError) -> None:
        """A submit that failed. SUBMIT_UNKNOWN is remembered so nothing resubmits it blindly."""
        if error.reason is Reason.SUBMIT_UNKNOWN:
            self._update(job_key, "submit_unknown", state="submit_unknown", reason=error.message)
        else:
            self._update(job_key, "submit_failed", state="retired", final_status="not_submitted", reason=error.message)
        self._release(job_key)

    # --- run-wide stop (F8) ---------------------------------------------------------------------

    def _stop_path(self, run_scope: str) -> Any:
        digest = hashlib.sha256(run_scope.encode()).hexdigest()[:24]
        return self.dir / "stops" / f"{digest}.json"

    def record_stop(self, run_scope: str, error: FalError) -> None:
        """An account lock or a refused key: no chunk of this run (``dag_id/run_id``) submits anything more."""
        path = self._stop_path(run_scope)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"run": run_scope, "reason": error.reason.value, "message": error.message, "at": _now_iso()}
        path.write_text(json.dumps(data))

    def stop_reason(self, run_scope: str) -> FalError | None:
        """The error that stopped this run's submits, if one did."""
        try:
            data = json.loads(self._stop_path(run_scope).read_text())
            return FalError(Reason(data["reason"]), str(data["message"]))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            return FalError(Reason.ACCOUNT_LOCKED, "an earlier chunk of this run stopped submitting")

    # --- after the run -------------------------------------------------------------------------

    def finish(self, job_key: str, status: str, reason: str | None, *, retire: bool) -> None:
        """Record a job's final manifest status after a run.

        ``retire`` is True when fal finished the job without a video (rejected, failed, timed out,
        cancelled): a later run then submits it afresh. A job whose video exists on fal but is not
        archived yet (media expired, archive step unfinished, outcome unknown) stays attached, so the
        next run fetches the result again instead of paying again.
        """
        entry = self.get(job_key)
        if entry is None or entry.state != "submitted":
            return
        self._update(job_key, f"run_{status}", state="retired" if retire else "submitted",
                     final_status=status, reason=reason)  # fmt: skip

"""What fal's queue bodies must look like, checked once so callers never crash on a bad one.

Every parser returns a small typed value or raises ``FalError(Reason.BAD_RESPONSE)``: a missing
or unknown ``status``, a ``queue_position`` that is not an integer, ``logs`` that are not a list.
Facts from ``fal_queue_api.md`` section 3: the only statuses are IN_QUEUE, IN_PROGRESS and
COMPLETED (a failed job is COMPLETED with ``error`` / ``error_type``); log entries may lack
``level`` and ``source``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fal_video.errors import FalError, Reason

IN_QUEUE, IN_PROGRESS, COMPLETED = "IN_QUEUE", "IN_PROGRESS", "COMPLETED"
STATUSES = (IN_QUEUE, IN_PROGRESS, COMPLETED)


@dataclass(frozen=True)
class LogLine:
    timestamp: str
    message: str

    @property
    def key(self) -> tuple[str, str]:
        """Dedupe key: fal returns a moving window of entries, so the same line comes back."""
        return (self.timestamp, self.message)


@dataclass(frozen=True)
class QueueStatus:
    """One validated status answer."""

    status: str
    queue_position: int | None = None
    logs: tuple[LogLine, ...] = ()
    error: str | None = None
    error_type: str | None = None
    inference_seconds: float | None = None

    @property
    def failed(self) -> bool:
        """COMPLETED but with an error: the result GET will answer with the app's HTTP error (F5)."""
        return self.status == COMPLETED and bool(self.error or self.error_type)


def _bad(what: str, message: str) -> FalError:
    return FalError(Reason.BAD_RESPONSE, f"{what}: {message}")


def parse_status(body: Any, *, what: str = "status") -> QueueStatus:
    """Validate a status body (see module docstring); never raises anything but FalError."""
    if not isinstance(body, dict):
        raise _bad(what, f"status body is a {type(body).__name__}, expected an object")
    status = body.get("status")
    if status not in STATUSES:
        raise _bad(what, f"unknown or missing status {str(status)[:40]!r}")
    position = body.get("queue_position")
    if position is not None and (not isinstance(position, int) or isinstance(position, bool) or position < 0):
        raise _bad(what, f"queue_position is not a non-negative integer: {str(position)[:40]!r}")
    raw_logs = body.get("logs")
    if raw_logs is not None and not isinstance(raw_logs, list):
        raise _bad(what, "logs is not a list")
    logs = tuple(
        LogLine(str(entry.get("timestamp", "")), str(entry["message"]))
        for entry in raw_logs or ()
        if isinstance(entry, dict) and isinstance(entry.get("message"), str)
    )
    error, error_type = body.get("error"), body.get("error_type")
    for name, value in (("error", error), ("error_type", error_type)):
        if value is not None and not isinstance(value, str):
            raise _bad(what, f"{name} is not a string")
    metrics = body.get("metrics")
    seconds = metrics.get("inference_time") if isinstance(metrics, dict) else None
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        seconds = None
    return QueueStatus(status, position if status == IN_QUEUE else None, logs, error, error_type, seconds)


@dataclass(frozen=True)
class SubmitAnswer:
    request_id: str
    status_url: str | None
    response_url: str | None
    cancel_url: str | None


def parse_submit(body: Any, *, what: str = "submit") -> SubmitAnswer:
    """The request id and queue URLs of a 2xx submit answer; URLs may be absent (caller derives them)."""
    if not isinstance(body, dict):
        raise _bad(what, f"submit body is a {type(body).__name__}, expected an object")
    request_id = body.get("request_id")
    if not isinstance(request_id, str) or not request_id.strip():
        raise _bad(what, "submit answer has no request_id")

    def url(name: str) -> str | None:
        value = body.get(name)
        return value if isinstance(value, str) and value.startswith(("http://", "https://")) else None

    return SubmitAnswer(request_id, url("status_url"), url("response_url"), url("cancel_url"))


def parse_cancel(body: Any) -> str:
    """The ``status`` word of a cancel answer (CANCELLATION_REQUESTED, ALREADY_COMPLETED, OK, NOT_FOUND)."""
    if isinstance(body, dict) and isinstance(body.get("status"), str):
        return body["status"]
    return "UNKNOWN"

"""The values that carry one job through the pipeline.

``Job -> Submission -> Outcome -> ArchiveRecord``; each is a small frozen dataclass that turns into
a JSON dict for XCom, trigger events and the ledger (``as_dict`` / ``from_dict``). Every value
carries the job's ``job_key`` so nothing depends on list order (mapped XCom order is not
guaranteed). A job may serve several CSV rows (identical content is generated once): the rows are
joined back to jobs by ``job_key`` when the manifest is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


class _Record:
    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})


def content_key(endpoint: str, arguments: dict[str, Any]) -> str:
    """The identity of a paid job: endpoint + canonical arguments. Same content, same key."""
    canonical = json.dumps({"endpoint": endpoint.strip("/"), "arguments": arguments}, sort_keys=True,
                           separators=(",", ":"), ensure_ascii=False)  # fmt: skip
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Job(_Record):
    """One paid generation: what to send to fal and which CSV rows it serves."""

    job_key: str
    endpoint: str
    arguments: dict[str, Any]
    row_ids: list[str] = field(default_factory=list)
    estimated_cost_usd: float | None = None

    @classmethod
    def create(cls, endpoint: str, arguments: dict[str, Any], row_ids: list[str], cost: float | None) -> Job:
        return cls(content_key(endpoint, arguments), endpoint, arguments, list(row_ids), cost)


@dataclass(frozen=True)
class Submission(_Record):
    """A job fal has accepted: the request id and the queue URLs fal returned (used verbatim)."""

    job_key: str
    endpoint: str
    request_id: str
    status_url: str
    response_url: str
    cancel_url: str
    submitted_at: str  # ISO-8601 UTC
    estimated_cost_usd: float | None = None
    reattached: bool = False  # True when taken from the ledger instead of submitted now


@dataclass(frozen=True)
class NotSubmitted(_Record):
    """A job that was not (or maybe not) submitted, and why."""

    job_key: str
    reason_code: str  # errors.Reason value
    reason: str


@dataclass(frozen=True)
class Outcome(_Record):
    """How a submitted job ended, as the trigger saw it."""

    job_key: str
    request_id: str
    state: str  # one of OUTCOME_STATES
    reason_code: str | None = None
    reason: str | None = None
    video: dict[str, Any] | None = None  # fal File: url, content_type, file_name, file_size
    seed: int | None = None
    started_at: str | None = None
    completed_at: str | None = None
    inference_seconds: float | None = None


OUTCOME_STATES = ("succeeded", "rejected", "failed", "timed_out", "cancelled")


@dataclass(frozen=True)
class ArchiveRecord(_Record):
    """A video kept in the archive, verified, or the reason it could not be kept."""

    job_key: str
    state: str  # "archived" | "media_expired" | "media_invalid" | "download_failed"
    reason: str | None = None
    path: str | None = None  # relative to the archive root
    poster_path: str | None = None
    sha256: str | None = None
    bytes: int | None = None
    duration_s: float | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    codec: str | None = None
    has_audio: bool | None = None


@dataclass(frozen=True)
class PromptRow(_Record):
    """One data row of a prompt CSV after validation.

    ``line`` (where the row starts in the file, 1-based, header = line 1) is unique within a file;
    ``row_id`` is the CSV's ``id`` or a stable id derived from the content, so two rows may share
    an id only when their content is identical (they then share one job). A row with ``error``
    set is rejected: the message names the file, the line and the field.
    """

    row_id: str
    source: str
    line: int
    prompt: str
    endpoint: str
    arguments: dict[str, Any]  # coerced by the catalog, includes "prompt"; what fal will receive
    metadata: dict[str, Any] = field(default_factory=dict)  # CSV columns that are not model inputs
    error: str | None = None
    error_field: str | None = None

    @property
    def job_key(self) -> str:
        return content_key(self.endpoint, self.arguments)

"""The run manifest: one row per CSV row, whatever happened upstream.

The promise to users is that every CSV row ends in exactly one manifest row with a terminal
:class:`Status` and a readable reason. :func:`build_manifest` joins everything known about a run
(validated rows, planned jobs, submissions, outcomes, archive records) by ``job_key``;
:func:`write_run` writes ``manifest.jsonl``, ``manifest.csv``, ``rerun.csv``, ``index.html`` and
``summary.json`` (last, so its presence means the run folder is complete); :func:`evaluate` turns
the rows into the run's verdict under a :class:`FailurePolicy`.

Join precedence (first match wins; ``status`` / ``reason_code``):

====  ===========================================================  =================================
  1   the row failed CSV validation (``PromptRow.error``)          rejected / invalid_input
  2   dry run                                                      dry_run (cost 0 if reusable)
  3   the job is in ``reused`` (archived by an earlier run)        reused (cost 0)
  4   archive record ``archived``                                  succeeded
  5   archive record ``media_expired``                             media_expired / media_expired
  6   archive record ``media_invalid`` / ``download_failed``       failed / media_invalid, ...
  7   outcome rejected / failed / timed_out / cancelled            that status / outcome's code
  8   outcome succeeded but no archive record                      failed / archive_incomplete
  9   NotSubmitted ``submit_unknown``                              submit_unknown / submit_unknown
 10   NotSubmitted ``input_rejected`` / ``content_policy``         rejected / that code
 11   any other NotSubmitted                                       not_submitted / that code
 12   a submission with no outcome                                 failed / outcome_unknown
 13   nothing at all                                               not_submitted / not_run
====  ===========================================================  =================================

Files in ``<archive>/runs/<run_id>/``:

- ``manifest.jsonl``: one JSON object per CSV row, lossless (metadata nested); the machine form.
- ``manifest.csv``: the same rows for spreadsheets. UTF-8 with a BOM so Excel shows accents;
  ``arguments`` and ``shared_with`` as JSON; metadata as ``meta_<name>`` columns; any cell starting
  with ``= + - @``, tab or CR gets a leading ``'`` so it is never run as a formula.
- ``rerun.csv``: the rows worth running again (not succeeded/reused/dry_run, rejected left out) in
  the prompt-CSV format, values unquoted: trigger the DAG with it to rerun only those rows.
- ``index.html``: the run page (``templates/run_page.html.j2``), media at ``../../videos/...``.
- ``summary.json``: counts by status, total estimated cost, wall time, the failure-policy verdict.

Reason codes are :class:`fal_video.errors.Reason` values plus the few the manifest adds:
``invalid_input``, ``download_failed``, ``archive_incomplete``, ``outcome_unknown``, ``not_run``
and ``bad_record`` (a row record too garbled to read: the row still gets a manifest line).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, StrEnum
from functools import cache
from pathlib import Path, PurePath
from typing import IO, Any, TypeVar
from urllib.parse import quote

from fal_video.errors import Reason
from fal_video.records import ArchiveRecord, Job, NotSubmitted, Outcome, PromptRow, Submission

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).parent / "templates"
RUN_PAGE_TEMPLATE = "run_page.html.j2"
MANIFEST_VERSION = 1

# Reason codes the manifest adds to errors.Reason.
INVALID_INPUT = "invalid_input"
DOWNLOAD_FAILED = "download_failed"
ARCHIVE_INCOMPLETE = "archive_incomplete"
OUTCOME_UNKNOWN = "outcome_unknown"
NOT_RUN = "not_run"
BAD_RECORD = "bad_record"


class Status(StrEnum):
    """The terminal status of one CSV row.

    - ``succeeded``: generated in this run, downloaded, verified and archived.
    - ``reused``: an archived video from an earlier run with the same content; cost 0.
    - ``rejected``: bad input, found by CSV validation or by fal (422 validation, content policy).
      Fix the row; rerunning it unchanged fails the same way.
    - ``failed``: fal or the archive step failed (server error, invalid or undownloadable media,
      no outcome recorded). The reason says which and whether a rerun re-attaches.
    - ``timed_out``: the job did not finish before the run's deadline.
    - ``cancelled``: the job was cancelled.
    - ``not_submitted``: never sent to fal (account locked, auth, budget, upstream task failure).
    - ``submit_unknown``: the submit may have been accepted by fal; it is never resubmitted
      automatically, to avoid paying twice (check the fal dashboard).
    - ``media_expired``: fal finished but its output URL had expired before it was downloaded.
    - ``dry_run``: validated and priced only; nothing was submitted.
    """

    SUCCEEDED = "succeeded"
    REUSED = "reused"
    REJECTED = "rejected"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    NOT_SUBMITTED = "not_submitted"
    SUBMIT_UNKNOWN = "submit_unknown"
    MEDIA_EXPIRED = "media_expired"
    DRY_RUN = "dry_run"


OK_STATUSES = frozenset({Status.SUCCEEDED, Status.REUSED, Status.DRY_RUN})
FAILURE_STATUSES = frozenset(
    {
        Status.FAILED,
        Status.TIMED_OUT,
        Status.CANCELLED,
        Status.NOT_SUBMITTED,
        Status.SUBMIT_UNKNOWN,
        Status.MEDIA_EXPIRED,
    }
)
_OUTCOME_STATUS = {
    "rejected": (Status.REJECTED, Reason.INPUT_REJECTED.value),
    "failed": (Status.FAILED, Reason.SERVER_ERROR.value),
    "timed_out": (Status.TIMED_OUT, Reason.TIMED_OUT.value),
    "cancelled": (Status.CANCELLED, Reason.CANCELLED.value),
}
_REJECTED_CODES = {Reason.INPUT_REJECTED.value, Reason.CONTENT_POLICY.value}


@dataclass
class ManifestRow:
    """One CSV row's final state; ``video_path`` / ``poster_path`` are relative to the archive root.

    ``estimated_cost_usd`` is the row's job estimate (0 for reused, None when unknown). Rows that
    share a job (``shared_with``) all show the job's cost; ``summary.json`` counts it once.
    """

    row_id: str
    source: str
    line: int | None
    prompt: str
    endpoint: str
    arguments: dict[str, Any]
    status: Status
    reason: str
    job_key: str | None = None
    request_id: str | None = None
    reason_code: str | None = None
    video_path: str | None = None
    poster_path: str | None = None
    sha256: str | None = None
    bytes: int | None = None
    duration_s: float | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    codec: str | None = None
    has_audio: bool | None = None
    estimated_cost_usd: float | None = None
    submitted_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    generation_seconds: float | None = None
    shared_with: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form (one manifest.jsonl line)."""
        data = dataclasses.asdict(self)
        data["status"] = self.status.value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ManifestRow:
        """Read a manifest.jsonl line back; unknown keys (newer manifests) are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["status"] = Status(values["status"])
        return cls(**values)


# --- the join ---------------------------------------------------------------------------------

R = TypeVar("R")


def _read_records(cls: type[R], items: Iterable[Any], skipped: Counter[str]) -> list[R]:
    """Records from objects or XCom dicts; a garbled one (missing keys, wrong type) is counted, not fatal."""
    records: list[R] = []
    for item in items or ():
        if isinstance(item, cls):
            records.append(item)
            continue
        try:
            record = cls.from_dict(item)  # type: ignore[attr-defined]
            if not isinstance(record.job_key, str) or not record.job_key:  # type: ignore[attr-defined]
                raise TypeError("no job_key")
            records.append(record)
        except (TypeError, AttributeError, ValueError):
            skipped[cls.__name__] += 1
    return records


def _by_key(records: Iterable[R], rank: Callable[[R], int] = lambda _r: 0) -> dict[str, R]:
    """Index by job_key; when a job has several records, the highest rank (then the last) wins."""
    index: dict[str, R] = {}
    for record in records:
        key = record.job_key  # type: ignore[attr-defined]
        if key not in index or rank(record) >= rank(index[key]):
            index[key] = record
    return index


def _seconds_between(start: str | None, end: str | None) -> float | None:
    try:
        return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 3)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _video_fields(record: ArchiveRecord) -> dict[str, Any]:
    return {
        "video_path": record.path,
        "poster_path": record.poster_path,
        "sha256": record.sha256,
        "bytes": record.bytes,
        "duration_s": record.duration_s,
        "width": record.width,
        "height": record.height,
        "fps": record.fps,
        "codec": record.codec,
        "has_audio": record.has_audio,
    }


def _bad_row(data: Any) -> ManifestRow:
    """A manifest line for a row record too garbled to read, so the one-row-per-CSV-row promise holds."""
    data = data if isinstance(data, Mapping) else {}
    missing = [name for name in ("row_id", "source", "line", "prompt", "endpoint", "arguments") if name not in data]
    line = data.get("line")
    return ManifestRow(
        row_id=str(data.get("row_id", "?")),
        source=str(data.get("source", "")),
        line=line if isinstance(line, int) else None,
        prompt=str(data.get("prompt", "")),
        endpoint=str(data.get("endpoint", "")),
        arguments=data.get("arguments") if isinstance(data.get("arguments"), dict) else {},
        status=Status.FAILED,
        reason_code=BAD_RECORD,
        reason=f"internal error: the row record was incomplete (missing: {', '.join(missing) or 'valid values'})",
    )


def build_manifest(
    rows: Sequence[PromptRow],
    *,
    jobs: Mapping[str, Job],
    reused: Mapping[str, ArchiveRecord],
    submissions: Sequence[Submission],
    not_submitted: Sequence[NotSubmitted],
    outcomes: Sequence[Outcome],
    archived: Sequence[ArchiveRecord],
    dry_run: bool = False,
    warnings: list[str] | None = None,
) -> list[ManifestRow]:
    """Exactly one ManifestRow per row, in file order, joined by job_key (see the module docstring).

    Records may be dataclasses or their XCom dicts. Garbled records are skipped and counted: the
    count is logged and, when ``warnings`` is given, appended to it (for summary.json).
    """
    skipped: Counter[str] = Counter()
    job_index = {r.job_key: r for r in _read_records(Job, (jobs or {}).values(), skipped)}
    reused_index = {r.job_key: r for r in _read_records(ArchiveRecord, (reused or {}).values(), skipped)}
    submission_index = _by_key(_read_records(Submission, submissions, skipped))
    not_submitted_index = _by_key(_read_records(NotSubmitted, not_submitted, skipped))
    outcome_index = _by_key(_read_records(Outcome, outcomes, skipped), lambda o: o.state == "succeeded")
    archive_index = _by_key(_read_records(ArchiveRecord, archived, skipped), lambda a: a.state == "archived")

    prompt_rows: list[PromptRow | Any] = []
    for item in rows or ():
        if isinstance(item, PromptRow):
            prompt_rows.append(item)
            continue
        try:
            row = PromptRow.from_dict(item)
            _ = row.job_key  # an endpoint or arguments of the wrong type fail here, not mid-join
            prompt_rows.append(row)
        except (TypeError, AttributeError, ValueError):
            skipped["PromptRow"] += 1
            prompt_rows.append(item)  # kept: it still gets a manifest line (bad_record)

    # Chunked tasks may hand rows back out of order: restore file order (source first seen, line).
    # A garbled row has no trustworthy position: it goes last.
    source_order: dict[str, int] = {}
    for row in prompt_rows:
        if isinstance(row, PromptRow):
            source_order.setdefault(row.source, len(source_order))

    def file_order(item: tuple[int, Any]) -> tuple[int, int, int, int]:
        i, row = item
        if isinstance(row, PromptRow) and isinstance(row.line, int):
            return (0, source_order[row.source], row.line, i)
        return (1, 0, 0, i)

    ordered = [row for _i, row in sorted(enumerate(prompt_rows), key=file_order)]

    manifest: list[ManifestRow] = []
    for row in ordered:
        if not isinstance(row, PromptRow):
            manifest.append(_bad_row(row))
            continue
        manifest.append(
            _join_row(
                row,
                job=job_index.get(row.job_key),
                reused=reused_index.get(row.job_key),
                submission=submission_index.get(row.job_key),
                not_submitted=not_submitted_index.get(row.job_key),
                outcome=outcome_index.get(row.job_key),
                archive=archive_index.get(row.job_key),
                dry_run=dry_run,
            )
        )
    _fill_shared_with(manifest)

    if skipped:
        message = "skipped unreadable records: " + ", ".join(f"{n} {kind}" for kind, n in sorted(skipped.items()))
        log.warning(message)
        if warnings is not None:
            warnings.append(message)
    return manifest


def _join_row(
    row: PromptRow,
    *,
    job: Job | None,
    reused: ArchiveRecord | None,
    submission: Submission | None,
    not_submitted: NotSubmitted | None,
    outcome: Outcome | None,
    archive: ArchiveRecord | None,
    dry_run: bool,
) -> ManifestRow:
    """Apply the precedence table to one row."""
    base = ManifestRow(
        row_id=row.row_id,
        source=row.source,
        line=row.line,
        prompt=row.prompt,
        endpoint=row.endpoint,
        arguments=dict(row.arguments),
        metadata=dict(row.metadata or {}),
        status=Status.NOT_SUBMITTED,
        reason="",
    )

    def done(status: Status, reason: str, code: str | None = None, **fields: Any) -> ManifestRow:
        return dataclasses.replace(base, status=status, reason=reason, reason_code=code, **fields)

    if row.error:
        return done(Status.REJECTED, row.error, INVALID_INPUT)

    cost = job.estimated_cost_usd if job else None
    if cost is None and submission:
        cost = submission.estimated_cost_usd
    base = dataclasses.replace(base, job_key=row.job_key, estimated_cost_usd=cost)

    if dry_run:
        if reused:
            return done(
                Status.DRY_RUN, f"dry run: would reuse {reused.path or 'an archived video'}", estimated_cost_usd=0.0
            )
        return done(Status.DRY_RUN, "dry run: validated and priced, not submitted")
    if reused:
        return done(
            Status.REUSED,
            f"reused from {reused.path or 'the archive'} (an earlier run)",
            estimated_cost_usd=0.0,
            **_video_fields(reused),
        )

    timing: dict[str, Any] = {}
    request_id = (outcome.request_id if outcome else None) or (submission.request_id if submission else None)
    if submission:
        timing["submitted_at"] = submission.submitted_at
    if outcome:
        timing["started_at"] = outcome.started_at
        timing["completed_at"] = outcome.completed_at
        timing["generation_seconds"] = outcome.inference_seconds
        if timing["generation_seconds"] is None:
            timing["generation_seconds"] = _seconds_between(outcome.started_at, outcome.completed_at)
    base = dataclasses.replace(base, request_id=request_id, **timing)

    if archive:
        if archive.state == "archived":
            return done(Status.SUCCEEDED, "archived", **_video_fields(archive))
        if archive.state == Reason.MEDIA_EXPIRED.value:
            return done(
                Status.MEDIA_EXPIRED,
                archive.reason or "the output URL had expired before download",
                Reason.MEDIA_EXPIRED.value,
            )
        code = Reason.MEDIA_INVALID.value if archive.state == "media_invalid" else DOWNLOAD_FAILED
        return done(Status.FAILED, archive.reason or f"the video could not be archived ({archive.state})", code)
    if outcome and outcome.state in _OUTCOME_STATUS:
        status, default_code = _OUTCOME_STATUS[outcome.state]
        return done(
            status, outcome.reason or f"fal reported the job as {outcome.state}", outcome.reason_code or default_code
        )
    if outcome and outcome.state == "succeeded":
        return done(
            Status.FAILED,
            "the archive step did not finish; rerun to fetch it — the job is not resubmitted",
            ARCHIVE_INCOMPLETE,
        )
    if not_submitted:
        code = not_submitted.reason_code
        reason = not_submitted.reason or f"not submitted ({code})"
        if code == Reason.SUBMIT_UNKNOWN.value:
            return done(Status.SUBMIT_UNKNOWN, reason, code)
        if code in _REJECTED_CODES:
            return done(Status.REJECTED, reason, code)
        return done(Status.NOT_SUBMITTED, reason, code)
    if submission:
        return done(
            Status.FAILED,
            f"no outcome was recorded for request {submission.request_id}; "
            f"a rerun re-attaches to request {submission.request_id} (it is not resubmitted)",
            OUTCOME_UNKNOWN,
        )
    return done(Status.NOT_SUBMITTED, "the submit task did not run: upstream failure", NOT_RUN)


def _fill_shared_with(manifest: list[ManifestRow]) -> None:
    """Tell each row which other rows its job also served (identical content is generated once)."""
    by_job: dict[str, list[ManifestRow]] = {}
    for row in manifest:
        if row.job_key:
            by_job.setdefault(row.job_key, []).append(row)
    for group in by_job.values():
        if len(group) > 1:
            for row in group:
                row.shared_with = [other.row_id for other in group if other is not row]


# --- summary and failure policy ---------------------------------------------------------------


class FailurePolicy(StrEnum):
    """When a run counts as failed (the final task raises, so Airflow marks the run failed).

    - ``any_problem``: any row that is not succeeded, reused or dry_run.
    - ``failures`` (default): any failed, timed_out, cancelled, not_submitted, submit_unknown or
      media_expired row; rejected input rows alone do not fail the run (they are the user's to fix).
    - ``never``: the run always succeeds; read the manifest.
    """

    ANY_PROBLEM = "any_problem"
    FAILURES = "failures"
    NEVER = "never"


def _status_of(row: ManifestRow | Mapping[str, Any]) -> Status:
    return Status(row["status"] if isinstance(row, Mapping) else row.status)


def count_statuses(rows: Iterable[ManifestRow]) -> dict[str, int]:
    """Rows per status, every status present (zeros included), in vocabulary order."""
    counts = Counter(_status_of(r) for r in rows)
    return {status.value: counts.get(status, 0) for status in Status}


def describe_counts(counts: Mapping[str, int]) -> str:
    """``24 rows: 20 succeeded, 2 rejected, 2 timed_out`` (zeros left out)."""
    total = sum(counts.values())
    parts = [f"{n} {status}" for status, n in counts.items() if n]
    return f"{total} row{'s' if total != 1 else ''}" + (f": {', '.join(parts)}" if parts else "")


def evaluate(rows: Sequence[ManifestRow], policy: FailurePolicy | str = FailurePolicy.FAILURES) -> tuple[bool, str]:
    """The run's verdict and a message with the counts; an account or key problem is named first."""
    policy = FailurePolicy(policy)
    statuses = [r.status for r in rows]
    if policy is FailurePolicy.ANY_PROBLEM:
        bad = sum(s not in OK_STATUSES for s in statuses)
    elif policy is FailurePolicy.FAILURES:
        bad = sum(s in FAILURE_STATUSES for s in statuses)
    else:
        bad = 0
    message = describe_counts(count_statuses(rows))
    codes = {r.reason_code for r in rows}
    if Reason.ACCOUNT_LOCKED.value in codes:
        message = "the fal account is locked (account_locked): submitting stopped; " + message
    elif Reason.AUTH.value in codes:
        message = "fal refused the API key (auth): check the fal connection; " + message
    if bad:
        message += f" — {bad} problem row{'s' if bad != 1 else ''} under failure policy '{policy.value}'"
    return bad == 0, message


def summarize(
    rows: Sequence[ManifestRow],
    *,
    run_id: str,
    source: str,
    started_at: datetime | str | None = None,
    finished_at: datetime | str | None = None,
    failure_policy: FailurePolicy | str = FailurePolicy.FAILURES,
    warnings: Sequence[str] = (),
    **summary_extra: Any,
) -> dict[str, Any]:
    """summary.json: counts, cost (each job counted once), wall time and the failure-policy verdict.

    ``summary_extra`` keys are added last and win (e.g. a ``wall_seconds`` the caller measured).
    """
    costs: dict[str, float | None] = {}
    for row in rows:  # rows rejected by CSV validation have no job; a shared job is counted once
        if row.job_key:
            costs.setdefault(row.job_key, row.estimated_cost_usd)
    known = [c for c in costs.values() if c is not None]
    start = _iso(started_at)
    finish = _iso(finished_at)
    ok, verdict = evaluate(rows, failure_policy)
    summary: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "run_id": run_id,
        "source": source,
        "rows_total": len(rows),
        "jobs_total": len({r.job_key for r in rows if r.job_key}),
        "counts": count_statuses(rows),
        "reused": sum(r.status is Status.REUSED for r in rows),
        "total_estimated_cost_usd": round(sum(known), 4),
        "jobs_with_unknown_cost": len(costs) - len(known),
        "started_at": start,
        "finished_at": finish,
        "wall_seconds": _seconds_between(start, finish),
        "failure_policy": FailurePolicy(failure_policy).value,
        "ok": ok,
        "verdict": verdict,
        "warnings": list(warnings),
    }
    summary.update(summary_extra)
    return summary


def _iso(value: datetime | str | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


# --- rerun ------------------------------------------------------------------------------------


def _needs_rerun(row: ManifestRow, include_rejected: bool) -> bool:
    if row.status in OK_STATUSES:
        return False
    return include_rejected or row.status is not Status.REJECTED


def rows_to_rerun(rows: Sequence[ManifestRow], *, include_rejected: bool = False) -> list[str]:
    """Row ids worth running again: every row not succeeded/reused/dry_run, in order, no duplicates.

    Rejected rows are left out by default: unchanged, they are rejected again. submit_unknown rows
    are included: check the fal dashboard first, since fal may have accepted the first submit.
    """
    return list(dict.fromkeys(r.row_id for r in rows if _needs_rerun(r, include_rejected)))


def rerun_table(rows: Sequence[ManifestRow], *, include_rejected: bool = False) -> list[dict[str, Any]]:
    """rerun.csv rows: ``id, prompt, endpoint``, one column per argument, then the metadata columns.

    This is input for the DAG (same ids, so a rerun re-attaches and reuses); values are written as
    they are, without the spreadsheet quoting of manifest.csv, so the content keys stay identical.
    """
    table = []
    for row in rows:
        if _needs_rerun(row, include_rejected):
            record: dict[str, Any] = {"id": row.row_id, "prompt": row.prompt, "endpoint": row.endpoint}
            record.update({k: v for k, v in row.arguments.items() if k != "prompt"})
            record.update(row.metadata)
            table.append(record)
    return table


# --- writing ----------------------------------------------------------------------------------

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_CSV_COLUMNS = [f.name for f in dataclasses.fields(ManifestRow) if f.name != "metadata"]


def neutralize_cell(text: str) -> str:
    """Prefix ``'`` to a cell a spreadsheet would run as a formula (CSV injection, OWASP)."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return neutralize_cell(str(value))


def _write_atomically(target: Any, write: Callable[[IO[str]], None], *, encoding: str = "utf-8") -> None:
    """Write a text file so readers see the old file or the whole new one, never half of it.

    Local paths get a temporary name then a rename; object stores publish an object on close.
    """
    local = isinstance(target, PurePath) or getattr(target, "protocol", None) in ("file", "local")
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp" if local else target
    with io.TextIOWrapper(tmp.open("wb"), encoding=encoding, newline="") as handle:
        write(handle)
    if local:
        tmp.replace(target)


def write_jsonl(path: Any, rows: Sequence[ManifestRow]) -> None:
    """manifest.jsonl: one JSON object per row, metadata nested, UTF-8 (the lossless form)."""

    def write(handle: IO[str]) -> None:
        for row in rows:
            handle.write(json.dumps(row.as_dict(), ensure_ascii=False) + "\n")

    _write_atomically(path, write)


def read_jsonl(path: Any) -> list[ManifestRow]:
    """Read manifest.jsonl back (the gallery and tests use it)."""
    with path.open("r", encoding="utf-8") as handle:
        return [ManifestRow.from_dict(json.loads(line)) for line in handle if line.strip()]


def write_csv(path: Any, rows: Sequence[ManifestRow]) -> None:
    """manifest.csv for spreadsheets: UTF-8 with BOM (so Excel reads accents), formula cells quoted.

    ``arguments`` and ``shared_with`` are JSON; metadata becomes ``meta_<name>`` columns. Cells
    starting with ``= + - @``, tab or CR get a leading ``'``; manifest.jsonl keeps the raw values.
    """
    meta_names = list(dict.fromkeys(name for row in rows for name in row.metadata))
    header = _CSV_COLUMNS + [f"meta_{name}" for name in meta_names]

    def write(handle: IO[str]) -> None:
        writer = csv.writer(handle)
        writer.writerow([_cell(h) for h in header])
        for row in rows:
            values = [getattr(row, name) for name in _CSV_COLUMNS] + [row.metadata.get(n) for n in meta_names]
            writer.writerow([_cell(v) for v in values])

    _write_atomically(path, write, encoding="utf-8-sig")


def write_rerun_csv(path: Any, rows: Sequence[ManifestRow], *, include_rejected: bool = False) -> int:
    """rerun.csv: the rows to run again, as a prompt CSV the DAG reads; header only when none. Returns the count."""
    table = rerun_table(rows, include_rejected=include_rejected)
    columns = list(dict.fromkeys(["id", "prompt", "endpoint", *(k for record in table for k in record)]))

    def write(handle: IO[str]) -> None:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for record in table:
            writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in record.items()})

    _write_atomically(path, write)
    return len(table)


def write_summary(path: Any, summary: Mapping[str, Any]) -> None:
    _write_atomically(path, lambda handle: handle.write(json.dumps(summary, indent=2, ensure_ascii=False) + "\n"))


def write_index_html(path: Any, rows: Sequence[ManifestRow], summary: Mapping[str, Any]) -> None:
    """The static page at ``<archive>/runs/<run_id>/index.html``: media two levels up, viewable from disk."""
    html = render_run_page(rows, summary, media_base="../..", manifest_links=DEFAULT_MANIFEST_LINKS)
    _write_atomically(path, lambda handle: handle.write(html))


DEFAULT_MANIFEST_LINKS = {
    "manifest.csv": "manifest.csv",
    "manifest.jsonl": "manifest.jsonl",
    "summary.json": "summary.json",
    "rerun.csv": "rerun.csv",
}


def write_run(
    run_dir: Any,
    rows: Sequence[ManifestRow],
    *,
    run_id: str,
    source: str,
    started_at: datetime | str | None = None,
    finished_at: datetime | str | None = None,
    failure_policy: FailurePolicy | str = FailurePolicy.FAILURES,
    warnings: Sequence[str] = (),
    **summary_extra: Any,
) -> dict[str, Any]:
    """Write every run file into ``run_dir`` (a Path or ObjectStoragePath) and return the summary.

    summary.json is written last: a run folder without it is incomplete (a crash mid-write).
    The caller raises when ``summary["ok"]`` is false, with ``summary["verdict"]`` as the message.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(
        rows,
        run_id=run_id,
        source=source,
        started_at=started_at,
        finished_at=finished_at,
        failure_policy=failure_policy,
        warnings=warnings,
        **summary_extra,
    )
    write_jsonl(run_dir / "manifest.jsonl", rows)
    write_csv(run_dir / "manifest.csv", rows)
    summary["rerun_rows"] = write_rerun_csv(run_dir / "rerun.csv", rows)
    write_index_html(run_dir / "index.html", rows, summary)
    write_summary(run_dir / "summary.json", summary)
    return summary


# --- the run page (index.html and the gallery, issue 7) -----------------------------------------


@cache
def jinja_environment() -> Any:
    """The Jinja2 environment for ``templates/``, autoescaping on (prompts are user data)."""
    import jinja2  # here, not at module level: keeps DAG parsing light

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def media_url(media_base: str, path: str | None) -> str | None:
    """URL of an archive file under ``media_base``; None for anything but a plain relative path.

    Guards the page against a tampered manifest (``javascript:``, absolute or ``..`` paths).
    """
    if not path or ":" in path or path.startswith(("/", "\\")) or ".." in path.replace("\\", "/").split("/"):
        return None
    quoted = quote(path, safe="/")
    return f"{media_base.rstrip('/')}/{quoted}" if media_base else quoted


def _key_arguments(arguments: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(k, _short(v)) for k, v in arguments.items() if k != "prompt"]


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_run_page(
    rows: Sequence[ManifestRow | Mapping[str, Any]],
    summary: Mapping[str, Any],
    *,
    media_base: str,
    manifest_links: Mapping[str, str],
    counts: Mapping[str, int] | None = None,
    endpoints: Sequence[str] | None = None,
    pager: Mapping[str, Any] | None = None,
    notice: str | None = None,
    nav_links: Sequence[tuple[str, str, str]] = (),
) -> str:
    """The run page HTML; the gallery passes its own ``media_base`` and links (e.g. the Airflow run).

    ``rows`` may be ManifestRows or manifest.jsonl dicts; ``summary`` may be partial (a run folder
    without summary.json): counts are recomputed from the rows.

    The gallery shows one page of a run's rows: it passes the whole run's ``counts`` and
    ``endpoints``, and a ``pager`` (``page, pages, first, last, matched, status, model, prev_url,
    next_url``) that turns the filters into a GET form. ``notice`` is a banner (e.g. "incomplete");
    ``nav_links`` are ``(label, href, target)`` links above the title.
    """
    manifest_rows = [r if isinstance(r, ManifestRow) else ManifestRow.from_dict(r) for r in rows]
    cards = []
    for row in manifest_rows:
        playable = row.status in (Status.SUCCEEDED, Status.REUSED)
        cards.append(
            {
                "row": row,
                "status": row.status.value,
                "video_url": media_url(media_base, row.video_path) if playable else None,
                "poster_url": media_url(media_base, row.poster_path),
                "arguments": _key_arguments(row.arguments),
            }
        )
    if counts is None:
        counts = count_statuses(manifest_rows)
    if endpoints is None:
        endpoints = sorted({r.endpoint for r in manifest_rows if r.endpoint})
    return (
        jinja_environment()
        .get_template(RUN_PAGE_TEMPLATE)
        .render(
            cards=cards,
            counts={s: n for s, n in counts.items() if n},
            summary_text=describe_counts(counts),
            endpoints=list(endpoints),
            summary=dict(summary),
            links=dict(manifest_links),
            pager=dict(pager) if pager else None,
            notice=notice,
            nav_links=list(nav_links),
        )
    )

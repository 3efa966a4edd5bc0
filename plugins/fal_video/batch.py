"""The steps of the fal_video_batch DAG that are not operators: plan, archive, write the manifest.

The DAG file only wires these together. Each step reads what it needs from its arguments, the
ledger and the archive (never from list positions of mapped XComs), so a retry, a rerun or a
partly failed upstream still leads to one manifest row per CSV row.

Archive layout (local disk or any ObjectStoragePath root)::

    <archive_root>/videos/<job_key>.mp4|.jpg|.json   verified videos, posters, sidecars
    <archive_root>/ledger/<job_key>.json             request ids and final statuses
    <archive_root>/runs/<run>/                       plan.json, manifest.*, summary.json, index.html
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fal_video.records import ArchiveRecord, Job, Outcome, PromptRow

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DAILY_PATTERN = "include/prompts/daily/{ds}.csv"


def resolve_path(value: str) -> str:
    """A URI stays as it is; a relative local path is taken from the project root."""
    if "://" in value or os.path.isabs(value):
        return value
    return str(PROJECT_ROOT / value)


def archive_root_for(param: str | None) -> str:
    return resolve_path(param or os.environ.get("FAL_VIDEO_ARCHIVE") or "archive")


_RESERVED_NAMES = frozenset({"con", "prn", "aux", "nul", *(f"{d}{i}" for d in ("com", "lpt") for i in range(10))})


def run_folder_name(run_id: str) -> str:
    """A run id such as ``manual__2026-12-03T10:00:00+00:00`` as a safe folder name (never a device name)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("._")[:120]
    if safe.split(".")[0].lower() in _RESERVED_NAMES:
        safe = f"run_{safe}"[:120]
    return safe or "run"


def prompts_source(params: dict[str, Any], logical_date: datetime | None, run_after: datetime | None) -> str:
    """The CSV of this run: the ``prompts_csv`` param, else the dated file of the run's date."""
    if params.get("prompts_csv"):
        return resolve_path(str(params["prompts_csv"]))
    when = logical_date or run_after or datetime.now(UTC)
    pattern = params.get("daily_pattern") or DEFAULT_DAILY_PATTERN
    return resolve_path(pattern.format(ds=when.strftime("%Y-%m-%d")))


def _path(root: str) -> Any:
    from fal_video.ledger import _storage_path

    return _storage_path(root)


def _write_json(path: Any, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=str))


# --- plan -------------------------------------------------------------------------------------


def plan_jobs(params: dict[str, Any], run_id: str, logical_date: Any, run_after: Any) -> list[list[dict[str, Any]]]:
    """Read and validate the CSV, dedupe, price, check the budget; return the chunks to submit.

    Rows, jobs and reuse decisions go to ``runs/<run>/plan.json`` (the manifest step reads them
    there: a big CSV would not fit in XCom); only the chunks travel by XCom, to the mapped submit.
    """
    from fal_video.archive import Archive
    from fal_video.ledger import Ledger
    from fal_video.planning import BudgetExceeded, check_budget, plan, plan_summary
    from fal_video.prompts import PromptError, read_prompts

    source = prompts_source(params, logical_date, run_after)
    root = archive_root_for(params.get("archive_root"))
    run_dir = _path(root) / "runs" / run_folder_name(run_id)
    try:
        table = read_prompts(
            source,
            default_endpoint=params["default_endpoint"],
            default_arguments=params.get("default_arguments") or {},
            limit=params.get("limit"),
            sample=params.get("sample"),
            strict=bool(params.get("strict")),
        )
    except PromptError as exc:
        # The file as a whole is unusable (not UTF-8, no prompt column, strict mode...): one sentence, no
        # retries (the file will not change by itself), and an empty plan so the manifest step says why.
        _write_json(run_dir / "plan.json", {
            "run_id": run_id, "source": source, "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "started_epoch": time.time(), "dry_run": bool(params.get("dry_run")), "refused": None,
            "input_error": str(exc), "failure_policy": params.get("failure_policy", "failures"), "note": None,
            "summary": {}, "rows": [], "jobs": {}, "reused": {},
        })  # fmt: skip
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(str(exc)) from None
    archive, ledger = Archive(root), Ledger(root)
    keys = {row.job_key for row in table.rows if not row.error}
    archived = {key: rec for key in keys if (rec := archive.existing(key))}
    in_flight = {key for key in keys - set(archived) if ledger.submission(key)}
    result = plan(table.rows, chunk_size=int(params["chunk_size"]), archived=archived, in_flight=in_flight,
                  reuse=bool(params.get("reuse_existing", True)))  # fmt: skip
    log.info("Plan for %s: %s", source, result.describe())
    for row in result.rows:
        if row.error:
            log.warning("Rejected: %s", row.error)
    if table.note:
        log.info("%s", table.note)
    refusal = None
    if not params.get("dry_run"):
        try:
            check_budget(result, params.get("max_cost_usd"))
        except BudgetExceeded as exc:
            refusal = str(exc)

    _write_json(run_dir / "plan.json", {
        "run_id": run_id,
        "source": source,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "started_epoch": time.time(),
        "dry_run": bool(params.get("dry_run")),
        "refused": refusal,
        "failure_policy": params.get("failure_policy", "failures"),
        "note": table.note,
        "summary": plan_summary(result),
        "rows": [row.as_dict() for row in result.rows],
        "jobs": {key: job.as_dict() for key, job in result.jobs.items()},
        "reused": {key: rec.as_dict() for key, rec in result.reused.items()},
    })  # fmt: skip
    if refusal:
        raise BudgetExceeded(refusal)  # the manifest step still accounts for every row
    if params.get("dry_run"):
        log.info("Dry run: nothing is submitted.")
        return []
    return [[job.as_dict() for job in chunk] for chunk in result.chunks]


# --- archive ----------------------------------------------------------------------------------


def archive_chunk(generated: dict[str, Any] | None, params: dict[str, Any], fal_conn_id: str) -> list[dict[str, Any]]:
    """Download, verify and store every succeeded video of one chunk; returns ArchiveRecord dicts.

    An expired media URL gets one fresh URL from fal (the result is fetched again: no new job).
    """
    from fal_video.archive import Archive, MediaPolicy
    from fal_video.hook import FalHook

    outcomes = [Outcome.from_dict(o) for o in (generated or {}).get("outcomes", [])]
    hook = FalHook(fal_conn_id=fal_conn_id)
    allow_http, media_hosts = hook.media_policy()
    policy = MediaPolicy(allow_http=allow_http, allowed_hosts=tuple(media_hosts))
    root = archive_root_for(params.get("archive_root"))
    ledger_entries = _ledger(root)

    def refresh_url(outcome: Outcome) -> str | None:
        submission = ledger_entries.submission(outcome.job_key)
        if submission is None:
            return None
        from fal_video.catalog import extract_video

        try:
            return extract_video(hook.result(submission.response_url))["url"]
        except Exception as exc:  # one refresh attempt only; the reason is kept on the record
            log.warning("could not refresh the media URL of %s: %s", outcome.job_key, exc)
            return None

    records = Archive(root).archive_all(
        outcomes, policy, refresh_url=refresh_url, concurrency=int(params.get("archive_concurrency", 4))
    )
    for rec in records:
        log.info("%s: %s %s", rec.job_key, rec.state, rec.path or rec.reason or "")
    unfinished = [rec for rec in records if rec.state == "download_failed"]
    if unfinished and _retries_left():
        # A3: the CDN failed past the in-task retries. Fail this try so Airflow retries the task later: the
        # retry starts from the same outcomes (request ids), skips what is archived and fetches the rest again.
        # No job is resubmitted. On the last try the records are returned, so the manifest names the reason.
        raise RuntimeError(
            f"{len(unfinished)} of {len(records)} finished video(s) could not be downloaded yet "
            f"(first: {unfinished[0].job_key}: {unfinished[0].reason}); the task retries and fetches them again"
        )
    return [rec.as_dict() for rec in records]


def _retries_left() -> bool:
    """Whether the running Airflow task has a retry left (False outside a task: e.g. a direct call)."""
    try:
        from airflow.sdk import get_current_context

        context = get_current_context()
    except Exception:
        return False
    ti, task = context.get("ti"), context.get("task")
    try:
        return int(ti.try_number) <= int(task.retries or 0)
    except (AttributeError, TypeError, ValueError):
        return False


def _ledger(root: str) -> Any:
    from fal_video.ledger import Ledger

    return Ledger(root)


# --- manifest ---------------------------------------------------------------------------------


def _flatten(values: Any) -> list[Any]:
    """Mapped XComs arrive as a lazy sequence with gaps (None) where an instance did not push."""
    if values is None:
        return []
    if isinstance(values, dict):
        return [values]
    out = []
    for item in values:
        if isinstance(item, list):
            out.extend(item)
        elif item is not None:
            out.append(item)
    return out


def write_manifest(params: dict[str, Any], run_id: str, generated: Any, archived: Any) -> dict[str, Any]:
    """Join everything known about the run into one manifest row per CSV row; apply the failure policy."""
    from fal_video.archive import Archive
    from fal_video.manifest import FailurePolicy, build_manifest, evaluate, write_run

    root = archive_root_for(params.get("archive_root"))
    run_dir = _path(root) / "runs" / run_folder_name(run_id)
    plan_file = run_dir / "plan.json"
    if not plan_file.exists():
        raise RuntimeError(f"{plan_file} is missing: plan_jobs did not finish, so there is nothing to account for")
    plan_data = json.loads(plan_file.read_text())
    rows = [PromptRow.from_dict(r) for r in plan_data["rows"]]
    jobs = {k: Job.from_dict(v) for k, v in plan_data["jobs"].items()}
    reused = {k: ArchiveRecord.from_dict(v) for k, v in plan_data["reused"].items()}

    ledger, archive = _ledger(root), Archive(root)
    chunks = [c for c in _flatten(generated) if isinstance(c, dict)]
    submissions: list[Any] = [s for c in chunks for s in c.get("submissions") or []]
    not_submitted: list[Any] = [n for c in chunks for n in c.get("not_submitted") or []]
    known = {r.get("job_key") for r in submissions + not_submitted if isinstance(r, dict)}
    for key in jobs.keys() - known - reused.keys():  # a submit task that died after recording
        if sub := ledger.submission(key):
            submissions.append(sub)
    outcomes: list[Any] = [o for c in chunks for o in c.get("outcomes") or []]
    records: list[Any] = [r for r in _flatten(archived)]
    for key in jobs.keys() - reused.keys():  # the sidecar is the truth for what is archived
        if (rec := archive.existing(key)) is not None:
            records.append(rec)
    warnings: list[str] = []
    manifest_rows = build_manifest(
        rows, jobs=jobs, reused=reused, submissions=submissions, not_submitted=not_submitted,
        outcomes=outcomes, archived=records, dry_run=bool(plan_data.get("dry_run")), warnings=warnings,
    )  # fmt: skip
    ended_without_video = {o.get("job_key") for o in outcomes if isinstance(o, dict) and o.get("state") != "succeeded"}
    finished: set[str] = set()
    for row in manifest_rows:
        if row.job_key in jobs and row.job_key not in finished and not plan_data.get("dry_run"):
            finished.add(row.job_key)
            ledger.finish(row.job_key, row.status, row.reason, retire=row.job_key in ended_without_video)

    if plan_data.get("refused"):  # over budget: nothing was submitted, and every row says why
        for row in manifest_rows:
            if row.reason_code == "not_run":
                row.reason_code, row.reason = "budget_exceeded", plan_data["refused"]
    policy = FailurePolicy(plan_data.get("failure_policy") or "failures")
    ok, message = evaluate(manifest_rows, policy)
    extra: dict[str, Any] = {}
    if plan_data.get("input_error"):  # the CSV could not be read at all: no rows, and the run fails saying why
        ok, message = False, str(plan_data["input_error"])
        extra = {"ok": False, "verdict": message, "input_error": message}
    summary = write_run(
        run_dir, manifest_rows, run_id=run_id, source=plan_data["source"], started_at=plan_data["started_at"],
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        wall_seconds=round(time.time() - float(plan_data["started_epoch"]), 2),
        failure_policy=policy, warnings=warnings, note=plan_data.get("note"), plan=plan_data.get("summary"),
        **extra,
    )  # fmt: skip
    log.info("Manifest: %s", run_dir / "manifest.csv")
    log.info("Videos: %s", _path(root) / "videos")
    log.info("Gallery: %s", run_dir / "index.html")
    log.info("%s", message)
    if plan_data.get("input_error"):
        raise RuntimeError(message)  # one sentence: the CSV could not be read
    if not ok:  # the verdict comes first (e.g. "the fal account is locked ..."), then the policy
        raise RuntimeError(f"{message} (run failed under failure policy '{policy.value}')")
    return {"run_dir": str(run_dir), "verdict": message, "counts": summary.get("counts", {})}

"""build_manifest: one terminal row per CSV row, following the documented precedence."""

from __future__ import annotations

import random

import pytest

from fal_video.manifest import Status, build_manifest

LUMA = "fal-ai/luma-dream-machine"


def only(rows):
    assert len(rows) == 1
    return rows[0]


def test_invalid_row_is_rejected_with_its_validation_message(scenario):
    scenario.row("x", error="demo.csv line 2, field duration: Input should be '5' or '10'")
    row = only(scenario.build())
    assert (row.status, row.reason_code) == (Status.REJECTED, "invalid_input")
    assert row.reason == "demo.csv line 2, field duration: Input should be '5' or '10'"
    assert row.job_key is None and row.estimated_cost_usd is None


def test_dry_run_rows_carry_the_estimate_and_reusable_ones_cost_nothing(scenario):
    fresh = scenario.row("a fox")
    scenario.reuse(scenario.row("an owl"))
    rows = scenario.build(dry_run=True)
    assert [r.status for r in rows] == [Status.DRY_RUN, Status.DRY_RUN]
    assert rows[0].estimated_cost_usd == scenario.jobs[fresh.job_key].estimated_cost_usd > 0
    assert rows[1].estimated_cost_usd == 0 and "would reuse" in rows[1].reason


def test_reused_job_costs_nothing_and_points_at_the_earlier_video(scenario):
    record = scenario.reuse(scenario.row())
    row = only(scenario.build())
    assert row.status is Status.REUSED
    assert row.estimated_cost_usd == 0
    assert row.video_path == record.path and row.sha256 == record.sha256
    assert record.path in row.reason


def test_archived_job_succeeded_with_the_probe_facts(scenario):
    prompt_row = scenario.row()
    record = scenario.archive(prompt_row)
    row = only(scenario.build())
    assert row.status is Status.SUCCEEDED and row.reason == "archived"
    assert (row.video_path, row.poster_path, row.bytes) == (record.path, record.poster_path, record.bytes)
    assert (row.width, row.height, row.fps, row.codec, row.has_audio) == (848, 480, 24.0, "h264", False)
    assert row.request_id == f"req-{prompt_row.job_key[:8]}"
    assert row.submitted_at == "2025-01-01T10:00:00+00:00"
    assert row.generation_seconds == 60.0


def test_expired_media_is_media_expired(scenario):
    scenario.archive(scenario.row(), "media_expired", "GET video answered 410")
    row = only(scenario.build())
    assert (row.status, row.reason_code, row.reason) == (
        Status.MEDIA_EXPIRED,
        "media_expired",
        "GET video answered 410",
    )


@pytest.mark.parametrize("state", ["media_invalid", "download_failed"])
def test_invalid_or_undownloadable_media_fails_with_the_archive_reason(scenario, state: str):
    scenario.archive(scenario.row(), state, "truncated: 100 of 5000 bytes")
    row = only(scenario.build())
    assert (row.status, row.reason_code, row.reason) == (Status.FAILED, state, "truncated: 100 of 5000 bytes")
    assert row.video_path is None


@pytest.mark.parametrize(
    ("state", "status", "code"),
    [
        ("rejected", Status.REJECTED, "content_policy"),
        ("failed", Status.FAILED, "server_error"),
        ("timed_out", Status.TIMED_OUT, "timed_out"),
        ("cancelled", Status.CANCELLED, "cancelled"),
    ],
)
def test_unsuccessful_outcome_gives_its_status_and_reason(scenario, state, status, code):
    scenario.outcome(scenario.row(), state, reason_code=code, reason=f"fal said {state}")
    row = only(scenario.build())
    assert (row.status, row.reason_code, row.reason) == (status, code, f"fal said {state}")


def test_outcome_without_reason_still_gets_one(scenario):
    scenario.outcome(scenario.row(), "failed")
    row = only(scenario.build())
    assert row.reason and row.reason_code == "server_error"


def test_succeeded_outcome_without_archive_record_is_failed_and_not_resubmitted(scenario):
    scenario.outcome(scenario.row(), "succeeded")
    row = only(scenario.build())
    assert (row.status, row.reason_code) == (Status.FAILED, "archive_incomplete")
    assert "rerun to fetch it" in row.reason and "not resubmitted" in row.reason


def test_submit_unknown_is_its_own_status(scenario):
    scenario.refuse(scenario.row(), "submit_unknown", "connection reset after the submit was sent")
    row = only(scenario.build())
    assert (row.status, row.reason_code) == (Status.SUBMIT_UNKNOWN, "submit_unknown")
    assert row.reason == "connection reset after the submit was sent"


@pytest.mark.parametrize("code", ["input_rejected", "content_policy"])
def test_input_refused_by_fal_at_submit_is_rejected(scenario, code: str):
    scenario.refuse(scenario.row(), code, "prompt: flagged")
    row = only(scenario.build())
    assert (row.status, row.reason_code, row.reason) == (Status.REJECTED, code, "prompt: flagged")


@pytest.mark.parametrize("code", ["account_locked", "auth", "rate_limited"])
def test_other_refusals_are_not_submitted(scenario, code: str):
    scenario.refuse(scenario.row(), code, "")
    row = only(scenario.build())
    assert (row.status, row.reason_code) == (Status.NOT_SUBMITTED, code)
    assert code in row.reason  # an empty reason is replaced by one naming the code


def test_submission_without_outcome_names_the_request_a_rerun_reattaches_to(scenario):
    sub = scenario.submit(scenario.row())
    row = only(scenario.build())
    assert (row.status, row.reason_code) == (Status.FAILED, "outcome_unknown")
    assert f"re-attaches to request {sub.request_id}" in row.reason
    assert row.request_id == sub.request_id


def test_row_with_no_records_at_all_is_not_submitted_because_upstream_failed(scenario):
    scenario.row()
    row = only(scenario.build())
    assert (row.status, row.reason_code) == (Status.NOT_SUBMITTED, "not_run")
    assert row.reason == "the submit task did not run: upstream failure"
    assert row.estimated_cost_usd == scenario.jobs[row.job_key].estimated_cost_usd


def test_precedence_reused_beats_a_stale_failure_and_archive_beats_outcome(scenario):
    reused_row = scenario.row("owl")
    scenario.outcome(reused_row, "failed")
    scenario.reuse(reused_row)
    archived_row = scenario.row("fox")
    scenario.archive(archived_row)
    scenario.outcomes.append(scenario.outcomes[-1].__class__(archived_row.job_key, "req-x", "timed_out"))
    scenario.refuse(archived_row, "submit_unknown")
    assert [r.status for r in scenario.build()] == [Status.REUSED, Status.SUCCEEDED]


def test_rows_sharing_a_job_both_get_the_video(scenario):
    first = scenario.row("a fox", row_id="a")
    second = scenario.row("a fox", row_id="b", metadata={"variant": "copy"})
    assert first.job_key == second.job_key
    scenario.archive(first)
    rows = scenario.build()
    assert [r.status for r in rows] == [Status.SUCCEEDED, Status.SUCCEEDED]
    assert rows[0].video_path == rows[1].video_path is not None
    assert rows[0].shared_with == ["b"] and rows[1].shared_with == ["a"]
    assert rows[1].metadata == {"variant": "copy"}


def test_every_row_has_a_reason_except_succeeded_and_reused(mixed):
    for row in mixed.build():
        assert row.reason.strip(), row


def test_file_order_is_restored_when_chunks_come_back_shuffled(scenario):
    for i in range(30):
        scenario.row(f"prompt {i}")
    expected = [r.row_id for r in scenario.rows]
    random.Random(3).shuffle(scenario.rows)
    assert [r.row_id for r in scenario.build()] == expected


def test_records_as_xcom_dicts_join_like_the_objects(mixed):
    expected = mixed.build()
    mixed.rows = [r.as_dict() for r in mixed.rows]
    mixed.jobs = {k: j.as_dict() for k, j in mixed.jobs.items()}
    mixed.reused = {k: r.as_dict() for k, r in mixed.reused.items()}
    for name in ("submissions", "not_submitted", "outcomes", "archived"):
        setattr(mixed, name, [r.as_dict() for r in getattr(mixed, name)])
    assert mixed.build() == expected


def test_garbled_records_are_skipped_counted_and_every_row_still_gets_one_line(mixed, caplog):
    expected = mixed.build()
    mixed.jobs["broken"] = {"endpoint": LUMA}
    mixed.submissions += [{"request_id": "r"}, None, "garbage", {"job_key": ""}]
    mixed.outcomes += [{"job_key": "k"}, 42]
    mixed.archived += [{}]
    mixed.not_submitted += [{"job_key": "k", "unexpected": 1}]
    warnings: list[str] = []
    rows = mixed.build(warnings=warnings)
    assert rows == expected
    assert warnings == ["skipped unreadable records: 1 ArchiveRecord, 1 Job, 1 NotSubmitted, 2 Outcome, 4 Submission"]
    assert "skipped unreadable records" in caplog.text


def test_a_garbled_row_record_still_gets_a_manifest_line(scenario):
    scenario.row("fine")
    scenario.rows.append({"row_id": "half", "prompt": "only a prompt"})
    scenario.rows.append(
        {"row_id": "typed", "source": "d.csv", "line": 9, "prompt": "p", "endpoint": None, "arguments": {}}
    )
    scenario.rows.append("not even a dict")
    rows = scenario.build()
    assert len(rows) == 4
    assert [r.reason_code for r in rows[2:]] == ["bad_record", "bad_record"]
    assert (rows[1].row_id, rows[1].status, rows[1].reason_code) == ("half", Status.FAILED, "bad_record")
    assert "missing: source, line, endpoint, arguments" in rows[1].reason


def test_no_rows_gives_an_empty_manifest():
    assert build_manifest([], jobs={}, reused={}, submissions=[], not_submitted=[], outcomes=[], archived=[]) == []

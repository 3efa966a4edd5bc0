"""Fault scenarios through the DAG's own steps in this process (faults_pipeline), against the emulator.

Used where `airflow dags test` cannot reach the knob (F1's per-request timeout is the operator's
``request_timeout``, 30 s in the DAG) or where a scenario replays one task (A8's resume with a bad
event, then the retry). The steps are the DAG's: plan_jobs, FalSubmitOperator + FalJobsTrigger,
archive_chunk, write_manifest.
"""

from __future__ import annotations

import time

import pytest
from airflow.sdk.exceptions import AirflowException, TaskDeferred
from faults_helpers import assert_archive_clean, assert_one_terminal_row_per_csv_row, write_csv
from faults_pipeline import DEFAULT_PARAMS, FakeTI, generate, generate_operator, run_pipeline

from fal_video.batch import archive_chunk, plan_jobs, write_manifest


def params_for(tmp_path, csv_path, **extra):
    return {**DEFAULT_PARAMS, "prompts_csv": str(csv_path), "archive_root": str(tmp_path / "archive"), **extra}


# --- F1: a status request that never finishes ---------------------------------------------------------


def test_f1_stalled_status_request_times_out_is_retried_and_other_jobs_keep_going(fal_conn, tmp_path):
    rows = [{"id": "stall", "prompt": "a stalled poll [fal-fault:stall]"}] + [
        {"id": f"ok{i}", "prompt": f"a quiet street {i}"} for i in range(3)
    ]
    csv_path = write_csv(tmp_path / "p.csv", rows)
    started = time.monotonic()
    out = run_pipeline(csv_path, tmp_path / "archive", "manual__f1", request_timeout=1.0, deadline_minutes=0.5)
    elapsed = time.monotonic() - started
    assert out["errors"] == {}, out["errors"]
    assert_one_terminal_row_per_csv_row(out["manifest"], [r["id"] for r in rows])
    assert {r["status"] for r in out["manifest"]} == {"succeeded"}
    assert elapsed < 30  # below the deadline: the stalled request was abandoned after ~1 s, not waited out
    stalled = next(r for r in out["manifest"] if r["row_id"] == "stall")
    polls = [r for r in fal_conn.requests("status") if r["request_id"] == stalled["request_id"]]
    assert len(polls) >= 2 and polls[-1]["status_code"] == 200  # the stalled poll, then one that saw COMPLETED
    assert fal_conn.requests("cancel") == []  # nothing timed out
    # the other jobs of the same trigger finished while the stalled request hung
    others_done = max(r["completed_at"] for r in out["manifest"] if r["row_id"] != "stall")
    assert others_done <= stalled["completed_at"]
    assert all(c == 1 for c in fal_conn.counts(by="prompt").values())
    assert_archive_clean(tmp_path / "archive", out["manifest"])


def test_f1_a_status_that_stalls_every_time_still_ends_at_the_overall_deadline(fal_conn, tmp_path):
    # every status poll stalls, and the job never leaves the queue: only the deadline can end the wait
    stuck = "stalls every time [fal-fault:stall:1000] [fal-fault:stuck_in_queue]"
    rows = [{"id": "stall", "prompt": stuck}, {"id": "ok", "prompt": "a tree"}]
    csv_path = write_csv(tmp_path / "p.csv", rows)
    started = time.monotonic()
    out = run_pipeline(csv_path, tmp_path / "archive", "manual__f1b", request_timeout=1.0, deadline_minutes=0.1)
    assert time.monotonic() - started < 30
    by_id = {r["row_id"]: r for r in out["manifest"]}
    assert by_id["ok"]["status"] == "succeeded"
    assert (by_id["stall"]["status"], by_id["stall"]["reason_code"]) == ("timed_out", "timed_out")
    assert "never answered a status poll" in by_id["stall"]["reason"]
    assert [r["request_id"] for r in fal_conn.requests("cancel")] == [by_id["stall"]["request_id"]]


# --- the whole kind of malformed status payloads, every time ------------------------------------------


@pytest.mark.parametrize("variant", ["unknown_status", "wrong_types", "not_json"])
def test_status_malformed_every_time_is_failed_bad_response_not_a_crash(fal_conn, tmp_path, variant):
    fal_conn.add_fault("malformed_status", variant=variant)  # every status poll, for every job
    csv_path = write_csv(tmp_path / "p.csv", [{"id": "a", "prompt": "a boat"}, {"id": "b", "prompt": "a car"}])
    out = run_pipeline(csv_path, tmp_path / "archive", f"manual__ms_{variant}", deadline_minutes=0.5)
    assert "upstream" not in out["errors"], out["errors"]
    assert {(r["status"], r["reason_code"]) for r in out["manifest"]} == {("failed", "bad_response")}
    assert all(r["reason"] for r in out["manifest"])
    assert all(c == 1 for c in fal_conn.counts(by="prompt").values())


# --- A8: trusting the event ---------------------------------------------------------------------------

BAD_EVENTS = [
    (None, "without a trigger event"),
    ("cancelled", "got a str event"),
    ({"status": "cancelled"}, "status 'cancelled'"),
    ({"status": "FAILED", "outcomes": []}, "status 'FAILED'"),
    ({"status": "success"}, "without an 'outcomes' list"),
    ({"status": "success", "outcomes": [{"state": "succeeded"}]}, "without job_key/request_id/state"),
    ({"status": "success", "outcomes": "all good"}, "without an 'outcomes' list"),
    ({"status": "error", "reason_code": "auth", "message": "key refused"}, "could not follow the jobs (auth)"),
]


def test_a8_resume_with_a_bad_event_fails_with_a_specific_message_and_the_retry_reattaches(fal_conn, tmp_path):
    csv_path = write_csv(tmp_path / "p.csv", [{"id": f"r{i}", "prompt": f"a red kite {i}"} for i in range(3)])
    params = params_for(tmp_path, csv_path)
    (chunk,) = plan_jobs(params, "manual__a8", None, None)
    xcom: dict = {}
    op = generate_operator(chunk, params)
    context = {"ti": FakeTI("manual__a8", 0, 1, xcom)}
    with pytest.raises(TaskDeferred):
        op.execute(context)
    assert fal_conn.counts().get("submit") == 3
    for event, message in BAD_EVENTS:
        with pytest.raises(AirflowException, match=message.replace("(", r"\(").replace(")", r"\)")):
            op.execute_complete(context, event)
    # an outcome with a state outside the allow-list
    sub = xcom[("manual__a8", "generate", 0, "submitted")]["submissions"][0]
    weird = {"status": "success", "outcomes": [{"job_key": sub["job_key"], "request_id": sub["request_id"],
                                                "state": "exploded"}]}  # fmt: skip
    with pytest.raises(AirflowException, match="unknown state 'exploded'"):
        op.execute_complete(context, weird)
    # a success event that forgets a job: that job is failed, not silently dropped
    video = {"url": "http://x/v.mp4"}
    only_one = {"job_key": sub["job_key"], "request_id": sub["request_id"], "state": "succeeded", "video": video}
    partial = {"status": "success", "outcomes": [only_one]}
    outcomes = op.execute_complete(context, partial)["outcomes"]
    assert sorted(o["state"] for o in outcomes) == ["failed", "failed", "succeeded"]
    assert all(o["reason_code"] == "bad_response" for o in outcomes if o["state"] == "failed")

    # The task retries (try 2): it re-attaches to the stored request ids, pays nothing, and completes.
    retried = generate(chunk, params, "manual__a8", try_number=2)
    assert fal_conn.counts().get("submit") == 3
    assert all(s["reattached"] for s in retried["submissions"])
    assert {o["state"] for o in retried["outcomes"]} == {"succeeded"}


# --- C3: empty input, through plan_jobs and write_manifest as the DAG calls them ------------------------


@pytest.mark.parametrize(
    ("content", "note"),
    [
        (b"", "empty file"),
        (b"id,prompt,seed\r\n", "header only"),
        (b"\n\r\n  \n\n", "only blank lines"),
        (b"\xef\xbb\xbf", "empty file"),
    ],
)
def test_c3_empty_inputs_end_cleanly_with_an_empty_manifest_and_no_submission(fal_conn, tmp_path, content, note):
    csv_path = tmp_path / "empty.csv"
    csv_path.write_bytes(content)
    params = params_for(tmp_path, csv_path)
    assert plan_jobs(params, "manual__c3", None, None) == []  # generate maps over nothing
    result = write_manifest(params, "manual__c3", None, None)  # all_done: runs with no upstream output
    run_dir = tmp_path / "archive" / "runs" / "manual__c3"
    assert (run_dir / "manifest.jsonl").read_text() == ""
    assert result["counts"] and set(result["counts"].values()) == {0}
    assert note in (run_dir / "plan.json").read_text()
    assert fal_conn.counts().get("submit", 0) == 0


def test_c1_non_utf8_input_is_one_sentence_naming_the_file_and_position(fal_conn, tmp_path):
    csv_path = tmp_path / "latin1.csv"
    csv_path.write_bytes("id,prompt\nx,un caf\xe9 au lait\n".encode("latin-1"))
    params = params_for(tmp_path, csv_path)
    with pytest.raises(Exception) as info:
        plan_jobs(params, "manual__c1", None, None)
    assert type(info.value).__name__ == "AirflowFailException"  # no retries: the file will not change
    message = str(info.value)
    assert str(csv_path) in message and "not valid UTF-8" in message and "line 2" in message
    with pytest.raises(RuntimeError) as failed:
        write_manifest(params, "manual__c1", None, None)
    assert str(failed.value) == message
    assert_one_terminal_row_per_csv_row(run_pipeline(csv_path, tmp_path / "archive", "manual__c1b")["manifest"], [])
    assert fal_conn.counts().get("submit", 0) == 0


def test_f3_a_job_that_completes_as_the_deadline_passes_is_kept_not_retired(fal_conn, tmp_path):
    """The trigger gave up at the deadline, but the cancel finds the job finished: its video is fetched."""
    csv_path = write_csv(tmp_path / "p.csv", [{"id": "late", "prompt": "a late train"}])
    params = params_for(tmp_path, csv_path)
    (chunk,) = plan_jobs(params, "manual__late", None, None)
    xcom: dict = {}
    op = generate_operator(chunk, params)
    context = {"ti": FakeTI("manual__late", 0, 1, xcom)}
    with pytest.raises(TaskDeferred):
        op.execute(context)
    fal_conn.wait_idle(timeout=60)  # finished on fal...
    sub = xcom[("manual__late", "generate", 0, "submitted")]["submissions"][0]
    late = {"job_key": sub["job_key"], "request_id": sub["request_id"], "state": "timed_out",
            "reason_code": "timed_out", "reason": "deadline passed while running"}  # fmt: skip
    out = op.execute_complete(context, {"status": "success", "outcomes": [late]})  # ...as the deadline passed
    (outcome,) = out["outcomes"]
    assert outcome["state"] == "succeeded" and outcome["video"]["url"], outcome
    assert [r["status_code"] for r in fal_conn.requests("cancel")] == [400]  # ALREADY_COMPLETED
    (record,) = archive_chunk(out, params, "fal_default")
    assert record["state"] == "archived"
    assert fal_conn.counts().get("submit") == 1

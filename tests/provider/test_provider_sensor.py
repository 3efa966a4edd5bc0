"""FalJobsSensor: defer once per chunk, trust only the success event (A8), cancel what timed out (F3)."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowException, TaskDeferred
from fal_fakes import KEY, FakeFal, completed, queued, submission

from fal_video.sensors import FalJobsSensor
from fal_video.triggers import FalJobsTrigger

NOT_SUBMITTED = [{"job_key": "k9", "reason_code": "account_locked", "reason": "locked"}]


def sensor(*ids: str, **kwargs) -> FalJobsSensor:
    subs = {"submissions": [submission(i) for i in ids], "not_submitted": NOT_SUBMITTED}
    return FalJobsSensor(task_id="wait", submissions=subs, poll_interval=0.01, **kwargs)


def outcome(request_id: str, state: str = "succeeded", **extra) -> dict:
    return {"job_key": f"job-{request_id}", "request_id": request_id, "state": state, **extra}


def test_defers_once_for_the_whole_chunk_without_the_key(fal_conn):
    with pytest.raises(TaskDeferred) as deferred:
        sensor("a", "b", deadline_seconds=60).execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, FalJobsTrigger) and deferred.value.method_name == "execute_complete"
    _, kwargs = trigger.serialize()
    assert [j["request_id"] for j in kwargs["jobs"]] == ["a", "b"] and KEY not in str(kwargs)


def test_nothing_to_wait_for_returns_at_once():
    out = FalJobsSensor(task_id="w", submissions={"submissions": [], "not_submitted": NOT_SUBMITTED}).execute({})
    assert out == {"outcomes": [], "not_submitted": NOT_SUBMITTED}


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (None, "without a trigger event"),
        ({"status": "cancelled"}, "status 'cancelled'"),
        ({"status": "weird"}, "status 'weird'"),
        ({"status": "error", "reason_code": "auth", "message": "key refused"}, "key refused"),
        ({"status": "success"}, "without an 'outcomes' list"),
        ({"status": "success", "outcomes": [outcome("a", "exploded")]}, "unknown state"),
        ("success", "expected a dict"),
    ],
)
def test_execute_complete_accepts_only_the_success_shape_a8(event, message):
    with pytest.raises(AirflowException, match=message):
        sensor("a").execute_complete({}, event)


def test_success_passes_outcomes_and_not_submitted_through():
    event = {"status": "success", "outcomes": [outcome("a"), outcome("b", "rejected", reason_code="content_policy")]}
    out = sensor("a", "b", "c").execute_complete({}, event)
    states = {o["request_id"]: o["state"] for o in out["outcomes"]}
    assert states == {"a": "succeeded", "b": "rejected", "c": "failed"}  # c was missing from the event
    assert out["not_submitted"] == NOT_SUBMITTED


def test_timed_out_jobs_are_cancelled_f3(fal_conn, requests_mock):
    cancel = requests_mock.put(
        submission("slow")["cancel_url"], status_code=202, json={"status": "CANCELLATION_REQUESTED"}
    )
    event = {"status": "success", "outcomes": [outcome("ok"), outcome("slow", "timed_out", reason="deadline passed")]}
    out = sensor("ok", "slow").execute_complete({}, event)
    assert cancel.call_count == 1 and requests_mock.call_count == 1
    slow = next(o for o in out["outcomes"] if o["request_id"] == "slow")
    assert slow["state"] == "timed_out" and "CANCELLATION_REQUESTED" in slow["reason"]


def test_non_deferrable_mode_uses_the_same_trigger_logic(fake_fal: FakeFal, monkeypatch):
    fake_fal.add("a", [queued(), completed()])
    fake_fal.add("b", [completed("x")], (422, {"detail": [{"loc": ["body", "prompt"], "msg": "no", "type": "x"}]}, {}))
    monkeypatch.setattr(
        FalJobsSensor, "build_trigger", lambda self: fake_fal.trigger([submission("a"), submission("b")])
    )
    out = sensor("a", "b", deferrable=False).execute({})
    assert {o["request_id"]: o["state"] for o in out["outcomes"]} == {"a": "succeeded", "b": "rejected"}

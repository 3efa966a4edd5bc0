"""Integration over real HTTP: hook, operator, trigger and sensor against the local fal emulator."""

from __future__ import annotations

import time

import pytest
from fal_fakes import collect, set_connection

from fal_video.errors import FalError, Reason
from fal_video.hook import FalHook
from fal_video.operators import FalSubmitOperator
from fal_video.records import Job
from fal_video.sensors import FalJobsSensor
from fal_video.triggers import FalJobsTrigger

APP = "fal-ai/ltx-video"


@pytest.fixture
def fal(emulator, monkeypatch):
    set_connection(monkeypatch, emulator.base_url, emulator.keys[0], allow_http=True)  # the only accepted key
    return emulator


def job(prompt: str) -> dict:
    return Job.create(APP, {"prompt": prompt}, [prompt[:10]], None).as_dict()


def submit(*prompts: str) -> dict:
    return FalSubmitOperator(task_id="submit", jobs=[job(p) for p in prompts]).execute({})


def wait(submitted: dict, **kwargs) -> dict[str, dict]:
    """The sensor in non-deferrable mode: the same trigger, in this process's own event loop."""
    params = {"poll_interval": 0.05, "deadline_seconds": 10, "request_timeout": 2.0, **kwargs}
    out = FalJobsSensor(task_id="wait", submissions=submitted, deferrable=False, **params).execute({})
    return {o["job_key"]: o for o in out["outcomes"]}


def key_of(prompt: str) -> str:
    return job(prompt)["job_key"]


def test_happy_path_and_the_key_only_goes_to_fal(fal):
    out = wait(submit("a calm lake at dawn", "a fox in snow"))
    assert {o["state"] for o in out.values()} == {"succeeded"}
    assert all(o["video"]["url"].startswith(fal.base_url) for o in out.values())
    assert fal.counts()["submit"] == 2


def test_f1_stalled_status_times_out_per_request_and_recovers(fal):
    submitted = submit("stalls once [fal-fault:stall]", "keeps going")
    started = time.monotonic()
    out = wait(submitted, request_timeout=0.5)
    assert {o["state"] for o in out.values()} == {"succeeded"}
    assert time.monotonic() - started < 8


def test_f1_stall_forever_still_ends_at_the_deadline(fal):
    # Stuck in the queue too: a job that finished on fal meanwhile would be kept (its result is fetched
    # when the deadline's cancel answers ALREADY_COMPLETED), not timed out.
    prompt = "stalls forever [fal-fault:stall:1000] [fal-fault:stuck_in_queue]"
    submitted = submit(prompt, "fine")
    started = time.monotonic()
    out = wait(submitted, request_timeout=0.3, deadline_seconds=1.5)
    assert time.monotonic() - started < 6
    stalled = out[key_of(prompt)]
    assert stalled["state"] == "timed_out", stalled
    assert out[key_of("fine")]["state"] == "succeeded"


def test_f3_stuck_in_queue_times_out_and_is_cancelled(fal):
    out = wait(submit("never starts [fal-fault:stuck_in_queue]"), deadline_seconds=0.8)
    (only,) = out.values()
    assert only["state"] == "timed_out" and "queued" in only["reason"] and only["reason_code"] == "timed_out"
    assert fal.counts().get("cancel") == 1


def test_f4_dropped_submit_is_unknown_and_not_resubmitted(fal):
    out = submit("dropped [fal-fault:drop_connection]")
    assert [n["reason_code"] for n in out["not_submitted"]] == ["submit_unknown"]
    assert fal.counts()["submit"] == 1 and len(fal.jobs()) == 1  # fal did take it: a retry would pay twice


def test_f5_model_error_is_rejected_without_retry(fal):
    out = wait(submit("bad [fal-fault:model_error]"))
    (only,) = out.values()
    assert (only["state"], only["reason_code"]) == ("rejected", "input_rejected")
    assert fal.counts()["result"] == 1


def test_f6_result_504_is_retried_and_succeeds(fal):
    out = wait(submit("flaky result [fal-fault:result_504]"))
    (only,) = out.values()
    assert only["state"] == "succeeded" and fal.counts()["result"] == 3


def test_f7_content_policy_names_both_fields(fal):
    out = wait(submit("refused [fal-fault:content_policy]", "allowed"))
    refused = out[key_of("refused [fal-fault:content_policy]")]
    assert (refused["state"], refused["reason_code"]) == ("rejected", "content_policy")
    assert "prompt" in refused["reason"] and "image_url" in refused["reason"]
    assert out[key_of("allowed")]["state"] == "succeeded"
    assert fal.counts()["result"] == 2  # one each: a refusal is never re-fetched


def test_f8_account_lock_stops_submitting_and_keeps_waiting(fal):
    fal.add_fault("account_locked", start=3)
    prompts = [f"clip number {i}" for i in range(6)]
    submitted = submit(*prompts)
    assert fal.counts()["submit"] == 3
    assert len(submitted["submissions"]) == 2
    assert [n["reason_code"] for n in submitted["not_submitted"]] == ["account_locked"] * 4
    out = wait(submitted)
    assert [o["state"] for o in out.values()] == ["succeeded"] * 2


async def test_mixed_chunk_in_one_trigger(fal):
    prompts = ["fine one", "refused [fal-fault:content_policy]", "stuck [fal-fault:stuck_in_queue]"]
    submitted = submit(*prompts)
    trigger = FalJobsTrigger(jobs=submitted["submissions"], deadline=time.time() + 4, poll_interval=0.05)
    (event,) = await collect(trigger)
    states = {o["job_key"]: o["state"] for o in event["outcomes"]}
    assert [states[key_of(p)] for p in prompts] == ["succeeded", "rejected", "timed_out"]


async def test_on_kill_cancels_on_the_emulator(fal):
    submitted = submit("stuck [fal-fault:stuck_in_queue]")
    trigger = FalJobsTrigger(jobs=submitted["submissions"], deadline=time.time() + 30, poll_interval=0.05)
    await trigger.cleanup()
    assert fal.counts().get("cancel", 0) == 0  # cleanup (triggerer restart) never cancels (A1)
    await trigger.on_kill()
    assert fal.counts()["cancel"] == 1


def test_wrong_key_is_auth(fal, monkeypatch):
    set_connection(monkeypatch, fal.base_url, "not-the-key:x", allow_http=True)
    with pytest.raises(FalError) as err:
        FalHook().submit(Job.from_dict(job("x")))
    assert err.value.reason is Reason.AUTH

"""FalJobsTrigger: collect its events against an in-memory fal (httpx.MockTransport)."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import gc
import json
import logging
import time
from pathlib import Path

from fal_fakes import KEY, VIDEO, FakeFal, collect, completed, queued, running, submission

import fal_video.triggers as triggers_module
from fal_video.triggers import FalJobsTrigger

CONTENT_POLICY = {
    "detail": [
        {"loc": ["body", "prompt"], "msg": "flagged prompt", "type": "content_policy_violation"},
        {"loc": ["body", "image_url"], "msg": "flagged image", "type": "content_policy_violation"},
    ]
}


def by_request(event: dict) -> dict[str, dict]:
    return {o["request_id"]: o for o in event["outcomes"]}


async def test_every_job_ends_classified_in_one_event(fake_fal: FakeFal):
    subs = [
        fake_fal.add("ok", [queued(2), running("step 1"), completed()], (200, {**VIDEO, "seed": 42}, {})),
        fake_fal.add("f5", [completed("bad input", None)],
                     (422, {"detail": [{"loc": ["body", "duration"], "msg": "bad", "type": "value_error"}]}, {})),
        fake_fal.add("f7", [completed("policy")], (422, CONTENT_POLICY, {})),
        fake_fal.add("boom", [completed("Runner disconnected", "runner_server_error")],
                     (500, {"detail": "Internal Server Error"}, {})),
        fake_fal.add("gone", [completed(None, "client_cancelled")], (499, {"detail": "cancelled"}, {})),
        fake_fal.add("shape", [completed()], (200, {"images": []}, {})),
        fake_fal.add("f6", [completed()], (504, {"detail": "t"}, {}), (504, {"detail": "t"}, {}), (200, VIDEO, {})),
    ]  # fmt: skip
    events = await collect(fake_fal.trigger(subs))
    assert len(events) == 1 and events[0]["status"] == "success"
    out = by_request(events[0])
    assert out["ok"]["state"] == "succeeded" and out["ok"]["seed"] == 42 and out["ok"]["video"]["url"]
    assert out["ok"]["inference_seconds"] == 1.5 and out["ok"]["started_at"]
    assert (out["f5"]["state"], out["f5"]["reason_code"]) == ("rejected", "input_rejected")
    assert "duration: bad" in out["f5"]["reason"]
    assert (out["f7"]["state"], out["f7"]["reason_code"]) == ("rejected", "content_policy")
    assert "prompt: flagged prompt" in out["f7"]["reason"] and "image_url: flagged image" in out["f7"]["reason"]
    assert (out["boom"]["state"], out["boom"]["reason_code"]) == ("failed", "server_error")
    assert (out["gone"]["state"], out["gone"]["reason_code"]) == ("cancelled", "cancelled")
    assert (out["shape"]["state"], out["shape"]["reason_code"]) == ("failed", "bad_response")
    assert out["f6"]["state"] == "succeeded"
    assert fake_fal.jobs["f5"].fetches == 1 and fake_fal.jobs["f7"].fetches == 1  # rejections are never retried
    assert fake_fal.jobs["boom"].fetches == 1
    assert fake_fal.auth_headers == {f"Key {KEY}"}
    json.dumps(events[0])  # the event must be JSON


async def test_deadline_times_out_with_where_the_job_was(fake_fal: FakeFal):
    subs = [fake_fal.add("q", [queued(5)]), fake_fal.add("r", [running()]), fake_fal.add("done", [completed()])]
    started = time.monotonic()
    events = await collect(fake_fal.trigger(subs, deadline_in=0.3))
    assert time.monotonic() - started < 2
    out = by_request(events[0])
    assert out["q"]["state"] == "timed_out" and "queued (position 5)" in out["q"]["reason"]
    assert out["r"]["state"] == "timed_out" and "running" in out["r"]["reason"]
    assert out["q"]["reason_code"] == "timed_out" and out["done"]["state"] == "succeeded"


async def test_deadline_already_passed(fake_fal: FakeFal):
    events = await collect(fake_fal.trigger([fake_fal.add("q", [queued()])], deadline_in=-10))
    assert by_request(events[0])["q"]["state"] == "timed_out"


async def test_polls_slower_far_back_in_the_queue(fake_fal: FakeFal):
    subs = [fake_fal.add("far", [queued(30)]), fake_fal.add("near", [queued(0)])]
    await collect(fake_fal.trigger(subs, deadline_in=0.5, poll_interval=0.05))
    assert fake_fal.jobs["far"].polls * 2 < fake_fal.jobs["near"].polls


def log_text(caplog, capsys) -> str:
    """Trigger logs go through structlog (stdout) or stdlib logging, depending on Airflow's setup."""
    return caplog.text + capsys.readouterr().out


async def test_logs_forwarded_once_despite_moving_window(fake_fal: FakeFal, caplog, capsys):
    caplog.set_level(logging.INFO)
    moving = {**running(), "logs": running("a", "b", "c")["logs"][1:]}  # the window moved past "a"
    subs = [fake_fal.add("r", [running("a", "b"), running("a", "b", "c"), moving, completed()])]
    await collect(fake_fal.trigger(subs))
    text = log_text(caplog, capsys)
    assert [text.count(f"[r] {m} ") + text.count(f"[r] {m}\n") for m in "abc"] == [1, 1, 1]
    assert "fal jobs:" in text


async def test_transient_status_errors_keep_polling(fake_fal: FakeFal):
    subs = [fake_fal.add("x", [queued(), "not json at all", completed()])]
    events = await collect(fake_fal.trigger(subs))
    assert by_request(events[0])["x"]["state"] == "succeeded"


async def test_malformed_status_gives_up_after_a_few(fake_fal: FakeFal):
    subs = [fake_fal.add("x", [{"status": "WEIRD"}])]
    out = by_request((await collect(fake_fal.trigger(subs)))[0])["x"]
    assert (out["state"], out["reason_code"]) == ("failed", "bad_response")


async def test_auth_failure_is_an_error_event(fake_fal: FakeFal):
    subs = [fake_fal.add("a", [queued()]), fake_fal.add("b", [queued()])]
    fake_fal.status_override = (401, {"detail": "Invalid key"})
    events = await collect(fake_fal.trigger(subs))
    assert len(events) == 1 and events[0]["status"] == "error" and events[0]["reason_code"] == "auth"
    assert KEY not in json.dumps(events)


async def test_missing_connection_is_an_error_event(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_FAL_DEFAULT", raising=False)
    trigger = FalJobsTrigger(jobs=[submission("a")], deadline=time.time() + 5, fal_conn_id="nope")
    events = await collect(trigger)
    assert events[0]["status"] == "error" and "nope" in events[0]["message"]


async def test_urls_on_another_host_are_not_followed(fake_fal: FakeFal):
    sub = submission("x", base="https://evil.test")
    out = by_request((await collect(fake_fal.trigger([sub])))[0])["x"]
    assert out["state"] == "failed" and fake_fal.calls == []


def test_serialize_round_trip_holds_no_secret(fal_conn):
    trigger = FalJobsTrigger(jobs=[submission("a"), submission("b")], deadline=1_800_000_000.5, poll_interval=3)
    path, kwargs = trigger.serialize()
    assert path == "fal_video.triggers.FalJobsTrigger"
    rebuilt = FalJobsTrigger(**json.loads(json.dumps(kwargs)))
    assert rebuilt.serialize() == (path, kwargs)
    assert KEY not in json.dumps(kwargs) and "unit-key" not in repr(trigger)
    assert set(kwargs["jobs"][0]) == {"job_key", "request_id", "status_url", "response_url", "cancel_url"}
    from airflow.serialization.serialized_objects import BaseSerialization

    assert BaseSerialization.deserialize(BaseSerialization.serialize(kwargs)) == kwargs


async def test_on_kill_cancels_unfinished_jobs_only(fake_fal: FakeFal):
    subs = [fake_fal.add("done", [completed()]), fake_fal.add("stuck", [queued(9)])]
    trigger = fake_fal.trigger(subs, deadline_in=30)
    task = asyncio.create_task(collect(trigger))
    while fake_fal.jobs["done"].fetches == 0 or fake_fal.jobs["stuck"].polls == 0:
        await asyncio.sleep(0.01)
    task.cancel()
    await trigger.on_kill()
    await trigger.cleanup()
    assert [c for c in fake_fal.calls if c[0] == "cancel"] == [("cancel", "stuck")]


async def test_on_kill_after_restart_cancels_everything_it_owns(fake_fal: FakeFal):
    trigger = fake_fal.trigger([fake_fal.add("a", [queued()]), fake_fal.add("b", [running()])])
    await trigger.on_kill()  # a fresh instance (e.g. another triggerer) knows no outcomes yet
    assert sorted(c for c in fake_fal.calls if c[0] == "cancel") == [("cancel", "a"), ("cancel", "b")]


async def test_cleanup_never_cancels_a1(fake_fal: FakeFal):
    trigger = fake_fal.trigger([fake_fal.add("a", [queued()])], deadline_in=30)
    task = asyncio.create_task(collect(trigger))
    while fake_fal.jobs["a"].polls < 2:
        await asyncio.sleep(0.01)
    task.cancel()  # what a triggerer restart does
    await asyncio.gather(task, return_exceptions=True)
    await trigger.cleanup()
    assert fake_fal.count("cancel") == 0


def test_trigger_module_never_uses_a_sync_client():
    """triggers.py imports no sync HTTP client, calls only the hook's async methods, never time.sleep."""
    tree = ast.parse(Path(triggers_module.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not imported & {"requests", "urllib.request", "http.client", "urllib3"}
    attrs = [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)]
    hook_calls = {n.attr for n in attrs if n.value.id == "hook"}
    assert hook_calls and all(name.startswith("a") for name in hook_calls), hook_calls
    assert not [n for n in attrs if n.value.id == "time" and n.attr == "sleep"]
    assert "get_connection(" not in Path(triggers_module.__file__).read_text()


async def run_in_debug_loop(trigger: FalJobsTrigger, caplog, capsys) -> tuple[list[dict], list[str]]:
    """Run the trigger with asyncio debug mode on; return its events and the slow-callback reports."""
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = 0.2  # the triggerer warns above 0.2 s
    caplog.set_level(logging.WARNING, logger="asyncio")
    gc.collect()
    gc.disable()  # a collector pause is not a blocking call of the trigger's
    try:
        events = await collect(trigger)
    finally:
        gc.enable()
        loop.set_debug(False)
    text = log_text(caplog, capsys)
    return events, [line for line in text.splitlines() if "Executing" in line and "took" in line]


async def test_run_never_blocks_the_event_loop(fake_fal: FakeFal, caplog, capsys):
    """asyncio debug mode reports every callback that holds the loop longer than 0.2 s."""
    subs = [fake_fal.add(f"j{i}", [queued(1), running("x"), completed()]) for i in range(150)]
    await collect(fake_fal.trigger([fake_fal.add("warm", [completed()])]))  # imports and connection cache
    events, slow = await run_in_debug_loop(fake_fal.trigger(subs, deadline_in=60), caplog, capsys)
    assert all(o["state"] == "succeeded" for o in events[0]["outcomes"])
    assert slow == []


async def test_the_blocking_detector_works(fake_fal: FakeFal, caplog, capsys):
    """Guard for the test above: a handler that blocks the loop for 0.3 s is reported."""
    handler = fake_fal.handler

    def blocking(request):
        time.sleep(0.3)
        return handler(request)

    fake_fal.handler = blocking  # type: ignore[method-assign]
    _, slow = await run_in_debug_loop(fake_fal.trigger([fake_fal.add("b", [completed()])]), caplog, capsys)
    assert slow


async def test_on_kill_sends_every_cancel_even_when_cancelled_again(fake_fal: FakeFal, monkeypatch):
    """Airflow 3.3's triggerer re-sends the user-action cancel about once a second until the trigger has ended,
    which cancels on_kill itself (run_trigger swallows that): every cancel must still reach fal."""
    subs = [fake_fal.add(name, [queued(5)]) for name in ("a", "b", "c", "d")]
    original = fake_fal.handler

    async def slow_cancels(request):
        if request.url.path.endswith("/cancel"):
            await asyncio.sleep(0.2)
        return original(request)

    monkeypatch.setattr(fake_fal, "handler", slow_cancels)
    trigger = fake_fal.trigger(subs, deadline_in=30, max_concurrency=1)  # one cancel at a time: 0.8 s in all
    killing = asyncio.create_task(trigger.on_kill())
    await asyncio.sleep(0.3)
    killing.cancel("__airflow_user_action__")  # the second cancel, while on_kill is at work
    with contextlib.suppress(asyncio.CancelledError):
        await killing
    deadline = time.monotonic() + 5
    while len([c for c in fake_fal.calls if c[0] == "cancel"]) < 4 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert sorted(c for c in fake_fal.calls if c[0] == "cancel") == [("cancel", n) for n in ("a", "b", "c", "d")]

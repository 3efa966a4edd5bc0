"""The checklist of reference section 11 over real HTTP: routing, auth, bodies, states, cancel, limits."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from emulator_helpers import client, submit, wait_completed

from fal_video.catalog import MODELS, app_path

KLING = "fal-ai/kling-video/v2/master/text-to-video"


@pytest.fixture
def http(emulator):
    with client(emulator) as c:
        yield c


# --- 1. routing -------------------------------------------------------------------------------------


def test_submit_on_full_id_and_request_urls_on_owner_app_only(emulator, http):
    body = submit(http, KLING, {"prompt": "a fox"})
    rid = body["request_id"]
    assert uuid.UUID(rid)
    root = f"{emulator.base_url}/fal-ai/kling-video/requests/{rid}"
    assert body["response_url"] == root
    assert body["status_url"] == root + "/status"
    assert body["cancel_url"] == root + "/cancel"
    assert body["status"] == "IN_QUEUE" and body["logs"] is None and body["metrics"] == {}
    assert isinstance(body["queue_position"], int)
    # the subpath is dropped for every request route; trailing slashes are fine
    assert http.get(f"/fal-ai/kling-video/requests/{rid}/status/").status_code in (200, 202)
    wait_completed(http, body["status_url"])
    assert http.get(f"/fal-ai/kling-video/requests/{rid}/").status_code == 200
    # a URL still carrying the subpath is not honoured
    assert http.get(f"/{KLING}/requests/{rid}/status").status_code == 404
    assert http.get(f"/{KLING}/requests/{rid}").status_code == 404
    # and a request id lives only under its own app
    assert http.get(f"/fal-ai/veo3/requests/{rid}/status").status_code == 404


@pytest.mark.parametrize("endpoint", sorted(MODELS))
def test_every_catalog_model_maps_to_its_app(emulator, http, endpoint):
    args = {"prompt": "x"}
    if MODELS[endpoint].image_to_video:
        args["image_url"] = "https://example.com/a.png"
    body = submit(http, endpoint, args)
    assert body["status_url"].startswith(f"{emulator.base_url}/{app_path(endpoint)}/requests/")


def test_namespace_endpoints_keep_three_segments(emulator, http):
    body = submit(http, "workflows/me/my-flow/run", {"prompt": "x"})
    assert "/workflows/me/my-flow/requests/" in body["status_url"]
    assert http.get(body["status_url"]).status_code in (200, 202)


# --- 2. auth ----------------------------------------------------------------------------------------


def test_auth_required_with_fastapi_style_body(emulator, http):
    for headers in ({}, {"Authorization": "Key wrong"}, {"Authorization": "Token abc"}, {"Authorization": "Key"}):
        response = httpx.post(f"{emulator.base_url}/{KLING}", json={"prompt": "x"}, headers=headers)
        assert response.status_code == 401
        assert isinstance(response.json()["detail"], str)
    ok = httpx.post(
        f"{emulator.base_url}/{KLING}", json={"prompt": "x"}, headers={"Authorization": f"Bearer {emulator.keys[0]}"}
    )
    assert ok.status_code == 200


def test_without_key_list_any_nonempty_key_is_accepted(emulator):
    emulator.configure(keys=[])
    response = httpx.post(
        f"{emulator.base_url}/fal-ai/ltx-video", json={"prompt": "x"}, headers={"Authorization": "Key z"}
    )
    assert response.status_code == 200
    assert httpx.post(f"{emulator.base_url}/fal-ai/ltx-video", json={"prompt": "x"}).status_code == 401


# --- 3-5. submit, states, status bodies ------------------------------------------------------------


def test_state_machine_codes_and_bodies(emulator, http):
    emulator.configure(queue_seconds=100, generation_seconds=100)  # 0.2 s each at time_scale 0.002
    body = submit(http, "fal-ai/wan-t2v", {"prompt": "a boat", "seed": 42})
    seen: list[tuple[str, int]] = []
    positions = []
    while True:
        response = http.get(body["status_url"], params={"logs": "0"})
        data = response.json()
        seen.append((data["status"], response.status_code))
        assert {"status", "request_id", "response_url", "status_url", "cancel_url", "logs", "metrics"} <= set(data)
        assert data["logs"] is None
        assert ("queue_position" in data) == (data["status"] == "IN_QUEUE")
        if data["status"] == "IN_QUEUE":
            positions.append(data["queue_position"])
            assert data["metrics"] == {}
        if data["status"] == "COMPLETED":
            assert isinstance(data["metrics"]["inference_time"], float)
            assert "error" not in data and "error_type" not in data
            break
        time.sleep(0.02)
    states = [s for s, _ in dict.fromkeys(seen)]
    assert states == ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
    assert all(code == (200 if s == "COMPLETED" else 202) for s, code in seen)
    assert positions == sorted(positions, reverse=True)
    result = http.get(body["response_url"])
    assert result.status_code == 200 and result.headers["x-fal-request-id"] == body["request_id"]
    output = result.json()
    assert set(output) == {"video", "seed"} and output["seed"] == 42
    video = output["video"]
    assert video["content_type"] == "video/mp4" and video["url"].startswith(f"{emulator.base_url}/files/v3/")
    assert isinstance(video["file_size"], int) and video["file_name"].endswith(".mp4")


def test_output_shape_follows_catalog_output_keys(emulator, http):
    for endpoint, args in (("fal-ai/ltx-video", {"prompt": "x"}), ("fal-ai/minimax/video-01", {"prompt": "x"})):
        body = submit(http, endpoint, args)
        wait_completed(http, body["status_url"])
        assert tuple(http.get(body["response_url"]).json()) == MODELS[endpoint].output_keys


@pytest.mark.parametrize("value", ["1", "true", "True"])
def test_logs_flag_values_and_moving_window(emulator, http, value):
    emulator.configure(queue_seconds=0, generation_seconds=400, log_window=3)
    body = submit(http, "fal-ai/ltx-video", {"prompt": "logs"})
    windows = []
    while True:
        data = http.get(body["status_url"], params={"logs": value}).json()
        if data["status"] != "IN_QUEUE":
            assert isinstance(data["logs"], list) and len(data["logs"]) <= 3
            windows.append([e["message"] for e in data["logs"]])
        if data["status"] == "COMPLETED":
            break
        time.sleep(0.03)
    assert {"message", "timestamp"} <= set(data["logs"][0])
    # a window, not a growing prefix: the first lines drop out as new ones arrive
    assert windows[-1][0] != "Loading LTX-Video weights"
    for flag in ("0", "false", None):
        params = {"logs": flag} if flag else {}
        assert http.get(body["status_url"], params=params).json()["logs"] is None


def test_queue_positions_decrease_under_the_per_key_limit(emulator, http):
    emulator.configure(concurrency=2, queue_seconds=100, generation_seconds=150)
    bodies = [submit(http, "fal-ai/ltx-video", {"prompt": "same clip"}) for _ in range(6)]  # one render
    assert [b["queue_position"] for b in bodies] == [0, 1, 2, 3, 4, 5]
    last = {b["request_id"]: 10**6 for b in bodies}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        statuses = [http.get(b["status_url"]).json() for b in bodies]
        for s in statuses:
            if s["status"] == "IN_QUEUE":
                assert s["queue_position"] <= last[s["request_id"]]
                last[s["request_id"]] = s["queue_position"]
        if all(s["status"] == "COMPLETED" for s in statuses):
            break
        time.sleep(0.02)
    stats = emulator.stats()
    assert stats["max_running"] == 2 and stats["max_in_flight"] == 6
    spans = [(j["started_at"], j["completed_at"]) for j in emulator.jobs()]
    for start, _ in spans:  # never more than 2 running at any start instant
        assert sum(s <= start < e for s, e in spans) <= 2
    assert emulator.counts()["submit"] == 6 and emulator.counts().get("cancel", 0) == 0


def test_no_429_for_concurrency(emulator, http):
    emulator.configure(concurrency=1, generation_seconds=5000)
    codes = {http.post("/fal-ai/ltx-video", json={"prompt": f"q{i}"}).status_code for i in range(15)}
    assert codes == {200}


# --- 6. SSE status stream ---------------------------------------------------------------------------


def test_status_stream_events_pings_deltas_and_close(emulator, http):
    emulator.configure(queue_seconds=500, generation_seconds=400, ping_seconds=0.05)
    body = submit(http, "fal-ai/ltx-video", {"prompt": "stream"})
    lines = []
    with http.stream("GET", body["status_url"] + "/stream", params={"logs": 1}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = list(response.iter_lines())  # ends because the server closes after COMPLETED
    events = [json.loads(line[len("data: ") :]) for line in lines if line.startswith("data: ")]
    assert ": ping" in lines
    assert events[0]["status"] == "IN_QUEUE" and events[-1]["status"] == "COMPLETED"
    assert "inference_time" in events[-1]["metrics"]
    messages = [e["message"] for ev in events for e in ev["logs"]]
    assert len(messages) == len(set(messages))  # deltas: each line once
    assert messages[0].startswith("Loading")


def test_stream_unknown_id_is_404(emulator, http):
    assert http.get(f"/fal-ai/ltx-video/requests/{uuid.uuid4()}/status/stream").status_code == 404


# --- 7, 10. result and unknown ids -----------------------------------------------------------------


def test_result_before_completion_is_configurable(emulator, http):
    emulator.configure(generation_seconds=5000)
    body = submit(http, "fal-ai/ltx-video", {"prompt": "wait"})
    early = http.get(body["response_url"])
    assert early.status_code == 202 and early.json()["status"] in ("IN_QUEUE", "IN_PROGRESS")
    emulator.configure(result_before_completion="400")
    early = http.get(body["response_url"])
    assert early.status_code == 400 and isinstance(early.json()["detail"], str)


def test_unknown_request_ids(emulator, http):
    rid = uuid.uuid4()
    assert http.get(f"/fal-ai/ltx-video/requests/{rid}/status").status_code == 404
    assert http.get(f"/fal-ai/ltx-video/requests/{rid}").json() == {"detail": "Request not found"}
    cancel = http.put(f"/fal-ai/ltx-video/requests/{rid}/cancel")
    assert cancel.status_code == 404 and cancel.json() == {"status": "NOT_FOUND"}


# --- 9. cancel --------------------------------------------------------------------------------------


def test_cancel_queued_running_and_completed(emulator, http):
    emulator.configure(concurrency=1, queue_seconds=0, generation_seconds=5000)
    running = submit(http, "fal-ai/ltx-video", {"prompt": "run"})
    queued = submit(http, "fal-ai/ltx-video", {"prompt": "wait"})
    time.sleep(0.05)
    assert http.get(running["status_url"]).json()["status"] == "IN_PROGRESS"
    r = http.put(queued["cancel_url"])
    assert r.status_code == 202 and r.json() == {"status": "CANCELLATION_REQUESTED"}
    r = http.put(running["cancel_url"])
    assert r.status_code == 202 and r.json() == {"status": "CANCELLATION_REQUESTED"}
    for body in (queued, running):
        status = wait_completed(http, body["status_url"])
        assert status["error_type"] == "client_cancelled" and status["status"] == "COMPLETED"
        result = http.get(body["response_url"])
        assert result.status_code == 499 and result.json()["error_type"] == "client_cancelled"
        again = http.put(body["cancel_url"])
        assert again.status_code == 400 and again.json() == {"status": "ALREADY_COMPLETED"}
    assert emulator.counts()["cancel"] == 4


def test_cancel_running_may_finish(emulator, http):
    emulator.configure(queue_seconds=0, generation_seconds=100, cancel_running="finish", cancel_queued="200")
    body = submit(http, "fal-ai/ltx-video", {"prompt": "finish anyway"})
    time.sleep(0.03)
    assert http.put(body["cancel_url"]).status_code == 202
    status = wait_completed(http, body["status_url"])
    assert "error_type" not in status and http.get(body["response_url"]).status_code == 200
    emulator.configure(queue_seconds=5000)
    queued = submit(http, "fal-ai/ltx-video", {"prompt": "queued"})
    r = http.put(queued["cancel_url"])
    assert r.status_code == 200 and r.json() == {"status": "OK"}


# --- 15. validation ---------------------------------------------------------------------------------


def test_catalog_validation_422_lists(emulator, http):
    r = http.post(f"/{KLING}", json={"prompt": "x", "duration": 5, "cfg_scale": 3})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert {tuple(d["loc"]) for d in detail} == {("body", "duration"), ("body", "cfg_scale")}
    assert {d["type"] for d in detail} == {"string_type", "less_than_equal"}
    r = http.post("/fal-ai/veo3", json={"prompt": "x", "duration": "5s"})
    assert r.json()["detail"][0]["type"] == "literal_error"
    r = http.post("/fal-ai/luma-dream-machine/image-to-video", json={"prompt": "x"})
    assert r.json()["detail"] == [{"loc": ["body", "image_url"], "msg": "Field required", "type": "missing"}]
    assert emulator.jobs() == []


def test_malformed_json_and_non_object_bodies(emulator, http):
    r = http.post(f"/{KLING}", content=b'{"prompt": ', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"
    r = http.post(f"/{KLING}", json=["prompt"])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body"]
    assert http.post(f"/{KLING}").status_code == 422


def test_validation_at_result_time_like_the_live_api(emulator, http):
    emulator.configure(validation="result")
    body = submit(http, KLING, {"prompt": "x", "duration": 5})
    status = wait_completed(http, body["status_url"])
    assert status["error_type"] == "string_type"
    r = http.get(body["response_url"])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "duration"]


def test_uncatalogued_endpoint_is_a_generic_text_to_video_model(emulator, http):
    body = submit(http, "someone/new-model/v9", {"anything": [1, 2], "aspect_ratio": "9:16"})
    assert body["status_url"].startswith(f"{emulator.base_url}/someone/new-model/requests/")
    wait_completed(http, body["status_url"])
    assert set(http.get(body["response_url"]).json()) == {"video"}


# --- admin ------------------------------------------------------------------------------------------


def test_records_mask_the_key_and_keep_query_and_headers(emulator, http):
    headers = {"X-Fal-Queue-Priority": "low", "X-Fal-Request-Timeout": "3600"}
    body = submit(http, "fal-ai/ltx-video", {"prompt": "rec"}, params={"fal_webhook": "http://h/x"}, headers=headers)
    assert body["gateway_request_id"] == body["request_id"]
    http.get(body["status_url"], params={"logs": "true"})
    [rec] = emulator.requests("submit")
    assert rec["headers"]["authorization"] == "Key ***"
    assert emulator.keys[0] not in json.dumps(emulator.requests())
    assert rec["query"] == {"fal_webhook": "http://h/x"} and rec["json"] == {"prompt": "rec"}
    assert rec["headers"]["x-fal-queue-priority"] == "low" and rec["request_id"] == body["request_id"]
    assert emulator.requests("status")[0]["query"] == {"logs": "true"}
    assert emulator.counts() == {"submit": 1, "status": 1}
    assert emulator.counts(by="endpoint") == {"fal-ai/ltx-video": 1}
    [job] = emulator.jobs()
    assert job["key"] == "test-key-0123:***" and job["prompt"] == "rec"
    emulator.reset()
    assert emulator.requests() == [] and emulator.jobs() == []


def test_start_timeout_header_gives_user_timeout(emulator, http):
    emulator.configure(queue_seconds=10_000)
    body = submit(http, "fal-ai/ltx-video", {"prompt": "late"}, headers={"X-Fal-Request-Timeout": "10"})
    status = wait_completed(http, body["status_url"])
    assert status["error_type"] == "startup_timeout"
    r = http.get(body["response_url"])
    assert r.status_code == 504 and r.headers["x-fal-request-timeout-type"] == "user"


def test_seeded_times_are_reproducible(emulator, http):
    def durations() -> list[float]:
        emulator.reset()
        bodies = [submit(http, "fal-ai/ltx-video", {"prompt": f"s{i}"}) for i in range(3)]
        emulator.wait_idle()
        jobs = {j["request_id"]: j for j in emulator.jobs()}
        return [round(jobs[b["request_id"]]["started_at"] - jobs[b["request_id"]]["submitted_at"], 2) for b in bodies]

    assert durations() == durations()


def test_log_lines_keep_their_timestamps_across_polls_and_a_cancel(emulator, fal_key) -> None:
    """fal's polled logs are a moving window of fixed lines: clients dedupe on (timestamp, message)."""
    emulator.configure(generation_seconds=2000, queue_seconds=0)  # about 4 s at the test time scale
    headers = {"Authorization": f"Key {fal_key}"}
    sub = httpx.post(f"{emulator.base_url}/fal-ai/mochi-v1", json={"prompt": "stable logs"}, headers=headers).json()
    seen: dict[str, str] = {}

    def poll() -> dict:
        body = httpx.get(sub["status_url"], params={"logs": "1"}, headers=headers).json()
        for line in body["logs"] or []:
            assert seen.setdefault(line["message"], line["timestamp"]) == line["timestamp"], line
        return body

    deadline = time.monotonic() + 10
    while len(seen) < 3 and time.monotonic() < deadline:
        poll()
        time.sleep(0.05)
    assert len(seen) >= 3
    before = poll()["logs"][-1]
    assert httpx.put(sub["cancel_url"], headers=headers).status_code == 202
    after = poll()
    assert after["status"] == "COMPLETED"
    assert (before["message"], before["timestamp"]) in {(x["message"], x["timestamp"]) for x in after["logs"]}

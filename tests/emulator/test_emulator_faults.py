"""Every fault kind, armed through the admin API or a prompt marker, seen from a plain HTTP client."""

from __future__ import annotations

import time

import httpx
import pytest
from emulator_helpers import client, probe, submit, wait_completed

LTX = "fal-ai/ltx-video"


@pytest.fixture
def http(emulator):
    with client(emulator) as c:
        yield c


def completed(http: httpx.Client, prompt: str, endpoint: str = LTX) -> tuple[dict, dict]:
    body = submit(http, endpoint, {"prompt": prompt})
    return body, wait_completed(http, body["status_url"])


def test_f1_status_stalls_after_headers_then_recovers(emulator, http):
    emulator.add_fault("stall", count=1, seconds=5)
    body = submit(http, LTX, {"prompt": "stall"})
    with pytest.raises(httpx.ReadTimeout):
        http.get(body["status_url"], timeout=0.3)
    assert http.get(body["status_url"]).status_code in (200, 202)  # the next poll answers
    assert emulator.counts()["status"] == 2


def test_f3_stuck_in_queue_until_cancelled(emulator, http):
    emulator.add_fault("stuck_in_queue", prompt_contains="stuck")
    stuck = submit(http, LTX, {"prompt": "stuck forever"})
    _, fine = completed(http, "fine")
    assert fine["status"] == "COMPLETED"  # other jobs keep flowing
    time.sleep(0.2)
    assert http.get(stuck["status_url"]).json()["status"] == "IN_QUEUE"
    assert http.put(stuck["cancel_url"]).status_code == 202
    assert wait_completed(http, stuck["status_url"])["error_type"] == "client_cancelled"


def test_f4_submit_dropped_after_the_job_exists(emulator, http):
    emulator.add_fault("drop_connection", count=1)
    with pytest.raises(httpx.RemoteProtocolError):
        http.post(f"/{LTX}", json={"prompt": "ambiguous"})
    [job] = emulator.jobs()
    assert job["prompt"] == "ambiguous"
    assert emulator.requests("submit")[0]["request_id"] == job["request_id"]
    assert http.post(f"/{LTX}", json={"prompt": "next"}).status_code == 200


@pytest.mark.parametrize("how", ["admin", "marker"])
def test_f5_completed_with_error_then_422(emulator, http, how):
    prompt = "bad input [fal-fault:F5]" if how == "marker" else "bad input"
    if how == "admin":
        emulator.add_fault("model_error", prompt_contains="bad")
    body, status = completed(http, prompt)
    assert status["status"] == "COMPLETED" and status["error_type"] == "value_error" and status["error"]
    result = http.get(body["response_url"])
    assert result.status_code == 422 and result.headers["x-fal-request-id"] == body["request_id"]
    assert result.json()["detail"][0]["loc"] == ["body", "prompt"]


def test_f6_result_504_twice_then_200(emulator, http):
    body, _ = completed(http, "flaky cdn [fal-fault:result_504]")
    codes = [http.get(body["response_url"]).status_code for _ in range(3)]
    assert codes == [504, 504, 200]
    emulator.add_fault("result_504", count=1, style="ingress")
    body, _ = completed(http, "ingress")
    r = http.get(body["response_url"])
    assert r.status_code == 504 and "nginx" in r.text and "x-fal-request-id" not in r.headers


def test_f7_content_policy_names_both_fields(emulator, http):
    body, status = completed(http, "forbidden [fal-fault:content_policy]")
    assert status["error_type"] == "content_policy_violation"
    r = http.get(body["response_url"])
    assert r.status_code == 422 and r.headers["x-fal-retryable"] == "false"
    detail = r.json()["detail"]
    assert [d["loc"] for d in detail] == [["body", "prompt"], ["body", "image_url"]]
    assert {d["type"] for d in detail} == {"content_policy_violation"}


def test_f8_account_locked_from_the_nth_submit(emulator, http):
    emulator.configure(generation_seconds=300)
    emulator.add_fault("account_locked", start=4)
    codes = [http.post(f"/{LTX}", json={"prompt": f"row {i}"}) for i in range(6)]
    assert [r.status_code for r in codes] == [200, 200, 200, 403, 403, 403]
    assert codes[3].json() == {"detail": "User is locked"}
    for accepted in codes[:3]:  # status calls keep working for the jobs already accepted
        assert wait_completed(http, accepted.json()["status_url"])["status"] == "COMPLETED"


def test_f11_expired_media(emulator, http):
    body, _ = completed(http, "old [fal-fault:media_expired:404]")
    url = http.get(body["response_url"]).json()["video"]["url"]
    assert httpx.get(url).status_code == 404
    emulator.add_fault("media_expired")
    body, _ = completed(http, "other")
    assert httpx.get(http.get(body["response_url"]).json()["video"]["url"]).status_code == 403


def test_d1_truncated_body_then_whole(emulator, http):
    body, _ = completed(http, "cut [fal-fault:truncated_body:0.5]")
    video = http.get(body["response_url"]).json()["video"]
    with httpx.stream("GET", video["url"]) as r:
        assert int(r.headers["content-length"]) == video["file_size"]
        with pytest.raises(httpx.RemoteProtocolError):
            r.read()
    assert probe(httpx.get(video["url"]).content)["frames"] == 50  # the retry gets all of it


@pytest.mark.parametrize(("param", "content_type"), [("", "text/html"), (":octet", "application/octet-stream")])
def test_d3_html_instead_of_video(emulator, http, param, content_type):
    body, _ = completed(http, f"html [fal-fault:html_body{param}]")
    r = httpx.get(http.get(body["response_url"]).json()["video"]["url"])
    assert r.status_code == 200 and r.headers["content-type"].startswith(content_type)
    assert b"Access denied" in r.content and r.content[4:8] != b"ftyp"


def test_429_then_accepted(emulator, http):
    r = http.post(f"/{LTX}", json={"prompt": "busy [fal-fault:rate_limited:2]"})
    assert r.status_code == 429 and "retry-after" not in r.headers
    assert http.post(f"/{LTX}", json={"prompt": "busy [fal-fault:rate_limited:2]"}).status_code == 429
    assert http.post(f"/{LTX}", json={"prompt": "busy [fal-fault:rate_limited:2]"}).status_code == 200
    assert len(emulator.jobs()) == 1


@pytest.mark.parametrize("code", [502, 503, 504])
def test_ingress_errors_look_like_nginx(emulator, http, code):
    emulator.add_fault("ingress_error", count=1, status=code, on="status")
    body = submit(http, LTX, {"prompt": "ingress"})
    r = http.get(body["status_url"])
    assert r.status_code == code and "nginx" in r.text and "x-fal-request-id" not in r.headers
    assert http.get(body["status_url"]).status_code in (200, 202)


def test_slow_responses(emulator, http):
    emulator.add_fault("slow", seconds=0.3, on="status", count=1)
    body = submit(http, LTX, {"prompt": "slow"})
    start = time.monotonic()
    http.get(body["status_url"])
    assert time.monotonic() - start >= 0.3


def test_401_even_with_a_valid_key(emulator, http):
    emulator.add_fault("unauthorized", count=1)
    assert http.post(f"/{LTX}", json={"prompt": "x"}).status_code == 401
    assert http.post(f"/{LTX}", json={"prompt": "x"}).status_code == 200


def test_runner_500_and_request_errors(emulator, http):
    body, status = completed(http, "crash [fal-fault:runner_error]")
    r = http.get(body["response_url"])
    assert r.status_code == 500 and r.json() == {"detail": "Internal Server Error"}
    body, status = completed(http, "gone [fal-fault:request_error:runner_disconnected]")
    assert status["error_type"] == "runner_disconnected"
    r = http.get(body["response_url"])
    assert r.status_code == 503 and r.json()["error_type"] == "runner_disconnected"
    assert r.headers["x-fal-error-type"] == "runner_disconnected" and "x-fal-request-id" in r.headers


def test_generic_http_error_on_nth_request(emulator, http):
    emulator.add_fault("http_error", status=408, on="submit", start=2, count=1)
    codes = [http.post(f"/{LTX}", json={"prompt": f"n{i}"}).status_code for i in range(3)]
    assert codes == [200, 408, 200]


@pytest.mark.parametrize("variant", ["missing_fields", "unknown_status", "wrong_types", "not_json"])
def test_malformed_status_bodies(emulator, http, variant):
    emulator.add_fault("malformed_status", count=1, variant=variant)
    body = submit(http, LTX, {"prompt": "m"})
    r = http.get(body["status_url"])
    if variant == "not_json":
        assert r.headers["content-type"].startswith("text/html")
        return
    data = r.json()
    if variant == "missing_fields":
        assert "logs" not in data and "request_id" not in data
    elif variant == "unknown_status":
        assert data["status"] == "FAILED"
    else:
        assert data["logs"] == "none" and data["metrics"] == []


@pytest.mark.parametrize("variant", ["no_video", "no_url", "not_object", "bad_file_size"])
def test_malformed_result_bodies(emulator, http, variant):
    body, _ = completed(http, f"shape [fal-fault:malformed_result:{variant}]")
    r = http.get(body["response_url"])
    assert r.status_code == 200
    data = r.json()
    video = data.get("video") if isinstance(data, dict) else None
    well_formed = isinstance(video, dict) and isinstance(video.get("url"), str)
    assert not (well_formed and isinstance(video.get("file_size"), int))
    assert http.get(body["response_url"]).json()["video"]["url"]  # once only (marker count 1)


def test_prompt_faults_can_be_switched_off(emulator, http):
    emulator.configure(prompt_faults=False)
    body, status = completed(http, "[fal-fault:F5]")
    assert "error_type" not in status and http.get(body["response_url"]).status_code == 200


def test_fault_matching_by_endpoint_request_id_and_admin_listing(emulator, http):
    fid = emulator.add_fault("http_error", endpoint="fal-ai/veo3", status=418)
    assert http.post(f"/{LTX}", json={"prompt": "x"}).status_code == 200
    assert http.post("/fal-ai/veo3/fast", json={"prompt": "x"}).status_code == 418
    [armed] = emulator.faults_armed()
    assert armed["id"] == fid and armed["fired"] == 1
    emulator.clear_faults()
    body = submit(http, LTX, {"prompt": "y"})
    emulator.add_fault("http_error", request_id=body["request_id"], on="status", status=500)
    assert http.get(body["status_url"]).status_code == 500
    with pytest.raises(ValueError):
        emulator.add_fault("no_such_fault")

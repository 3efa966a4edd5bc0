"""FalHook, sync side, with requests-mock: one test per error class and retry rule."""

from __future__ import annotations

import logging

import pytest
import requests
from fal_fakes import APP, BASE, FAST, KEY, VIDEO, completed, queued, set_connection

from fal_video.errors import FalError, Reason
from fal_video.hook import FalHook, MediaPolicy
from fal_video.records import Job

SUBMIT_URL = f"{BASE}/{APP}"
REQ = f"{BASE}/{APP}/requests/r1"
NGINX = "<html><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></html>"
ACCEPTED = {
    "request_id": "r1", "status": "IN_QUEUE", "queue_position": 0,
    "status_url": f"{REQ}/status", "response_url": REQ, "cancel_url": f"{REQ}/cancel",
}  # fmt: skip


@pytest.fixture
def hook(fal_conn: str) -> FalHook:
    h = FalHook(retry_policy=FAST)
    h._sleep = lambda _s: None
    return h


def job() -> Job:
    return Job.create(APP, {"prompt": "a cat", "duration": "4s"}, ["row-1"], None)


def test_submit_returns_submission_with_fal_urls_and_cost(hook, requests_mock):
    requests_mock.post(SUBMIT_URL, json=ACCEPTED, status_code=202)
    sub = hook.submit(job())
    assert (sub.request_id, sub.status_url, sub.response_url) == ("r1", f"{REQ}/status", REQ)
    assert sub.estimated_cost_usd == pytest.approx(1.6)  # veo3 4 s with audio at $0.40/s
    assert requests_mock.last_request.headers["Authorization"] == f"Key {KEY}"
    assert requests_mock.last_request.json() == {"prompt": "a cat", "duration": "4s"}


def test_submit_derives_missing_urls_from_app_path(hook, requests_mock):
    requests_mock.post(f"{BASE}/fal-ai/kling-video/v2/master/text-to-video", json={"request_id": "k1"})
    sub = hook.submit(Job.create("fal-ai/kling-video/v2/master/text-to-video", {"prompt": "x"}, [], None))
    assert sub.status_url == f"{BASE}/fal-ai/kling-video/requests/k1/status"


@pytest.mark.parametrize("code", [408, 409, 429])
def test_submit_retries_answers_that_did_not_take_effect(hook, requests_mock, code):
    requests_mock.post(SUBMIT_URL, [{"status_code": code, "json": {"detail": "busy"}}, {"json": ACCEPTED}])
    assert hook.submit(job()).request_id == "r1"
    assert requests_mock.call_count == 2


def test_submit_retries_ingress_502(hook, requests_mock):
    requests_mock.post(SUBMIT_URL, [{"status_code": 502, "text": NGINX}, {"json": ACCEPTED}])
    assert hook.submit(job()).request_id == "r1"


def test_submit_runner_504_is_unknown_not_retried(hook, requests_mock):
    requests_mock.post(SUBMIT_URL, status_code=504, json={"detail": "timeout"}, headers={"x-fal-request-id": "r"})
    with pytest.raises(FalError) as err:
        hook.submit(job())
    assert err.value.reason is Reason.SUBMIT_UNKNOWN and requests_mock.call_count == 1


def test_submit_connect_timeout_is_retried_because_nothing_was_sent(hook, requests_mock):
    requests_mock.post(SUBMIT_URL, [{"exc": requests.ConnectTimeout}, {"json": ACCEPTED}])
    assert hook.submit(job()).request_id == "r1"


@pytest.mark.parametrize("exc", [requests.ReadTimeout, requests.ConnectionError("Connection aborted")])
def test_submit_that_may_have_been_accepted_is_never_retried_f4(hook, requests_mock, exc):
    requests_mock.post(SUBMIT_URL, exc=exc)
    with pytest.raises(FalError) as err:
        hook.submit(job())
    assert err.value.reason is Reason.SUBMIT_UNKNOWN
    assert requests_mock.call_count == 1


def test_submit_2xx_without_request_id_is_unknown(hook, requests_mock):
    requests_mock.post(SUBMIT_URL, json={"status": "IN_QUEUE"})
    with pytest.raises(FalError) as err:
        hook.submit(job())
    assert err.value.reason is Reason.SUBMIT_UNKNOWN


@pytest.mark.parametrize(
    ("code", "body", "reason"),
    [
        (401, {"detail": "Invalid key"}, Reason.AUTH),
        (403, {"detail": "User is locked"}, Reason.ACCOUNT_LOCKED),
        (422, {"detail": [{"loc": ["body", "duration"], "msg": "x", "type": "literal_error"}]}, Reason.INPUT_REJECTED),
        (422, {"detail": [{"loc": ["body", "prompt"], "msg": "no", "type": "content_policy_violation"}]},
         Reason.CONTENT_POLICY),
        (500, {"detail": "Internal Server Error"}, Reason.SERVER_ERROR),
        (404, {"detail": "Application not found"}, Reason.NOT_FOUND),
    ],
)  # fmt: skip
def test_submit_errors_are_classified_and_not_retried(hook, requests_mock, code, body, reason):
    requests_mock.post(SUBMIT_URL, status_code=code, json=body)
    with pytest.raises(FalError) as err:
        hook.submit(job())
    assert err.value.reason is reason and requests_mock.call_count == 1


def test_submit_422_flattens_fields(hook, requests_mock):
    detail = [{"loc": ["body", "duration"], "msg": "Input should be '4s'", "type": "literal_error"}]
    requests_mock.post(SUBMIT_URL, status_code=422, json={"detail": detail})
    with pytest.raises(FalError) as err:
        hook.submit(job())
    assert err.value.fields == [{"field": "duration", "msg": "Input should be '4s'", "type": "literal_error"}]
    assert "duration: Input should be '4s'" in err.value.message


def test_submit_gives_up_after_attempts_as_rate_limited(hook, requests_mock):
    requests_mock.post(SUBMIT_URL, status_code=429, json={"detail": "slow down"})
    with pytest.raises(FalError) as err:
        hook.submit(job())
    assert err.value.reason is Reason.RATE_LIMITED and requests_mock.call_count == FAST.attempts


def test_status_parses_and_sends_logs_flag(hook, requests_mock):
    requests_mock.get(f"{REQ}/status", status_code=202, json=queued(3))
    assert hook.status(f"{REQ}/status", logs=True)["queue_position"] == 3
    assert requests_mock.last_request.qs == {"logs": ["1"]}


@pytest.mark.parametrize(
    "body",
    ['{"status": "FAILED"}', '{"logs": []}', '{"status": "IN_QUEUE", "queue_position": "3"}',
     '{"status": "IN_PROGRESS", "logs": "oops"}', "<html>not json</html>", "[1, 2]"],
)  # fmt: skip
def test_status_bad_bodies_are_bad_response(hook, requests_mock, body):
    requests_mock.get(f"{REQ}/status", status_code=202, text=body)
    with pytest.raises(FalError) as err:
        hook.status(f"{REQ}/status")
    assert err.value.reason is Reason.BAD_RESPONSE


def test_status_get_retries_any_5xx_and_timeouts(hook, requests_mock):
    requests_mock.get(
        f"{REQ}/status",
        [{"status_code": 500, "json": {"detail": "x"}}, {"exc": requests.ReadTimeout}, {"json": completed()}],
    )
    assert hook.status(f"{REQ}/status")["status"] == "COMPLETED"
    assert requests_mock.call_count == 3


def test_status_404_is_not_found(hook, requests_mock):
    requests_mock.get(f"{REQ}/status", status_code=404, json={"detail": "Request not found"})
    with pytest.raises(FalError) as err:
        hook.status(f"{REQ}/status")
    assert err.value.reason is Reason.NOT_FOUND


def test_key_is_never_sent_to_another_host(hook, requests_mock):
    with pytest.raises(FalError) as err:
        hook.status("https://evil.example/fal-ai/veo3/requests/r1/status")
    assert err.value.reason is Reason.BAD_RESPONSE and "evil.example" in err.value.message
    assert requests_mock.call_count == 0
    with pytest.raises(FalError):
        hook.status("http://queue.test/fal-ai/veo3/requests/r1/status")  # same host, other scheme


def test_result_retries_504_then_succeeds_f6(hook, requests_mock):
    bad = {"status_code": 504, "json": {"detail": "t"}, "headers": {"x-fal-request-id": "r1"}}
    requests_mock.get(REQ, [bad, bad, {"json": VIDEO}])
    assert hook.result(REQ) == VIDEO and requests_mock.call_count == 3


def test_result_500_is_final(hook, requests_mock):
    requests_mock.get(REQ, status_code=500, json={"detail": "Internal Server Error"})
    with pytest.raises(FalError) as err:
        hook.result(REQ)
    assert err.value.reason is Reason.SERVER_ERROR and requests_mock.call_count == 1


def test_result_of_a_failed_job_is_fetched_once(hook, requests_mock):
    requests_mock.get(REQ, status_code=503, json={"detail": "gone", "error_type": "runner_disconnected"})
    with pytest.raises(FalError):
        hook.result(REQ, retry_5xx=False)
    assert requests_mock.call_count == 1


def test_result_499_is_cancelled(hook, requests_mock):
    requests_mock.get(REQ, status_code=499, json={"detail": "cancelled", "error_type": "client_cancelled"})
    with pytest.raises(FalError) as err:
        hook.result(REQ)
    assert err.value.reason is Reason.CANCELLED


def test_cancel_answers(hook, requests_mock):
    requests_mock.put(f"{REQ}/cancel", status_code=202, json={"status": "CANCELLATION_REQUESTED"})
    assert hook.cancel(f"{REQ}/cancel") == "CANCELLATION_REQUESTED"
    requests_mock.put(f"{REQ}/cancel", status_code=400, json={"status": "ALREADY_COMPLETED"})
    assert hook.cancel(f"{REQ}/cancel") == "ALREADY_COMPLETED"


def test_key_never_in_repr_errors_or_logs(hook, requests_mock, caplog):
    caplog.set_level(logging.DEBUG)
    requests_mock.post(SUBMIT_URL, [{"status_code": 429, "json": {}}, {"status_code": 401, "json": {"detail": "no"}}])
    with pytest.raises(FalError) as err:
        hook.submit(job())
    texts = [repr(hook), repr(hook.settings()), str(err.value), repr(err.value), str(err.value.as_dict()), caplog.text]
    assert all(KEY not in t and "unit-key-secret" not in t for t in texts)


def test_connection_rules(monkeypatch):
    set_connection(monkeypatch, "http://127.0.0.1:9", KEY)
    with pytest.raises(ValueError, match="allow_http"):
        FalHook().settings()
    set_connection(monkeypatch, "http://127.0.0.1:9", "", allow_http=True)
    with pytest.raises(ValueError, match="no password"):
        FalHook().settings()
    set_connection(monkeypatch, "http://127.0.0.1:9", KEY, allow_http=True, media_hosts="a.test, .fal.media")
    assert FalHook().media_policy() == MediaPolicy(True, ("a.test", ".fal.media"))
    set_connection(monkeypatch, "", KEY, read_timeout=7)
    hook = FalHook()
    assert hook.settings().base_url == "https://queue.fal.run" and hook.retry_policy.read_timeout == 7

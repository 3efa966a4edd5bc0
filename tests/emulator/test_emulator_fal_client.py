"""The official fal-client (PyPI) against the emulator, pointed at plain HTTP as reference section 8.3 says."""

from __future__ import annotations

import fal_client
import fal_client.client
import httpx
import pytest
from fal_client import Completed, InProgress, Queued


@pytest.fixture
def fal(emulator, monkeypatch):
    monkeypatch.setattr(fal_client.client, "QUEUE_URL_FORMAT", f"{emulator.base_url}/")
    return fal_client.SyncClient(key=emulator.keys[0])


def test_submit_status_events_result_with_fal_client(emulator, fal):
    emulator.configure(queue_seconds=100, generation_seconds=200)
    handle = fal.submit("fal-ai/kling-video/v2/master/text-to-video", {"prompt": "an owl", "duration": "5"})
    assert handle.status_url.startswith(f"{emulator.base_url}/fal-ai/kling-video/requests/")
    assert isinstance(handle.status(with_logs=True), (Queued, InProgress, Completed))
    events = list(handle.iter_events(with_logs=True, interval=0.02))
    assert isinstance(events[-1], Completed) and events[-1].metrics["inference_time"] > 0
    assert any(isinstance(e, InProgress) for e in events)
    assert any(e.logs for e in events if isinstance(e, (InProgress, Completed)))
    result = handle.get()
    assert httpx.get(result["video"]["url"]).content[4:8] == b"ftyp"
    assert fal.result("fal-ai/kling-video/v2/master/text-to-video", handle.request_id) == result
    assert emulator.requests("status")[0]["query"]["logs"] == "true"
    assert emulator.counts()["submit"] == 1


def test_cancel_with_fal_client(emulator, fal):
    emulator.configure(queue_seconds=10_000)
    handle = fal.submit("fal-ai/veo3/fast", {"prompt": "never mind"})
    assert isinstance(handle.status(), Queued)
    handle.cancel()
    with pytest.raises(fal_client.client.FalClientHTTPError) as info:
        handle.get()
    assert info.value.status_code == 499
    with pytest.raises(fal_client.client.FalClientHTTPError) as info:
        handle.cancel()
    assert info.value.status_code == 400


def test_failed_job_raises_http_error(emulator, fal):
    with pytest.raises(fal_client.client.FalClientHTTPError) as info:
        fal.subscribe("fal-ai/ltx-video", {"prompt": "nope [fal-fault:content_policy]"}, client_timeout=30)
    assert info.value.status_code == 422
    assert info.value.response.json()["detail"][0]["type"] == "content_policy_violation"


def test_fal_client_retries_ingress_errors_and_429(emulator, fal):
    emulator.add_fault("ingress_error", count=1, status=503)
    emulator.add_fault("rate_limited", count=1, start=2)
    handle = fal.submit("fal-ai/ltx-video", {"prompt": "retry me"})
    assert handle.get()["video"]["url"]
    assert emulator.counts()["submit"] == 3  # two refusals, then accepted: one job
    assert len(emulator.jobs()) == 1

"""FalHook, async side, with httpx.MockTransport."""

from __future__ import annotations

import httpx
import pytest
from fal_fakes import APP, BASE, FAST, KEY, VIDEO, completed

from fal_video.errors import FalError, Reason
from fal_video.hook import FalHook

REQ = f"{BASE}/{APP}/requests/r1"


def make(responses: list) -> tuple[FalHook, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = responses[min(len(seen) - 1, len(responses) - 1)]
        if isinstance(item, Exception):
            raise item
        return item

    return FalHook(retry_policy=FAST, transport=httpx.MockTransport(handler)), seen


async def test_astatus_sends_key_and_retries_read_timeout(fal_conn):
    hook, seen = make([httpx.ReadTimeout("stalled"), httpx.Response(200, json=completed())])
    async with hook:
        assert (await hook.astatus(f"{REQ}/status", logs=True))["status"] == "COMPLETED"
    assert len(seen) == 2 and seen[0].headers["authorization"] == f"Key {KEY}"
    assert seen[0].url.params["logs"] == "1"
    assert hook._client is None  # closed by the context manager


async def test_astatus_bad_body_is_bad_response(fal_conn):
    hook, _ = make([httpx.Response(202, json={"status": "CANCELLED"})])
    async with hook:
        with pytest.raises(FalError) as err:
            await hook.astatus(f"{REQ}/status")
    assert err.value.reason is Reason.BAD_RESPONSE


async def test_aresult_retries_gateway_errors_f6(fal_conn):
    hook, seen = make([httpx.Response(504, json={"detail": "t"}), httpx.Response(200, json=VIDEO)])
    async with hook:
        assert await hook.aresult(REQ) == VIDEO
    assert len(seen) == 2


async def test_aresult_classifies_content_policy(fal_conn):
    detail = [
        {"loc": ["body", "prompt"], "msg": "flagged", "type": "content_policy_violation"},
        {"loc": ["body", "image_url"], "msg": "flagged", "type": "content_policy_violation"},
    ]
    hook, seen = make([httpx.Response(422, json={"detail": detail})])
    async with hook:
        with pytest.raises(FalError) as err:
            await hook.aresult(REQ)
    assert err.value.reason is Reason.CONTENT_POLICY and len(seen) == 1
    assert "prompt" in err.value.message and "image_url" in err.value.message


async def test_acancel_and_connect_error_retry(fal_conn):
    hook, seen = make([httpx.ConnectError("refused"), httpx.Response(202, json={"status": "CANCELLATION_REQUESTED"})])
    async with hook:
        assert await hook.acancel(f"{REQ}/cancel") == "CANCELLATION_REQUESTED"
    assert len(seen) == 2


async def test_async_refuses_other_hosts(fal_conn):
    hook, seen = make([httpx.Response(200, json=completed())])
    async with hook:
        with pytest.raises(FalError, match="refusing"):
            await hook.astatus("https://elsewhere.test/x/requests/r1/status")
    assert seen == []

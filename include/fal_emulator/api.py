"""The queue API: submit, status, status stream, result and cancel, with faults applied.

One catch-all handler routes like fal (``protocol.classify``), records the request, checks the
key, lets armed faults answer first, and otherwise serves the state machine's answer.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from .emulator import Emulator
from .faults import Context, Hit
from .protocol import (
    Route,
    classify,
    json_decode_detail,
    nginx_page,
    not_object_detail,
    request_urls,
    status_body,
    want_logs,
)
from .queue import Job
from .transport import DroppedResponse, StalledResponse

STREAM_TICK = 0.02


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    content = json.dumps(body, separators=(",", ":")).encode()
    return Response(content, status, headers, media_type="application/json")


def credential(request: Request, keys: tuple[str, ...]) -> str | None:
    """The key of ``Authorization: Key <k>`` / ``Bearer <k>`` if accepted (any non-empty one without a key list)."""
    scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() not in ("key", "bearer") or not token:
        return None
    return token if not keys or token in keys else None


async def queue_api(request: Request) -> Response:
    emu: Emulator = request.app.state.emulator
    route = classify(request.method, request.url.path)
    emu.queue.advance()
    job = emu.queue.get(route.request_id) if route.request_id else None
    if job is not None and job.app != route.app:
        job = None  # a request id only exists under the app it was submitted to
    raw, body = b"", None
    if route.kind == "submit":
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
    record = emu.recorder.add(
        kind=route.kind, method=request.method, path=request.url.path, query=dict(request.query_params),
        headers=dict(request.headers), body=body, request_id=route.request_id, endpoint=route.endpoint,
    )  # fmt: skip
    response = await _answer(emu, request, route, job, raw, body)
    record["status_code"] = response.status_code
    if route.kind == "submit":
        record["request_id"] = getattr(request.state, "request_id", None)  # also when the answer was dropped
    return response


async def _answer(emu: Emulator, request: Request, route: Route, job: Job | None, raw: bytes, body: Any) -> Response:
    if route.kind == "not_found":
        return json_response({"detail": f"Path {request.url.path} not found"}, 404)
    if route.kind == "method_not_allowed":
        return json_response({"detail": "Method Not Allowed"}, 405)
    key = credential(request, emu.settings.keys)
    if key is None and emu.settings.require_auth:
        return json_response({"detail": "Invalid or missing credentials: send 'Authorization: Key <FAL_KEY>'"}, 401)
    key = key or "anonymous"
    prompt = job.prompt if job else (body.get("prompt") if isinstance(body, dict) else None)
    ctx = Context(route.kind, route.app, job.endpoint if job else route.endpoint, route.request_id,
                  prompt if isinstance(prompt, str) else None, key, bool(job and job.completed))  # fmt: skip
    hits = emu.faults.take(ctx, "request")
    if route.kind == "submit" and emu.settings.prompt_faults and isinstance(prompt, str):
        hits += emu.markers.take(prompt)
    if job is not None:
        hits += [hit for armed in job.armed if (hit := armed.take(route.kind, job.completed))]
    by_kind = {hit.kind: hit for hit in hits}
    if "slow" in by_kind:
        await asyncio.sleep(float(by_kind["slow"].params["seconds"]))
    early = _fault_answer(route, by_kind)
    if early is not None:
        return early
    if route.kind == "submit":
        return _submit(emu, request, route, key, raw, body, by_kind)
    if job is None:
        if route.kind == "cancel":
            return json_response({"status": "NOT_FOUND"}, 404)
        return json_response({"detail": "Request not found"}, emu.settings.unknown_request_status)
    if route.kind == "status":
        return _status(emu, job, request, by_kind.get("malformed_status"))
    if route.kind == "stream":
        return _stream(emu, job, want_logs(request.query_params.get("logs")))
    if route.kind == "result":
        return _result(emu, job, by_kind)
    code, answer = emu.queue.cancel(job, time.time())
    return json_response(answer, code, {"x-fal-request-id": job.request_id})


def _fault_answer(route: Route, hits: dict[str, Hit]) -> Response | None:
    """Faults that replace the answer entirely (the job, if any, is untouched)."""
    if "unauthorized" in hits:
        return json_response({"detail": "Invalid or missing credentials"}, 401)
    if "account_locked" in hits:
        return json_response({"detail": "User is locked"}, 403)
    if "rate_limited" in hits:
        return json_response({"detail": "Rate limit exceeded: too many requests"}, 429)
    if "ingress_error" in hits:
        code = int(hits["ingress_error"].params["status"])
        return Response(nginx_page(code), code, media_type="text/html")  # no x-fal-request-id: ingress
    if "http_error" in hits:
        p = hits["http_error"].params
        return json_response({"detail": p["detail"]}, int(p["status"]))
    if "stall" in hits:
        return StalledResponse(202, float(hits["stall"].params["seconds"]))
    if "drop_connection" in hits and route.kind != "submit":
        return DroppedResponse()
    if "result_504" in hits:
        if hits["result_504"].params.get("style") == "ingress":
            return Response(nginx_page(504), 504, media_type="text/html")
        headers = {"x-fal-request-id": route.request_id or "", "x-fal-error-type": "request_timeout"}
        return json_response({"detail": "Gateway Timeout", "error_type": "request_timeout"}, 504, headers)
    return None


def _submit(
    emu: Emulator, request: Request, route: Route, key: str, raw: bytes, body: Any, hits: dict[str, Hit]
) -> Response:
    if not raw:
        return json_response({"detail": [{"loc": ["body"], "msg": "Field required", "type": "missing"}]}, 422)
    if isinstance(body, str):  # not JSON
        try:
            json.loads(raw)
        except ValueError as exc:
            position = getattr(exc, "pos", 0)
            return json_response({"detail": json_decode_detail(str(exc), position)}, 422)
    if not isinstance(body, dict):
        return json_response({"detail": not_object_detail(body)}, 422)
    assert route.endpoint and route.app
    spec = emu.spec_for(route.endpoint)
    arguments, issues = spec.validate(body)
    details = [issue.as_fal_detail() for issue in issues]
    if details and emu.settings.validation == "submit":
        return json_response({"detail": details}, 422)
    base = emu.settings.public_base_url or str(request.base_url)
    job = emu.submit(endpoint=route.endpoint, app=route.app, key=key, arguments=arguments, issues=details,
                     base_url=base, headers=dict(request.headers))  # fmt: skip
    request.state.request_id = job.request_id
    if "drop_connection" in hits:
        return DroppedResponse()  # F4: the job exists, the answer is lost
    answer = status_body("IN_QUEUE", job.request_id, request_urls(base, job.app, job.request_id), logs=None,
                         queue_position=emu.queue.position(job))  # fmt: skip
    if request.query_params.get("fal_webhook"):
        answer["gateway_request_id"] = job.request_id
    return json_response(answer, emu.settings.submit_status_code)


def current_status(emu: Emulator, job: Job, logs: list[dict[str, Any]] | None) -> dict[str, Any]:
    urls = request_urls(job.base_url, job.app, job.request_id)
    inference = None
    if job.completed and job.started_at is not None and job.completed_at is not None:
        inference = job.completed_at - job.started_at
    return status_body(
        job.state, job.request_id, urls, logs=logs,
        queue_position=emu.queue.position(job) if job.state == "IN_QUEUE" else None,
        inference_time=inference, error=job.error.error if job.error else None,
        error_type=job.error.error_type if job.error else None,
    )  # fmt: skip


def _status(emu: Emulator, job: Job, request: Request, malformed: Hit | None) -> Response:
    logs = None
    if want_logs(request.query_params.get("logs")):
        logs = job.log_entries(time.time())[-emu.settings.log_window :]  # a moving window, like fal
    body = current_status(emu, job, logs)
    code = 200 if job.completed else 202
    headers = {"x-fal-request-id": job.request_id}
    if malformed is None:
        return json_response(body, code, headers)
    variant = malformed.params["variant"]
    if variant == "not_json":
        return Response("<html><body>upstream hiccup</body></html>", code, headers, media_type="text/html")
    if variant == "unknown_status":
        body["status"] = malformed.params.get("value", "FAILED")
    elif variant == "wrong_types":
        body.update(logs="none", metrics=[], queue_position="0" if "queue_position" in body else None)
    else:  # missing_fields
        for name in ("request_id", "logs", "metrics", "status_url", "response_url", "cancel_url"):
            body.pop(name, None)
    return json_response(body, code, headers)


def _stream(emu: Emulator, job: Job, logs: bool) -> Response:
    async def events() -> AsyncIterator[str]:
        sent, last, last_write = 0, None, time.monotonic()
        while True:
            emu.queue.advance()
            entries = job.log_entries(time.time())
            delta = entries[sent:]
            body = current_status(emu, job, delta if logs else None)
            signature = (job.state, body.get("queue_position"))
            if signature != last or (logs and delta):
                yield f"data: {json.dumps(body, separators=(',', ':'))}\n\n"
                sent, last, last_write = len(entries), signature, time.monotonic()
                if job.completed:
                    return  # the stream closes after the COMPLETED event
            elif time.monotonic() - last_write >= emu.settings.ping_seconds:
                yield ": ping\n\n"
                last_write = time.monotonic()
            await asyncio.sleep(STREAM_TICK)

    headers = {"cache-control": "no-cache", "x-fal-request-id": job.request_id}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


def _result(emu: Emulator, job: Job, hits: dict[str, Hit]) -> Response:
    headers = {"x-fal-request-id": job.request_id}
    if not job.completed:  # [UNVERIFIED] both clients poll status first; setting picks the answer
        if emu.settings.result_before_completion == "400":
            return json_response({"detail": "Request is still in progress"}, 400, headers)
        return json_response(current_status(emu, job, None), 202, headers)
    if job.error is not None:
        return json_response(job.error.body, job.error.status_code, {**headers, **job.error.headers})
    body = emu.output(job)
    if "malformed_result" in hits:
        variant = hits["malformed_result"].params["variant"]
        if variant == "not_json":
            return Response("OK", 200, headers, media_type="text/plain")
        if variant == "url":  # an untrusted File: another URL ("{url}" = the real one) and/or file_name
            params, video = hits["malformed_result"].params, dict(body["video"])
            if params.get("url"):
                video["url"] = str(params["url"]).replace("{url}", video["url"])
            if params.get("file_name"):
                video["file_name"] = str(params["file_name"])
            return json_response({**body, "video": video}, 200, headers)
        body = {
            "no_video": {"images": [body["video"]]},
            "no_url": {"video": {"content_type": "video/mp4", "file_name": "output.mp4"}},
            "not_object": [body["video"]["url"]],
            "bad_file_size": {"video": {**body["video"], "file_size": "large"}},
        }.get(variant, {"images": [body["video"]]})
    return json_response(body, 200, headers)

"""Assemble the ASGI app: admin API, CDN media route, then the catch-all queue API."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from starlette.responses import PlainTextResponse, Response

from .admin import router as admin_router
from .api import queue_api
from .emulator import Emulator
from .faults import Context
from .media import MediaResponse
from .transport import ASGIApp, expose_transport


def create_app(emulator: Emulator) -> ASGIApp:
    """The emulator as an ASGI app (wrapped so faults can reach the socket)."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        ticker = asyncio.create_task(emulator.run())
        yield
        ticker.cancel()
        emulator.close()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.emulator = emulator
    app.include_router(admin_router)
    app.add_api_route("/files/v3/{token}/{name}", media, methods=["GET", "HEAD"])
    app.add_api_route("/{path:path}", queue_api, methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    return expose_transport(app)


async def media(request: Request, token: str, name: str) -> Response:
    """CDN files: public, expiring, with media faults (F11 expired, D1 truncated, D3 HTML)."""
    emu: Emulator = request.app.state.emulator
    record = emu.recorder.add(kind="media", method=request.method, path=request.url.path,
                              query=dict(request.query_params), headers=dict(request.headers))  # fmt: skip
    found, job = emu.media_for(token)
    if found is None or name != found.name:
        record["status_code"] = 404
        return PlainTextResponse("Not Found", 404)
    record["request_id"] = found.request_id
    ctx = Context("media", job.app if job else None, job.endpoint if job else None, found.request_id,
                  job.prompt if job else None, job.key if job else None, True)  # fmt: skip
    hits = emu.faults.take(ctx, "request")
    if job is not None:
        hits += [hit for armed in job.armed if (hit := armed.take("media", True))]
    kinds = {hit.kind: hit for hit in hits}
    if "slow" in kinds:
        await asyncio.sleep(float(kinds["slow"].params["seconds"]))
    expired = found.expires_at is not None and time.time() >= found.expires_at
    if expired or "media_expired" in kinds:
        code = int(kinds["media_expired"].params["status"]) if "media_expired" in kinds else None
        code = code or emu.settings.media_expired_status
        record["status_code"] = code
        return PlainTextResponse("Access Denied" if code == 403 else "Not Found", code)
    if "http_error" in kinds:  # armed with on="media": the CDN answers an error (e.g. 503 for a while)
        params = kinds["http_error"].params
        record["status_code"] = int(params["status"])
        return PlainTextResponse(str(params["detail"]), int(params["status"]))
    record["status_code"] = 206 if request.headers.get("range") else 200
    delay = emu.settings.media_chunk_delay_seconds
    return MediaResponse(found, request.headers.get("range"), hits, request.method, chunk_delay=delay)

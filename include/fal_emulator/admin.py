"""The admin API under ``/_emulator``: inspect and steer a running emulator (no auth, loopback only).

GET  /_emulator/health                    readiness probe
GET  /_emulator/requests[?kind=submit]    recorded requests (Authorization masked)
GET  /_emulator/counts                    {"kinds": {...}, "submits_by_endpoint": {...}, "submits_by_prompt": {...}}
GET  /_emulator/jobs                      every job with state, position, times, error_type, media_url
GET  /_emulator/stats                     max_running / max_in_flight (overall and per key) since reset
POST /_emulator/reset                     forget jobs, records, faults; restore start-up settings
GET|POST /_emulator/settings              read / change settings (JSON object of name: value)
GET|POST|DELETE /_emulator/faults         list / add ({"kind": ..., matchers, params}) / clear
DELETE /_emulator/faults/{id}             remove one fault
GET  /_emulator/fault-kinds               the fault kinds and their parameters
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from .emulator import Emulator
from .faults import KINDS

router = APIRouter(prefix="/_emulator")


def _emu(request: Request) -> Emulator:
    return request.app.state.emulator


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, default=str), status, media_type="application/json")


@router.get("/health")
async def health() -> Response:
    return _json({"ok": True})


@router.get("/requests")
async def requests(request: Request, kind: str | None = None) -> Response:
    return _json(_emu(request).recorder.list(kind))


@router.get("/counts")
async def counts(request: Request) -> Response:
    return _json(_emu(request).recorder.counts())


@router.get("/jobs")
async def jobs(request: Request) -> Response:
    return _json(_emu(request).jobs())


@router.get("/stats")
async def stats(request: Request) -> Response:
    emu = _emu(request)
    emu.queue.advance()
    return _json(emu.queue.stats())


@router.post("/reset")
async def reset(request: Request) -> Response:
    _emu(request).reset()
    return _json({"ok": True})


@router.get("/settings")
async def get_settings(request: Request) -> Response:
    return _json(_emu(request).settings.as_dict())


@router.post("/settings")
async def set_settings(request: Request) -> Response:
    try:
        return _json(_emu(request).configure(await request.json()))
    except (KeyError, ValueError, TypeError) as exc:
        return _json({"detail": str(exc)}, 400)


@router.get("/faults")
async def list_faults(request: Request) -> Response:
    return _json(_emu(request).faults.list())


@router.post("/faults")
async def add_fault(request: Request) -> Response:
    spec = dict(await request.json())
    try:
        fault = _emu(request).faults.add(str(spec.pop("kind")), spec)
    except (KeyError, ValueError, TypeError) as exc:
        return _json({"detail": str(exc)}, 400)
    return _json(fault.as_dict())


@router.delete("/faults")
async def clear_faults(request: Request) -> Response:
    _emu(request).faults.clear()
    return _json({"ok": True})


@router.delete("/faults/{fault_id}")
async def remove_fault(request: Request, fault_id: str) -> Response:
    found = _emu(request).faults.remove(fault_id)
    return _json({"ok": found}, 200 if found else 404)


@router.get("/fault-kinds")
async def fault_kinds() -> Response:
    return _json({name: asdict(kind) for name, kind in KINDS.items()})

"""An in-memory fal queue for unit tests, served through ``httpx.MockTransport``.

Each job follows a script: a list of status bodies (one per poll, the last one repeats) and a
result answer ``(http_code, body, headers)``. Calls are recorded so tests can count them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

from fal_video.hook import FalHook
from fal_video.http import RetryPolicy
from fal_video.triggers import FalJobsTrigger

BASE = "https://queue.test"
KEY = "unit-key-id:unit-key-secret-7f3a9c"
APP = "fal-ai/veo3"
FAST = RetryPolicy(attempts=4, base_delay=0.0, max_delay=0.0, connect_timeout=1.0, read_timeout=2.0)
VIDEO = {"video": {"url": "https://v3.fal.media/files/x.mp4", "content_type": "video/mp4", "file_size": 10}}


def set_connection(monkeypatch: Any, base: str, key: str, **extra: object) -> None:
    """``fal_default`` in the environment, in the JSON form production uses."""
    conn = {"conn_type": "fal", "host": base, "password": key, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_FAL_DEFAULT", json.dumps(conn))


def queued(position: int = 0) -> dict[str, Any]:
    return {"status": "IN_QUEUE", "queue_position": position, "logs": None, "metrics": {}}


def running(*messages: str) -> dict[str, Any]:
    logs = [{"timestamp": f"t{i}", "message": m} for i, m in enumerate(messages)]
    return {"status": "IN_PROGRESS", "logs": logs, "metrics": {}}


def completed(error: str | None = None, error_type: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"status": "COMPLETED", "logs": [], "metrics": {"inference_time": 1.5}}
    if error or error_type:
        body.update(error=error, error_type=error_type)
    return body


def submission(request_id: str, job_key: str | None = None, base: str = BASE) -> dict[str, Any]:
    url = f"{base}/{APP}/requests/{request_id}"
    return {
        "job_key": job_key or f"job-{request_id}",
        "endpoint": APP,
        "request_id": request_id,
        "status_url": f"{url}/status",
        "response_url": url,
        "cancel_url": f"{url}/cancel",
        "submitted_at": "2026-12-03T00:00:00+00:00",
    }


@dataclass
class Script:
    statuses: list[Any]
    results: list[tuple[int, Any, dict[str, str]]] = field(default_factory=lambda: [(200, VIDEO, {})])
    polls: int = 0
    fetches: int = 0


class FakeFal:
    def __init__(self) -> None:
        self.jobs: dict[str, Script] = {}
        self.calls: list[tuple[str, str]] = []
        self.auth_headers: set[str] = set()
        self.status_override: tuple[int, Any] | None = None

    def add(self, request_id: str, statuses: list[Any], *results: tuple[int, Any, dict[str, str]]) -> dict[str, Any]:
        self.jobs[request_id] = Script(list(statuses), list(results) or [(200, VIDEO, {})])
        return submission(request_id)

    def count(self, kind: str) -> int:
        return sum(1 for k, _ in self.calls if k == kind)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.auth_headers.add(request.headers.get("authorization", ""))
        parts = request.url.path.strip("/").split("/")
        request_id = parts[parts.index("requests") + 1]
        script = self.jobs[request_id]
        if request.method == "PUT":
            self.calls.append(("cancel", request_id))
            return httpx.Response(202, json={"status": "CANCELLATION_REQUESTED"})
        if parts[-1] == "status":
            self.calls.append(("status", request_id))
            if self.status_override:
                return httpx.Response(self.status_override[0], json=self.status_override[1])
            body = script.statuses[min(script.polls, len(script.statuses) - 1)]
            script.polls += 1
            code = 200 if isinstance(body, dict) and body.get("status") == "COMPLETED" else 202
            return httpx.Response(code, content=json.dumps(body).encode())
        self.calls.append(("result", request_id))
        code, body, headers = script.results[min(script.fetches, len(script.results) - 1)]
        script.fetches += 1
        content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        return httpx.Response(code, content=content, headers=headers)

    def trigger(self, subs: list[dict[str, Any]], deadline_in: float = 5.0, **kwargs: Any) -> FalJobsTrigger:
        """A trigger whose hook talks to this fake (the only change from production)."""
        import time

        fake = self
        params = {"poll_interval": 0.01, "request_timeout": 2.0, "progress_interval": 1.0, **kwargs}

        class _Trigger(FalJobsTrigger):
            def _make_hook(self) -> FalHook:
                return FalHook(self.fal_conn_id, FAST, transport=httpx.MockTransport(fake.handler))

        return _Trigger(jobs=subs, deadline=time.time() + deadline_in, **params)


async def collect(trigger: FalJobsTrigger) -> list[dict[str, Any]]:
    return [event.payload async for event in trigger.run()]

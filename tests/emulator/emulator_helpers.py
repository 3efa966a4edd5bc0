"""Small HTTP helpers shared by the emulator tests (plain httpx, like a real client)."""

from __future__ import annotations

import io
import time
from typing import Any

import av
import httpx


def auth(emulator: Any) -> dict[str, str]:
    return {"Authorization": f"Key {emulator.keys[0]}"}


def client(emulator: Any, **kwargs: Any) -> httpx.Client:
    """An httpx client on the emulator with the session's valid key."""
    timeout = kwargs.pop("timeout", 10)
    return httpx.Client(base_url=emulator.base_url, headers=auth(emulator), timeout=timeout, **kwargs)


def submit(http: httpx.Client, endpoint: str, arguments: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    response = http.post(f"/{endpoint}", json=arguments, **kwargs)
    assert response.status_code in (200, 202), response.text
    return response.json()


def wait_completed(http: httpx.Client, status_url: str, timeout: float = 10.0, **params: Any) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = http.get(status_url, params=params)
        body = response.json()
        if body["status"] == "COMPLETED":
            assert response.status_code == 200
            return body
        assert response.status_code == 202
        time.sleep(0.02)
    raise TimeoutError(status_url)


def probe(data: bytes) -> dict[str, Any]:
    """Duration, frame size and streams of an MP4, decoded for real with PyAV."""
    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        return {
            "duration": container.duration / 1_000_000,
            "width": video.codec_context.width,
            "height": video.codec_context.height,
            "codec": video.codec_context.name,
            "audio": [s.codec_context.name for s in container.streams.audio],
            "frames": frames,
        }

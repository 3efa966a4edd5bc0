"""Real MP4s made with PyAV, and a loopback HTTP server that serves them, or misbehaves on purpose."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from archive_helpers import MediaServer


def make_mp4(
    path: Path, *, audio: bool, seconds: float = 1.0, fps: int = 24, size: tuple[int, int] = (64, 36)
) -> bytes:
    """A tiny real H.264 (+ AAC) MP4: moving colours so every frame differs."""
    width, height = size
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = container.add_stream("aac", rate=44100) if audio else None
        for i in range(int(seconds * fps)):
            pixels = np.zeros((height, width, 3), np.uint8)
            pixels[:, :, 0] = (i * 10) % 255
            pixels[:, : (i * 2) % width, 1] = 200
            for packet in video.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            t = np.arange(int(44100 * seconds)) / 44100
            samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 44100
            for packet in [*sound.encode(frame), *sound.encode()]:
                container.mux(packet)
    return path.read_bytes()


@pytest.fixture(scope="session")
def mp4s(tmp_path_factory) -> dict[str, bytes]:
    """{"av": video with an AAC track, "silent": video only}."""
    folder = tmp_path_factory.mktemp("mp4s")
    return {"av": make_mp4(folder / "av.mp4", audio=True), "silent": make_mp4(folder / "silent.mp4", audio=False)}


@pytest.fixture
def media_server() -> Iterator[MediaServer]:
    server = MediaServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def other_server() -> Iterator[MediaServer]:
    """A second host (reached as ``localhost``) to redirect to."""
    server = MediaServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()

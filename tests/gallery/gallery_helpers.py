"""Builders shared by the gallery tests: real MP4s, manifest rows, the gallery as Airflow mounts it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from fastapi import FastAPI

from fal_video.gallery import URL_PREFIX, create_app
from fal_video.manifest import ManifestRow, Status

MOCHI = "fal-ai/mochi-v1"
VEO3 = "fal-ai/veo3"
DEMO_RUN_ID = "manual__2026-12-01T10:00:00+00:00"
DEMO = "manual__2026-12-01T10_00_00_00_00"
BIG = "manual__2026-12-02T09_00_00_00_00"
BIG_ROWS = 130
SECRET = "SECRET-must-never-be-served"
REJECT_REASON = "fal rejected the input (422): duration must be one of 5, 10"
FAIL_REASON = "fal answered 500: runner crashed; a rerun resubmits the job"


def make_mp4(path: Path, *, seconds: float = 2.0, fps: int = 24, size: tuple[int, int] = (160, 90)) -> None:
    """A small real H.264 MP4 with moving colours, and a JPEG poster of its middle frame beside it."""
    width, height = size
    frames = int(seconds * fps)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            pixels = np.zeros((height, width, 3), np.uint8)
            pixels[:, :, 0] = (i * 10) % 255
            pixels[:, : (i * 3) % width, 1] = 200
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            if i == frames // 2:
                frame.to_image().save(path.with_suffix(".jpg"), quality=85)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def video_row(row_id: str, key: str, prompt: str, endpoint: str = MOCHI) -> ManifestRow:
    return ManifestRow(
        row_id=row_id,
        source="include/prompts/demo.csv",
        line=int(row_id.lstrip("r") or 0) + 1,
        prompt=prompt,
        endpoint=endpoint,
        arguments={"prompt": prompt, "duration": 5, "aspect_ratio": "16:9"},
        status=Status.SUCCEEDED,
        reason="generated and archived",
        job_key=key,
        request_id=f"req-{key}",
        video_path=f"videos/{key}.mp4",
        poster_path=f"videos/{key}.jpg",
        duration_s=2.0,
        width=160,
        height=90,
        estimated_cost_usd=0.4,
    )


def problem_row(row_id: str, status: Status, reason: str, code: str, prompt: str, endpoint: str) -> ManifestRow:
    return ManifestRow(
        row_id=row_id,
        source="include/prompts/demo.csv",
        line=int(row_id.lstrip("r")) + 1,
        prompt=prompt,
        endpoint=endpoint,
        arguments={"prompt": prompt, "duration": 7},
        status=status,
        reason=reason,
        reason_code=code,
        job_key=f"job{row_id}",
        estimated_cost_usd=0.5,
    )


@dataclass
class Archive:
    root: Path
    outside: Path  # a secret file next to (not inside) the archive root
    video: Path  # one archived video


def gallery_server_app(root: Path) -> FastAPI:
    """The gallery mounted at its Airflow prefix, as the api-server mounts it (without Airflow's auth)."""
    outer = FastAPI()
    outer.mount(URL_PREFIX, create_app(root))
    return outer


@dataclass
class Server:
    url: str  # http://127.0.0.1:<port>
    port: int

"""A real archive for the gallery: PyAV-made MP4s, JPEG posters, manifests written by write_run.

Runs in the archive (newest first in the gallery):

- ``half``: half-written, no summary.json; manifest.jsonl ends in a truncated line.
- ``empty``: a run folder with nothing in it yet.
- ``manual__2026-12-02T09_00_00_00_00``: 130 succeeded rows sharing one video (pagination).
- ``manual__2026-12-01T10_00_00_00_00`` (DEMO): 3 succeeded (2 mochi, 1 veo3), 1 rejected, 1 failed.

Next to them, files the gallery must never serve: a ledger entry, a file outside the root, a
symlink out of the root and a file of an unknown kind in videos/.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from gallery_helpers import (
    BIG,
    BIG_ROWS,
    DEMO,
    DEMO_RUN_ID,
    FAIL_REASON,
    MOCHI,
    REJECT_REASON,
    SECRET,
    VEO3,
    Archive,
    Server,
    gallery_server_app,
    make_mp4,
    problem_row,
    video_row,
)

from fal_video.manifest import Status, write_run


@pytest.fixture(scope="session")
def archive(tmp_path_factory) -> Archive:
    base = tmp_path_factory.mktemp("gallery")
    root = base / "archive"
    videos = root / "videos"
    videos.mkdir(parents=True)
    for key in ("fox", "owl", "storm"):
        make_mp4(videos / f"{key}.mp4")
        (videos / f"{key}.json").write_text(json.dumps({"job_key": key, "state": "archived"}))

    demo_rows = [
        video_row("r1", "fox", "a red fox trotting through fresh snow"),
        problem_row("r2", Status.REJECTED, REJECT_REASON, "input_rejected", "a cat, seven seconds", MOCHI),
        video_row("r3", "owl", "an owl turning its head at dusk"),
        problem_row("r4", Status.FAILED, FAIL_REASON, "server_error", "a storm over the sea", VEO3),
        video_row("r5", "storm", "lightning over a dark sea", VEO3),
    ]
    write_run(root / "runs" / DEMO, demo_rows, run_id=DEMO_RUN_ID, source="include/prompts/demo.csv",
              started_at="2026-12-01T10:00:00+00:00", finished_at="2026-12-01T10:04:10+00:00")  # fmt: skip
    big_rows = [video_row(f"r{i}", "fox", f"fox number {i}") for i in range(1, BIG_ROWS + 1)]
    write_run(root / "runs" / BIG, big_rows, run_id="manual__2026-12-02T09:00:00+00:00", source="big.csv",
              started_at="2026-12-02T09:00:00+00:00", finished_at="2026-12-02T09:30:00+00:00")  # fmt: skip

    half = root / "runs" / "half"  # a run that crashed while writing: no summary.json
    half.mkdir()
    (half / "plan.json").write_text(json.dumps({"run_id": "manual__half", "rows": []}))
    lines = [json.dumps(row.as_dict()) for row in demo_rows[:2]]
    (half / "manifest.jsonl").write_text("\n".join(lines) + '\n{"row_id": "r3", "prom')
    (root / "runs" / "empty").mkdir()

    (root / "ledger").mkdir()
    (root / "ledger" / "fox.json").write_text(json.dumps({"request_id": "req-fox", "note": SECRET}))
    outside = base / "outside-secret.txt"
    outside.write_text(SECRET)
    (videos / "escape.mp4").symlink_to(outside)
    (videos / "notes.txt").write_text(SECRET)
    (root / "runs" / DEMO / "plan.json").write_text(json.dumps({"note": SECRET}))
    return Archive(root, outside, videos / "fox.mp4")


@pytest.fixture(scope="session")
def gallery_server(archive: Archive) -> Iterator[Server]:
    """The gallery served by a real uvicorn on a free loopback port, in a thread."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(gallery_server_app(archive.root), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield Server(f"http://127.0.0.1:{port}", port)
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()

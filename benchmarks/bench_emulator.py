"""Emulator figures: start-up time, sustained status polls per second, MP4 render time and size.

Run: ``.venv/bin/python benchmarks/bench_emulator.py``. Prints numbers; not a timed test.
Targets (issue 2): start < 2 s, >= 500 status polls/s, a 5 s clip rendered in < 0.3 s.
"""

from __future__ import annotations

import http.client
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT / "plugins")]

from fal_emulator.render import make_spec, prompt_seed, render_mp4  # noqa: E402
from fal_emulator.testing import EmulatorServer  # noqa: E402

KEY = "bench-key:secret"
POLL_SECONDS = 3.0
CLIENT_THREADS = 4


def bench_startup() -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        with EmulatorServer(keys=[KEY]):
            best = min(best, time.perf_counter() - start)
    return best


def _poller(host: str, port: int, path: str, stop: float, counts: list[int]) -> None:
    """A keep-alive client (stdlib http.client: cheap, so the server is what gets measured)."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    headers = {"Authorization": f"Key {KEY}"}
    n = 0
    while time.perf_counter() < stop:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        assert response.status in (200, 202), response.status
        n += 1
    counts.append(n)
    conn.close()


def bench_polls() -> float:
    with EmulatorServer(keys=[KEY], time_scale=1.0, settings={"generation_seconds": 600}) as server:
        url = urlsplit(server.base_url)
        conn = http.client.HTTPConnection(url.hostname, url.port)
        paths = []
        for i in range(20):  # 20 live jobs, like a batch being polled
            conn.request("POST", "/fal-ai/ltx-video", json.dumps({"prompt": f"bench {i}"}),
                         {"Authorization": f"Key {KEY}", "Content-Type": "application/json"})  # fmt: skip
            paths.append(urlsplit(json.loads(conn.getresponse().read())["status_url"]).path + "?logs=1")
        counts: list[int] = []
        stop = time.perf_counter() + POLL_SECONDS
        threads = [
            threading.Thread(target=_poller, args=(url.hostname, url.port, paths[i % len(paths)], stop, counts))
            for i in range(CLIENT_THREADS)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(counts) / POLL_SECONDS


def bench_render() -> list[tuple[str, float, int, float]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clips = [("5 s 16:9", (16, 9), 5.0, False), ("5 s 16:9 + audio", (16, 9), 5.0, True),
                 ("8 s 9:16 + audio", (9, 16), 8.0, True)]  # fmt: skip
        for label, aspect, seconds, audio in clips:
            spec = make_spec(f"benchmark {label}", aspect, seconds, audio, prompt_seed(label, None))
            path = Path(tmp) / "clip.mp4"
            render_mp4(spec, path)  # warm-up (font, codec init)
            start = time.perf_counter()
            render_mp4(spec, path)
            elapsed = time.perf_counter() - start
            size = path.stat().st_size
            rows.append((label, elapsed, size, size / seconds))
    return rows


def main() -> None:
    startup = bench_startup()
    print(f"start-up (best of 3, until 'listening')  {startup:6.2f} s   target < 2 s")
    polls = bench_polls()
    print(f"status polls sustained ({CLIENT_THREADS} keep-alive clients) {polls:6.0f} /s  target >= 500 /s")
    for label, elapsed, size, per_second in bench_render():
        print(
            f"render {label:18s} {elapsed:6.3f} s  {size / 1024:7.1f} KiB  {per_second / 1024:6.1f} KiB per s of video"
        )
    print("target: a 5 s clip in < 0.3 s")


if __name__ == "__main__":
    main()

"""Archive throughput and memory: 50 videos of ~2 MB, then of ~20 MB, served on loopback.

    .venv/bin/python benchmarks/bench_archive.py [--count 50] [--sizes 2000000 20000000] [--source auto]

Each size runs in a fresh child process, so peak RSS belongs to that size alone. The media come
from the fal emulator (``--source emulator``: real queue jobs, ``media_pad_to_bytes``) or from a
plain ``python -m http.server`` subprocess over padded MP4s (``--source local``); ``auto`` tries the
emulator first. Either way the server is another process: RSS measures the archiver only.

Reported per size: wall time, MB/s (target >= 100), peak RSS, and peak Python heap (tracemalloc,
measured in a second, smaller pass because tracing slows the copy loop). Memory must not grow
with video size: the body is streamed to disk in 1 MiB chunks. Not a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "include")]

from fal_video.archive import Archive, MediaPolicy  # noqa: E402
from fal_video.records import Outcome  # noqa: E402

BENCH_KEY = "bench-key:bench-secret"
ENDPOINT = "fal-ai/mochi-v1"


# --- media sources ---------------------------------------------------------------------------


def padded_mp4(path: Path, size: int) -> None:
    """A real 2 s H.264 clip followed by a ``free`` box that pads the file to ``size`` bytes."""
    import av
    import numpy as np

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 256, 144, "yuv420p"
        for i in range(48):
            pixels = np.full((144, 256, 3), (i * 5) % 255, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    pad = size - path.stat().st_size
    if pad >= 8:
        with path.open("ab") as f:
            f.write(pad.to_bytes(4, "big") + b"free")
            zeros = bytes(1024 * 1024)
            left = pad - 8
            while left > 0:
                left -= f.write(zeros[: min(left, len(zeros))])


def local_source(work: Path, count: int, size: int) -> tuple[subprocess.Popen, list[Outcome]]:
    """``python -m http.server`` over ``count`` hard links to one padded MP4."""
    media = work / "media"
    media.mkdir()
    padded_mp4(media / "clip.mp4", size)
    for i in range(count):
        os.link(media / "clip.mp4", media / f"v{i}.mp4")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(media)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for_port(port)
    outcomes = [_outcome(i, f"http://127.0.0.1:{port}/v{i}.mp4") for i in range(count)]
    return server, outcomes


def emulator_source(count: int, size: int):
    """Real queue jobs on the emulator; returns (server, outcomes) with the result's fal File."""
    from fal_emulator.testing import EmulatorServer

    server = EmulatorServer(keys=[BENCH_KEY], time_scale=0.001, settings={"media_pad_to_bytes": size}).start()
    try:
        return server, _emulator_jobs(server, count)
    except Exception:
        server.stop()
        raise


def _emulator_jobs(server, count: int) -> list[Outcome]:
    import httpx

    headers = {"Authorization": f"Key {BENCH_KEY}"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as client:
        queued = []
        for i in range(count):
            answer = client.post(f"/{ENDPOINT}", json={"prompt": f"benchmark clip {i}", "seed": i})
            answer.raise_for_status()
            queued.append(answer.json())
        outcomes = [_outcome(i, _await_video(client, job)["url"]) for i, job in enumerate(queued)]
        _check_serves_mp4(client, outcomes[0].video["url"])
    return outcomes


def _check_serves_mp4(client, url: str) -> None:
    """Fail early (auto mode then falls back) when the emulator's media route does not serve an MP4."""
    with client.stream("GET", url) as response:
        head = next(response.iter_bytes(16), b"")
    if head[4:8] != b"ftyp":
        kind = response.headers.get("content-type")
        raise RuntimeError(f"the emulator's media route answered HTTP {response.status_code} {kind}, not an MP4")


def _await_video(client, job: dict, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get(job["status_url"]).json().get("status") == "COMPLETED":
            return client.get(job["response_url"]).json()["video"]
        time.sleep(0.05)
    raise TimeoutError(f"emulator job {job['request_id']} did not complete")


def _outcome(i: int, url: str) -> Outcome:
    return Outcome(job_key=f"{i:024x}", request_id=f"bench-{i}", state="succeeded", video={"url": url})


# --- one size, in a child process ----------------------------------------------------------------


def run_one(count: int, size: int, source: str, concurrency: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-archive-") as tmp:
        work = Path(tmp)
        server, outcomes, used = _start_source(work, count, size, source)
        try:
            policy = MediaPolicy(allow_http=True, allowed_hosts=("127.0.0.1",))
            start = time.perf_counter()
            records = Archive(str(work / "archive")).archive_all(outcomes, policy, concurrency=concurrency)
            wall = time.perf_counter() - start
            failed = [r for r in records if r.state != "archived"]
            total = sum(r.bytes or 0 for r in records)
            rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

            traced = outcomes[: max(4, count // 5)]
            tracemalloc.start()
            Archive(str(work / "traced")).archive_all(traced, policy, concurrency=concurrency)
            _current, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        finally:
            _stop(server)
    return {
        "source": used,
        "count": count,
        "size_mb": size / 1e6,
        "failed": [f"{r.job_key}: {r.state} {r.reason}" for r in failed],
        "wall_s": wall,
        "mb_per_s": total / 1e6 / wall,
        "peak_rss_mb": rss_mb,
        "peak_python_mb": peak / 1e6,
        "traced_videos": len(traced),
    }


def _start_source(work: Path, count: int, size: int, source: str):
    if source in ("auto", "emulator"):
        try:
            server, outcomes = emulator_source(count, size)
            return server, outcomes, "emulator"
        except Exception as exc:
            if source == "emulator":
                raise
            print(f"  (emulator unavailable: {type(exc).__name__}: {exc}; using http.server)", file=sys.stderr)
    server, outcomes = local_source(work, count, size)
    return server, outcomes, "http.server"


def _stop(server) -> None:
    if isinstance(server, subprocess.Popen):
        server.terminate()
        server.wait(10)
    else:
        server.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, timeout: float = 10) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


# --- driver ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2_000_000, 20_000_000])
    parser.add_argument("--source", choices=["auto", "emulator", "local"], default="auto")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(run_one(args.count, args.child, args.source, args.concurrency)))
        return 0

    print(f"archive_all: {args.count} videos per size, concurrency {args.concurrency}, loopback")
    print(f"{'size':>8} {'source':>12} {'wall s':>8} {'MB/s':>8} {'peak RSS MB':>12} {'peak py MB':>11}  failed")
    results = []
    for size in args.sizes:
        cmd = [sys.executable, __file__, "--child", str(size), "--count", str(args.count),
               "--source", args.source, "--concurrency", str(args.concurrency)]  # fmt: skip
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        sys.stderr.write(out.stderr[-2000:])  # e.g. why the emulator was not used
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f"{r['size_mb']:>6.0f}MB {r['source']:>12} {r['wall_s']:>8.2f} {r['mb_per_s']:>8.0f} "
              f"{r['peak_rss_mb']:>12.0f} {r['peak_python_mb']:>11.1f}  {len(r['failed'])}")  # fmt: skip
        for line in r["failed"][:5]:
            print(f"    {line}")
    small, big = results[0], results[-1]
    ratio = big["size_mb"] / small["size_mb"]
    rss = big["peak_rss_mb"] / small["peak_rss_mb"]
    heap = big["peak_python_mb"] / small["peak_python_mb"]
    print(f"video size x{ratio:.0f}: peak RSS x{rss:.2f}, peak Python heap x{heap:.2f} (bounded: chunks x workers)")
    ok = big["mb_per_s"] >= 100 and not any(r["failed"] for r in results)
    print(f"throughput target >= 100 MB/s at {big['size_mb']:.0f} MB: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

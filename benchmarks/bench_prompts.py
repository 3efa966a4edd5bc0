"""Benchmark: read + validate a 100,000-row prompt CSV (issue 4 target: under 3 s). Not a timed test.

CPU time is printed beside wall time: on a busy shared machine the wall time says more about the neighbours.

Run: ``.venv/bin/python benchmarks/bench_prompts.py [rows]``. The CSV mixes five catalogued models,
an id column, argument columns (aspect_ratio, duration, seed), metadata columns, quoted multi-line
prompts and a few invalid rows, so every code path of ``read_prompts`` is exercised.
"""

from __future__ import annotations

import csv
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from fal_video.prompts import read_prompts  # noqa: E402

MODELS = [
    ("fal-ai/mochi-v1", "", ""),
    ("fal-ai/luma-dream-machine", "9:16", ""),
    ("fal-ai/veo3", "16:9", "4s"),
    ("fal-ai/kling-video/v2/master/text-to-video", "1:1", "5"),
    ("fal-ai/wan-t2v", "16:9", ""),
]


def write_csv(path: Path, rows: int, with_ids: bool = True) -> None:
    """A mixed-model CSV; without ids, every row's id is derived from its content (one hash per row)."""
    header = ["id", "prompt", "endpoint", "aspect_ratio", "duration", "seed", "category", "note"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header if with_ids else header[1:])
        for i in range(rows):
            endpoint, ratio, duration = MODELS[i % len(MODELS)]
            prompt = f"a red fox number {i} running through snow, cinematic"
            if i % 50 == 0:
                prompt += "\nsecond line of a multi-line prompt"
            if i % 997 == 0:
                duration = "7"  # invalid for kling and veo3: some rejected rows
            cells = [f"row-{i:06d}", prompt, endpoint, ratio, duration, i % 1000, "animal", f"note {i % 7}"]
            writer.writerow(cells if with_ids else cells[1:])


def measure(rows: int, with_ids: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.csv"
        write_csv(path, rows, with_ids)
        size_mb = path.stat().st_size / 1e6
        started, cpu_started = time.perf_counter(), time.process_time()
        table = read_prompts(str(path), default_endpoint="fal-ai/mochi-v1", default_arguments={"seed": 1})
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    verdict = "OK" if elapsed < 3.0 else "SLOWER THAN TARGET"
    ids = "ids in the file" if with_ids else "ids derived from content"
    print(
        f"read+validate {rows:,} rows ({size_mb:.1f} MB, {ids}): {elapsed:.2f} s wall, {cpu:.2f} s CPU "
        f"(target < 3 s: {verdict}); "
        f"{len(table.valid):,} valid, {len(table.rejected):,} rejected"
    )


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    import pandas  # noqa: F401  # loaded by any Airflow worker already; its import is not part of the measurement

    measure(rows, with_ids=True)
    measure(rows, with_ids=False)


if __name__ == "__main__":
    main()

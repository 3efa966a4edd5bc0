"""Chaos run: the fal_video_batch DAG over many rows with seeded random faults, then the invariant check.

This is `make chaos`. It starts the local fal emulator (time-scaled), writes a CSV of ``--rows`` prompts
where a seeded random share carries a fault marker (``[fal-fault:KIND]``: 504s, truncated or HTML media,
malformed bodies, content policy, dropped submits, 429s, gateway errors...), arms a few emulator-wide faults
on top (gateway errors on status polls, CDN 503s, malformed status bodies), runs ``airflow dags test``
once (failure_policy=never, so the run itself is expected to succeed) and checks the promise:

- every CSV row has exactly one manifest row, in order, with a terminal status and a reason;
- no job was submitted twice: the emulator created at most one job per distinct prompt, and accepted
  at most one submit for it;
- every succeeded or reused row's file exists and matches the manifest's sha256 and size, and nothing
  partial or temporary is left in the archive.

It prints the counts per status and exits 1 when any check fails (2 when the run itself failed).
"""

from __future__ import annotations

import argparse
import collections
import csv
import hashlib
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "include")]

from stack.local_airflow import airflow_env  # noqa: E402

from fal_emulator.testing import EmulatorServer  # noqa: E402

KEY = "chaos-key-id:chaos-key-secret"
TERMINAL = {"succeeded", "reused", "rejected", "failed", "timed_out", "cancelled", "not_submitted",
            "submit_unknown", "media_expired"}  # fmt: skip
# (marker, weight): most rows are clean; the rest get one fault each.
MARKERS = [
    ("", 50),
    ("[fal-fault:result_504]", 5),
    ("[fal-fault:result_504:5]", 2),
    ("[fal-fault:truncated_body]", 5),
    ("[fal-fault:truncated_body:0.7]", 2),
    ("[fal-fault:malformed_status:unknown_status]", 3),
    ("[fal-fault:malformed_status:not_json]", 3),
    ("[fal-fault:malformed_status:missing_fields]", 2),
    ("[fal-fault:malformed_result:no_video]", 2),
    ("[fal-fault:malformed_result:not_json]", 2),
    ("[fal-fault:malformed_result:bad_file_size]", 1),
    ("[fal-fault:model_error]", 3),
    ("[fal-fault:content_policy]", 3),
    ("[fal-fault:runner_error]", 3),
    ("[fal-fault:request_error]", 2),
    ("[fal-fault:media_expired]", 2),
    ("[fal-fault:html_body]", 2),
    ("[fal-fault:html_body:octet]", 2),
    ("[fal-fault:drop_connection]", 3),
    ("[fal-fault:rate_limited]", 3),
    ("[fal-fault:ingress_error]", 3),
    ("[fal-fault:ingress_error:503]", 1),
]
SUBJECTS = ["a fox", "a lighthouse", "a paper boat", "a red kite", "an old tram", "a glacier", "a market",
            "a violin", "a desert road", "a koi pond", "a snow owl", "a night train"]  # fmt: skip
PLACES = ["at dawn", "in fog", "under neon", "in the rain", "at golden hour", "from above", "in slow motion"]


def make_rows(n: int, rng: random.Random) -> list[dict[str, str]]:
    kinds, weights = zip(*MARKERS, strict=True)
    rows: list[dict[str, str]] = []
    for i in range(n):
        roll = rng.random()
        if rows and roll < 0.03:  # identical content: one shared job
            twin = rng.choice(rows)
            rows.append({**twin, "id": f"row{i:04d}"})
            continue
        seed = str(rng.randrange(1, 10_000)) if roll > 0.05 else "not-a-number"  # ~2% invalid rows
        marker = rng.choices(kinds, weights)[0]
        prompt = f"{rng.choice(SUBJECTS)} {rng.choice(PLACES)}, take {i} {marker}".strip()
        rows.append({"id": f"row{i:04d}", "prompt": prompt, "seed": seed})
    return rows


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check(rows: list[dict[str, str]], manifest: list[dict], jobs: list[dict], submits: list[dict],
          archive: Path) -> list[str]:  # fmt: skip
    """Every violation of the promise, as readable lines (empty: the invariant holds)."""
    problems: list[str] = []
    ids = [r["id"] for r in rows]
    got = [m["row_id"] for m in manifest]
    if got != ids:
        missing, extra = set(ids) - set(got), collections.Counter(got) - collections.Counter(ids)
        problems.append(f"manifest rows do not match the CSV: {len(got)} vs {len(ids)}; missing {sorted(missing)[:5]}"
                        f", extra/duplicated {sorted(extra)[:5]}")  # fmt: skip
    for m in manifest:
        if m["status"] not in TERMINAL or not str(m.get("reason") or "").strip():
            problems.append(f"row {m['row_id']}: status {m['status']!r} with reason {m.get('reason')!r}")
    per_prompt = collections.Counter(j["prompt"] for j in jobs)
    problems += [f"{n} jobs created for one prompt: {p[:60]!r}" for p, n in per_prompt.items() if n > 1]
    accepted = collections.Counter(
        (s["json"] or {}).get("prompt") for s in submits if s["status_code"] is not None and s["status_code"] < 300
    )
    problems += [f"{n} submits accepted for one prompt: {p!r:.60}" for p, n in accepted.items() if n > 1]
    for m in manifest:
        if m["status"] in ("succeeded", "reused"):
            video = archive / str(m.get("video_path"))
            if not video.is_file():
                problems.append(f"row {m['row_id']}: {m['status']} but {video} is missing")
            elif video.stat().st_size != m["bytes"] or sha256_of(video) != m["sha256"]:
                problems.append(f"row {m['row_id']}: {video} does not match the manifest's size/sha256")
    for path in archive.rglob("*"):
        if path.is_file() and (path.name.endswith(".tmp") or ".partial" in path.parts):
            problems.append(f"partial or temporary file left in the archive: {path}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--time-scale", type=float, default=0.002, help="emulator time scale (1.0 = fal's pace)")
    parser.add_argument("--chunk-size", type=int, default=100)
    parser.add_argument("--deadline-minutes", type=float, default=1.5, help="per chunk (a safety net here)")
    parser.add_argument("--workdir", default=None, help="keep the CSV, archive and Airflow home here")
    args = parser.parse_args()

    started = time.monotonic()
    rng = random.Random(args.seed)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="fal-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    archive, home = work / "archive", work / "airflow"
    home.mkdir(exist_ok=True)
    rows = make_rows(args.rows, rng)
    csv_path = work / "chaos.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "prompt", "seed"])
        writer.writeheader()
        writer.writerows(rows)
    conf = {"prompts_csv": str(csv_path), "archive_root": str(archive), "chunk_size": args.chunk_size,
            "max_cost_usd": None, "poll_interval_seconds": 0.2, "deadline_minutes": args.deadline_minutes,
            "failure_policy": "never"}  # fmt: skip
    airflow = str(Path(sys.executable).with_name("airflow"))
    print(f"chaos run: {args.rows} rows, seed {args.seed}, work dir {work}", flush=True)
    with EmulatorServer(
        keys=[KEY], time_scale=args.time_scale, seed=args.seed % 1000, concurrency=50, startup_timeout=60
    ) as emulator:
        # emulator-wide faults on top of the per-row markers (seeded positions)
        emulator.add_fault("ingress_error", on="status", start=rng.randrange(5, 60), count=6)
        emulator.add_fault("malformed_status", variant="wrong_types", start=rng.randrange(5, 80), count=4)
        emulator.add_fault("http_error", on="media", status=503, detail="Service Unavailable",
                           start=rng.randrange(1, 20), count=3)  # fmt: skip
        env = airflow_env(home, emulator.base_url, KEY)
        subprocess.run([airflow, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)  # fmt: skip
        with open(work / "dags_test.log", "w") as log:
            done = subprocess.run([airflow, "dags", "test", "fal_video_batch", "-c", json.dumps(conf)], env=env,
                                  stdout=log, stderr=subprocess.STDOUT, timeout=1200)  # fmt: skip
        jobs, submits = emulator.jobs(), emulator.requests("submit")
        markers_seen = collections.Counter(r["kind"] for r in emulator.requests())
    manifests = sorted((archive / "runs").glob("*/manifest.jsonl"))
    if not manifests:
        print(f"FAIL: no manifest was written; see {work / 'dags_test.log'}")
        return 2
    manifest = [json.loads(line) for line in manifests[-1].read_text().splitlines() if line.strip()]
    counts = collections.Counter(m["status"] for m in manifest)
    print("rows per status: " + ", ".join(f"{status} {n}" for status, n in counts.most_common()))
    print(f"emulator: {len(jobs)} jobs created, requests {dict(markers_seen)}")
    problems = check(rows, manifest, jobs, submits, archive)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        problems.insert(0, f"airflow dags test exited {done.returncode} (failure_policy=never: expected 0); "
                           f"see {work / 'dags_test.log'}")  # fmt: skip
    if problems:
        print(f"INVARIANT BROKEN ({len(problems)} problem(s)) after {elapsed:.0f} s:")
        for line in problems[:40]:
            print(f"  - {line}")
        return 1
    print(f"OK: {len(manifest)} rows, each with one terminal manifest row; no job submitted twice; "
          f"{counts['succeeded'] + counts['reused']} videos match their sha256 ({elapsed:.0f} s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

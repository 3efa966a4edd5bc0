"""Run the fal_video_batch DAG once on the sample prompts, against the local fal emulator.

This is `make demo`: it starts the emulator on a free loopback port, points the `fal_default`
connection at it (through AIRFLOW_CONN_FAL_DEFAULT, as a user would), runs `airflow dags test`
on a private SQLite metadata DB, stops the emulator and prints where the results are.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "include")]

from stack.local_airflow import airflow_env  # noqa: E402

from fal_emulator.testing import EmulatorServer  # noqa: E402

DEMO_KEY = "demo-key-id:demo-key-secret"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", default="include/prompts/vbench_sample.csv")
    parser.add_argument("--archive", default=str(ROOT / "archive"))
    parser.add_argument("--time-scale", type=float, default=0.01, help="emulator time scale (1.0 = fal's real pace)")
    parser.add_argument("--conf", default="{}", help="extra DAG params as JSON")
    args = parser.parse_args()

    home = ROOT / ".airflow" / "demo"
    home.mkdir(parents=True, exist_ok=True)
    airflow = str(Path(sys.executable).with_name("airflow"))
    conf = {"prompts_csv": args.csv, "archive_root": args.archive, "poll_interval_seconds": 0.5,
            **json.loads(args.conf)}  # fmt: skip
    with EmulatorServer(keys=[DEMO_KEY], time_scale=args.time_scale, seed=1) as emulator:
        env = {**airflow_env(home, emulator.base_url, DEMO_KEY), "AIRFLOW__CORE__PARALLELISM": "4"}
        print(f"fal emulator: {emulator.base_url} (time scale {args.time_scale})", flush=True)
        subprocess.run([airflow, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
        done = subprocess.run([airflow, "dags", "test", "fal_video_batch", "-c", json.dumps(conf)], env=env)
    runs = sorted((Path(args.archive) / "runs").glob("*/summary.json"), key=lambda p: p.stat().st_mtime)
    if not runs:
        print("No run summary was written: see the log above.", file=sys.stderr)
        return done.returncode or 1
    run_dir = runs[-1].parent
    summary = json.loads(runs[-1].read_text())
    print("\n=== fal_video_batch demo ===")
    print(f"verdict:  {summary.get('verdict')}")
    print(f"videos:   {Path(args.archive) / 'videos'}")
    print(f"manifest: {run_dir / 'manifest.csv'} (and manifest.jsonl, summary.json)")
    print(f"gallery:  {run_dir / 'index.html'}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())

"""Run every benchmark in turn and print its figures (`make bench`). Benchmarks are not tests.

The stack benchmark (500 prompts on the Celery topology) takes several minutes; it runs only with --stack.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUICK = ["bench_dag.py", "bench_prompts.py", "bench_emulator.py", "bench_trigger.py", "bench_archive.py"]


def main() -> int:
    names = QUICK + (["bench_stack.py"] if "--stack" in sys.argv else [])
    failed = []
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        if subprocess.run([sys.executable, str(HERE / name)]).returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nbenchmarks that did not run to the end: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

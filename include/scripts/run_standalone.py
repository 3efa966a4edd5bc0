"""Start the full local Airflow (`airflow standalone`) plus the fal emulator, to use the UI.

This is `make airflow-ui`. The UI listens on http://127.0.0.1:8080 (login `admin`, password printed below);
the fal_default connection points at the emulator. Ctrl-C stops both. To use the real fal service instead,
export AIRFLOW_CONN_FAL_DEFAULT yourself before running this (the emulator then still runs, unused).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "include")]

from stack.local_airflow import airflow_env  # noqa: E402

from fal_emulator.testing import EmulatorServer  # noqa: E402

DEMO_KEY = "demo-key-id:demo-key-secret"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080, help="Airflow UI / API port (127.0.0.1)")
    parser.add_argument("--emulator-port", type=int, default=8765)
    parser.add_argument("--time-scale", type=float, default=0.05, help="emulator time scale (1.0 = fal's pace)")
    args = parser.parse_args()

    home = ROOT / ".airflow" / "standalone"
    home.mkdir(parents=True, exist_ok=True)
    with EmulatorServer(keys=[DEMO_KEY], time_scale=args.time_scale, port=args.emulator_port) as emulator:
        env = {**airflow_env(home, emulator.base_url, DEMO_KEY), "AIRFLOW__CORE__PARALLELISM": "4"}
        if "AIRFLOW_CONN_FAL_DEFAULT" in os.environ:
            env["AIRFLOW_CONN_FAL_DEFAULT"] = os.environ["AIRFLOW_CONN_FAL_DEFAULT"]
        env.update({
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(args.port),
            "FAL_VIDEO_ARCHIVE": env.get("FAL_VIDEO_ARCHIVE", str(ROOT / "archive")),
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),  # standalone needs it
        })  # fmt: skip
        airflow = str(Path(sys.executable).with_name("airflow"))
        proc = subprocess.Popen([airflow, "standalone"], env=env, start_new_session=True)
        print(f"fal emulator: {emulator.base_url}; Airflow starting on http://127.0.0.1:{args.port} ...", flush=True)
        passwords = home / "simple_auth_manager_passwords.json.generated"
        for _ in range(120):
            if passwords.exists() or proc.poll() is not None:
                break
            time.sleep(1)
        if passwords.exists():
            print(f"login: admin / {json.loads(passwords.read_text()).get('admin')}  (from {passwords})", flush=True)
        print("Unpause and trigger fal_video_batch in the UI (its form has every param); gallery: Browse menu.")

        def stop(*_args: object) -> None:
            raise KeyboardInterrupt  # SIGTERM/SIGHUP stop Airflow like Ctrl-C does

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGHUP, stop)
        try:
            return proc.wait()
        except KeyboardInterrupt:
            os.killpg(proc.pid, signal.SIGTERM)  # Airflow runs in its own session: stop its whole group
            proc.wait(timeout=60)
            return 0


if __name__ == "__main__":
    sys.exit(main())

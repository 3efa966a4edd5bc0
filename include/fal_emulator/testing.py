"""``EmulatorServer``: the emulator in a subprocess on a free loopback port, steered over HTTP.

A subprocess (not a thread) so the server's event loop and the code under test never share a
GIL-bound loop, exactly as in production where fal is another machine.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

_INCLUDE = Path(__file__).resolve().parents[1]
_PLUGINS = _INCLUDE.parent / "plugins"
READY = "fal emulator listening on "


class EmulatorServer:
    """Context manager: start ``python -m fal_emulator --port 0``, wait for it, stop it on exit."""

    def __init__(
        self,
        keys: list[str] | None = None,
        time_scale: float = 0.002,
        seed: int = 7,
        concurrency: int = 10,
        settings: dict[str, Any] | None = None,
        faults: list[dict[str, Any]] | None = None,
        startup_timeout: float = 15.0,
        port: int = 0,
    ) -> None:
        self.keys, self.time_scale, self.seed, self.concurrency = list(keys or []), time_scale, seed, concurrency
        self.settings, self.faults, self.startup_timeout = dict(settings or {}), list(faults or []), startup_timeout
        self.port = port  # 0: a free port
        self.base_url = ""
        self._proc: subprocess.Popen[str] | None = None
        self._output: collections.deque[str] = collections.deque(maxlen=400)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._http: httpx.Client | None = None

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> EmulatorServer:
        self._tmp = tempfile.TemporaryDirectory(prefix="fal-emulator-test-")
        config = Path(self._tmp.name) / "config.json"
        config.write_text(json.dumps({"settings": self.settings, "faults": self.faults}))
        cmd = [sys.executable, "-m", "fal_emulator", "--host", "127.0.0.1", "--port", str(self.port),
               "--time-scale", str(self.time_scale), "--seed", str(self.seed),
               "--concurrency", str(self.concurrency), "--config", str(config),
               "--media-dir", str(Path(self._tmp.name) / "media")]  # fmt: skip
        if self.keys:
            cmd += ["--keys", ",".join(self.keys)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_INCLUDE), str(_PLUGINS), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        ready = threading.Event()
        threading.Thread(target=self._drain, args=(ready,), daemon=True).start()
        if not ready.wait(self.startup_timeout) or not self.base_url:
            self.stop()
            raise RuntimeError(f"fal emulator did not start within {self.startup_timeout:.0f} s:\n{self.output()}")
        self._http = httpx.Client(base_url=self.base_url, timeout=10)
        return self

    def _drain(self, ready: threading.Event) -> None:
        """Read the child's output forever (a full pipe would block it); spot the ready line."""
        assert self._proc and self._proc.stdout
        for line in self._proc.stdout:
            self._output.append(line)
            if line.startswith(READY) and not ready.is_set():
                self.base_url = line[len(READY) :].strip()
                ready.set()
        ready.set()

    def output(self) -> str:
        """What the subprocess printed (last 400 lines)."""
        return "".join(self._output)

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # --- admin API --------------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        assert self._http is not None, "EmulatorServer is not running"
        response = self._http.request(method, f"/_emulator/{path}", **kwargs)
        if response.status_code >= 400:
            raise ValueError(f"emulator admin {method} {path}: {response.status_code} {response.text}")
        return response.json()

    def reset(self) -> None:
        """Clear jobs, records and faults; restore the settings given at start."""
        self._call("POST", "reset")

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change settings at run time (see ``fal_emulator.settings.Settings``); returns them all."""
        return self._call("POST", "settings", json=settings)

    def add_fault(self, kind: str, *, count: int | None = None, **match_and_params: Any) -> str:
        """Arm a fault (``fal_emulator.faults.KINDS``); returns its id."""
        return self._call("POST", "faults", json={"kind": kind, "count": count, **match_and_params})["id"]

    def remove_fault(self, fault_id: str) -> None:
        self._call("DELETE", f"faults/{fault_id}")

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def faults_armed(self) -> list[dict[str, Any]]:
        return self._call("GET", "faults")

    def requests(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Recorded requests (method, path, query, json, masked headers, kind, request_id, time)."""
        return self._call("GET", "requests", params={"kind": kind} if kind else None)

    def counts(self, by: str = "kind") -> dict[str, int]:
        """Requests per kind; ``by="endpoint"`` or ``by="prompt"`` gives submits per endpoint/prompt."""
        data = self._call("GET", "counts")
        return {"kind": data["kinds"], "endpoint": data["submits_by_endpoint"], "prompt": data["submits_by_prompt"]}[by]

    def jobs(self) -> list[dict[str, Any]]:
        return self._call("GET", "jobs")

    def job(self, request_id: str) -> dict[str, Any]:
        return next(j for j in self.jobs() if j["request_id"] == request_id)

    def stats(self) -> dict[str, Any]:
        """``max_running`` / ``max_in_flight`` (overall, and ``per_key``) since the last reset."""
        return self._call("GET", "stats")

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no job is queued or running (jobs stuck on purpose excepted by timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(j["state"] == "COMPLETED" for j in self.jobs()):
                return
            time.sleep(0.02)
        raise TimeoutError("emulator jobs still running")

"""Checks shared by the fault tests: the manifest, the emulator's records and the files on disk."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
TERMINAL = {"succeeded", "reused", "rejected", "failed", "timed_out", "cancelled", "not_submitted",
            "submit_unknown", "media_expired", "dry_run"}  # fmt: skip
ARCHIVE_FILE = re.compile(r"[0-9a-f]{24}\.(mp4|jpg|json)")


def write_csv(path: Path, rows: list[dict[str, str]], *, bom: bool = False, quote_all: bool = False) -> Path:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
        writer.writeheader()
        writer.writerows(rows)
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fal_env(base_url: str, key: str, home: Path | None = None) -> dict[str, str]:
    """Environment for a subprocess that talks to the emulator through the fal_default connection."""
    env = dict(os.environ)
    env.update({
        "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("plugins", "include", "tests/faults")),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_FAL_DEFAULT": json.dumps({
            "conn_type": "fal", "host": base_url, "password": key, "extra": {"allow_http": True},
        }),
    })  # fmt: skip
    if home is not None:
        env["AIRFLOW_HOME"] = str(home)
    return env


@dataclass
class DagRun:
    returncode: int
    output: str
    run_dir: Path | None

    @property
    def manifest(self) -> list[dict[str, Any]]:
        assert self.run_dir is not None, self.output[-3000:]
        lines = (self.run_dir / "manifest.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    @property
    def summary(self) -> dict[str, Any]:
        assert self.run_dir is not None, self.output[-3000:]
        return json.loads((self.run_dir / "summary.json").read_text())

    def by_id(self) -> dict[str, dict[str, Any]]:
        return {row["row_id"]: row for row in self.manifest}


def dags_test(home: Path, base_url: str, key: str, csv_path: Path, archive: Path, **params: Any) -> DagRun:
    """``airflow dags test fal_video_batch`` in a subprocess; the newest run folder is the result."""
    conf = {"prompts_csv": str(csv_path), "archive_root": str(archive), "poll_interval_seconds": 0.2, **params}
    runs = archive / "runs"
    before = set(runs.glob("*")) if runs.exists() else set()
    done = subprocess.run(
        [AIRFLOW, "dags", "test", "fal_video_batch", "-c", json.dumps(conf)],
        env=fal_env(base_url, key, home), capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    new = sorted(set(runs.glob("*")) - before) if runs.exists() else []
    return DagRun(done.returncode, done.stdout + done.stderr, new[-1] if new else None)


def jobs_per_prompt(emulator: Any) -> Counter[str]:
    """Jobs the emulator created (paid for) per prompt: a retried 429/ingress submit is not a second job."""
    return Counter(job["prompt"] for job in emulator.jobs())


def request_ids_by_prompt(emulator: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for job in emulator.jobs():
        out.setdefault(job["prompt"], []).append(job["request_id"])
    return out


def requests_for(emulator: Any, kind: str, request_id: str) -> list[dict[str, Any]]:
    return [r for r in emulator.requests(kind) if r.get("request_id") == request_id]


def assert_one_terminal_row_per_csv_row(manifest: list[dict[str, Any]], ids: list[str]) -> None:
    assert [r["row_id"] for r in manifest] == ids
    for row in manifest:
        assert row["status"] in TERMINAL, row
        assert isinstance(row["reason"], str) and row["reason"].strip(), row
        assert "Traceback" not in row["reason"], row


def assert_archive_clean(root: Path, manifest: list[dict[str, Any]] | None = None) -> None:
    """Nothing partial or duplicate anywhere; every archived video is whole and matches its sidecar.

    ``videos/`` holds only ``<job_key>.mp4|.jpg|.json``, each video with its sidecar (size + sha256);
    no temporary file anywhere; ``.partial/`` is empty; every succeeded/reused row's file matches the manifest.
    """
    videos = root / "videos"
    names = sorted(p.name for p in videos.iterdir()) if videos.exists() else []
    assert all(ARCHIVE_FILE.fullmatch(n) for n in names), names
    for name in names:
        if name.endswith(".mp4"):
            sidecar = json.loads((videos / name).with_suffix(".json").read_text())
            assert sidecar["state"] == "archived" and sidecar["bytes"] == (videos / name).stat().st_size
            assert sidecar["sha256"] == sha256_of(videos / name), name
            assert (videos / name).read_bytes()[4:8] == b"ftyp"
    for name in names:
        if name.endswith(".json"):
            assert (videos / name).with_suffix(".mp4").exists(), f"sidecar without video: {name}"
    partial = root / ".partial"
    assert not partial.exists() or list(partial.iterdir()) == [], list(partial.rglob("*"))
    leftovers = [p for p in root.rglob("*") if p.is_file() and (p.name.endswith(".tmp") or ".partial" in p.parts)]
    assert leftovers == []
    for row in manifest or []:
        if row["status"] in ("succeeded", "reused"):
            video = root / row["video_path"]
            assert video.is_file(), row
            assert sha256_of(video) == row["sha256"] and video.stat().st_size == row["bytes"], row
        else:
            assert row.get("video_path") in (None, ""), row

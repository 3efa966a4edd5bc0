"""Checks shared by the fault tests: the manifest, the emulator's records and the files on disk."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from stack.local_airflow import AIRFLOW, DagRun, airflow_env, sha256_of, write_csv
from stack.local_airflow import dags_test as run_dags_test

ROOT = Path(__file__).resolve().parents[2]
__all__ = ["AIRFLOW", "DagRun", "sha256_of", "write_csv"]  # re-exported for the fault tests
TERMINAL = {"succeeded", "reused", "rejected", "failed", "timed_out", "cancelled", "not_submitted",
            "submit_unknown", "media_expired", "dry_run"}  # fmt: skip
ARCHIVE_FILE = re.compile(r"[0-9a-f]{24}\.(mp4|jpg|json)")


def fal_env(base_url: str, key: str, home: Path | None = None) -> dict[str, str]:
    """Environment for a subprocess that talks to the emulator through the fal_default connection."""
    return airflow_env(home, base_url, key, pythonpath=(str(ROOT / "tests" / "faults"),))


def dags_test(home: Path, base_url: str, key: str, csv_path: Path, archive: Path, **params: Any) -> DagRun:
    """``airflow dags test fal_video_batch`` in a subprocess; the run folder it created is the result."""
    conf = {"prompts_csv": str(csv_path), "archive_root": str(archive), "poll_interval_seconds": 0.2, **params}
    return run_dags_test(home, fal_env(base_url, key, home), conf)


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

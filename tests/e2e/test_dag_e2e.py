"""The whole DAG, as `airflow dags test` runs it, against the emulator over loopback.

Every manifest row is checked against the files on disk (sha256, PyAV probe) and against what the
emulator recorded (one submit per distinct job).
"""

from __future__ import annotations

from pathlib import Path

import av
from stack.local_airflow import sha256_of, write_csv

ROWS = [
    {"id": "dog", "prompt": "a dog running on the beach", "endpoint": "fal-ai/mochi-v1", "duration": "",
     "team": "=cmd"},
    {"id": "cat", "prompt": "a cat on a sofa", "endpoint": "fal-ai/luma-dream-machine", "duration": "", "team": "a"},
    {"id": "owl", "prompt": "an owl at night", "endpoint": "fal-ai/veo3", "duration": "4s", "team": "b"},
    {"id": "dog-again", "prompt": "a dog running on the beach", "endpoint": "fal-ai/mochi-v1", "duration": "",
     "team": "c"},
    {"id": "bad-duration", "prompt": "a car", "endpoint": "fal-ai/kling-video/v2/master/text-to-video",
     "duration": "7", "team": "d"},
    {"id": "refused", "prompt": "something [fal-fault:content_policy]", "endpoint": "fal-ai/mochi-v1",
     "duration": "", "team": "e"},
    {"id": "broken", "prompt": "a tree [fal-fault:model_error]", "endpoint": "fal-ai/mochi-v1", "duration": "",
     "team": "f"},
]  # fmt: skip


def test_mixed_csv_every_row_accounted_for_and_files_verified(run_dag, emulator, tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "prompts.csv", ROWS)
    result = run_dag(csv_path)
    assert result.returncode == 0, result.output[-4000:]  # rejected rows alone do not fail the run
    rows = result.by_id()
    assert [r["row_id"] for r in result.manifest] == [r["id"] for r in ROWS]
    assert {k: v["status"] for k, v in rows.items()} == {
        "dog": "succeeded", "cat": "succeeded", "owl": "succeeded", "dog-again": "succeeded",
        "bad-duration": "rejected", "refused": "rejected", "broken": "rejected",
    }  # fmt: skip

    bad = rows["bad-duration"]["reason"]
    assert "prompts.csv" in bad and "line 6" in bad and "duration" in bad
    assert "prompt" in rows["refused"]["reason"] and rows["refused"]["reason_code"] == "content_policy"

    archive = tmp_path / "archive"
    for row_id in ("dog", "cat", "owl", "dog-again"):
        row = rows[row_id]
        video = archive / row["video_path"]
        assert video.is_file() and sha256_of(video) == row["sha256"]
        assert video.stat().st_size == row["bytes"]
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            assert (stream.codec_context.width, stream.codec_context.height) == (row["width"], row["height"])
            assert bool(container.streams.audio) == row["has_audio"]
    assert rows["owl"]["has_audio"] is True  # veo3 generates audio by default
    assert rows["owl"]["width"] > rows["owl"]["height"]  # 16:9
    assert rows["dog"]["video_path"] == rows["dog-again"]["video_path"]  # one job, shared

    # one submit per distinct valid job: dog (shared), cat, owl, refused, broken
    assert emulator.counts().get("submit") == 5
    assert result.summary["counts"]["succeeded"] == 4
    assert (result.run_dir / "index.html").read_text().count("<video") == 4
    csv_text = (result.run_dir / "manifest.csv").read_text(encoding="utf-8-sig")
    assert "'=cmd" in csv_text and ",=cmd" not in csv_text


def test_second_run_of_the_same_csv_submits_nothing_and_costs_nothing(run_dag, emulator, tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "prompts.csv", ROWS[:3])
    first = run_dag(csv_path)
    assert first.returncode == 0, first.output[-4000:]
    submits = emulator.counts().get("submit")
    assert submits == 3
    second = run_dag(csv_path)
    assert second.returncode == 0, second.output[-4000:]
    assert emulator.counts().get("submit") == submits  # nothing new was paid for
    assert {r["status"] for r in second.manifest} == {"reused"}
    assert all(r["estimated_cost_usd"] == 0 for r in second.manifest)
    for row in second.manifest:
        assert sha256_of(tmp_path / "archive" / row["video_path"]) == row["sha256"]


def test_budget_refusal_submits_nothing_and_names_the_biggest_items(run_dag, emulator, tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "prompts.csv", ROWS[:3])
    result = run_dag(csv_path, max_cost_usd=0.5)
    assert result.returncode != 0
    assert emulator.counts().get("submit", 0) == 0
    assert "exceeds max_cost_usd $0.50" in result.output and "fal-ai/veo3 for row(s) owl" in result.output
    assert {r["status"] for r in result.manifest} == {"not_submitted"}
    assert all("max_cost_usd" in r["reason"] for r in result.manifest)


def test_dry_run_validates_and_prices_only(run_dag, emulator, tmp_path: Path) -> None:
    result = run_dag(write_csv(tmp_path / "prompts.csv", ROWS), dry_run=True)
    assert result.returncode == 0, result.output[-4000:]
    assert emulator.counts().get("submit", 0) == 0
    statuses = {r["row_id"]: r["status"] for r in result.manifest}
    assert statuses["bad-duration"] == "rejected" and statuses["owl"] == "dry_run"
    assert result.by_id()["owl"]["estimated_cost_usd"] == 1.6  # veo3: 4 s with audio at $0.40/s

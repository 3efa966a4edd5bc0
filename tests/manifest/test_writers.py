"""The run files: manifest.csv (spreadsheet-safe), manifest.jsonl, summary.json, rerun.csv."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from fal_video.manifest import (
    FailurePolicy,
    ManifestRow,
    Status,
    read_jsonl,
    rows_to_rerun,
    summarize,
    write_csv,
    write_jsonl,
    write_run,
)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_neutralises_cells_a_spreadsheet_would_run_as_formulas(scenario, tmp_path: Path, start: str):
    payload = f'{start}HYPERLINK("http://evil","x")'
    scenario.row(payload, metadata={"note": payload})
    rows = scenario.build()
    write_csv(tmp_path / "manifest.csv", rows)
    [cell] = read_csv(tmp_path / "manifest.csv")
    assert cell["prompt"] == "'" + payload
    assert cell["meta_note"] == "'" + payload
    assert all(not value.startswith(("=", "+", "-", "@", "\t", "\r")) for value in cell.values())


def test_csv_leaves_ordinary_cells_alone_and_is_utf8_with_bom(scenario, tmp_path: Path):
    scenario.row("Café at night, 東京", metadata={"category": "cities", "rating": "4"})
    write_csv(tmp_path / "manifest.csv", scenario.build())
    raw = (tmp_path / "manifest.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # Excel reads the file as UTF-8
    [cell] = read_csv(tmp_path / "manifest.csv")
    assert cell["prompt"] == "Café at night, 東京"
    assert (cell["meta_category"], cell["meta_rating"]) == ("cities", "4")
    assert json.loads(cell["arguments"]) == {"prompt": "Café at night, 東京"}
    assert cell["status"] == "not_submitted"


def test_csv_has_one_line_per_row_even_with_multiline_prompts(mixed, tmp_path: Path):
    mixed.row("line one\nline two")
    rows = mixed.build()
    write_csv(tmp_path / "manifest.csv", rows)
    assert [r["row_id"] for r in read_csv(tmp_path / "manifest.csv")] == [r.row_id for r in rows]


def test_jsonl_round_trips_every_field(mixed, tmp_path: Path):
    rows = mixed.build()
    write_jsonl(tmp_path / "manifest.jsonl", rows)
    assert read_jsonl(tmp_path / "manifest.jsonl") == rows
    first = json.loads((tmp_path / "manifest.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first["metadata"] == {"category": "animals"} and first["status"] == "succeeded"


def test_summary_counts_every_status_and_counts_a_shared_job_once(scenario):
    first = scenario.row("a fox", row_id="a")
    scenario.row("a fox", row_id="b")
    scenario.archive(first)
    scenario.reuse(scenario.row("an owl"))
    scenario.row("bad", error="line 5, field seed: not a number")
    rows = scenario.build()
    summary = summarize(
        rows,
        run_id="manual__1",
        source="demo.csv",
        started_at="2025-01-01T10:00:00+00:00",
        finished_at="2025-01-01T10:02:30+00:00",
    )
    assert summary["counts"] == {s.value: 0 for s in Status} | {"succeeded": 2, "reused": 1, "rejected": 1}
    assert (summary["rows_total"], summary["jobs_total"], summary["reused"]) == (4, 2, 1)
    job_cost = scenario.jobs[first.job_key].estimated_cost_usd
    assert summary["total_estimated_cost_usd"] == pytest.approx(job_cost)  # shared job once, reused job free
    assert summary["wall_seconds"] == 150
    assert (summary["ok"], summary["failure_policy"]) == (True, "failures")
    assert summary["verdict"] == "4 rows: 2 succeeded, 1 reused, 1 rejected"


def test_write_run_writes_every_file_and_no_temporary_leftovers(mixed, tmp_path: Path):
    run_dir = tmp_path / "archive" / "runs" / "manual__2025"
    summary = write_run(
        run_dir,
        mixed.build(),
        run_id="manual__2025",
        source="demo.csv",
        failure_policy=FailurePolicy.NEVER,
        warnings=["skipped 1 Job"],
        dag_id="fal_video_batch",
    )
    names = sorted(p.name for p in run_dir.iterdir())
    assert names == ["index.html", "manifest.csv", "manifest.jsonl", "rerun.csv", "summary.json"]
    on_disk = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert on_disk == summary
    assert (on_disk["dag_id"], on_disk["warnings"], on_disk["rerun_rows"]) == ("fal_video_batch", ["skipped 1 Job"], 2)


def test_write_run_overwrites_a_previous_attempt(mixed, tmp_path: Path):
    rows = mixed.build()
    write_run(tmp_path, rows[:1], run_id="r", source="demo.csv")
    write_run(tmp_path, rows, run_id="r", source="demo.csv")
    assert len(read_jsonl(tmp_path / "manifest.jsonl")) == len(rows)


def test_write_run_accepts_a_local_object_storage_path(mixed, tmp_path: Path):
    from airflow.sdk import ObjectStoragePath

    run_dir = ObjectStoragePath(f"file://{tmp_path}/run")
    rows = mixed.build()
    write_run(run_dir, rows, run_id="r", source="demo.csv")
    assert read_jsonl(run_dir / "manifest.jsonl") == rows
    assert sorted(p.name for p in (tmp_path / "run").iterdir())[-1] == "summary.json"  # no temporary files


def test_write_run_writes_directly_to_a_remote_store(mixed, tmp_path: Path):
    from upath import UPath  # what ObjectStoragePath is built on; memory:// stands in for s3://

    run_dir = UPath(f"memory://bucket/{tmp_path.name}/run")
    rows = mixed.build()
    write_run(run_dir, rows, run_id="r", source="demo.csv")
    assert read_jsonl(run_dir / "manifest.jsonl") == rows
    assert json.loads((run_dir / "summary.json").read_text())["rows_total"] == len(rows)
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]


def test_rerun_lists_rows_that_did_not_succeed_and_leaves_out_unchanged_rejects(mixed):
    rows = mixed.build()
    by_status = {r.status: r.row_id for r in rows}
    assert rows_to_rerun(rows) == [by_status[Status.FAILED], by_status[Status.TIMED_OUT]]
    assert rows_to_rerun(rows, include_rejected=True) == [
        by_status[Status.REJECTED],
        by_status[Status.FAILED],
        by_status[Status.TIMED_OUT],
    ]


def test_rerun_csv_holds_the_original_columns_of_the_rows_to_rerun(scenario, tmp_path: Path):
    scenario.archive(scenario.row("kept"))
    scenario.outcome(
        scenario.row("-dashed prompt", endpoint="fal-ai/veo3", aspect_ratio="9:16", metadata={"category": "weather"}),
        "timed_out",
    )
    scenario.row("never sent", seed=7)
    write_run(tmp_path, scenario.build(), run_id="r", source="demo.csv")
    with (tmp_path / "rerun.csv").open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        records = list(reader)
    assert reader.fieldnames == ["id", "prompt", "endpoint", "aspect_ratio", "category", "seed"]
    assert [r["id"] for r in records] == ["r3", "r4"]
    assert records[0] | {} == {
        "id": "r3",
        "prompt": "-dashed prompt",
        "endpoint": "fal-ai/veo3",
        "aspect_ratio": "9:16",
        "category": "weather",
        "seed": "",
    }
    assert records[1]["seed"] == "7" and records[1]["endpoint"] == "fal-ai/mochi-v1"


def test_rerun_csv_is_header_only_when_everything_succeeded(scenario, tmp_path: Path):
    scenario.archive(scenario.row())
    summary = write_run(tmp_path, scenario.build(), run_id="r", source="demo.csv")
    assert summary["rerun_rows"] == 0
    assert (tmp_path / "rerun.csv").read_text(encoding="utf-8").strip() == "id,prompt,endpoint"


def test_manifest_row_ignores_unknown_keys_from_newer_manifests(mixed):
    row = mixed.build()[0]
    assert ManifestRow.from_dict(row.as_dict() | {"added_later": 1}) == row


def test_write_run_takes_the_policy_and_extra_summary_keys_the_way_the_dag_passes_them(mixed, tmp_path: Path):
    summary = write_run(
        tmp_path,
        mixed.build(),
        run_id="r",
        source="demo.csv",
        started_at="2025-01-01T10:00:00+00:00",
        finished_at="2025-01-01T10:05:00+00:00",
        wall_seconds=299.5,
        failure_policy="never",
        note="demo",
    )
    assert (summary["ok"], summary["failure_policy"], summary["wall_seconds"], summary["note"]) == (
        True,
        "never",
        299.5,
        "demo",
    )
    assert write_run(tmp_path, mixed.build(), run_id="r", source="demo.csv")["ok"] is False  # default: failures

"""Run-level faults through the real DAG (`airflow dags test`): F8 account lock, A3 archive retry, C1/C3 input.

`airflow dags test` runs task retries inline: a failed try is UP_FOR_RETRY and is run again once the
DAG's retry_delay (30 s) has passed, so A3 is the real archive task retrying, not a second run.
"""

from __future__ import annotations

import json

import pytest
from faults_helpers import (
    assert_archive_clean,
    assert_one_terminal_row_per_csv_row,
    dags_test,
    jobs_per_prompt,
    write_csv,
)


@pytest.fixture
def dag(faults_dag_home, emulator, fal_key, tmp_path):
    def run(csv_path, **params):
        return dags_test(faults_dag_home, emulator.base_url, fal_key, csv_path, tmp_path / "archive", **params)

    return run


def test_f8_account_locked_stops_every_chunk_keeps_the_9_accepted_and_fails_loudly(dag, emulator, tmp_path):
    emulator.add_fault("account_locked", start=10)  # submits 1-9 accepted, 403 "User is locked" from the 10th
    rows = [{"id": f"row{i:02d}", "prompt": f"a lantern festival, shot {i}"} for i in range(14)]
    result = dag(write_csv(tmp_path / "p.csv", rows), chunk_size=4)  # 4 chunks: the lock hits one of them
    assert result.returncode != 0
    assert_one_terminal_row_per_csv_row(result.manifest, [r["id"] for r in rows])
    by_status: dict[str, list[dict]] = {}
    for row in result.manifest:
        by_status.setdefault(row["status"], []).append(row)
    assert len(by_status["succeeded"]) == 9
    assert len(by_status["not_submitted"]) == 5 and set(by_status) == {"succeeded", "not_submitted"}
    assert {r["reason_code"] for r in by_status["not_submitted"]} == {"account_locked"}
    assert all("User is locked" in r["reason"] for r in by_status["not_submitted"])
    # one refused submit, then nothing: later chunks of the run do not try again
    submits = emulator.requests("submit")
    assert len(submits) == 10 and [r["status_code"] for r in submits].count(403) == 1
    assert sum(jobs_per_prompt(emulator).values()) == 9
    # loud: the verdict names the lock first, in summary.json and in the failing task's error
    assert result.summary["verdict"].startswith("the fal account is locked (account_locked)")
    assert "RuntimeError: the fal account is locked (account_locked)" in result.output
    assert_archive_clean(tmp_path / "archive", result.manifest)  # the 9 accepted jobs are archived


def test_a3_archive_task_fails_after_jobs_completed_and_its_retry_succeeds_without_resubmitting(
    dag, emulator, tmp_path
):
    rows = [{"id": f"a{i}", "prompt": f"a windmill at noon {i}"} for i in range(3)]
    # The CDN answers 503 to the first 15 media requests: the first try of archive[0] spends its 5 download
    # attempts per video and fails; the retry (30 s later) finds the CDN back.
    emulator.add_fault("http_error", on="media", status=503, detail="Service Unavailable", count=15)
    result = dag(write_csv(tmp_path / "p.csv", rows), chunk_size=25)
    assert result.returncode == 0, result.output[-4000:]
    assert_one_terminal_row_per_csv_row(result.manifest, [r["id"] for r in rows])
    assert {r["status"] for r in result.manifest} == {"succeeded"}
    assert "could not be downloaded yet" in result.output  # try 1 of the archive task failed...
    assert result.output.count("[DAG TEST] starting task_id=chunk.archive") == 2  # ...and was retried once
    assert result.output.count("[DAG TEST] starting task_id=chunk.generate") == 1
    media = emulator.requests("media")
    assert [r["status_code"] for r in media].count(503) == 15 and len(media) == 18
    assert len(emulator.requests("submit")) == 3 and len(emulator.requests("result")) == 3  # no resubmit
    assert_archive_clean(tmp_path / "archive", result.manifest)


def test_c3_zero_byte_csv_runs_green_with_an_empty_manifest_and_no_submission(dag, emulator, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    result = dag(empty)
    assert result.returncode == 0, result.output[-4000:]
    assert result.manifest == [] and result.summary["rows_total"] == 0 and result.summary["ok"] is True
    assert emulator.counts().get("submit", 0) == 0
    assert "empty file: no rows" in result.output


def test_c1_non_utf8_csv_fails_the_run_with_one_sentence_naming_the_file_no_retry(dag, emulator, tmp_path):
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("id,prompt\nx,caf\xe9 cr\xe8me\n".encode("latin-1"))
    result = dag(bad)
    assert result.returncode != 0
    summary = result.summary
    verdict = summary["verdict"]
    assert summary["ok"] is False and summary["input_error"] == verdict
    assert verdict.startswith(f"{bad} is not valid UTF-8: byte 0xe9 at offset 15 (line 2, column 6)")
    assert "\n" not in verdict and "Traceback" not in json.dumps(summary)
    assert result.manifest == []
    assert result.output.count("[DAG TEST] starting task_id=plan_jobs") == 1  # failed for good: no retry
    assert emulator.counts().get("submit", 0) == 0

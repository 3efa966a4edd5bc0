"""Fault scenarios through the real DAG (`airflow dags test`) against the emulator, several rows per run.

One CSV (UTF-8 with a BOM and quoted headers: C1) carries a prompt marker per row, so one run covers
F3, F4, F5, F6, F7, F11, D1, D3 and malformed fal payloads. Its rerun.csv is then run as a CSV of its
own (scenario 4, and F4's "a later run does not resubmit"), and the original CSV once more with
resubmit_unknown=true. Each test asserts the manifest, the emulator's records and the files on disk.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from faults_helpers import (
    DagRun,
    assert_archive_clean,
    assert_one_terminal_row_per_csv_row,
    dags_test,
    write_csv,
)
from faults_pipeline import run_pipeline

ROWS = [
    ("ok", "a calm lake at dawn"),
    ("f3", "a clock that never starts [fal-fault:stuck_in_queue]"),
    ("f4", "a letter lost in the post [fal-fault:drop_connection]"),
    ("f5", "a melting statue [fal-fault:model_error:prompt is too abstract for this model]"),
    ("f6", "a lighthouse in fog [fal-fault:result_504]"),
    ("f7", "a forbidden scene [fal-fault:content_policy]"),
    ("f11", "an old film reel [fal-fault:media_expired]"),
    ("d1", "a river cut short [fal-fault:truncated_body]"),
    ("d3", "a locked door [fal-fault:html_body]"),
    ("d3-octet", "a second locked door [fal-fault:html_body:octet]"),
    ("status-unknown", "a fox in snow [fal-fault:malformed_status:unknown_status]"),
    ("status-types", "a fox in rain [fal-fault:malformed_status:wrong_types]"),
    ("status-json", "a fox in wind [fal-fault:malformed_status:not_json]"),
    ("status-fields", "a fox in sun [fal-fault:malformed_status:missing_fields]"),
    ("result-no-video", "a bird [fal-fault:malformed_result:no_video]"),
    ("result-no-url", "a bird at noon [fal-fault:malformed_result:no_url]"),
    ("result-list", "a bird at dusk [fal-fault:malformed_result:not_object]"),
    ("result-json", "a bird at night [fal-fault:malformed_result:not_json]"),
    ("result-size", "a bird at dawn [fal-fault:malformed_result:bad_file_size]"),
    ("runner", "a broken gear [fal-fault:runner_error]"),
]
IDS = [row_id for row_id, _ in ROWS]
PROMPT = dict(ROWS)
RETIRED = ["f3", "result-no-video", "result-no-url", "result-list", "result-json", "result-size", "runner"]
# Deadline of the first run: the stuck job (F3) times out; everything else ends well before.
FIRST_DEADLINE_MIN = 0.6


@dataclass
class Snapshot:
    """A run plus what the emulator recorded by the end of it."""

    run: DagRun | dict[str, Any]
    jobs: list[dict[str, Any]]
    requests: list[dict[str, Any]]
    archive: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def manifest(self) -> list[dict[str, Any]]:
        return self.run.manifest if isinstance(self.run, DagRun) else self.run["manifest"]

    def by_id(self) -> dict[str, dict[str, Any]]:
        return {r["row_id"]: r for r in self.manifest}

    def submits(self, row_id: str) -> int:
        return sum(
            1 for r in self.requests if r["kind"] == "submit" and (r["json"] or {}).get("prompt") == PROMPT[row_id]
        )

    def calls(self, kind: str, request_id: str) -> int:
        return sum(1 for r in self.requests if r["kind"] == kind and r["request_id"] == request_id)


def snapshot(emulator: Any, run: Any, archive: Path, **extra: Any) -> Snapshot:
    return Snapshot(run, emulator.jobs(), emulator.requests(), archive, extra)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dag-faults")


@pytest.fixture(scope="module")
def first(emulator_server, faults_dag_home, workdir) -> Snapshot:
    emulator_server.reset()
    csv_path = write_csv(workdir / "faults.csv", [{"id": i, "prompt": p, "seed": "7"} for i, p in ROWS],
                         bom=True, quote_all=True)  # fmt: skip
    assert csv_path.read_bytes().startswith(b'\xef\xbb\xbf"id","prompt","seed"')
    archive = workdir / "archive"
    run = dags_test(faults_dag_home, emulator_server.base_url, emulator_server.keys[0], csv_path, archive,
                    chunk_size=25, deadline_minutes=FIRST_DEADLINE_MIN)  # fmt: skip
    return snapshot(emulator_server, run, archive, csv=csv_path)


@pytest.fixture(scope="module")
def second(first, emulator_server, faults_dag_home) -> Snapshot:
    """The first run's rerun.csv as the input of a new run (same archive, default resubmit_unknown=false)."""
    rerun_csv = first.run.run_dir / "rerun.csv"
    run = dags_test(faults_dag_home, emulator_server.base_url, emulator_server.keys[0], rerun_csv, first.archive,
                    chunk_size=25, deadline_minutes=0.1)  # fmt: skip
    snap = snapshot(emulator_server, run, first.archive, rerun_csv=rerun_csv)
    snap.extra["before"] = first
    return snap


@pytest.fixture(scope="module")
def third(second, first, emulator_server) -> Snapshot:
    """The original CSV again, with resubmit_unknown=true: the DAG's steps in this process (faults_pipeline)."""
    conn = {"conn_type": "fal", "host": emulator_server.base_url, "password": emulator_server.keys[0],
            "extra": {"allow_http": True}}  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_CONN_FAL_DEFAULT", json.dumps(conn))
        out = run_pipeline(first.extra["csv"], first.archive, "manual__third", resubmit_unknown=True,
                           deadline_minutes=0.05)  # fmt: skip
    snap = snapshot(emulator_server, out, first.archive)
    snap.extra["before"] = second
    return snap


def statuses(snap: Snapshot) -> dict[str, tuple[str, str | None]]:
    return {r["row_id"]: (r["status"], r["reason_code"]) for r in snap.manifest}


# --- the first run ---------------------------------------------------------------------------------


def test_c1_bom_csv_with_quoted_headers_runs_and_every_row_is_accounted_for(first):
    assert first.run.run_dir is not None, first.run.output[-4000:]
    assert_one_terminal_row_per_csv_row(first.manifest, IDS)
    assert all(r["arguments"]["seed"] == 7 for r in first.manifest)  # the "seed" header was found despite the BOM
    assert first.run.returncode != 0  # timed_out / failed rows fail the run under the default policy
    assert first.run.summary["ok"] is False and "problem rows" in first.run.summary["verdict"]
    assert_archive_clean(first.archive, first.manifest)
    # exactly one paid job per CSV row (F4's dropped submit created its job too)
    assert jobs_per_prompt_of(first) == {PROMPT[i]: 1 for i in IDS}


def jobs_per_prompt_of(snap: Snapshot) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job in snap.jobs:
        counts[job["prompt"]] = counts.get(job["prompt"], 0) + 1
    return counts


def test_f3_stuck_in_queue_times_out_at_the_deadline_and_is_cancelled(first):
    row = first.by_id()["f3"]
    assert (row["status"], row["reason_code"]) == ("timed_out", "timed_out")
    assert "while queued" in row["reason"] and "cancel: CANCELLATION_REQUESTED" in row["reason"]
    assert first.calls("cancel", row["request_id"]) == 1
    assert sum(1 for r in first.requests if r["kind"] == "cancel") == 1  # nothing else was cancelled
    assert first.calls("result", row["request_id"]) == 0


def test_f4_dropped_submit_is_submit_unknown_and_not_resubmitted(first):
    row = first.by_id()["f4"]
    assert (row["status"], row["reason_code"]) == ("submit_unknown", "submit_unknown")
    assert "may be queued" in row["reason"]
    assert first.submits("f4") == 1
    ledger = json.loads((first.archive / "ledger" / f"{row['job_key']}.json").read_text())
    assert ledger["state"] == "submit_unknown"


def test_f5_error_behind_completed_is_rejected_with_the_flattened_reason_no_retry_no_download(first):
    row = first.by_id()["f5"]
    assert (row["status"], row["reason_code"]) == ("rejected", "input_rejected")
    assert "prompt: prompt is too abstract for this model" in row["reason"]
    assert first.calls("result", row["request_id"]) == 1 and first.calls("media", row["request_id"]) == 0
    assert first.submits("f5") == 1


def test_f6_result_504_is_retried_and_the_row_succeeds(first):
    row = first.by_id()["f6"]
    assert row["status"] == "succeeded"
    assert first.calls("result", row["request_id"]) == 3  # 504, 504, 200
    assert first.submits("f6") == 1


def test_f7_content_policy_rejected_naming_both_fields_zero_retries(first):
    row = first.by_id()["f7"]
    assert (row["status"], row["reason_code"]) == ("rejected", "content_policy")
    assert "prompt:" in row["reason"] and "image_url:" in row["reason"]
    assert first.calls("result", row["request_id"]) == 1 and first.submits("f7") == 1
    assert first.by_id()["ok"]["status"] == "succeeded"  # the rest of the run is unaffected


def test_f11_expired_media_fetches_one_fresh_url_then_media_expired_never_resubmitted(first):
    row = first.by_id()["f11"]
    assert (row["status"], row["reason_code"]) == ("media_expired", "media_expired")
    assert "HTTP 403" in row["reason"] and "expired" in row["reason"]
    assert first.calls("result", row["request_id"]) == 2  # the trigger's fetch + one refresh for a fresh URL
    assert first.calls("media", row["request_id"]) == 2  # the first URL, then the fresh one
    assert first.submits("f11") == 1


def test_d1_truncated_download_is_retried_and_nothing_partial_is_kept(first):
    row = first.by_id()["d1"]
    assert row["status"] == "succeeded"
    assert first.calls("media", row["request_id"]) == 2
    assert_archive_clean(first.archive, first.manifest)


def test_d3_html_instead_of_video_rejected_by_content_type_and_by_bytes(first):
    for row_id, words in (("d3", "text/html"), ("d3-octet", "ftyp")):
        row = first.by_id()[row_id]
        assert (row["status"], row["reason_code"]) == ("failed", "media_invalid"), row
        assert words in row["reason"], row["reason"]
        assert not (first.archive / "videos" / f"{row['job_key']}.mp4").exists()


def test_malformed_status_bodies_are_polled_again_and_the_rows_succeed(first):
    for row_id in ("status-unknown", "status-types", "status-json", "status-fields"):
        assert first.by_id()[row_id]["status"] == "succeeded", first.by_id()[row_id]


def test_malformed_result_bodies_fail_the_row_with_bad_response_never_crash(first):
    for row_id in ("result-no-video", "result-no-url", "result-list", "result-json", "result-size"):
        row = first.by_id()[row_id]
        assert (row["status"], row["reason_code"]) == ("failed", "bad_response"), row
        assert first.calls("media", row["request_id"]) == 0
    assert "'video'" in first.by_id()["result-no-video"]["reason"]
    assert "file_size" in first.by_id()["result-size"]["reason"]
    assert "not JSON" in first.by_id()["result-json"]["reason"]


def test_runner_error_is_failed_server_error(first):
    row = first.by_id()["runner"]
    assert (row["status"], row["reason_code"]) == ("failed", "server_error")


# --- scenario 4: rerun.csv as the next run's input -------------------------------------------------


def test_rerun_csv_lists_only_rows_that_did_not_succeed_and_is_a_valid_prompt_csv(first):
    with open(first.run.run_dir / "rerun.csv", newline="", encoding="utf-8") as handle:
        rerun = list(csv.DictReader(handle))
    expected = [i for i in IDS if first.by_id()[i]["status"] not in ("succeeded", "reused", "rejected")]
    assert [r["id"] for r in rerun] == expected
    assert {"f3", "f4", "f11", "d3", "runner"} <= set(expected) and "ok" not in expected and "f7" not in expected


def test_rerun_regenerates_only_rows_that_did_not_succeed(second):
    first = second.extra["before"]
    assert second.run.run_dir is not None, second.run.output[-4000:]
    rerun_ids = [r["row_id"] for r in second.manifest]
    assert_one_terminal_row_per_csv_row(second.manifest, [i for i in IDS if i in rerun_ids])
    # the same job keys: rerun.csv reproduces the rows' content exactly
    assert all(r["job_key"] == first.by_id()[r["row_id"]]["job_key"] for r in second.manifest)
    new_submits = {i: second.submits(i) - first.submits(i) for i in IDS}
    assert {i for i, n in new_submits.items() if n} == set(RETIRED), new_submits  # jobs fal ended without a video
    assert all(n in (0, 1) for n in new_submits.values())
    rows = second.by_id()
    # fresh jobs (new request ids) for the rows fal ended without a video; their markers fire again
    assert all(rows[i]["request_id"] != first.by_id()[i]["request_id"] for i in RETIRED)
    assert all(rows[i]["reason_code"] == "bad_response" for i in RETIRED if i.startswith("result-"))
    # F11 and D3 re-attached to the paid job (result fetched again), not resubmitted
    assert rows["f11"]["status"] == "media_expired" and rows["f11"]["request_id"] == first.by_id()["f11"]["request_id"]
    assert rows["d3"]["request_id"] == first.by_id()["d3"]["request_id"]
    assert_archive_clean(second.archive, second.manifest)


def test_f4_a_later_run_does_not_resubmit_a_submit_unknown_row(second):
    first = second.extra["before"]
    assert statuses(second)["f4"] == ("submit_unknown", "submit_unknown")
    assert second.submits("f4") == first.submits("f4") == 1


def test_f4_resubmit_unknown_true_submits_it_once_more_and_succeeded_rows_are_reused(third):
    second = third.extra["before"]
    assert "upstream" not in third.run["errors"], third.run["errors"]
    assert_one_terminal_row_per_csv_row(third.manifest, IDS)
    rows = third.by_id()
    assert rows["f4"]["status"] == "succeeded"
    assert third.submits("f4") == second.submits("f4") + 1 == 2  # deliberate: the user asked for it
    assert rows["ok"]["status"] == "reused" and rows["f6"]["status"] == "reused"
    new_submits = {i for i in IDS if third.submits(i) > second.submits(i)}
    # rows that still had no video: unknown (asked for), or retired because fal ended them without one
    assert new_submits == {"f4", "f5", "f7", *RETIRED}
    assert {i for i in IDS if third.submits(i) > second.submits(i) + 1} == set()  # once each
    assert_archive_clean(third.archive, third.manifest)

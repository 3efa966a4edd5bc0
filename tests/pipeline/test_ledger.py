"""The ledger: one submit per content, re-attach on retry, no blind resubmit after an unknown outcome."""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pytest

from fal_video.errors import FalError, Reason
from fal_video.ledger import Ledger
from fal_video.records import Job, NotSubmitted, Submission


def make_job(prompt: str = "a cat") -> Job:
    return Job.create("fal-ai/mochi-v1", {"prompt": prompt}, ["r1"], 0.4)


def make_submission(job: Job, request_id: str = "req-1") -> Submission:
    base = f"http://127.0.0.1:1/fal-ai/mochi-v1/requests/{request_id}"
    return Submission(job.job_key, job.endpoint, request_id, f"{base}/status", base, f"{base}/cancel",
                      "2026-12-03T00:00:00+00:00", 0.4)  # fmt: skip


def test_first_prepare_claims_and_recorded_submission_is_reattached(tmp_path: Path) -> None:
    ledger, job = Ledger(str(tmp_path)), make_job()
    assert ledger.prepare(job, "run-a") is None  # claimed: the caller submits
    ledger.record(make_submission(job))
    again = ledger.prepare(job, "run-a-try2")
    assert isinstance(again, Submission)
    assert again.request_id == "req-1" and again.reattached is True
    assert not (tmp_path / "ledger" / f"{job.job_key}.claim").exists()


def test_stale_claim_without_request_id_is_submit_unknown_and_not_resubmitted(tmp_path: Path) -> None:
    ledger, job = Ledger(str(tmp_path), claim_ttl=0.0), make_job()
    assert ledger.prepare(job, "try1") is None  # try 1 claims, then "dies" before recording
    time.sleep(0.01)
    verdict = ledger.prepare(job, "try2")
    assert isinstance(verdict, NotSubmitted) and verdict.reason_code == "submit_unknown"
    assert "try1" in verdict.reason
    # and it stays that way for later runs, unless the user asks for a deliberate resubmit
    assert isinstance(Ledger(str(tmp_path)).prepare(job, "run-b"), NotSubmitted)
    assert Ledger(str(tmp_path), resubmit_unknown=True).prepare(job, "run-c") is None


def test_submit_unknown_failure_is_remembered_other_failures_release(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path))
    unknown, rejected = make_job("x"), make_job("y")
    assert ledger.prepare(unknown, "a") is None
    ledger.record_failure(unknown.job_key, FalError(Reason.SUBMIT_UNKNOWN, "connection dropped after sending"))
    assert isinstance(ledger.prepare(unknown, "b"), NotSubmitted)
    assert ledger.prepare(rejected, "a") is None
    ledger.record_failure(rejected.job_key, FalError(Reason.INPUT_REJECTED, "422"))
    assert ledger.prepare(rejected, "b") is None  # a plain failure may be submitted again later


def test_peer_holding_fresh_claim_is_waited_for_then_reattached(tmp_path: Path) -> None:
    job = make_job()
    peer, me = Ledger(str(tmp_path)), Ledger(str(tmp_path), wait_for_peer=5)
    assert peer.prepare(job, "run-a") is None

    import threading

    threading.Timer(0.5, lambda: peer.record(make_submission(job, "req-peer"))).start()
    got = me.prepare(job, "run-b")
    assert isinstance(got, Submission) and got.request_id == "req-peer"


def test_finish_retires_only_jobs_without_a_video(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path))
    done, failed = make_job("done"), make_job("failed")
    for job in (done, failed):
        ledger.prepare(job, "a")
        ledger.record(make_submission(job, job.job_key))
    ledger.finish(done.job_key, "media_expired", "CDN 403", retire=False)
    ledger.finish(failed.job_key, "rejected", "content policy", retire=True)
    assert ledger.submission(done.job_key) is not None  # the next run re-fetches, does not pay again
    assert ledger.submission(failed.job_key) is None
    assert ledger.prepare(failed, "rerun") is None  # a rerun regenerates it


def test_damaged_entry_is_reported_not_fatal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ledger, job = Ledger(str(tmp_path)), make_job()
    (tmp_path / "ledger" / f"{job.job_key}.json").write_text("{not json")
    assert ledger.get(job.job_key) is None
    assert "unreadable" in caplog.text


def test_job_keys_are_validated_so_no_path_escapes(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path))
    for bad in ("../x", "/etc/passwd", "", "ABC\x00"):
        with pytest.raises(ValueError):
            ledger.get(bad)


def test_object_storage_root(tmp_path: Path) -> None:
    ledger, job = Ledger("memory://ledger-test/archive"), make_job("mem")
    assert ledger.prepare(job, "a") is None
    ledger.record(make_submission(job))
    assert Ledger("memory://ledger-test/archive").submission(job.job_key).request_id == "req-1"


def _race(root: str, job_dict: dict, owner: str, queue: multiprocessing.Queue) -> None:
    ledger = Ledger(root, wait_for_peer=10)
    job = Job.from_dict(job_dict)
    verdict = ledger.prepare(job, owner)
    if verdict is None:
        time.sleep(0.2)  # "submitting"
        ledger.record(make_submission(job, f"req-{owner}"))
        queue.put(("submitted", owner))
    else:
        queue.put(("reattached", verdict.request_id))


def test_concurrent_processes_submit_once(tmp_path: Path) -> None:
    job = make_job("race")
    queue: multiprocessing.Queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_race, args=(str(tmp_path), job.as_dict(), f"p{i}", queue))
             for i in range(6)]  # fmt: skip
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    results = [queue.get(timeout=5) for _ in procs]
    submitted = [r for r in results if r[0] == "submitted"]
    assert len(submitted) == 1
    winner = f"req-{submitted[0][1]}"
    assert all(r[1] == winner for r in results if r[0] == "reattached")
    entry = json.loads((tmp_path / "ledger" / f"{job.job_key}.json").read_text())
    assert entry["submission"]["request_id"] == winner


def test_retry_of_the_same_task_does_not_wait_for_its_dead_predecessor(tmp_path: Path) -> None:
    ledger, job = Ledger(str(tmp_path), wait_for_peer=60), make_job("retry")
    assert ledger.prepare(job, "dag/run/submit/3#try1") is None  # try 1 dies mid-submit
    started = time.monotonic()
    verdict = ledger.prepare(job, "dag/run/submit/3#try2")
    assert isinstance(verdict, NotSubmitted) and verdict.reason_code == "submit_unknown"
    assert time.monotonic() - started < 5  # decided at once, not after the 60 s peer wait

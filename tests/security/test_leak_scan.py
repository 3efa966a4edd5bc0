"""Issue 5 item 7: after a run with a distinctive key, the key is nowhere (`airflow dags test` variant).

The full scan over a real distributed run (scheduler, triggerer, Celery workers, Postgres) is in
test_stack_leak_scan.py; this one runs in a minute and covers the archive, our log lines and what the
emulator recorded. The scanner is proven to find every form of the key first, so it cannot pass blind.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from security_helpers import LeakScan, leak_forms, write_csv

# --- the scanner itself ---------------------------------------------------------------------------


def test_every_form_of_the_key_is_distinct_and_long(sec_key: str) -> None:
    forms = leak_forms(sec_key)
    assert {"key", "key_id", "secret", "b64(key)", "b64url(key)", "urlquote(key)", "b64(header)"} <= set(forms)
    assert all(len(needle) >= 16 for needle in forms.values())  # no needle short enough to match by chance
    assert forms["urlquote(key)"] != forms["key"]  # the ':' is encoded, so this form is really another one


def test_scanner_finds_each_form_planted_anywhere_in_a_tree(tmp_path: Path, sec_key: str) -> None:
    clean = tmp_path / "clean"
    (clean / "a" / "b").mkdir(parents=True)
    (clean / "a" / "b" / "task.log").write_text("INFO all good, Authorization: Key ***\n")
    (clean / "video.bin").write_bytes(bytes(range(256)) * 64)
    scan = LeakScan(sec_key)
    assert scan.tree(clean) == [] and len(scan.scanned) == 2

    for name, needle in leak_forms(sec_key).items():
        tree = tmp_path / f"planted-{len(name)}-{abs(hash(name))}"
        deep = tree / "logs" / "dag_id=x" / "run_id=y"
        deep.mkdir(parents=True)
        (deep / "attempt=1.log").write_bytes(b"\x00\xffbinary prefix " + needle + b" suffix\n")
        (tree / "other.txt").write_text("nothing here")
        found = LeakScan(sec_key).tree(tree)
        assert name in {f.form for f in found}, name
        assert all(f.where.endswith("attempt=1.log") for f in found)


def test_scanner_finds_the_key_in_database_values(sec_key: str) -> None:
    scan = LeakScan(sec_key)
    assert scan.value("xcom.clean", {"outcomes": [{"url": "http://x"}]}) == []
    assert scan.value("xcom.value", {"conn": {"password": sec_key}})
    assert scan.value("celery.result", memoryview(b"\x80\x04pickle" + sec_key.encode()))
    key_id, _, secret = sec_key.partition(":")
    assert [f.form for f in scan.value("dag_run.conf", json.dumps({"s": secret}))] == ["secret"]
    assert "key_id" in {f.form for f in scan.value("log.extra", f"id={key_id}")}
    assert scan.text("gz", gzip.compress(sec_key.encode()).hex()) == []  # compressed data is not text: known limit


# --- a real run --------------------------------------------------------------------------------------

ROWS = [
    {"id": "ok-1", "prompt": "a lighthouse in the fog", "team": "a"},
    {"id": "ok-2", "prompt": "a paper boat on a river", "team": "b"},
    {"id": "expired", "prompt": "a kite [fal-fault:media_expired]", "team": "c"},
    {"id": "broken", "prompt": "a tree [fal-fault:model_error]", "team": "d"},
    {"id": "ok-3", "prompt": "a snail on a leaf", "team": "e"},
]


def test_dags_test_run_leaves_the_key_nowhere(run_dag, sec_emulator, sec_key: str, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    result = run_dag(write_csv(tmp_path / "prompts.csv", ROWS), archive)
    assert result.returncode == 0, result.output[-4000:]
    statuses = {r["row_id"]: r["status"] for r in result.manifest}
    assert statuses["ok-1"] == statuses["ok-2"] == statuses["ok-3"] == "succeeded", statuses  # the key worked
    assert statuses["expired"] == "media_expired" and statuses["broken"] == "rejected", statuses

    scan = LeakScan(sec_key)
    files = scan.tree(archive)
    names = {Path(p).name for p in scan.scanned}
    for expected in ("manifest.csv", "manifest.jsonl", "summary.json", "index.html", "plan.json", "rerun.csv"):
        assert expected in names, (expected, sorted(names))
    assert sum(p.endswith(".json") and "/ledger/" in p for p in scan.scanned) >= 4
    assert sum(p.endswith(".json") and "/videos/" in p for p in scan.scanned) == 3
    assert files == [], [str(f) for f in files]

    # `dags test` prints the task logs with its own handler, which does not mask secrets: this scan
    # therefore shows that neither our code nor Airflow's own lines print the key (no masking to hide it).
    assert "fal_video" in result.output or "Manifest:" in result.output  # our log lines are in the output
    assert scan.text("dags test output", result.output) == []

    records = sec_emulator.requests()
    api = [r for r in records if r["kind"] != "media"]
    media = [r for r in records if r["kind"] == "media"]
    assert api and media
    assert {r["headers"].get("authorization") for r in api} == {"Key ***"}  # masked by the emulator
    assert all("authorization" not in r["headers"] for r in media), [r["headers"] for r in media]
    assert scan.text("emulator records", json.dumps(records)) == []


@pytest.mark.parametrize("form", ["key", "secret", "b64(header)"])
def test_a_planted_leak_in_a_run_archive_is_caught(run_dag, sec_key: str, tmp_path: Path, form: str) -> None:
    """The same scan over the same kind of archive fails when a file holds the key (no blind pass)."""
    archive = tmp_path / "archive"
    (archive / "runs" / "old").mkdir(parents=True)
    (archive / "runs" / "old" / "summary.json").write_bytes(b'{"note": "' + leak_forms(sec_key)[form] + b'"}')
    found = LeakScan(sec_key).tree(archive)
    assert form in {f.form for f in found}

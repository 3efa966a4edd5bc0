"""Which CSV a run reads (scheduled, manual, backfill) and where its files go."""

from __future__ import annotations

from datetime import UTC, datetime

from fal_video.batch import PROJECT_ROOT, archive_root_for, prompts_source, run_folder_name


def test_scheduled_and_backfill_runs_read_the_file_of_their_logical_date() -> None:
    logical = datetime(2026, 12, 2, tzinfo=UTC)
    assert prompts_source({}, logical, None) == str(PROJECT_ROOT / "include/prompts/daily/2026-12-02.csv")


def test_manual_runs_without_logical_date_use_run_after() -> None:
    run_after = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)
    assert prompts_source({}, None, run_after).endswith("daily/2026-12-03.csv")


def test_explicit_csv_param_wins_and_uris_are_kept() -> None:
    when = datetime(2026, 12, 2, tzinfo=UTC)
    assert prompts_source({"prompts_csv": "s3://bucket/p.csv"}, when, None) == "s3://bucket/p.csv"
    assert prompts_source({"prompts_csv": "include/prompts/vbench_sample.csv"}, when, None) == str(
        PROJECT_ROOT / "include/prompts/vbench_sample.csv"
    )
    assert prompts_source({"daily_pattern": "drops/{ds}/prompts.csv"}, when, None).endswith(
        "drops/2026-12-02/prompts.csv"
    )


def test_run_folder_names_are_safe() -> None:
    assert run_folder_name("manual__2026-12-03T10:00:00+00:00") == "manual__2026-12-03T10_00_00_00_00"
    for hostile in ("../../etc", "/abs/path", "a\x00b", "..", ""):
        name = run_folder_name(hostile)
        assert "/" not in name and "\x00" not in name and name not in ("", ".", "..")


def test_archive_root_from_param_env_or_default(monkeypatch) -> None:
    monkeypatch.delenv("FAL_VIDEO_ARCHIVE", raising=False)
    assert archive_root_for(None) == str(PROJECT_ROOT / "archive")
    monkeypatch.setenv("FAL_VIDEO_ARCHIVE", "s3://videos/archive")
    assert archive_root_for(None) == "s3://videos/archive"
    assert archive_root_for("/data/archive") == "/data/archive"

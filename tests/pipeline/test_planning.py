"""Planning: shared jobs, reuse, re-attach, chunking under Airflow's map limit, the budget."""

from __future__ import annotations

import pytest

from fal_video.planning import MAX_CHUNKS, BudgetExceeded, check_budget, plan
from fal_video.records import ArchiveRecord, PromptRow


def row(row_id: str, prompt: str, endpoint: str = "fal-ai/mochi-v1", error: str | None = None, **args) -> PromptRow:
    return PromptRow(row_id, "p.csv", 2, prompt, endpoint, {"prompt": prompt, **args}, error=error)


def test_identical_rows_share_one_job_and_rejected_rows_make_none() -> None:
    rows = [row("a", "cat"), row("b", "cat"), row("c", "dog"), row("d", "bad", error="p.csv line 5: ...")]
    result = plan(rows, chunk_size=10, archived={}, in_flight=set())
    assert len(result.jobs) == 2
    shared = result.jobs[rows[0].job_key]
    assert shared.row_ids == ["a", "b"]
    assert result.new_cost_usd == pytest.approx(0.80)  # mochi at $0.40, the shared job counted once


def test_archived_jobs_are_reused_and_in_flight_jobs_reattached_at_no_new_cost() -> None:
    rows = [row("a", "cat"), row("b", "dog"), row("c", "owl")]
    done = ArchiveRecord(rows[0].job_key, "archived", path="videos/x.mp4")
    result = plan(rows, chunk_size=10, archived={rows[0].job_key: done}, in_flight={rows[1].job_key})
    assert set(result.reused) == {rows[0].job_key}
    assert result.reattach == {rows[1].job_key}
    assert [job.job_key for job in result.new_jobs] == [rows[2].job_key]
    assert result.new_cost_usd == pytest.approx(0.40)
    assert sorted(j.job_key for c in result.chunks for j in c) == sorted([rows[1].job_key, rows[2].job_key])


def test_reuse_off_submits_archived_content_again() -> None:
    rows = [row("a", "cat")]
    done = ArchiveRecord(rows[0].job_key, "archived")
    result = plan(rows, chunk_size=10, archived={rows[0].job_key: done}, in_flight=set(), reuse=False)
    assert not result.reused and len(result.new_jobs) == 1


def test_chunks_stay_under_airflow_map_limit() -> None:
    rows = [row(str(i), f"prompt {i}") for i in range(2500)]
    result = plan(rows, chunk_size=1, archived={}, in_flight=set())
    assert len(result.chunks) <= MAX_CHUNKS
    assert sum(len(c) for c in result.chunks) == 2500


def test_budget_refusal_names_estimate_and_biggest_items() -> None:
    rows = [row("cheap", "x", "fal-ai/ltx-video"),
            row("dear", "y", "fal-ai/veo3", duration="8s", generate_audio=True)]  # fmt: skip
    result = plan(rows, chunk_size=10, archived={}, in_flight=set())
    with pytest.raises(BudgetExceeded) as info:
        check_budget(result, max_cost_usd=1.0)
    message = str(info.value)
    assert "$3.22" in message  # 8 s of veo3 with audio at $0.40/s + ltx $0.02
    assert "fal-ai/veo3 for row(s) dear: $3.20" in message
    assert message.index("fal-ai/veo3") < message.index("fal-ai/ltx-video")
    check_budget(result, max_cost_usd=5.0)  # within budget: no error


def test_unknown_endpoint_cost_is_unknown_not_zero_in_description() -> None:
    result = plan([row("u", "x", "someone/custom-model")], chunk_size=5, archived={}, in_flight=set())
    assert result.unknown_cost_jobs == 1
    assert "unknown price" in result.describe()

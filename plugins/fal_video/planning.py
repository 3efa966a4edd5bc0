"""Planning: from validated prompt rows to the jobs worth paying for, in chunks.

Rows with identical content become one job (generated once, shared). Each job is then either
*reused* (its video is already in the archive), *re-attached* (fal already has it: the ledger holds
its request id; the submit task picks that up, no new payment), or *new*. Only new jobs count
against the budget, and the budget is checked before anything is submitted.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from fal_video.catalog import estimate_cost
from fal_video.records import ArchiveRecord, Job, PromptRow

MAX_CHUNKS = 1000  # Airflow's [core] max_map_length is 1024: stay under it


class BudgetExceeded(ValueError):
    """The new spend this run would cause is above ``max_cost_usd``."""


@dataclass
class Plan:
    rows: list[PromptRow]
    jobs: dict[str, Job]
    reused: dict[str, ArchiveRecord] = field(default_factory=dict)
    reattach: set[str] = field(default_factory=set)
    chunks: list[list[Job]] = field(default_factory=list)

    @property
    def new_jobs(self) -> list[Job]:
        return [job for key, job in self.jobs.items() if key not in self.reused and key not in self.reattach]

    @property
    def new_cost_usd(self) -> float:
        return round(sum(job.estimated_cost_usd or 0.0 for job in self.new_jobs), 4)

    @property
    def unknown_cost_jobs(self) -> int:
        return sum(1 for job in self.new_jobs if job.estimated_cost_usd is None)

    def describe(self) -> str:
        rejected = sum(1 for row in self.rows if row.error)
        text = (
            f"{len(self.rows)} rows ({rejected} rejected) -> {len(self.jobs)} distinct jobs: "
            f"{len(self.reused)} reused from the archive, {len(self.reattach)} re-attached to fal requests, "
            f"{len(self.new_jobs)} new (estimated ${self.new_cost_usd:.2f}"
        )
        if self.unknown_cost_jobs:
            text += f", plus {self.unknown_cost_jobs} of unknown price"
        return text + f"), in {len(self.chunks)} chunk(s)"


def group_jobs(rows: list[PromptRow]) -> dict[str, Job]:
    """One Job per distinct (endpoint, arguments) among the valid rows, listing the rows it serves."""
    serving: dict[str, list[PromptRow]] = defaultdict(list)
    for row in rows:
        if not row.error:
            serving[row.job_key].append(row)
    jobs = {}
    for key, members in serving.items():
        first = members[0]
        ids = list(dict.fromkeys(r.row_id for r in members))
        jobs[key] = Job(key, first.endpoint, first.arguments, ids, estimate_cost(first.endpoint, first.arguments))
    return jobs


def chunk(jobs: list[Job], chunk_size: int) -> list[list[Job]]:
    """Split into chunks of ``chunk_size``, growing the size if needed to stay under MAX_CHUNKS."""
    if not jobs:
        return []
    size = max(1, chunk_size, math.ceil(len(jobs) / MAX_CHUNKS))
    return [jobs[i : i + size] for i in range(0, len(jobs), size)]


def plan(
    rows: list[PromptRow],
    *,
    chunk_size: int,
    archived: dict[str, ArchiveRecord],
    in_flight: set[str],
    reuse: bool = True,
) -> Plan:
    """Group rows into jobs and decide for each whether to reuse, re-attach or submit.

    ``archived`` maps job keys to videos already in the archive; ``in_flight`` holds job keys the
    ledger has a live request id for. Re-attached jobs go into the chunks too: the submit task
    turns them into submissions without paying again.
    """
    jobs = group_jobs(rows)
    result = Plan(rows=rows, jobs=jobs)
    if reuse:
        result.reused = {key: rec for key, rec in archived.items() if key in jobs}
    result.reattach = {key for key in in_flight if key in jobs and key not in result.reused}
    pending = [job for key, job in jobs.items() if key not in result.reused]
    result.chunks = chunk(pending, chunk_size)
    return result


def check_budget(result: Plan, max_cost_usd: float | None) -> None:
    """Refuse the run before the first submission when the new spend would exceed the budget."""
    if max_cost_usd is None or result.new_cost_usd <= max_cost_usd:
        return
    biggest = sorted(result.new_jobs, key=lambda job: job.estimated_cost_usd or 0.0, reverse=True)[:5]
    items = "; ".join(
        f"{job.endpoint} for row(s) {', '.join(job.row_ids[:3])}: ${job.estimated_cost_usd or 0:.2f}" for job in biggest
    )
    raise BudgetExceeded(
        f"estimated cost ${result.new_cost_usd:.2f} for {len(result.new_jobs)} new job(s) exceeds max_cost_usd "
        f"${max_cost_usd:.2f}; nothing was submitted. Biggest items: {items}. Raise max_cost_usd, lower the "
        "row limit, or choose cheaper models."
    )


def plan_summary(result: Plan) -> dict[str, Any]:
    """Figures for the log and summary.json."""
    return {
        "rows": len(result.rows),
        "rejected_rows": sum(1 for r in result.rows if r.error),
        "jobs": len(result.jobs),
        "reused_jobs": len(result.reused),
        "reattached_jobs": len(result.reattach),
        "new_jobs": len(result.new_jobs),
        "new_cost_usd": result.new_cost_usd,
        "unknown_cost_jobs": result.unknown_cost_jobs,
        "chunks": len(result.chunks),
    }

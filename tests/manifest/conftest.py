"""A small builder of real pipeline records, so each test states only the facts it is about."""

from __future__ import annotations

from typing import Any

import pytest

from fal_video.catalog import estimate_cost
from fal_video.manifest import ManifestRow, build_manifest
from fal_video.records import ArchiveRecord, Job, NotSubmitted, Outcome, PromptRow, Submission

MOCHI = "fal-ai/mochi-v1"
LUMA = "fal-ai/luma-dream-machine"
VEO3 = "fal-ai/veo3"


class Scenario:
    """The records one run produced, built row by row (one job per distinct content)."""

    def __init__(self) -> None:
        self.rows: list[Any] = []
        self.jobs: dict[str, Any] = {}
        self.reused: dict[str, Any] = {}
        self.submissions: list[Any] = []
        self.not_submitted: list[Any] = []
        self.outcomes: list[Any] = []
        self.archived: list[Any] = []

    def row(
        self,
        prompt: str = "a red fox in snow",
        *,
        endpoint: str = MOCHI,
        row_id: str | None = None,
        error: str | None = None,
        metadata: dict[str, Any] | None = None,
        **arguments: Any,
    ) -> PromptRow:
        line = len(self.rows) + 2
        row = PromptRow(
            row_id or f"r{line}",
            "include/prompts/demo.csv",
            line,
            prompt,
            endpoint,
            {"prompt": prompt, **arguments},
            dict(metadata or {}),
            error,
        )
        self.rows.append(row)
        if not error:
            job = self.jobs.get(row.job_key) or Job.create(
                endpoint, row.arguments, [], estimate_cost(endpoint, row.arguments)
            )
            job.row_ids.append(row.row_id)
            self.jobs[row.job_key] = job
        return row

    def submit(self, row: PromptRow) -> Submission:
        job = self.jobs[row.job_key]
        sub = Submission(
            row.job_key,
            row.endpoint,
            f"req-{row.job_key[:8]}",
            "https://q/status",
            "https://q/resp",
            "https://q/cancel",
            "2025-01-01T10:00:00+00:00",
            job.estimated_cost_usd,
        )
        self.submissions.append(sub)
        return sub

    def outcome(self, row: PromptRow, state: str = "succeeded", **fields: Any) -> Outcome:
        sub = self.submit(row)
        fields.setdefault("started_at", "2025-01-01T10:00:05+00:00")
        fields.setdefault("completed_at", "2025-01-01T10:01:05+00:00")
        outcome = Outcome(row.job_key, sub.request_id, state, **fields)
        self.outcomes.append(outcome)
        return outcome

    def archive(self, row: PromptRow, state: str = "archived", reason: str | None = None) -> ArchiveRecord:
        self.outcome(row)
        record = self.archive_record(row, state, reason)
        self.archived.append(record)
        return record

    @staticmethod
    def archive_record(row: PromptRow, state: str = "archived", reason: str | None = None) -> ArchiveRecord:
        if state != "archived":
            return ArchiveRecord(row.job_key, state, reason)
        return ArchiveRecord(
            row.job_key,
            "archived",
            None,
            f"videos/{row.job_key}.mp4",
            f"posters/{row.job_key}.jpg",
            "ab" * 32,
            123456,
            5.0,
            848,
            480,
            24.0,
            "h264",
            False,
        )

    def reuse(self, row: PromptRow) -> ArchiveRecord:
        record = self.archive_record(row)
        self.reused[row.job_key] = record
        return record

    def refuse(self, row: PromptRow, code: str, reason: str = "") -> NotSubmitted:
        record = NotSubmitted(row.job_key, code, reason)
        self.not_submitted.append(record)
        return record

    def build(self, *, dry_run: bool = False, warnings: list[str] | None = None) -> list[ManifestRow]:
        return build_manifest(
            self.rows,
            jobs=self.jobs,
            reused=self.reused,
            submissions=self.submissions,
            not_submitted=self.not_submitted,
            outcomes=self.outcomes,
            archived=self.archived,
            dry_run=dry_run,
            warnings=warnings,
        )


@pytest.fixture
def scenario() -> Scenario:
    return Scenario()


@pytest.fixture
def mixed(scenario: Scenario) -> Scenario:
    """A run with one row of most statuses (shared by the writer, page and policy tests)."""
    scenario.archive(scenario.row("a fox", metadata={"category": "animals"}))
    scenario.reuse(scenario.row("a reused owl", endpoint=LUMA))
    scenario.row("", error="demo.csv line 4, field prompt: Field required")
    scenario.outcome(
        scenario.row("a storm", endpoint=VEO3),
        "failed",
        reason_code="server_error",
        reason="fal answered 500: runner crashed",
    )
    scenario.outcome(scenario.row("a slow river"), "timed_out", reason="deadline of 600 s passed")
    return scenario

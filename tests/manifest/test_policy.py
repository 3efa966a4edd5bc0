"""The failure policy: which rows fail a run, and a verdict message that says the counts."""

from __future__ import annotations

import pytest

from fal_video.manifest import FailurePolicy, ManifestRow, Status, evaluate


def rows_with(*statuses: Status, code: str | None = None) -> list[ManifestRow]:
    return [
        ManifestRow(f"r{i}", "demo.csv", i + 2, "p", "fal-ai/mochi-v1", {}, status, "why", reason_code=code)
        for i, status in enumerate(statuses)
    ]


@pytest.mark.parametrize(
    ("statuses", "policy", "ok"),
    [
        ([Status.SUCCEEDED, Status.REUSED, Status.DRY_RUN], FailurePolicy.ANY_PROBLEM, True),
        ([Status.SUCCEEDED, Status.REJECTED], FailurePolicy.ANY_PROBLEM, False),
        ([Status.SUCCEEDED, Status.REJECTED], FailurePolicy.FAILURES, True),
        ([Status.SUCCEEDED, Status.TIMED_OUT], FailurePolicy.NEVER, True),
        ([], FailurePolicy.ANY_PROBLEM, True),
    ],
)
def test_verdict_follows_the_policy(statuses, policy, ok):
    assert evaluate(rows_with(*statuses), policy)[0] is ok


@pytest.mark.parametrize(
    "status",
    [
        Status.FAILED,
        Status.TIMED_OUT,
        Status.CANCELLED,
        Status.NOT_SUBMITTED,
        Status.SUBMIT_UNKNOWN,
        Status.MEDIA_EXPIRED,
    ],
)
def test_default_policy_fails_on_every_failure_status(status):
    ok, message = evaluate(rows_with(Status.SUCCEEDED, status))
    assert not ok
    assert message == f"2 rows: 1 succeeded, 1 {status.value} — 1 problem row under failure policy 'failures'"


def test_message_says_the_counts_per_status():
    rows = rows_with(*[Status.SUCCEEDED] * 20, Status.REJECTED, Status.REJECTED, Status.TIMED_OUT, Status.TIMED_OUT)
    assert evaluate(rows, FailurePolicy.NEVER) == (True, "24 rows: 20 succeeded, 2 rejected, 2 timed_out")


def test_policy_accepts_its_string_value():
    assert evaluate(rows_with(Status.REJECTED), "any_problem")[0] is False


@pytest.mark.parametrize(
    ("code", "prefix"),
    [("account_locked", "the fal account is locked (account_locked)"), ("auth", "fal refused the API key (auth)")],
)
def test_account_or_key_problem_is_named_first(code, prefix):
    rows = rows_with(Status.SUCCEEDED) + rows_with(Status.NOT_SUBMITTED, Status.NOT_SUBMITTED, code=code)
    ok, message = evaluate(rows)
    assert not ok and message.startswith(prefix)
    assert "3 rows: 1 succeeded, 2 not_submitted" in message

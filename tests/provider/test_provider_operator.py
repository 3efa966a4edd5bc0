"""FalSubmitOperator: pay once per job, stop on account lock, records for every job."""

from __future__ import annotations

import pytest
import requests
from fal_fakes import APP, BASE, FAST

from fal_video.errors import FalError, Reason
from fal_video.hook import FalHook
from fal_video.operators import FalSubmitOperator
from fal_video.records import Job
from fal_video.stores import MemoryStore, SubmissionStore

SUBMIT_URL = f"{BASE}/{APP}"


def jobs(n: int) -> list[dict]:
    return [Job.create(APP, {"prompt": f"clip {i}"}, [f"row-{i}"], 0.5).as_dict() for i in range(n)]


def accepted(request, context):
    rid = "r-" + request.json()["prompt"].split()[-1]
    url = f"{BASE}/{APP}/requests/{rid}"
    return {"request_id": rid, "status_url": f"{url}/status", "response_url": url, "cancel_url": f"{url}/cancel"}


class Op(FalSubmitOperator):
    store = MemoryStore()

    def get_hook(self) -> FalHook:
        hook = FalHook(self.fal_conn_id, FAST)
        hook._sleep = lambda _s: None
        return hook

    def submission_store(self) -> SubmissionStore:
        return self.store


@pytest.fixture
def op(fal_conn):
    Op.store = MemoryStore()
    return lambda chunk: Op(task_id="submit", jobs=chunk)


def test_submits_and_records_each_request_id(op, requests_mock):
    requests_mock.post(SUBMIT_URL, json=accepted)
    out = op(jobs(3)).execute({})
    assert [s["request_id"] for s in out["submissions"]] == ["r-0", "r-1", "r-2"]
    assert out["not_submitted"] == [] and set(Op.store.submissions) == {j["job_key"] for j in jobs(3)}
    assert out["submissions"][0]["estimated_cost_usd"] == 0.5


def test_retry_reattaches_instead_of_paying_again(op, requests_mock):
    requests_mock.post(SUBMIT_URL, json=accepted)
    op(jobs(2)).execute({})
    again = op(jobs(2)).execute({})
    assert requests_mock.call_count == 2
    assert all(s["reattached"] for s in again["submissions"])


def test_account_lock_stops_the_chunk_f8(op, requests_mock, caplog):
    locked = {"status_code": 403, "json": {"detail": "User is locked"}}
    requests_mock.post(SUBMIT_URL, [{"json": accepted}, {"json": accepted}, locked])
    out = op(jobs(5)).execute({})
    assert len(out["submissions"]) == 2 and requests_mock.call_count == 3
    assert [n["reason_code"] for n in out["not_submitted"]] == ["account_locked"] * 3
    assert out["not_submitted"][0]["reason"].startswith("POST")  # the first refusal keeps fal's own message


def test_auth_failure_stops_too(op, requests_mock):
    requests_mock.post(SUBMIT_URL, status_code=401, json={"detail": "bad key"})
    out = op(jobs(3)).execute({})
    assert requests_mock.call_count == 1 and [n["reason_code"] for n in out["not_submitted"]] == ["auth"] * 3


def test_unknown_submit_is_remembered_and_never_resubmitted_f4(op, requests_mock):
    requests_mock.post(SUBMIT_URL, exc=requests.ReadTimeout)
    first = op(jobs(1)).execute({})
    second = op(jobs(1)).execute({})
    assert requests_mock.call_count == 1
    assert first["not_submitted"][0]["reason_code"] == second["not_submitted"][0]["reason_code"] == "submit_unknown"


def test_422_at_submit_is_a_record_with_fields(op, requests_mock):
    detail = [{"loc": ["body", "prompt"], "msg": "too long", "type": "string_too_long"}]
    requests_mock.post(SUBMIT_URL, [{"status_code": 422, "json": {"detail": detail}}, {"json": accepted}])
    out = op(jobs(2)).execute({})
    assert len(out["submissions"]) == 1
    assert (
        out["not_submitted"][0]["reason_code"] == "input_rejected"
        and "prompt: too long" in out["not_submitted"][0]["reason"]
    )


def test_bad_connection_fails_before_claiming(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_FAL_DEFAULT", '{"conn_type": "fal", "host": "http://127.0.0.1:1", "password": "k"}'
    )
    Op.store = MemoryStore()
    with pytest.raises(ValueError, match="allow_http"):
        Op(task_id="s", jobs=jobs(1)).execute({})
    assert Op.store.claims == {}


def test_ledger_store_is_used_when_ledger_root_is_set(fal_conn, tmp_path, requests_mock):
    requests_mock.post(SUBMIT_URL, json=accepted)
    chunk = jobs(2)
    FalSubmitOperator(task_id="s", jobs=chunk, ledger_root=str(tmp_path)).execute({})
    again = FalSubmitOperator(task_id="s", jobs=chunk, ledger_root=str(tmp_path)).execute({})
    assert requests_mock.call_count == 2 and all(s["reattached"] for s in again["submissions"])


def test_store_protocol_and_mapping():
    from fal_video.ledger import Ledger

    assert isinstance(MemoryStore(), SubmissionStore)
    assert all(hasattr(Ledger, name) for name in ("prepare", "record", "record_failure"))
    from airflow.sdk import DAG

    with DAG("t_map", schedule=None):
        mapped = FalSubmitOperator.partial(task_id="submit", ledger_root="/tmp/x").expand(jobs=[jobs(1), jobs(2)])
    assert mapped.task_id == "submit"
    assert {"jobs", "ledger_root", "poll_interval", "deadline_seconds"} <= set(FalSubmitOperator.template_fields)


def test_store_failure_after_submit_is_loud(op, requests_mock):
    requests_mock.post(SUBMIT_URL, json=accepted)

    class Broken(MemoryStore):
        def record(self, submission):
            raise OSError("disk full")

    Op.store = Broken()
    with pytest.raises(OSError):
        op(jobs(1)).execute({})


def test_reason_enum_reaches_records():
    err = FalError(Reason.ACCOUNT_LOCKED, "locked")
    assert err.as_dict()["reason"] == "account_locked"

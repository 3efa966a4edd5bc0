"""The DAG's steps run in one process, exactly as the DAG wires them, for scenarios that need a kill or speed.

``fal_video_batch`` is plan_jobs -> generate[chunk] -> archive[chunk] -> write_manifest (all_done). This
module calls the same functions with the same arguments: ``fal_video.batch.plan_jobs``, a
``FalSubmitOperator(wait_for_completion=True)`` built like the DAG's ``generate`` (execute, then the
deferred ``FalJobsTrigger`` run to its event, then ``execute_complete``), ``fal_video.batch.archive_chunk``
and ``fal_video.batch.write_manifest``. Airflow's task runner is replaced by a small fake task instance
(owner, try number, XCom), so a test can play a retry (``try_number=2``) or kill a process mid-step.

Run as a script (``python faults_pipeline.py CSV ROOT RUN_ID [JSON_PARAMS]``) it runs one whole run and
prints its summary as JSON: the tests start two at once, or kill one.
"""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
for sub in ("plugins", "include"):
    if str(ROOT / sub) not in sys.path:
        sys.path.insert(0, str(ROOT / sub))

DAG_ID = "fal_video_batch"
CONN_ID = "fal_default"
# The DAG's PARAMS defaults, with the fast polling the e2e tests use.
DEFAULT_PARAMS: dict[str, Any] = {
    "prompts_csv": None,
    "default_endpoint": "fal-ai/mochi-v1",
    "default_arguments": {},
    "limit": None,
    "sample": None,
    "chunk_size": 25,
    "max_cost_usd": 25.0,
    "reuse_existing": True,
    "resubmit_unknown": False,
    "dry_run": False,
    "strict": False,
    "archive_root": None,
    "poll_interval_seconds": 0.1,
    "deadline_minutes": 1.0,
    "failure_policy": "failures",
}


class FakeTI:
    """What FalSubmitOperator reads from its task instance: ids, try number and XCom."""

    def __init__(self, run_id: str, map_index: int, try_number: int, xcom: dict[Any, Any], task_id: str = "generate"):
        self.dag_id, self.run_id, self.task_id = DAG_ID, run_id, task_id
        self.map_index, self.try_number, self._xcom = map_index, try_number, xcom

    def xcom_push(self, key: str, value: Any) -> None:
        self._xcom[(self.run_id, self.task_id, self.map_index, key)] = json.loads(json.dumps(value))

    def xcom_pull(self, task_ids: str, key: str, map_indexes: int) -> Any:
        return self._xcom.get((self.run_id, task_ids, map_indexes, key))


def generate_operator(chunk: list[dict[str, Any]], params: dict[str, Any], **overrides: Any) -> Any:
    """The DAG's ``generate`` task for one chunk, its templates rendered as the DAG renders them."""
    from fal_video.batch import archive_root_for
    from fal_video.operators import FalSubmitOperator

    kwargs = {
        "task_id": "generate",
        "jobs": chunk,
        "fal_conn_id": CONN_ID,
        "ledger_root": archive_root_for(params.get("archive_root")),
        "resubmit_unknown": params.get("resubmit_unknown", False),
        "wait_for_completion": True,
        "poll_interval": params["poll_interval_seconds"],
        "deadline_seconds": params["deadline_minutes"] * 60,
        **overrides,
    }
    return FalSubmitOperator(**kwargs)


def run_trigger(trigger: Any) -> Any:
    """Run a deferred task's trigger to its first event, as ``airflow dags test`` does inline."""
    from fal_video.sensors import _single_event

    return asyncio.run(_single_event(trigger))


def generate(
    chunk: list[dict[str, Any]],
    params: dict[str, Any],
    run_id: str,
    *,
    map_index: int = 0,
    try_number: int = 1,
    xcom: dict[Any, Any] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """execute -> (deferred) trigger -> execute_complete, like one try of the DAG's generate[map_index]."""
    from airflow.sdk.exceptions import TaskDeferred

    op = generate_operator(chunk, params, **overrides)
    context = {"ti": FakeTI(run_id, map_index, try_number, {} if xcom is None else xcom)}
    try:
        return op.execute(context)
    except TaskDeferred as deferred:
        event = run_trigger(deferred.trigger)
        return getattr(op, deferred.method_name)(context, event)


def run_pipeline(
    csv_path: str | Path,
    archive_root: str | Path,
    run_id: str,
    *,
    try_number: int = 1,
    request_timeout: float | None = None,
    **params: Any,
) -> dict[str, Any]:
    """One whole run of the DAG's steps; returns {"errors", "result", "run_dir", "manifest", "summary"}.

    ``params`` are DAG params; ``request_timeout`` is the generate operator's (the DAG keeps its 30 s default).
    """
    overrides = {} if request_timeout is None else {"request_timeout": request_timeout}
    from fal_video.batch import archive_chunk, plan_jobs, run_folder_name, write_manifest

    p = {**DEFAULT_PARAMS, "prompts_csv": str(csv_path), "archive_root": str(archive_root), **params}
    out: dict[str, Any] = {"errors": {}}
    generated: list[Any] | None = None
    archived: list[Any] | None = None
    try:
        chunks = plan_jobs(p, run_id, None, None)
        generated = [
            generate(c, p, run_id, map_index=i, try_number=try_number, **overrides) for i, c in enumerate(chunks)
        ]
        archived = [archive_chunk(g, p, CONN_ID) for g in generated]
    except Exception as exc:  # an upstream task failed: write_manifest still runs (trigger_rule all_done)
        out["errors"]["upstream"] = f"{type(exc).__name__}: {exc}"
    try:
        out["result"] = write_manifest(p, run_id, generated, archived)
    except Exception as exc:
        out["errors"]["write_manifest"] = f"{type(exc).__name__}: {exc}"
    run_dir = Path(str(archive_root)) / "runs" / run_folder_name(run_id)
    out["run_dir"] = str(run_dir)
    if (run_dir / "manifest.jsonl").exists():
        lines = (run_dir / "manifest.jsonl").read_text().splitlines()
        out["manifest"] = [json.loads(line) for line in lines if line.strip()]
        out["summary"] = json.loads((run_dir / "summary.json").read_text())
    return out


def main(argv: list[str]) -> int:
    csv_path, root, run_id = argv[:3]
    params = json.loads(argv[3]) if len(argv) > 3 else {}
    try:
        out = run_pipeline(csv_path, root, run_id, **params)
    except Exception:
        traceback.print_exc()
        return 2
    print(json.dumps({k: v for k, v in out.items() if k != "manifest"}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

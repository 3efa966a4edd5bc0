"""fal_video_batch: a prompt CSV in, verified videos and a manifest out.

plan_jobs -> chunk[i]: generate (submit, then wait deferred) -> archive  -> write_manifest (all_done)

``generate`` submits its chunk (writing each request id to the ledger at once) and then defers to
one trigger that waits for every job of the chunk in the triggerer, holding no worker slot. Because
submit and wait are one task instance, the ``fal_jobs`` pool (created with include-deferred) is a
strict cap on fal jobs in flight: pool slots x chunk_size. Without that pool (e.g. under
``airflow dags test``) the default pool is used.

Thin wiring only: the steps live in the ``fal_video`` package under plugins/, which the scheduler,
the workers and the triggerer all import. Heavy imports stay inside the tasks so this file parses fast.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import DAG, Asset, Param, TriggerRule, task, task_group

from fal_video.batch import archive_root_for
from fal_video.catalog import MODELS
from fal_video.operators import FalSubmitOperator

FAL_CONN_ID = os.environ.get("FAL_VIDEO_CONN_ID", "fal_default")
FAL_POOL = os.environ.get("FAL_VIDEO_POOL") or "default_pool"  # the stack and compose set fal_jobs
MANIFEST_ASSET = Asset(name="fal_video_manifest", uri="file:///fal_video/manifest")

PARAMS = {
    "prompts_csv": Param(None, type=["null", "string"], title="Prompts CSV",
                         description="Local path (relative to the project root) or any ObjectStoragePath URI. "
                                     "Empty: the dated file given by daily_pattern for the run's date."),
    "daily_pattern": Param("include/prompts/daily/{ds}.csv", type="string", title="Dated CSV pattern",
                           description="Used when prompts_csv is empty; {ds} is the run date (YYYY-MM-DD)."),
    "default_endpoint": Param("fal-ai/mochi-v1", type="string", title="Default model endpoint",
                              examples=sorted(MODELS), description="For rows without an endpoint/model column."),
    "default_arguments": Param({}, type="object", title="Default arguments",
                               description='Model inputs for every row unless the row sets them, '
                                           'e.g. {"aspect_ratio": "16:9"}.'),
    "limit": Param(None, type=["null", "integer"], minimum=1, title="Row limit", description="First N rows only."),
    "sample": Param(None, type=["null", "integer"], minimum=1, title="Sample", description="N random rows (seeded)."),
    "chunk_size": Param(25, type="integer", minimum=1, maximum=1000, title="Jobs per chunk",
                        description="One submit/wait/archive task per chunk."),
    "max_cost_usd": Param(25.0, type=["null", "number"], minimum=0, title="Budget (USD)",
                          description="Refuse the run before submitting if new jobs are estimated above this."),
    "reuse_existing": Param(True, type="boolean", title="Reuse archived videos"),
    "resubmit_unknown": Param(False, type="boolean", title="Resubmit jobs whose submit outcome is unknown",
                              description="Off by default: such a job may already be paid for."),
    "dry_run": Param(False, type="boolean", title="Dry run", description="Validate and estimate only."),
    "strict": Param(False, type="boolean", title="Strict", description="Fail on any invalid row before submitting."),
    "archive_root": Param(None, type=["null", "string"], title="Archive root",
                          description="Local path or object storage URI; empty: $FAL_VIDEO_ARCHIVE or ./archive."),
    "poll_interval_seconds": Param(10.0, type="number", minimum=0.05, title="Status poll interval (s)"),
    "deadline_minutes": Param(120.0, type="number", minimum=0.01, title="Deadline per chunk (minutes)",
                              description="Jobs not finished by then are cancelled on fal and marked timed_out."),
    "failure_policy": Param("failures", type="string", enum=["failures", "any_problem", "never"],
                            title="Failure policy",
                            description="failures: fail the run if any row failed/timed out/was not submitted; "
                                        "any_problem: also for rejected rows; never: always succeed."),
}  # fmt: skip

with DAG(
    dag_id="fal_video_batch",
    description="Generate videos for every row of a prompt CSV through fal.ai, archive and account for them",
    schedule="@daily",
    catchup=False,
    max_active_runs=4,
    params=PARAMS,
    render_template_as_native_obj=True,
    user_defined_macros={"archive_root_for": archive_root_for},
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    tags=["fal", "video"],
    doc_md=__doc__,
) as dag:

    @task
    def plan_jobs(params=None, run_id=None, dag_run=None):
        from fal_video.batch import plan_jobs as plan

        return plan(params, run_id, dag_run.logical_date, dag_run.run_after)

    @task(trigger_rule=TriggerRule.ALL_DONE, outlets=[MANIFEST_ASSET], retries=0)
    def write_manifest(params=None, run_id=None, ti=None, outlet_events=None):
        from fal_video.batch import write_manifest as write

        generated = ti.xcom_pull(task_ids="chunk.generate")  # every chunk's value; missing ones are skipped
        archived = ti.xcom_pull(task_ids="chunk.archive")
        result = write(params, run_id, generated, archived)
        outlet_events[MANIFEST_ASSET].extra = {"run_dir": result["run_dir"], "verdict": result["verdict"]}
        return result

    @task_group(group_id="chunk")
    def process_chunk(jobs):
        """One chunk: generate (submit, then wait deferred), then archive its videos right away."""
        generate = FalSubmitOperator(
            task_id="generate",
            jobs=jobs,
            fal_conn_id=FAL_CONN_ID,
            pool=FAL_POOL,
            ledger_root="{{ archive_root_for(params.archive_root) }}",
            resubmit_unknown="{{ params.resubmit_unknown }}",
            wait_for_completion=True,
            poll_interval="{{ params.poll_interval_seconds }}",
            deadline_seconds="{{ params.deadline_minutes * 60 }}",
        )

        # all_done: a chunk whose generate task failed (e.g. marked failed by a user) still archives
        # whatever it can, and one chunk never blocks another: each chunk archives as soon as it is done.
        @task(retries=3, trigger_rule=TriggerRule.ALL_DONE)
        def archive(params=None, ti=None):
            from fal_video.batch import archive_chunk

            generated = ti.xcom_pull(task_ids="chunk.generate", map_indexes=ti.map_index)
            return archive_chunk(generated, params, FAL_CONN_ID)

        generate >> archive()

    process_chunk.expand(jobs=plan_jobs()) >> write_manifest()

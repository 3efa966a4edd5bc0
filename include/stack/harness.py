"""Test harness over the native stack: start it, drive it through Airflow's public REST API, stop it.

    from stack.harness import AirflowStack

    with AirflowStack("e2e", env_extra={"AIRFLOW_CONN_FAL_DEFAULT": conn_json}) as af:
        run_id = af.trigger_dag("fal_video_batch", {"prompts_csv": "...", "archive_root": "..."})
        af.wait_for_task_state("fal_video_batch", run_id, "wait", "deferred")
        af.restart_triggerer(kill=True)
        af.mark_task_failed("fal_video_batch", run_id, "wait", map_index=0)
        assert af.wait_for_run("fal_video_batch", run_id, timeout=600) == "failed"

Every REST path here was checked against the /openapi.json served by apache-airflow 3.3.2 (`POST /auth/token` is
SimpleAuthManager's own route, mounted outside the public spec).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from . import topology as T
from .native import NativeStack, StackError

FINISHED_RUN_STATES = {"success", "failed"}
PAGE = 100  # [api] maximum_page_limit default


class AirflowStack:
    """The native CeleryExecutor stack as a context manager, with the REST calls tests need."""

    def __init__(
        self,
        name: str,
        env_extra: dict[str, str] | None = None,
        workers: int = 2,
        worker_concurrency: int = T.WORKER_CONCURRENCY,
        pool_slots: int = T.POOL_SLOTS,
        start_timeout: float = 240.0,
        keep_db: bool = False,
    ):
        self.native = NativeStack(name, env_extra=env_extra, workers=workers,
                                  worker_concurrency=worker_concurrency, pool_slots=pool_slots)  # fmt: skip
        self.name = name
        self.start_timeout = start_timeout
        self.keep_db = keep_db
        self.startup_seconds: float | None = None
        self.leftover_pids: list[int] | None = None
        self._token: str | None = None
        self._token_at = 0.0
        self._session = requests.Session()

    # --- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> AirflowStack:
        try:
            self.startup_seconds = self.native.start(timeout=self.start_timeout)
        except BaseException:
            self.stop(grace=5)
            raise
        return self

    def stop(self, grace: float = 20.0) -> list[int]:
        """Stop every process (SIGTERM, SIGKILL after `grace`), drop the database; returns pids still alive."""
        self.leftover_pids = self.native.stop(grace=grace, drop_db=not self.keep_db)
        self._session.close()
        return self.leftover_pids

    def __enter__(self) -> AirflowStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def restart_triggerer(self, kill: bool = False) -> int:
        """Stop the triggerer (SIGTERM, or SIGKILL as a crash), start a new one, wait for its heartbeat; new pid."""
        return self.native.restart("triggerer", sig=signal.SIGKILL if kill else signal.SIGTERM).pid

    def restart(self, component: str, kill: bool = False) -> int:
        return self.native.restart(component, sig=signal.SIGKILL if kill else signal.SIGTERM).pid

    # --- facts ---------------------------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return self.native.api_url

    @property
    def logs_dir(self) -> Path:
        """Component logs (scheduler.log, triggerer.log, worker-1.log, ...)."""
        return self.native.logs_dir

    @property
    def task_logs_dir(self) -> Path:
        return self.native.airflow_logs_dir

    @property
    def env(self) -> dict[str, str]:
        """The environment every component got (for running `airflow` CLI commands against this stack)."""
        return self.native.env()

    def pids(self) -> dict[str, int]:
        assert self.native.state is not None
        return {n: p.pid for n, p in self.native.state.procs.items()}

    def log_text(self, component: str) -> str:
        return (self.logs_dir / f"{component}.log").read_text(errors="replace")

    # --- REST ----------------------------------------------------------------------------------------------
    def token(self) -> str:
        """A bearer token from SimpleAuthManager: POST /auth/token (cached for 10 minutes)."""
        if self._token and time.monotonic() - self._token_at < 600:
            return self._token
        user, password = self.native.admin_credentials()
        resp = self._session.post(f"{self.api_url}/auth/token", json={"username": user, "password": password},
                                  timeout=30)  # fmt: skip
        resp.raise_for_status()
        self._token, self._token_at = resp.json()["access_token"], time.monotonic()
        return self._token

    def request(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        """`method` on `/api/v2<path>` with the admin token; raises StackError unless the status is in `ok`."""
        headers = {"Authorization": f"Bearer {self.token()}", **kwargs.pop("headers", {})}
        resp = self._session.request(method, f"{self.api_url}/api/v2{path}", headers=headers, timeout=60, **kwargs)
        if resp.status_code == 401:  # expired token: once more with a new one
            self._token = None
            headers["Authorization"] = f"Bearer {self.token()}"
            resp = self._session.request(method, f"{self.api_url}/api/v2{path}", headers=headers, timeout=60,
                                         **kwargs)  # fmt: skip
        if resp.status_code not in ok:
            raise StackError(f"{method} /api/v2{path} -> {resp.status_code}: {resp.text[:2000]}")
        return resp.json() if resp.content else None

    def health(self) -> dict[str, Any]:
        """GET /api/v2/monitor/health (no auth needed)."""
        return self._session.get(f"{self.api_url}/api/v2/monitor/health", timeout=30).json()

    def get_dag(self, dag_id: str) -> dict[str, Any]:
        return self.request("GET", f"/dags/{quote(dag_id)}")

    def import_errors(self) -> list[dict[str, Any]]:
        return self.request("GET", "/importErrors", params={"limit": PAGE})["import_errors"]

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> dict[str, Any]:
        """Until the dag-processor has serialised `dag_id`; raises with the import errors if it does not appear."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.get_dag(dag_id)
            except StackError as exc:
                if "-> 404" not in str(exc):
                    raise
            if time.monotonic() > deadline:
                raise StackError(f"DAG {dag_id!r} not parsed after {timeout:.0f}s; import errors: "
                                 f"{self.import_errors()}")  # fmt: skip
            time.sleep(2)

    def pool(self, name: str = T.POOL_NAME) -> dict[str, Any]:
        return self.request("GET", f"/pools/{quote(name)}")

    def set_paused(self, dag_id: str, paused: bool) -> dict[str, Any]:
        """PATCH /api/v2/dags/{dag_id} {"is_paused": ...}."""
        return self.request("PATCH", f"/dags/{quote(dag_id)}", json={"is_paused": paused})

    def trigger_dag(self, dag_id: str, conf: dict[str, Any] | None = None, unpause: bool = True) -> str:
        """Unpause, then POST /api/v2/dags/{dag_id}/dagRuns with logical_date null (a manual run); the run id."""
        self.wait_for_dag(dag_id)
        if unpause:
            self.set_paused(dag_id, False)
        body = {"logical_date": None, "conf": conf or {}}
        return self.request("POST", f"/dags/{quote(dag_id)}/dagRuns", json=body)["dag_run_id"]

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.request("GET", f"/dags/{quote(dag_id)}/dagRuns/{quote(run_id, safe='')}")

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600.0, poll: float = 2.0) -> str:
        """Poll GET /api/v2/dags/{dag_id}/dagRuns/{run_id} until success/failed; the final state."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.dag_run(dag_id, run_id)["state"]
            if state in FINISHED_RUN_STATES:
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} of {dag_id} still {state!r} after {timeout:.0f}s")
            time.sleep(poll)

    def task_instances(self, dag_id: str, run_id: str, task_id: str | None = None) -> list[dict[str, Any]]:
        """Every task instance of a run (mapped ones included), paged through
        GET /api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=&offset=."""
        out: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": PAGE, "offset": 0, "order_by": "id"}  # a stable order for paging
        if task_id:
            params["task_id"] = task_id
        while True:
            page = self.request("GET", f"/dags/{quote(dag_id)}/dagRuns/{quote(run_id, safe='')}/taskInstances",
                                params=params)  # fmt: skip
            out.extend(page["task_instances"])
            if not page["task_instances"] or len(out) >= page["total_entries"]:
                return sorted(out, key=lambda ti: (ti["task_id"], ti["map_index"]))
            params["offset"] = len(out)

    def task_states(self, dag_id: str, run_id: str) -> dict[tuple[str, int], str | None]:
        return {(ti["task_id"], ti["map_index"]): ti["state"] for ti in self.task_instances(dag_id, run_id)}

    def wait_for_task_state(self, dag_id: str, run_id: str, task_id: str, state: str, map_index: int | None = None,
                            count: int = 1, timeout: float = 300.0) -> list[dict[str, Any]]:  # fmt: skip
        """Until at least `count` instances of `task_id` (or the one at `map_index`) are in `state`."""
        deadline = time.monotonic() + timeout
        while True:
            tis = [ti for ti in self.task_instances(dag_id, run_id, task_id)
                   if ti["state"] == state and (map_index is None or ti["map_index"] == map_index)]  # fmt: skip
            if len(tis) >= count:
                return tis
            if time.monotonic() > deadline:
                raise TimeoutError(f"{task_id}[{map_index}] of {run_id}: not {count} x {state!r} after {timeout:.0f}s;"
                                   f" states: {self.task_states(dag_id, run_id)}")  # fmt: skip
            time.sleep(1.0)

    def mark_task_failed(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        """What "Mark as failed" in the UI does:
        PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}[/{map_index}] {"new_state": "failed"}
        (the map index in the path for a mapped instance, none for an unmapped one)."""
        return self.set_task_state(dag_id, run_id, task_id, "failed", map_index)

    def set_task_state(self, dag_id: str, run_id: str, task_id: str, state: str, map_index: int = -1) -> dict:
        path = f"/dags/{quote(dag_id)}/dagRuns/{quote(run_id, safe='')}/taskInstances/{quote(task_id)}"
        if map_index >= 0:
            path += f"/{map_index}"
        return self.request("PATCH", path, json={"new_state": state})

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """GET /api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}?map_index=
        with deserialize=true: the value as the task pushed it."""
        path = (f"/dags/{quote(dag_id)}/dagRuns/{quote(run_id, safe='')}/taskInstances/{quote(task_id)}"
                f"/xcomEntries/{quote(key)}")  # fmt: skip
        value = self.request("GET", path, params={"map_index": map_index, "deserialize": "true"})["value"]
        if isinstance(value, str):
            import json

            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    def dag_runs(self, dag_id: str, **filters: Any) -> list[dict[str, Any]]:
        """GET /api/v2/dags/{dag_id}/dagRuns (first page of 100, ordered by logical date), e.g. run_type=backfill."""
        params = {"limit": PAGE, "order_by": "logical_date", **filters}
        return self.request("GET", f"/dags/{quote(dag_id)}/dagRuns", params=params)["dag_runs"]

"""The distributed topology, declared once.

Both the native run (``python -m stack start``) and ``docker-compose.yaml`` follow this: the same Airflow
components and commands, the same executor, the same environment variable names, the same pool.
``tests/stack/test_compose.py`` checks the compose file against it, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

AIRFLOW_VERSION = "3.3.2"
PYTHON_VERSION = "3.11"
EXECUTOR = "CeleryExecutor"

# In-flight cap: a pool that counts deferred task instances (the `wait` sensors) as occupying slots.
POOL_NAME = "fal_jobs"
POOL_SLOTS = 8
POOL_DESCRIPTION = "fal jobs in flight (submit + deferred wait), counts deferred"
POOL_NAME_ENV = "FAL_VIDEO_POOL"
POOL_SLOTS_ENV = "FAL_VIDEO_POOL_SLOTS"

# The fal connection, given to every component (the triggerer resolves it too).
CONN_ENV = "AIRFLOW_CONN_FAL_DEFAULT"
ARCHIVE_ENV = "FAL_VIDEO_ARCHIVE"

# Admin login of SimpleAuthManager (the harness reads the password from the passwords file).
ADMIN_USER = "admin"
USERS_ENV = "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"
PASSWORDS_FILE_ENV = "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"


@dataclass(frozen=True)
class Component:
    name: str  # native name: pid/log file stem
    service: str  # docker-compose service name
    command: tuple[str, ...]  # `airflow <command>` (the same in compose; native adds host/port flags only)


COMPONENTS: tuple[Component, ...] = (
    Component("scheduler", "airflow-scheduler", ("scheduler",)),
    Component("dag-processor", "airflow-dag-processor", ("dag-processor",)),
    Component("triggerer", "airflow-triggerer", ("triggerer",)),
    Component("api-server", "airflow-apiserver", ("api-server",)),
    Component("worker", "airflow-worker", ("celery", "worker")),
)
INIT_SERVICE = "airflow-init"
EMULATOR_SERVICE = "fal-emulator"
EMULATOR_PROFILE = "emulator"

# Init steps (`airflow ...`), run once on a fresh database, in this order.
INIT_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("db", "migrate"),
    ("pools", "set", POOL_NAME, str(POOL_SLOTS), POOL_DESCRIPTION, "--include-deferred"),
)

# Environment variable names every Airflow component gets, natively and in compose.
COMMON_ENV: tuple[str, ...] = (
    "AIRFLOW__CORE__EXECUTOR",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__CELERY__WORKER_CONCURRENCY",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW__CORE__LOAD_EXAMPLES",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION",
    "AIRFLOW__CORE__PARALLELISM",
    "AIRFLOW__CORE__AUTH_MANAGER",
    USERS_ENV,
    PASSWORDS_FILE_ENV,
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL",
    CONN_ENV,
    ARCHIVE_ENV,
    POOL_NAME_ENV,
    POOL_SLOTS_ENV,
)

# Project folders every component sees (compose mounts them under /opt/airflow/<name>).
MOUNTED_DIRS: tuple[str, ...] = ("dags", "plugins", "include", "archive")

# Sizing defaults for a 2-core machine.
PARALLELISM = 16
WORKER_CONCURRENCY = 2

"""docker-compose.yaml, Dockerfile and .env.example against the native topology (no Docker engine needed).

include/stack/topology.py declares the topology once; the native run (include/stack/native.py) is built from
it, and these tests fail when the compose file drifts from it: services and commands, executor, Airflow
version, environment variable names, the pool, mounted folders.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from stack import topology as T
from stack.native import NativeStack, StackState

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())  # PyYAML resolves the anchors and `<<`
SERVICES = COMPOSE["services"]
COMMON = COMPOSE["x-airflow-common"]
AIRFLOW_SERVICES = [c.service for c in T.COMPONENTS] + [T.INIT_SERVICE]


def _command(service: dict) -> list[str]:
    cmd = service["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def _pinned(path: Path, package: str) -> str | None:
    for line in path.read_text().splitlines():
        m = re.match(rf"^{re.escape(package)}==([^\s;#]+)", line.strip(), re.IGNORECASE)
        if m:
            return m.group(1)
    return None


def _native_env() -> dict[str, str]:
    """The environment the native run gives every component, built without starting anything."""
    stack = NativeStack("composecheck", env_extra={T.CONN_ENV: '{"conn_type": "fal"}'})
    state = StackState(name="composecheck", home=str(stack.home), db_name="fal_video_x", redis_db=3, api_port=8080,
                       workers=2, worker_concurrency=2, pool_slots=T.POOL_SLOTS,
                       worker_log_ports={"worker-1": 8793, "worker-2": 8795})  # fmt: skip
    return stack._build_env(state)


def test_services_are_the_native_components():
    for name in ("postgres", "redis", *AIRFLOW_SERVICES):
        assert name in SERVICES, f"docker-compose.yaml has no {name} service"
    extra = set(SERVICES) - {"postgres", "redis", "airflow-cli", T.EMULATOR_SERVICE, *AIRFLOW_SERVICES}
    assert not extra, f"services the native run does not have: {extra}"


@pytest.mark.parametrize("component", T.COMPONENTS, ids=lambda c: c.service)
def test_each_component_runs_the_same_airflow_command(component):
    service = SERVICES[component.service]
    assert _command(service) == list(component.command)
    assert service["image"] == COMMON["image"]
    assert service.get("build") == COMMON["build"] == "."
    assert service["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    assert {"postgres", "redis"} <= set(service["depends_on"])
    assert "healthcheck" in service


def test_native_stack_starts_the_same_commands():
    stack = NativeStack("composecheck")
    stack.state = StackState(name="composecheck", home=str(stack.home), db_name="x", redis_db=1, api_port=1234,
                             workers=2, worker_concurrency=2, pool_slots=1)  # fmt: skip
    for comp in T.COMPONENTS:
        argv = stack.component_argv("worker-1" if comp.name == "worker" else comp.name)
        assert argv[1 : 1 + len(comp.command)] == list(comp.command)


def test_two_celery_workers_like_the_native_run():
    assert str(SERVICES["airflow-worker"]["deploy"]["replicas"]).endswith(":-2}")


def test_executor_and_backends():
    env = COMMON["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == T.EXECUTOR == _native_env()["AIRFLOW__CORE__EXECUTOR"]
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://")
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    native = _native_env()
    assert native["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert native["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://")
    assert native["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert env["AIRFLOW__CORE__AUTH_MANAGER"] == native["AIRFLOW__CORE__AUTH_MANAGER"]
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"].lower() == native["AIRFLOW__CORE__LOAD_EXAMPLES"].lower() == "false"


def test_same_environment_names_everywhere():
    native = _native_env()
    for name in T.COMMON_ENV:
        assert name in native, f"the native run does not set {name}"
        assert name in COMMON["environment"], f"x-airflow-common does not set {name}"
        for service in AIRFLOW_SERVICES:
            assert name in SERVICES[service]["environment"], f"{service} does not get {name}"
    env = COMMON["environment"]
    assert env[T.CONN_ENV] == "${AIRFLOW_CONN_FAL_DEFAULT:-}"  # from .env
    assert env[T.POOL_NAME_ENV] == T.POOL_NAME == native[T.POOL_NAME_ENV]
    assert env[T.POOL_SLOTS_ENV] == f"${{FAL_VIDEO_POOL_SLOTS:-{T.POOL_SLOTS}}}"
    assert native[T.POOL_SLOTS_ENV] == str(T.POOL_SLOTS)
    assert env[T.ARCHIVE_ENV] == "/opt/airflow/archive"


def test_init_migrates_and_creates_the_pool_counting_deferred():
    init = SERVICES[T.INIT_SERVICE]
    script = "\n".join(_command(init))
    assert "airflow db migrate" in script
    pool_lines = [line for line in script.splitlines() if "airflow pools set" in line]
    assert len(pool_lines) == 1
    assert '"$${FAL_VIDEO_POOL}" "$${FAL_VIDEO_POOL_SLOTS}"' in pool_lines[0]
    assert pool_lines[0].rstrip().endswith("--include-deferred")
    assert list(T.INIT_COMMANDS[0]) == ["db", "migrate"]
    assert T.INIT_COMMANDS[1][:2] == ("pools", "set") and T.INIT_COMMANDS[1][-1] == "--include-deferred"
    assert "SIMPLE_AUTH_MANAGER_PASSWORDS_FILE" in script


def test_project_folders_are_mounted_where_the_project_layout_expects_them():
    for service in AIRFLOW_SERVICES:
        targets = {v.rsplit(":", 1)[1] for v in SERVICES[service]["volumes"]}
        for folder in T.MOUNTED_DIRS:
            assert f"/opt/airflow/{folder}" in targets, f"{service} does not mount {folder}/"
    sources = {v.rsplit(":", 1)[1]: v.rsplit(":", 1)[0] for v in COMMON["volumes"]}
    for folder in ("dags", "plugins", "include"):
        assert sources[f"/opt/airflow/{folder}"] == f"${{AIRFLOW_PROJ_DIR:-.}}/{folder}"


def test_same_airflow_version_everywhere():
    version = _pinned(ROOT / "requirements.txt", "apache-airflow")
    assert version == T.AIRFLOW_VERSION == _pinned(ROOT / "requirements-lock.txt", "apache-airflow")
    from importlib.metadata import version as installed

    assert installed("apache-airflow") == version
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(rf"^FROM apache/airflow:{re.escape(version)}-python{T.PYTHON_VERSION}\s*$", dockerfile, re.M)
    assert "requirements-lock.txt" in dockerfile
    assert version in COMMON["image"]
    celery_provider = _pinned(ROOT / "requirements.txt", "apache-airflow-providers-celery")
    assert celery_provider == _pinned(ROOT / "requirements-lock.txt", "apache-airflow-providers-celery")


def test_emulator_is_optional():
    emulator = SERVICES[T.EMULATOR_SERVICE]
    assert emulator["profiles"] == [T.EMULATOR_PROFILE]
    assert emulator["entrypoint"][-2:] == ["-m", "fal_emulator"]
    for service in AIRFLOW_SERVICES:
        assert T.EMULATOR_SERVICE not in SERVICES[service].get("depends_on", {})


def test_only_loopback_ports_are_published():
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_env_example_names_every_variable_and_holds_no_secret():
    example = (ROOT / ".env.example").read_text()
    values = dict(line.split("=", 1) for line in example.splitlines() if line and not line.startswith("#"))
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", (ROOT / "docker-compose.yaml").read_text()))
    optional = {"AIRFLOW_IMAGE_NAME", "AIRFLOW_PROJ_DIR", "FAL_VIDEO_PARALLELISM", "FAL_VIDEO_WORKERS",
                "FAL_EMULATOR_TIME_SCALE", "FAL_EMULATOR_CONCURRENCY"}  # fmt: skip
    assert used - optional <= set(values), f"not in .env.example: {used - optional - set(values)}"
    for secret in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__CORE__FERNET_KEY",
                   "_AIRFLOW_WWW_USER_PASSWORD"):  # fmt: skip
        assert values[secret] == "", f"{secret} must be empty in .env.example"
    assert "YOUR_FAL_KEY_ID:YOUR_FAL_KEY_SECRET" in values[T.CONN_ENV]


def test_lock_file_has_what_airflow_needs_on_postgres_and_celery():
    """Airflow 3 opens an async engine (postgresql+asyncpg) next to psycopg2, and providers-celery 3.26.0
    imports `celery.backends.database.retry`, which celery 5.7 removed. The native run works around both
    (include/stack/native.py); the Docker image installs the lock file as it is, so the lock must be right."""
    lock = ROOT / "requirements-lock.txt"
    problems = []
    if not _pinned(lock, "asyncpg"):
        problems.append("asyncpg is not pinned (Airflow's async metadata engine on Postgres needs it)")
    celery = _pinned(lock, "celery") or ""
    if tuple(int(x) for x in celery.split(".")[:2]) >= (5, 7):
        problems.append(f"celery=={celery}: providers-celery 3.26.0 cannot import it (pin celery==5.6.3)")
    assert not problems, "; ".join(problems)

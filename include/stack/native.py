"""The distributed Airflow topology as native processes on one machine.

scheduler, dag-processor, triggerer, api-server (127.0.0.1, a free port) and N Celery workers, with
CeleryExecutor on a fresh PostgreSQL database (127.0.0.1:5432, user postgres, trust auth) and a free Redis
database number (127.0.0.1:6379). Everything of a stack lives in ``.airflow/stack-<name>/``:

    stack.json         what was started: database, redis db, ports, pids (the state `stop` works from)
    env.json           the environment every component got (mode 0600: it holds the stack's secrets)
    passwords.json     SimpleAuthManager passwords ({"admin": ...}), mode 0600
    logs/<c>.log       stdout+stderr of each component (scheduler, dag-processor, triggerer, api-server,
                       worker-1, worker-2, init)
    pids/<c>.pid       the pid of each component (each is the leader of its own process group)
    airflow/           Airflow's own log folder (task logs, dag-processor logs)

Each component runs in its own session/process group; `stop` sends SIGTERM to every group, SIGKILL after a
grace period, then sweeps any process still carrying this stack's marker variable, drops the database
and flushes the Redis database.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from . import topology as T

ROOT = T.ROOT
VENV_BIN = ROOT / ".venv" / "bin"
PG_DSN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres"}
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
MARKER_ENV = "FAL_VIDEO_STACK"  # every process of a stack carries FAL_VIDEO_STACK=<name>
REDIS_OWNER_KEY = "fal_video_stack:owner"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


class StackError(RuntimeError):
    pass


def stack_home(name: str) -> Path:
    return ROOT / ".airflow" / f"stack-{name}"


def airflow_bin() -> str:
    candidate = VENV_BIN / "airflow"
    if candidate.exists():
        return str(candidate)
    return str(Path(sys.executable).with_name("airflow"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, pgid) of a live process, None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[2])


def pid_alive(pid: int) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    out = []
    for pid in _all_pids():
        stat = _proc_stat(pid)
        if stat and stat[1] == pgid and stat[0] not in ("Z", "X"):
            out.append(pid)
    return out


def marked_processes(name: str) -> list[int]:
    """Live processes whose environment says they belong to stack `name` (catches anything that left its group)."""
    needle = f"{MARKER_ENV}={name}".encode()
    me = os.getpid()
    out = []
    for pid in _all_pids():
        if pid == me:
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and pid_alive(pid):
            out.append(pid)
    return out


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def terminate_groups(pgids: list[int], grace: float, reap: dict[int, subprocess.Popen] | None = None) -> None:
    """SIGTERM every group, wait up to `grace` seconds for them to empty, then SIGKILL what is left."""
    for pgid in pgids:
        _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(reap)
        if not any(group_members(g) for g in pgids):
            return
        time.sleep(0.2)
    for pgid in pgids:
        _signal_group(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(group_members(g) for g in pgids):
        _reap(reap)
        time.sleep(0.1)
    _reap(reap)


def _reap(popens: dict[int, subprocess.Popen] | None) -> None:
    for proc in (popens or {}).values():
        with contextlib.suppress(Exception):
            proc.poll()


# ---------------------------------------------------------------------------------------------------------------
# Postgres / Redis
# ---------------------------------------------------------------------------------------------------------------


def _pg():
    import psycopg2

    conn = psycopg2.connect(**PG_DSN, connect_timeout=5)
    conn.autocommit = True
    return conn


def create_database(db_name: str) -> None:
    conn = _pg()
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
            cur.execute(f'CREATE DATABASE "{db_name}"')
    finally:
        conn.close()


TEMPLATE_READY = "fal_video stack template: migrated"


def template_name() -> str:
    """Per Airflow version and migration set, so an upgrade never clones an old schema."""
    import hashlib
    from importlib.metadata import version

    spec = importlib.util.find_spec("airflow")  # without importing it (that would configure Airflow here)
    assert spec and spec.submodule_search_locations
    versions = Path(next(iter(spec.submodule_search_locations))) / "migrations" / "versions"
    digest = hashlib.sha1("\n".join(sorted(p.name for p in versions.glob("*.py"))).encode()).hexdigest()[:8]
    return f"fal_video_tmpl_{version('apache-airflow').replace('.', '_')}_{digest}"


def drop_database(db_name: str) -> None:
    conn = _pg()
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    finally:
        conn.close()


def database_exists(db_name: str) -> bool:
    conn = _pg()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db_name,))
            return cur.fetchone() is not None
    finally:
        conn.close()


def _redis(db: int):
    import redis

    return redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db, socket_timeout=5)


def claim_redis_db(name: str) -> int:
    """An empty Redis database number (1..15), claimed with an owner key so that parallel stacks never share one."""
    for db in range(1, 16):
        client = _redis(db)
        try:
            if client.dbsize() == 0 and client.set(REDIS_OWNER_KEY, name, nx=True):
                return db
        finally:
            client.close()
    raise StackError("no free Redis database (1..15): stop other stacks or flush unused databases")


def release_redis_db(db: int, name: str) -> None:
    client = _redis(db)
    try:
        owner = client.get(REDIS_OWNER_KEY)
        if owner is None or owner.decode() == name:
            client.flushdb()
    finally:
        client.close()


# ---------------------------------------------------------------------------------------------------------------
# The stack
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class ProcInfo:
    name: str
    pid: int
    pgid: int
    argv: list[str]
    log: str
    started_at: float


@dataclass
class StackState:
    name: str
    home: str
    db_name: str
    redis_db: int
    api_port: int
    workers: int
    worker_concurrency: int
    pool_slots: int
    status: str = "created"  # created | starting | running | stopped | failed
    procs: dict[str, ProcInfo] = field(default_factory=dict)
    worker_log_ports: dict[str, int] = field(default_factory=dict)
    started_at: float = 0.0
    ready_seconds: float | None = None

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> StackState:
        data = json.loads(path.read_text())
        data["procs"] = {k: ProcInfo(**v) for k, v in data.get("procs", {}).items()}
        return cls(**data)


class NativeStack:
    """Start/stop/inspect one named stack. The state file makes it usable from separate CLI invocations."""

    def __init__(
        self,
        name: str = "default",
        env_extra: dict[str, str] | None = None,
        workers: int = 2,
        worker_concurrency: int = T.WORKER_CONCURRENCY,
        pool_slots: int = T.POOL_SLOTS,
        parallelism: int = T.PARALLELISM,
        use_template: bool = True,
    ):
        if not re.fullmatch(r"[a-z0-9][a-z0-9_]{0,30}", name):
            raise StackError(f"stack name must match [a-z0-9][a-z0-9_]{{0,30}}: {name!r}")
        self.name = name
        self.home = stack_home(name)
        self.env_extra = {k: str(v) for k, v in (env_extra or {}).items()}
        self.workers = workers
        self.worker_concurrency = worker_concurrency
        self.pool_slots = pool_slots
        self.parallelism = parallelism
        self.use_template = use_template
        self._popens: dict[int, subprocess.Popen] = {}
        self.state: StackState | None = None
        if self.state_file.exists():
            self.state = StackState.load(self.state_file)

    # --- paths ---------------------------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.home / "stack.json"

    @property
    def env_file(self) -> Path:
        return self.home / "env.json"

    @property
    def passwords_file(self) -> Path:
        return self.home / "passwords.json"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def pids_dir(self) -> Path:
        return self.home / "pids"

    @property
    def airflow_logs_dir(self) -> Path:
        return self.home / "airflow"

    @property
    def api_url(self) -> str:
        if not self.state:
            raise StackError(f"stack {self.name!r} has no state: start it first")
        return f"http://127.0.0.1:{self.state.api_port}"

    def admin_credentials(self) -> tuple[str, str]:
        return T.ADMIN_USER, json.loads(self.passwords_file.read_text())[T.ADMIN_USER]

    def env(self) -> dict[str, str]:
        return json.loads(self.env_file.read_text())

    # --- environment ---------------------------------------------------------------------------------------
    def _build_env(self, st: StackState) -> dict[str, str]:
        from cryptography.fernet import Fernet

        inherited = {
            k: v
            for k, v in os.environ.items()
            if not (k.startswith("AIRFLOW__") or k in ("AIRFLOW_HOME", "AIRFLOW_CONFIG", "PYTEST_CURRENT_TEST"))
        }
        db_url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{st.db_name}"
        api = f"http://127.0.0.1:{st.api_port}"
        env = {
            **inherited,
            MARKER_ENV: self.name,
            "AIRFLOW_HOME": str(self.home),
            "PATH": os.pathsep.join([str(VENV_BIN), inherited.get("PATH", "/usr/bin:/bin")]),
            "PYTHONPATH": os.pathsep.join(
                p for p in [str(ROOT / "plugins"), str(ROOT / "include"), inherited.get("PYTHONPATH", "")] if p
            ),
            "PYTHONUNBUFFERED": "1",
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.airflow_logs_dir),
            "AIRFLOW__CORE__EXECUTOR": T.EXECUTOR,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
            "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{st.redis_db}",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://postgres@127.0.0.1:5432/{st.db_name}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
            "AIRFLOW__API__BASE_URL": api,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(st.api_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            T.USERS_ENV: f"{T.ADMIN_USER}:admin",
            T.PASSWORDS_FILE_ENV: str(self.passwords_file),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(next(iter(st.worker_log_ports.values()), 8793)),
            T.POOL_NAME_ENV: T.POOL_NAME,
            T.POOL_SLOTS_ENV: str(self.pool_slots),
        }
        env.setdefault(T.ARCHIVE_ENV, str(ROOT / "archive"))  # the DAG's own default, made explicit
        if T.CONN_ENV not in env and T.CONN_ENV not in self.env_extra:
            print(f"warning: {T.CONN_ENV} is not set: the DAG's fal tasks will fail", file=sys.stderr)
        env.update(self.env_extra)
        return env

    # --- lifecycle -----------------------------------------------------------------------------------------
    def is_running(self) -> bool:
        return bool(self.state and any(pid_alive(p.pid) or group_members(p.pgid) for p in self.state.procs.values()))

    def start(self, timeout: float = 240.0) -> float:
        """Create everything and start every component; returns seconds until the stack was ready."""
        if self.is_running():
            raise StackError(f"stack {self.name!r} is already running ({self.state_file}); stop it first")
        t0 = time.monotonic()
        if self.home.exists():
            shutil.rmtree(self.home)
        for d in (self.home, self.logs_dir, self.pids_dir, self.airflow_logs_dir):
            d.mkdir(parents=True, exist_ok=True)
        st = StackState(
            name=self.name,
            home=str(self.home),
            db_name=f"fal_video_{self.name}_{secrets.token_hex(3)}",
            redis_db=0,
            api_port=free_port(),
            workers=self.workers,
            worker_concurrency=self.worker_concurrency,
            pool_slots=self.pool_slots,
            status="starting",
            started_at=time.time(),
        )
        st.worker_log_ports = {f"worker-{i}": free_port() for i in range(1, self.workers + 1)}
        self.state = st
        try:
            if not self.use_template:
                create_database(st.db_name)
            st.redis_db = claim_redis_db(self.name)
            st.save(self.state_file)
            env = self._build_env(st)
            self.env_file.write_text(json.dumps(env, indent=2))
            self.env_file.chmod(0o600)
            self.passwords_file.write_text(json.dumps({T.ADMIN_USER: secrets.token_urlsafe(12)}) + "\n")
            self.passwords_file.chmod(0o600)

            if self.use_template:
                # A clone of a database migrated once per Airflow version: a fresh database without paying
                # `airflow db migrate` (~15 s on 2 cores) on every start.
                self._clone_migrated_template(st.db_name, env)
            else:
                self._run_init(T.INIT_COMMANDS[0], env)  # db migrate: everything else needs the schema
            # The pool is created while the components boot (both only need the schema).
            pool_cmd = ("pools", "set", T.POOL_NAME, str(self.pool_slots), T.POOL_DESCRIPTION, "--include-deferred")
            pool_proc = self._popen("init-pool", [airflow_bin(), *pool_cmd], env)
            for comp in T.COMPONENTS:
                if comp.name == "worker":
                    for wname in st.worker_log_ports:
                        self._spawn(wname, env)
                else:
                    self._spawn(comp.name, env)
            if pool_proc.wait(timeout=120) != 0:
                raise StackError(f"`airflow {' '.join(pool_cmd)}` failed: see {self.logs_dir / 'init-pool.log'}")
            self.wait_ready(timeout=max(10.0, timeout - (time.monotonic() - t0)))
        except BaseException:
            st.status = "failed"
            st.save(self.state_file)
            raise
        st.status = "running"
        st.ready_seconds = round(time.monotonic() - t0, 1)
        st.save(self.state_file)
        return st.ready_seconds

    def _clone_migrated_template(self, db_name: str, env: dict[str, str]) -> None:
        template = template_name()
        conn = _pg()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_lock(hashtext(%s))", (template,))  # one creator at a time
                try:
                    cur.execute(
                        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                        (template,),
                    )
                    row = cur.fetchone()
                    if not row or row[0] != TEMPLATE_READY:
                        cur.execute(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
                        cur.execute(f'CREATE DATABASE "{template}"')
                        tmpl_env = dict(env)
                        for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND"):
                            tmpl_env[key] = env[key].rsplit("/", 1)[0] + f"/{template}"
                        self._run_init(T.INIT_COMMANDS[0], tmpl_env)
                        cur.execute(f"COMMENT ON DATABASE \"{template}\" IS '{TEMPLATE_READY}'")
                    for attempt in range(20):  # a concurrent clone of the same template holds it briefly
                        try:
                            cur.execute(f'CREATE DATABASE "{db_name}" TEMPLATE "{template}"')
                            break
                        except Exception as exc:
                            if "being accessed by other users" not in str(exc) or attempt == 19:
                                raise
                            time.sleep(0.5)
                finally:
                    cur.execute("SELECT pg_advisory_unlock(hashtext(%s))", (template,))
        finally:
            conn.close()

    def _run_init(self, cmd: tuple[str, ...], env: dict[str, str]) -> None:
        log = self.logs_dir / "init.log"
        with log.open("a") as fh:
            fh.write(f"$ airflow {' '.join(cmd)}\n")
            fh.flush()
            done = subprocess.run([airflow_bin(), *cmd], env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            raise StackError(f"`airflow {' '.join(cmd)}` failed ({done.returncode}): see {log}")

    def _popen(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = self.logs_dir / f"{name}.log"
        with log.open("ab") as fh:
            fh.write(f"=== {datetime.now().isoformat()} $ {' '.join(argv)}\n".encode())
            fh.flush()
            proc = subprocess.Popen(
                argv,
                env=env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own session and process group: stopped as a group
            )
        self._popens[proc.pid] = proc
        return proc

    def component_argv(self, name: str) -> list[str]:
        st = self.state
        assert st is not None
        if name.startswith("worker-"):
            return [airflow_bin(), "celery", "worker", "--celery-hostname", f"{name}.{self.name}@%h"]
        if name == "api-server":
            return [airflow_bin(), "api-server", "--host", "127.0.0.1", "--port", str(st.api_port), "--workers", "1"]
        (comp,) = [c for c in T.COMPONENTS if c.name == name]
        return [airflow_bin(), *comp.command]

    def _spawn(self, name: str, env: dict[str, str]) -> ProcInfo:
        st = self.state
        assert st is not None
        env = dict(env)
        if name in st.worker_log_ports:  # two workers on one host: each serves its logs on its own port
            env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(st.worker_log_ports[name])
        argv = self.component_argv(name)
        proc = self._popen(name, argv, env)
        info = ProcInfo(name, proc.pid, os.getpgid(proc.pid), argv, str(self.logs_dir / f"{name}.log"), time.time())
        st.procs[name] = info
        (self.pids_dir / f"{name}.pid").write_text(f"{proc.pid}\n")
        st.save(self.state_file)
        return info

    # --- readiness -----------------------------------------------------------------------------------------
    def health(self) -> dict[str, Any] | None:
        import requests

        try:
            resp = requests.get(f"{self.api_url}/api/v2/monitor/health", timeout=5)
        except requests.RequestException:
            return None
        return resp.json() if resp.ok else None

    def workers_ready(self) -> list[str]:
        """Workers whose log shows Celery's `... ready.` line (printed once the worker consumes the queue)."""
        st = self.state
        assert st is not None
        ready = []
        for wname in st.worker_log_ports:
            log = self.logs_dir / f"{wname}.log"
            if log.exists() and re.search(rb"@\S+ ready\.", log.read_bytes()):
                ready.append(wname)
        return ready

    def dead_components(self) -> list[str]:
        st = self.state
        assert st is not None
        return [n for n, p in st.procs.items() if not pid_alive(p.pid)]

    def wait_ready(self, timeout: float = 180.0, since: float | None = None) -> dict[str, Any]:
        """Until the API answers, scheduler/triggerer/dag-processor are healthy and every worker is ready.

        `since` (epoch seconds): also require the triggerer heartbeat to be newer (after a triggerer restart).
        """
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            dead = self.dead_components()
            if dead:
                tails = "\n".join(f"--- {d}:\n{self.tail(d)}" for d in dead)
                raise StackError(f"components exited during start-up: {dead}\n{tails}")
            last = self.health()
            if last and _all_healthy(last, since) and len(self.workers_ready()) == len(self.state.worker_log_ports):
                return last
            time.sleep(1.0)
        raise StackError(f"stack {self.name!r} not ready after {timeout:.0f}s; last health: {last}; "
                         f"workers ready: {self.workers_ready()}; logs in {self.logs_dir}")  # fmt: skip

    def tail(self, name: str, lines: int = 30) -> str:
        log = self.logs_dir / f"{name}.log"
        if not log.exists():
            return "(no log)"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    # --- stop / restart ------------------------------------------------------------------------------------
    def stop(self, grace: float = 20.0, drop_db: bool = True) -> list[int]:
        """Stop every component by process group; returns pids that were still alive afterwards (should be [])."""
        st = self.state
        if st is None:
            return []
        pgids = sorted({p.pgid for p in st.procs.values()})
        terminate_groups(pgids, grace, self._popens)
        leftovers = marked_processes(self.name)  # anything that escaped its group (own session)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2 if leftovers else 0)
        _reap(self._popens)
        still = [p for p in marked_processes(self.name)] + [p for g in pgids for p in group_members(g)]
        if drop_db:
            with contextlib.suppress(Exception):
                drop_database(st.db_name)
            with contextlib.suppress(Exception):
                if st.redis_db:
                    release_redis_db(st.redis_db, self.name)
        st.status = "stopped"
        st.save(self.state_file)
        for pidfile in self.pids_dir.glob("*.pid"):
            pidfile.unlink()
        return sorted(set(still))

    def restart(self, name: str, sig: int = signal.SIGTERM, grace: float = 20.0, wait: bool = True) -> ProcInfo:
        """Stop one component (by its process group; SIGKILL for a crash) and start a new one in its place."""
        st = self.state
        if st is None or name not in st.procs:
            raise StackError(f"no component {name!r} in stack {self.name!r}")
        old = st.procs[name]
        _signal_group(old.pgid, sig)
        if sig != signal.SIGKILL:
            terminate_groups([old.pgid], grace, self._popens)
        else:
            terminate_groups([old.pgid], 5.0, self._popens)
        restarted_at = time.time()
        info = self._spawn(name, self.env())
        if wait:
            self.wait_ready(timeout=120, since=restarted_at if name == "triggerer" else None)
        return info

    def status(self) -> dict[str, Any]:
        st = self.state
        if st is None:
            return {"name": self.name, "status": "absent"}
        return {
            "name": self.name,
            "status": st.status,
            "api_url": self.api_url,
            "database": st.db_name,
            "redis_db": st.redis_db,
            "ready_seconds": st.ready_seconds,
            "home": st.home,
            "components": {
                n: {"pid": p.pid, "alive": pid_alive(p.pid), "group": len(group_members(p.pgid)), "log": p.log}
                for n, p in st.procs.items()
            },
            "health": self.health() if st.status == "running" else None,
        }


def _all_healthy(health: dict[str, Any], since: float | None = None) -> bool:
    for key in ("metadatabase", "scheduler", "triggerer", "dag_processor"):
        if (health.get(key) or {}).get("status") != "healthy":
            return False
    if since is not None:
        beat = (health.get("triggerer") or {}).get("latest_triggerer_heartbeat")
        if not beat or datetime.fromisoformat(beat.replace("Z", "+00:00")).timestamp() < since:
            return False
    return True

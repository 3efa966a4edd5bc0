"""CLI: python -m stack start|stop|status|wait|restart <component> [--name NAME] (run from include/)."""

from __future__ import annotations

import argparse
import json
import signal
import sys

from . import topology as T
from .native import NativeStack, StackError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        p.add_argument("--name", default="default", help="stack name: .airflow/stack-<name>/ (default: default)")
        return p

    p = add("start", "create a fresh database and start every component, wait until healthy")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--worker-concurrency", type=int, default=T.WORKER_CONCURRENCY)
    p.add_argument("--pool-slots", type=int, default=T.POOL_SLOTS, help=f"slots of the {T.POOL_NAME} pool")
    p.add_argument("--parallelism", type=int, default=T.PARALLELISM)
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="extra env for every component")
    p.add_argument("--timeout", type=float, default=240)
    p.add_argument(
        "--no-template",
        action="store_true",
        help="run `airflow db migrate` on the new database instead of cloning the once-migrated template database",
    )
    p = add("stop", "stop every component (SIGTERM, SIGKILL after --grace), drop the database")
    p.add_argument("--grace", type=float, default=20)
    p.add_argument("--keep-db", action="store_true")
    add("status", "print the state of every component and the health endpoint as JSON")
    p = add("wait", "wait until the stack is healthy")
    p.add_argument("--timeout", type=float, default=180)
    p = add("restart", "stop one component and start a new one (e.g. restart triggerer)")
    p.add_argument("component", help="scheduler, dag-processor, triggerer, api-server, worker-1, ...")
    p.add_argument("--kill", action="store_true", help="SIGKILL (a crash) instead of SIGTERM")
    args = parser.parse_args(argv)

    try:
        if args.cmd == "start":
            env = dict(kv.split("=", 1) for kv in args.env)
            stack = NativeStack(args.name, env_extra=env, workers=args.workers,
                                worker_concurrency=args.worker_concurrency, pool_slots=args.pool_slots,
                                parallelism=args.parallelism, use_template=not args.no_template)  # fmt: skip
            try:
                seconds = stack.start(timeout=args.timeout)
            except BaseException:
                print(f"start failed; stopping what was started (logs kept in {stack.logs_dir})", file=sys.stderr)
                stack.stop(grace=5)
                raise
            user, _password = stack.admin_credentials()
            print(f"stack {args.name!r} ready in {seconds:.1f}s")
            print(f"  api:      {stack.api_url}  (user {user}, password in {stack.passwords_file})")
            print(f"  database: {stack.state.db_name}   redis db: {stack.state.redis_db}")
            print(f"  logs:     {stack.logs_dir}   pids: {stack.pids_dir}")
            print(f"  stop:     cd include && python -m stack stop --name {args.name}")
            return 0
        stack = NativeStack(args.name)
        if args.cmd == "stop":
            if stack.state is None:
                print(f"no stack {args.name!r}")
                return 0
            left = stack.stop(grace=args.grace, drop_db=not args.keep_db)
            print(f"stack {args.name!r} stopped" + (f"; STILL ALIVE: {left}" if left else "; no process left"))
            return 1 if left else 0
        if args.cmd == "status":
            print(json.dumps(stack.status(), indent=2))
            return 0
        if args.cmd == "wait":
            print(json.dumps(stack.wait_ready(timeout=args.timeout), indent=2))
            return 0
        if args.cmd == "restart":
            info = stack.restart(args.component, sig=signal.SIGKILL if args.kill else signal.SIGTERM)
            print(f"{args.component} restarted: pid {info.pid}")
            return 0
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())

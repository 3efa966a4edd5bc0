"""Command line: ``python -m fal_emulator --host 127.0.0.1 --port 8765 [options]``.

Prints ``fal emulator listening on http://HOST:PORT`` (flushed) once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

_PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
if _PLUGINS.is_dir() and str(_PLUGINS) not in sys.path:
    sys.path.insert(0, str(_PLUGINS))  # the shared model catalog (fal_video.catalog) lives there

import uvicorn  # noqa: E402

from fal_emulator.app import create_app  # noqa: E402
from fal_emulator.emulator import Emulator  # noqa: E402
from fal_emulator.settings import Settings  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fal_emulator", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    p.add_argument("--time-scale", type=float, help="multiply simulated queue/generation times (e.g. 0.01)")
    p.add_argument("--keys", help="comma-separated accepted keys; default: any non-empty Key/Bearer")
    p.add_argument("--concurrency", type=int, help="running jobs per key (default 10)")
    p.add_argument("--seed", type=int, help="seed for the simulated times (default 0)")
    p.add_argument("--config", type=Path, help='JSON file: {"settings": {...}, "faults": [{"kind": ...}, ...]}')
    p.add_argument("--media-dir", type=Path, help="where rendered MP4s are cached (default: a temp dir)")
    p.add_argument("--fault", action="append", default=[], metavar="KIND[:name=value,...]",
                   help="arm a fault, e.g. result_504:count=2 or ingress_error:status=503,on=status")  # fmt: skip
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="any setting, e.g. log_window=3")
    return p.parse_args(argv)


def parse_fault(text: str) -> dict[str, Any]:
    """``kind:a=1,b=x`` -> ``{"kind": "kind", "a": 1, "b": "x"}`` (values parsed as JSON when they can be)."""
    kind, _, rest = text.partition(":")
    spec: dict[str, Any] = {"kind": kind}
    for pair in filter(None, rest.split(",")):
        name, _, value = pair.partition("=")
        spec[name.strip()] = _value(value.strip())
    return spec


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def build(args: argparse.Namespace) -> tuple[Settings, list[dict[str, Any]]]:
    config = json.loads(args.config.read_text()) if args.config else {}
    if "settings" not in config and "faults" not in config:
        config = {"settings": config}
    settings = Settings()
    settings.update(config.get("settings") or {})
    flags = {
        "time_scale": args.time_scale, "concurrency": args.concurrency, "seed": args.seed,
        "keys": [k for k in args.keys.split(",") if k] if args.keys else None,
    }  # fmt: skip
    settings.update({name: value for name, value in flags.items() if value is not None})
    settings.update({name: _value(value) for name, _, value in (pair.partition("=") for pair in args.set)})
    faults = list(config.get("faults") or []) + [parse_fault(f) for f in args.fault]
    return settings, faults


async def serve(args: argparse.Namespace) -> None:
    settings, faults = build(args)
    media_dir = args.media_dir or Path(tempfile.mkdtemp(prefix="fal-emulator-"))
    emulator = Emulator(settings, media_dir, faults)
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(emulator), log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=1, timeout_keep_alive=30, backlog=2048)  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            print(f"fal emulator listening on http://{args.host}:{port}", flush=True)
        await task
    finally:
        if not args.media_dir:
            shutil.rmtree(media_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        import uvloop

        uvloop.run(serve(args))
    except ImportError:  # pragma: no cover - uvloop is optional
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()

"""Helpers for the security tests: a leak scanner, a recording HTTP server, tree snapshots, DAG runs.

The scanner looks for every form a fal key could take on its way out: the whole key, its ``key_id``
and ``secret`` halves, base64 (standard and URL-safe, also of ``Key <key>`` as in a header dump)
and URL-encoded forms. ``planted`` tests in test_scanner.py prove it finds each of them.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote

from stack.local_airflow import AIRFLOW, DagRun, airflow_env, write_csv
from stack.local_airflow import dags_test as run_dags_test

ROOT = Path(__file__).resolve().parents[2]
__all__ = ["AIRFLOW", "DagRun", "airflow_env", "write_csv"]  # re-exported for the security tests


def distinctive_key() -> str:
    """``key_id:secret`` like a real fal key, both halves unique to this session."""
    return f"fal-key-LEAKCHECK-{secrets.token_hex(6)}:sec-LEAKCHECK-{secrets.token_hex(12)}"


def leak_forms(key: str) -> dict[str, bytes]:
    """Every encoding of the key (and of each half) the scan looks for, by name."""
    key_id, _, secret = key.partition(":")
    forms: dict[str, str] = {"key": key, "key_id": key_id, "secret": secret}
    for name, value in (("key", key), ("key_id", key_id), ("secret", secret), ("header", f"Key {key}")):
        forms[f"b64({name})"] = base64.b64encode(value.encode()).decode().rstrip("=")
        forms[f"b64url({name})"] = base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")
    forms["urlquote(key)"] = quote(key, safe="")
    forms["urlquote_plus(header)"] = quote_plus(f"Key {key}")
    return {name: value.encode() for name, value in forms.items()}


@dataclass
class Finding:
    where: str
    form: str

    def __str__(self) -> str:
        return f"{self.where}: {self.form}"


@dataclass
class LeakScan:
    """Scans bytes, text, files and trees; counts what it looked at so an empty scan cannot pass."""

    key: str
    forms: dict[str, bytes] = field(init=False)
    findings: list[Finding] = field(default_factory=list)
    scanned: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.forms = leak_forms(self.key)

    def bytes(self, where: str, data: bytes) -> list[Finding]:
        self.scanned.append(where)
        found = [Finding(where, name) for name, needle in self.forms.items() if needle in data]
        self.findings.extend(found)
        return found

    def text(self, where: str, text: str) -> list[Finding]:
        return self.bytes(where, text.encode("utf-8", "surrogateescape"))

    def value(self, where: str, value: Any) -> list[Finding]:
        """A database value: bytes as they are, everything else as its text (JSON for containers)."""
        if value is None:
            return []
        if isinstance(value, memoryview):
            value = value.tobytes()
        if isinstance(value, bytes):
            return self.bytes(where, value)
        if isinstance(value, (dict, list)):
            return self.text(where, json.dumps(value, default=str))
        return self.text(where, str(value))

    def tree(self, root: Path, *, skip: Iterable[Path] = ()) -> list[Finding]:
        """Every regular file under ``root`` (symlinks not followed), byte for byte."""
        skipped = {p.resolve() for p in skip}
        found: list[Finding] = []
        for path in sorted(walk_files(root)):
            if path.resolve() in skipped:
                continue
            found += self.bytes(str(path), path.read_bytes())
        return found


def walk_files(root: Path) -> Iterator[Path]:
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():
                yield path


def snapshot(root: Path) -> set[str]:
    """Every path (files, folders, links) under ``root``, relative, for before/after comparisons."""
    out = set()
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            out.add(os.path.relpath(os.path.join(folder, name), root))
    return out


# --- a loopback HTTP server that records every request and answers from a table -----------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


class RecordingServer:
    """``route(path, status, headers, body)``; every request is kept in ``seen`` with all its headers."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.seen: list[Seen] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.seen.append(Seen("GET", self.path, {k.lower(): v for k, v in self.headers.items()}))
                status, headers, body = owner.routes.get(self.path, (404, {}, b"not found"))
                if self.path.startswith("/bounce?to="):  # 302 to the URL in `to`, reached as localhost
                    target = unquote(self.path.removeprefix("/bounce?to=")).replace("//127.0.0.1:", "//localhost:")
                    status, headers, body = 302, {"Location": target}, b""
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_HEAD = do_GET

            def log_message(self, *_args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def route(self, path: str, status: int = 200, headers: dict[str, str] | None = None, body: bytes = b"") -> str:
        self.routes[path] = (status, headers or {}, body)
        return f"http://127.0.0.1:{self.port}{path}"

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        return self.route(path, status, {"Location": location})

    def hits(self, prefix: str) -> list[Seen]:
        return [s for s in self.seen if s.path.startswith(prefix)]

    def bounce(self) -> str:
        """A URL template for the emulator's ``url`` fault: 302 from here to the real media URL on localhost."""
        return f"http://127.0.0.1:{self.port}/bounce?to={{url}}"

    def __enter__(self) -> RecordingServer:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --- `airflow dags test` with a connection of our choosing ----------------------------------------


def dags_test(home: Path, base_url: str, key: str, csv_path: Path, archive: Path, *,
              extra: dict[str, Any] | None = None, **params: Any) -> DagRun:  # fmt: skip
    """``airflow dags test`` with a connection of our choosing (``extra``); failures never fail the run."""
    conf = {"prompts_csv": str(csv_path), "archive_root": str(archive), "poll_interval_seconds": 0.2,
            "chunk_size": 4, "failure_policy": "never", **params}  # fmt: skip
    return run_dags_test(home, airflow_env(home, base_url, key, extra=extra), conf)

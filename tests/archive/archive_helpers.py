"""Builders shared by the archive tests: outcomes, a fast retry policy, a misbehaving media server."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fal_video.http import RetryPolicy
from fal_video.records import Outcome

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02, connect_timeout=2.0, read_timeout=5.0)
HTML = b"<!DOCTYPE html><html><body><h1>Access denied</h1></body></html>"


def outcome(url: str | None, key: str = "a1b2c3d4e5f6a1b2c3d4e5f6", **video) -> Outcome:
    """A succeeded Outcome whose fal File points at ``url``."""
    return Outcome(job_key=key, request_id=f"req-{key}", state="succeeded", video={"url": url, **video})


@dataclass
class Reply:
    """One canned answer. ``truncate_at`` sends only that many body bytes (with the full
    Content-Length), waits for ``stall`` if given, then drops the connection."""

    status: int = 200
    body: bytes = b""
    content_type: str | None = "video/mp4"
    headers: dict[str, str] = field(default_factory=dict)
    truncate_at: int | None = None
    stall: threading.Event | None = None


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


class MediaServer:
    """A threaded HTTP server on 127.0.0.1. ``route(path, *replies)``: successive requests get
    successive replies, the last one repeats. Every request's headers are recorded in ``seen``."""

    def __init__(self) -> None:
        self.routes: dict[str, list[Reply]] = {}
        self.seen: list[Seen] = []
        self.sent_partial = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server.seen.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}))
                replies = server.routes.get(self.path.split("?")[0]) or [Reply(404, b"not found", "text/plain")]
                reply = replies.pop(0) if len(replies) > 1 else replies[0]
                self._answer(reply)

            def _answer(self, reply: Reply) -> None:
                self.send_response(reply.status)
                if reply.content_type is not None:
                    self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if reply.truncate_at is None:
                    self.wfile.write(reply.body)
                    return
                self.wfile.write(reply.body[: reply.truncate_at])
                self.wfile.flush()
                server.sent_partial.set()
                if reply.stall is not None:
                    reply.stall.wait(30)
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def route(self, path: str, *replies: Reply) -> str:
        self.routes[path] = list(replies)
        return self.url(path)

    def hits(self, path: str) -> int:
        return sum(1 for s in self.seen if s.path.split("?")[0] == path)

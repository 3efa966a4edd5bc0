"""The CDN side: generated MP4s under ``/files/v3/<token>/output.mp4``.

Like fal's CDN the files are public (no auth), carry ``Content-Type: video/mp4`` and
``Content-Length``, honour single byte ranges (206) and may expire (``media_ttl_seconds`` or the
request's ``X-Fal-Object-Lifecycle-Preference``). Files are streamed from disk in chunks, so a
20 MB padded file costs no memory per request. Media faults (F11, D1, D3) are applied here.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from .faults import Hit
from .transport import RawResponse, Receive, Scope, Send, drop

CHUNK = 256 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
ACCESS_DENIED = (
    b"<!DOCTYPE html><html><head><title>Access denied</title></head>"
    b"<body><h1>Access denied</h1><p>You do not have permission to access this file.</p></body></html>"
)


@dataclass
class MediaFile:
    token: str
    path: Path
    size: int
    request_id: str
    expires_at: float | None
    name: str = "output.mp4"
    content_type: str = "video/mp4"

    def url(self, base: str) -> str:
        return f"{base.rstrip('/')}/files/v3/{self.token}/{self.name}"

    def as_file(self, base: str) -> dict[str, Any]:
        """The File object of a result body."""
        return {"url": self.url(base), "content_type": self.content_type, "file_name": self.name,
                "file_size": self.size}  # fmt: skip


class MediaStore:
    """Tokens -> files on disk."""

    def __init__(self) -> None:
        self._files: dict[str, MediaFile] = {}
        self.by_request: dict[str, MediaFile] = {}

    def add(self, path: Path, request_id: str, ttl: float | None) -> MediaFile:
        token = uuid.uuid4().hex
        expires = None if ttl is None else time.time() + ttl
        media = MediaFile(token, path, path.stat().st_size, request_id, expires)
        self._files[token] = media
        self.by_request[request_id] = media
        return media

    def get(self, token: str) -> MediaFile | None:
        return self._files.get(token)

    def clear(self) -> None:
        self._files.clear()
        self.by_request.clear()


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """``(start, end)`` inclusive for one byte range; None = whole file; "invalid" = 416."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if not match or match.groups() == ("", ""):
        return None  # multi-range or unparsable: serve the whole file, as many servers do
    first, last = match.groups()
    if first == "":
        length = int(last)
        if length == 0:
            return "invalid"
        return max(0, size - length), size - 1
    start, end = int(first), int(last) if last else size - 1
    if start >= size or end < start:
        return "invalid"
    return start, min(end, size - 1)


class MediaResponse(RawResponse):
    """Serve a file (or a fault's version of it) straight from disk."""

    def __init__(
        self, media: MediaFile, range_header: str | None, hits: list[Hit], method: str = "GET", chunk_delay: float = 0.0
    ) -> None:
        super().__init__(200)
        self.media, self.range_header, self.hits, self.method = media, range_header, hits, method
        self.chunk_delay = chunk_delay  # setting media_chunk_delay_seconds: a slow CDN

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kinds = {hit.kind: hit.params for hit in self.hits}
        if "html_body" in kinds:
            content_type = str(kinds["html_body"].get("content_type") or "text/html")
            if content_type in ("html", "text/html"):
                content_type = "text/html; charset=utf-8"
            await _send_all(send, 200, ACCESS_DENIED, content_type)
            return
        size = self.media.size
        rng = parse_range(self.range_header, size)
        if rng == "invalid":
            headers = [(b"content-range", f"bytes */{size}".encode())]
            await _send_all(send, 416, b"", "text/plain", headers)
            return
        start, end = rng if isinstance(rng, tuple) else (0, size - 1)
        length = end - start + 1
        headers = [
            (b"content-type", self.media.content_type.encode()),
            (b"content-length", str(length).encode()),
            (b"accept-ranges", b"bytes"),
            (b"cache-control", b"public, max-age=604800"),
        ]
        status = 200
        if isinstance(rng, tuple):
            status = 206
            headers.append((b"content-range", f"bytes {start}-{end}/{size}".encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if self.method == "HEAD":
            await send({"type": "http.response.body", "body": b""})
            return
        cut = length
        if "truncated_body" in kinds:  # D1: promise `length` bytes, deliver a fraction, hang up
            cut = int(length * float(kinds["truncated_body"].get("fraction", 0.3)))
        async with await anyio.open_file(self.media.path, "rb") as handle:
            await handle.seek(start)
            sent = 0
            while sent < cut:
                chunk = await handle.read(min(CHUNK, cut - sent))
                if not chunk:
                    break
                sent += len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if self.chunk_delay > 0:
                    await asyncio.sleep(self.chunk_delay)
        if cut < length:
            await drop(scope)
            return
        await send({"type": "http.response.body", "body": b""})


async def _send_all(
    send: Send, status: int, body: bytes, content_type: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": body})

"""Fetching a generated video: a streaming download to a local file, under a media URL policy.

Media URLs come from fal's answers, so they are treated as untrusted input: only ``https://`` (and
``http://`` when the policy allows it, as for the local emulator) and ``data:`` URIs are fetched, an
optional allow-list of hosts is checked on every redirect hop, and URLs carrying credentials are
refused. Requests go through a client of their own that never carries an ``Authorization`` header
(no auth, no ``.netrc``, no proxies from the environment), so the fal key cannot reach a media host.

The body is written to disk in chunks while its sha256 is computed: memory does not grow with the
video's size. Every failure is a :class:`~fal_video.errors.FalError` whose reason says what to do
next: ``TRANSIENT`` (retry), ``MEDIA_EXPIRED`` (ask fal for a fresh URL), ``MEDIA_INVALID`` (give up).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote_to_bytes, urljoin, urlsplit

import certifi
import httpx

from fal_video.errors import FalError, Reason
from fal_video.http import RetryPolicy

CHUNK_BYTES = 1024 * 1024  # file buffer and data: URI slices; network chunks arrive at socket size
MAX_REDIRECTS = 5
EXPIRED_STATUS = frozenset({403, 404, 410})
RETRYABLE_MEDIA_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
ACCEPTED_TYPES = ("application/octet-stream", "binary/octet-stream")
USER_AGENT = "fal-video-airflow/archive"


@dataclass(frozen=True)
class MediaPolicy:
    """Which media URLs may be fetched. ``allowed_hosts`` is checked on every hop: host names (no port),
    or ``.suffix`` entries (``.fal.media``) that allow that domain and its subdomains."""

    allow_http: bool = False
    allowed_hosts: tuple[str, ...] = ()
    max_bytes: int | None = None

    def check(self, url: str) -> None:
        """Raise MEDIA_INVALID unless this policy lets ``url`` be fetched."""
        if url.startswith("data:"):
            return
        parts = urlsplit(url)
        schemes = ("https", "http") if self.allow_http else ("https",)
        if parts.scheme not in schemes:
            allowed = " or ".join(f"{s}://" for s in schemes)
            raise _invalid(f"media URL refused: {redact_url(url)} is not {allowed} (or data:)")
        if not parts.hostname:
            raise _invalid(f"media URL refused: {redact_url(url)} has no host")
        if parts.username is not None or parts.password is not None:
            raise _invalid(f"media URL refused: {redact_url(url)} carries credentials")
        if self.allowed_hosts and not _host_allowed(parts.hostname.lower(), self.allowed_hosts):
            raise _invalid(f"media URL refused: host {parts.hostname} is not in the allowed media hosts")


def _host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    for entry in (h.strip().lower() for h in allowed):
        if entry.startswith(".") and len(entry) > 1 and (host == entry[1:] or host.endswith(entry)):
            return True
        if host == entry:
            return True
    return False


@dataclass(frozen=True)
class Download:
    """What landed in the temporary file."""

    sha256: str
    bytes: int
    content_type: str | None


def redact_url(url: str) -> str:
    """A URL safe for messages: no credentials, query or fragment (signatures live there)."""
    if url.startswith("data:"):
        return f"{url[: min(url.find(','), 60)] if ',' in url else 'data:'} ({len(url)} chars)"
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


_URL_IN_TEXT = re.compile(r"(https?://[^\s?#'\"]*)[?#][^\s'\"]*")


def redact_text(text: str) -> str:
    """Strip query strings from any URL inside a free-form message (e.g. an httpx error)."""
    return _URL_IN_TEXT.sub(r"\1", text)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """Built once: loading the CA bundle costs ~0.1 s, too much to pay per video."""
    return ssl.create_default_context(cafile=certifi.where())


def media_client(retry: RetryPolicy, max_connections: int = 8) -> httpx.Client:
    """A client for media only: no auth, no env (netrc, proxies), no automatic redirects."""
    return httpx.Client(
        auth=None,
        trust_env=False,
        verify=_tls_context(),
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
        timeout=httpx.Timeout(retry.read_timeout, connect=retry.connect_timeout),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
    )


def download(url: str, dest: Path, policy: MediaPolicy, client: httpx.Client) -> Download:
    """Fetch ``url`` (http(s) or data:) into ``dest``; raise a classified FalError on any failure."""
    policy.check(url)
    if url.startswith("data:"):
        return _decode_data_uri(url, dest, policy)
    try:
        return _download_http(url, dest, policy, client)
    except httpx.TransportError as exc:  # connect errors, timeouts, a body cut short (D1)
        raise FalError(Reason.TRANSIENT, _describe(exc, url)) from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:  # undecodable body, unusable redirect target
        raise _invalid(_describe(exc, url)) from None


def _describe(exc: Exception, url: str) -> str:
    return f"{type(exc).__name__} fetching {redact_url(url)}: {redact_text(str(exc))[:200]}"


def _download_http(url: str, dest: Path, policy: MediaPolicy, client: httpx.Client) -> Download:
    for _hop in range(MAX_REDIRECTS + 1):
        with client.stream("GET", url) as response:
            if response.is_redirect:
                url = _next_hop(url, response, policy)
                continue
            _check_status(url, response)
            content_type = _check_content_type(url, response)
            expected = _content_length(response)
            if policy.max_bytes is not None and expected is not None and expected > policy.max_bytes:
                raise _invalid(f"{redact_url(url)}: {expected} bytes exceed the limit of {policy.max_bytes}")
            with dest.open("wb", buffering=CHUNK_BYTES) as out:  # chunks as they arrive: no re-chunking copy
                digest, size = _copy(response.iter_bytes(), out, policy, url)
            received = response.num_bytes_downloaded
            if expected is not None and received != expected:
                raise FalError(
                    Reason.TRANSIENT,
                    f"truncated download from {redact_url(url)}: got {received} of {expected} bytes",
                )
            return Download(digest, size, content_type)
    raise _invalid(f"media URL refused: more than {MAX_REDIRECTS} redirects from {redact_url(url)}")


def _next_hop(url: str, response: httpx.Response, policy: MediaPolicy) -> str:
    """Where a redirect points, checked against the policy like the first URL (data: not allowed)."""
    location = response.headers.get("location")
    if not location:
        raise _invalid(f"{redact_url(url)}: HTTP {response.status_code} redirect without a Location")
    target = urljoin(url, location)
    if target.startswith("data:"):
        raise _invalid(f"{redact_url(url)}: redirect to a data: URI refused")
    policy.check(target)
    return target


def _check_status(url: str, response: httpx.Response) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    where = f"{redact_url(url)}: HTTP {status}"
    if status in EXPIRED_STATUS:
        raise FalError(Reason.MEDIA_EXPIRED, f"{where}: the media URL has expired or is gone", status_code=status)
    if status in RETRYABLE_MEDIA_STATUS or status >= 500:
        raise FalError(Reason.TRANSIENT, f"{where}: temporary error at the media host", status_code=status)
    raise FalError(Reason.BAD_REQUEST, f"{where}: the media host refused the download", status_code=status)


def _check_content_type(url: str, response: httpx.Response) -> str | None:
    """D3: an HTML error page served with 200 is not a video (the bytes are checked later too)."""
    raw = response.headers.get("content-type")
    if raw is None:
        return None
    media_type = raw.split(";")[0].strip().lower()
    if media_type.startswith("video/") or media_type in ACCEPTED_TYPES:
        return media_type
    raise _invalid(f"{redact_url(url)}: served {media_type or 'an empty content type'}, not a video")


def _content_length(response: httpx.Response) -> int | None:
    if response.headers.get("content-encoding", "identity").lower() != "identity":
        return None  # the length counts encoded bytes; httpx checks the framing itself
    try:
        return int(response.headers["content-length"])
    except (KeyError, ValueError):
        return None


def _copy(chunks, out: BinaryIO, policy: MediaPolicy, source: str) -> tuple[str, int]:
    """Write chunks to ``out`` while hashing, enforcing ``max_bytes``; return (sha256, size)."""
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if policy.max_bytes is not None and size > policy.max_bytes:
            raise _invalid(f"{redact_url(source)}: more than the limit of {policy.max_bytes} bytes")
        digest.update(chunk)
        out.write(chunk)
    return digest.hexdigest(), size


_DATA_URI = re.compile(r"data:(?P<type>[^,;]*)(?P<params>(?:;[^,;]*)*),", re.IGNORECASE)
_B64_CHUNK = 4 * 256 * 1024  # base64 characters per step: a multiple of 4, ~768 KiB decoded


def _decode_data_uri(uri: str, dest: Path, policy: MediaPolicy) -> Download:
    """Decode a ``data:`` URI into ``dest`` in slices, so no second full copy is held in memory."""
    match = _DATA_URI.match(uri)
    if not match:
        raise _invalid(f"malformed data: URI {redact_url(uri)}")
    media_type = match["type"].strip().lower() or "text/plain"
    if not (media_type.startswith("video/") or media_type in ACCEPTED_TYPES):
        raise _invalid(f"data: URI holds {media_type}, not a video")
    is_base64 = ";base64" in match["params"].lower()
    start = match.end()
    if is_base64:
        chunks = (_b64(uri[i : i + _B64_CHUNK]) for i in range(start, len(uri), _B64_CHUNK))
    else:
        chunks = iter([unquote_to_bytes(uri[start:])])
    with dest.open("wb") as out:
        digest, size = _copy(chunks, out, policy, uri)
    return Download(digest, size, media_type)


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid("data: URI is not valid base64") from None


def _invalid(message: str) -> FalError:
    return FalError(Reason.MEDIA_INVALID, message)

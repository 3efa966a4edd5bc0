"""FalHook: the one client for fal's queue, sync (requests) for workers and async (httpx) for the trigger.

The connection (``fal_default``, conn_type ``fal``) holds everything: host = queue base URL
(default ``https://queue.fal.run``; the emulator's ``http://127.0.0.1:PORT`` needs extra
``allow_http: true``), password = the fal key, extras ``allow_http``, ``media_hosts``,
``connect_timeout``, ``read_timeout``.

Safety rules enforced here, not by callers:

- The key lives only in :class:`FalSettings` (hidden from ``repr``) and in the ``Authorization``
  header, which is sent only to URLs on the connection's own scheme + host + port. A status URL
  that points elsewhere is refused: the key is never handed to another host. Redirects are not
  followed for the same reason.
- Retries follow :mod:`fal_video.http` (one HTTP policy). A submit is repeated only when it
  provably did not take effect; otherwise it raises ``Reason.SUBMIT_UNKNOWN`` (F4).
- Every failure is a :class:`~fal_video.errors.FalError`; bodies are validated by
  :mod:`fal_video.protocol`, so a malformed answer is ``BAD_RESPONSE``, never a crash.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import httpx
import requests
from airflow.sdk import BaseHook

from fal_video import http
from fal_video.catalog import app_path, estimate_cost
from fal_video.errors import FalError, Reason
from fal_video.http import CANCEL, RESULT, STATUS, SUBMIT, RetryPolicy
from fal_video.protocol import parse_cancel, parse_status, parse_submit
from fal_video.records import Job, Submission

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://queue.fal.run"


class MediaPolicy(NamedTuple):
    """Which media URLs the archive step may download (never with the Authorization header).

    ``allow_http``: plain-http media is acceptable (emulator only). ``media_hosts``: when non-empty,
    the only host names (or ``.suffix`` domains) media may come from.
    """

    allow_http: bool
    media_hosts: tuple[str, ...]


@dataclass(frozen=True)
class FalSettings:
    """What the hook needs from the connection. ``key`` is excluded from repr and comparisons."""

    base_url: str
    key: str = field(repr=False, compare=False)
    allow_http: bool = False
    media_hosts: tuple[str, ...] = ()
    connect_timeout: float | None = None
    read_timeout: float | None = None

    @classmethod
    def from_connection(cls, conn_id: str, conn: Any, extras: dict[str, Any]) -> FalSettings:
        """Build and check settings; raises ValueError (no key, plain http without ``allow_http``)."""
        host = (conn.host or DEFAULT_BASE_URL).strip().rstrip("/")
        if "://" not in host:
            host = f"{conn.schema or 'https'}://{host}"
        if conn.port and urlsplit(host).port is None:
            host = f"{host}:{conn.port}"
        allow_http = _as_bool(extras.get("allow_http", False))
        scheme = urlsplit(host).scheme.lower()
        if scheme not in ("http", "https") or (scheme == "http" and not allow_http):
            raise ValueError(
                f"connection {conn_id!r}: queue URL must be https (plain http needs extra allow_http=true)"
            )
        if not conn.password:
            raise ValueError(f"connection {conn_id!r} has no password: set it to the fal key")
        hosts = extras.get("media_hosts") or ()
        if isinstance(hosts, str):
            hosts = [h for h in hosts.replace(",", " ").split() if h]
        return cls(
            base_url=host,
            key=conn.password,
            allow_http=allow_http,
            media_hosts=tuple(str(h).lower() for h in hosts),
            connect_timeout=_as_float(extras.get("connect_timeout")),
            read_timeout=_as_float(extras.get("read_timeout")),
        )


def _as_bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")


def _as_float(value: Any) -> float | None:
    return None if value in (None, "") else float(value)


def _what(method: str, url: str) -> str:
    """A short, key-free name for a call in messages: ``GET /fal-ai/veo3/requests/<id>/status``."""
    return f"{method} {urlsplit(url).path}"


def _answer_error(call: str, code: int, headers: Any, body: str, what: str, retry_5xx: bool) -> tuple[FalError, bool]:
    """Classify a non-2xx answer; the bool says whether to try again."""
    retry = http.should_retry_answer(call, code, headers, body) and (retry_5xx or code < 500)
    error = http.classify_response(code, headers, body, what=what)
    if call == SUBMIT and code in http.INGRESS_STATUS and not http.is_ingress_error(code, headers, body):
        # A gateway timeout from behind the front door: the queue may have taken the job (F4).
        error = FalError(Reason.SUBMIT_UNKNOWN, f"{what}: HTTP {code} after sending; the job may be queued",
                         status_code=code)  # fmt: skip
    return error, retry


def _transport_error(call: str, exc: Exception, never_sent: bool, what: str) -> tuple[FalError, bool]:
    """Classify a transport failure. Only a submit that never left can be repeated."""
    name = type(exc).__name__
    if call == SUBMIT and not never_sent:
        return FalError(Reason.SUBMIT_UNKNOWN, f"{what}: {name} after sending; the job may be queued"), False
    return FalError(Reason.TRANSIENT, f"{what}: {name}"), True


def _sync_never_sent(exc: requests.RequestException) -> bool:
    if isinstance(exc, requests.ConnectTimeout):
        return True
    text = repr(exc)
    return isinstance(exc, requests.ConnectionError) and any(
        marker in text for marker in ("NewConnectionError", "NameResolutionError", "Connection refused")
    )


def _async_never_sent(exc: httpx.TransportError) -> bool:
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


class FalHook(BaseHook):
    """Talk to fal's queue. Sync methods for operators, ``a*`` methods (one AsyncClient) for triggers.

    Use the async side as ``async with FalHook(...) as hook:`` (or call :meth:`aclose`).
    """

    conn_name_attr = "fal_conn_id"
    default_conn_name = "fal_default"
    conn_type = "fal"
    hook_name = "fal.ai queue"

    def __init__(
        self,
        fal_conn_id: str = default_conn_name,
        retry_policy: RetryPolicy | None = None,
        *,
        max_connections: int = 50,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__()
        self.fal_conn_id = fal_conn_id
        self._explicit_policy = retry_policy
        self.retry_policy = retry_policy or RetryPolicy()
        self._max_connections = max_connections
        self._transport = transport  # tests inject httpx.MockTransport here
        self._settings: FalSettings | None = None
        self._session: requests.Session | None = None
        self._client: httpx.AsyncClient | None = None
        self._sleep: Callable[[float], None] = time.sleep

    def __repr__(self) -> str:
        return f"FalHook(fal_conn_id={self.fal_conn_id!r})"

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema", "login", "port"],
            "relabeling": {"host": "Queue base URL", "password": "fal key"},
            "placeholders": {"host": DEFAULT_BASE_URL, "extra": '{"allow_http": false, "media_hosts": []}'},
        }

    # --- settings ------------------------------------------------------------------------------

    def _apply(self, settings: FalSettings) -> FalSettings:
        if self._explicit_policy is None:
            overrides = {
                k: v for k, v in (("connect_timeout", settings.connect_timeout),
                                  ("read_timeout", settings.read_timeout)) if v is not None
            }  # fmt: skip
            self.retry_policy = dataclasses.replace(self.retry_policy, **overrides)
        self._settings = settings
        return settings

    def settings(self) -> FalSettings:
        """The connection's settings (sync lookup; never call from a trigger)."""
        if self._settings is None:
            conn = self.get_connection(self.fal_conn_id)
            settings = FalSettings.from_connection(self.fal_conn_id, conn, conn.extra_dejson)
            _mask(settings.key)
            self._apply(settings)
        return self._settings  # type: ignore[return-value]

    async def asettings(self) -> FalSettings:
        """The connection's settings, looked up without blocking the event loop."""
        if self._settings is None:
            conn = await self.aget_connection(self.fal_conn_id)
            settings = FalSettings.from_connection(self.fal_conn_id, conn, await conn.aextra_dejson())
            self._apply(settings)
        return self._settings  # type: ignore[return-value]

    def media_policy(self) -> MediaPolicy:
        """Public accessor for the archive step: (allow_http, media_hosts) from the connection."""
        settings = self.settings()
        return MediaPolicy(settings.allow_http, settings.media_hosts)

    def _headers(self, settings: FalSettings, url: str) -> dict[str, str]:
        if not http.same_origin(url, settings.base_url):
            host = urlsplit(url).netloc or url[:40]
            raise FalError(Reason.BAD_RESPONSE, f"refusing to send the fal key to {host}: not the connection's host")
        return {"Authorization": f"Key {settings.key}", "Accept": "application/json"}

    def _delays(self) -> Iterator[float]:
        return self.retry_policy.delays()

    # --- sync side -------------------------------------------------------------------------------

    def _request(self, method: str, url: str, call: str, *, retry_5xx: bool = True, **kwargs: Any) -> requests.Response:
        settings = self.settings()
        headers = self._headers(settings, url)
        if self._session is None:
            self._session = requests.Session()
        what, delays = _what(method, url), self._delays()
        timeout = (self.retry_policy.connect_timeout, self.retry_policy.read_timeout)
        while True:
            try:
                resp = self._session.request(
                    method, url, headers=headers, timeout=timeout, allow_redirects=False, **kwargs
                )
            except requests.RequestException as exc:
                error, retry = _transport_error(call, exc, _sync_never_sent(exc), what)
            else:
                if 200 <= resp.status_code < 300:
                    return resp
                error, retry = _answer_error(call, resp.status_code, resp.headers, resp.text, what, retry_5xx)
            delay = next(delays, None) if retry else None
            if delay is None:
                raise error
            log.warning("%s: %s; retrying in %.1fs", what, error.reason.value, delay)
            self._sleep(delay)

    def submit(self, job: Job) -> Submission:
        """POST one job. Returns the Submission the moment fal answers; raises FalError.

        ``Reason.SUBMIT_UNKNOWN`` means the job may be queued (and billed): never resubmit it blindly.
        """
        settings = self.settings()
        url = f"{settings.base_url}/{job.endpoint.strip('/')}"
        resp = self._request("POST", url, SUBMIT, json=job.arguments)
        return self._submission(settings, job, resp.text, resp.status_code)

    def _submission(self, settings: FalSettings, job: Job, body: str, code: int) -> Submission:
        what = f"submit to {job.endpoint}"
        try:
            answer = parse_submit(http.parse_json(body, what=what, status_code=code), what=what)
        except FalError as exc:  # accepted (2xx) but we cannot tell which request id it got
            raise FalError(Reason.SUBMIT_UNKNOWN, f"{exc.message}; the job may be queued", status_code=code) from None
        base = f"{settings.base_url}/{app_path(job.endpoint)}/requests/{answer.request_id}"  # fallback only
        cost = (
            job.estimated_cost_usd if job.estimated_cost_usd is not None else estimate_cost(job.endpoint, job.arguments)
        )
        return Submission(
            job_key=job.job_key,
            endpoint=job.endpoint,
            request_id=answer.request_id,
            status_url=answer.status_url or f"{base}/status",
            response_url=answer.response_url or base,
            cancel_url=answer.cancel_url or f"{base}/cancel",
            submitted_at=datetime.now(UTC).isoformat(timespec="seconds"),
            estimated_cost_usd=cost,
        )

    def status(self, status_url: str, logs: bool = False) -> dict[str, Any]:
        """GET a validated status body (IN_QUEUE / IN_PROGRESS / COMPLETED)."""
        resp = self._request("GET", status_url, STATUS, params={"logs": "1" if logs else "0"})
        body = http.parse_json(resp.text, what=_what("GET", status_url), status_code=resp.status_code)
        parse_status(body, what=_what("GET", status_url))
        return body

    def result(self, response_url: str, *, retry_5xx: bool = True) -> dict[str, Any]:
        """GET the model output of a COMPLETED job; a failed job raises its classified FalError."""
        resp = self._request("GET", response_url, RESULT, retry_5xx=retry_5xx)
        return _result_body(resp.text, response_url, resp.status_code)

    def cancel(self, cancel_url: str) -> str:
        """PUT cancel; returns fal's word (CANCELLATION_REQUESTED, ALREADY_COMPLETED, ...), never raises on 400."""
        try:
            resp = self._request("PUT", cancel_url, CANCEL)
        except FalError as exc:
            if exc.status_code in (400, 404):  # ALREADY_COMPLETED / NOT_FOUND: nothing left to stop
                return "ALREADY_COMPLETED" if exc.status_code == 400 else "NOT_FOUND"
            raise
        return parse_cancel(_json_or_none(resp.text))

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    # --- async side ------------------------------------------------------------------------------

    async def __aenter__(self) -> FalHook:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def _aclient(self) -> httpx.AsyncClient:
        if self._client is None:
            policy = self.retry_policy
            # Built in a thread: loading the CA bundle takes ~0.1 s and must not stall the triggerer's loop.
            client = await asyncio.to_thread(
                httpx.AsyncClient,
                timeout=httpx.Timeout(policy.read_timeout, connect=policy.connect_timeout),
                limits=httpx.Limits(max_connections=self._max_connections,
                                    max_keepalive_connections=self._max_connections),
                follow_redirects=False,
                transport=self._transport,
            )  # fmt: skip
            if self._client is None:
                self._client = client
            else:  # another coroutine won the race
                await client.aclose()
        return self._client

    async def _arequest(
        self, method: str, url: str, call: str, *, retry_5xx: bool = True, **kwargs: Any
    ) -> httpx.Response:
        settings = await self.asettings()
        headers = self._headers(settings, url)
        client = await self._aclient()
        what, delays = _what(method, url), self._delays()
        while True:
            try:
                resp = await client.request(method, url, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                error, retry = _transport_error(call, exc, _async_never_sent(exc), what)
            else:
                if 200 <= resp.status_code < 300:
                    return resp
                error, retry = _answer_error(call, resp.status_code, resp.headers, resp.text, what, retry_5xx)
            delay = next(delays, None) if retry else None
            if delay is None:
                raise error
            log.debug("%s: %s; retrying in %.1fs", what, error.reason.value, delay)
            await asyncio.sleep(delay)

    async def astatus(self, status_url: str, logs: bool = False) -> dict[str, Any]:
        """Async :meth:`status`."""
        resp = await self._arequest("GET", status_url, STATUS, params={"logs": "1" if logs else "0"})
        body = http.parse_json(resp.text, what=_what("GET", status_url), status_code=resp.status_code)
        parse_status(body, what=_what("GET", status_url))
        return body

    async def aresult(self, response_url: str, *, retry_5xx: bool = True) -> dict[str, Any]:
        """Async :meth:`result`."""
        resp = await self._arequest("GET", response_url, RESULT, retry_5xx=retry_5xx)
        return _result_body(resp.text, response_url, resp.status_code)

    async def acancel(self, cancel_url: str) -> str:
        """Async :meth:`cancel`."""
        try:
            resp = await self._arequest("PUT", cancel_url, CANCEL)
        except FalError as exc:
            if exc.status_code in (400, 404):
                return "ALREADY_COMPLETED" if exc.status_code == 400 else "NOT_FOUND"
            raise
        return parse_cancel(_json_or_none(resp.text))


def _result_body(text: str, url: str, code: int) -> dict[str, Any]:
    body = http.parse_json(text, what=_what("GET", url), status_code=code)
    if not isinstance(body, dict):
        raise FalError(Reason.BAD_RESPONSE, f"{_what('GET', url)}: result is not an object", status_code=code)
    return body


def _json_or_none(text: str) -> Any:
    try:
        return http.parse_json(text, what="cancel")
    except FalError:
        return None


def _mask(secret: str) -> None:
    """Register the key with Airflow's log masker (real workers also do this for connection passwords)."""
    try:
        from airflow.sdk.log import mask_secret

        mask_secret(secret)
    except Exception:  # masking is a second line of defence; never fail a call over it
        log.debug("could not register the fal key with the secrets masker")

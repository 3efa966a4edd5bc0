"""The HTTP policy shared by every call to fal and to its media CDN.

One place decides: how long a request may take (timeouts), which failures are worth repeating
(retry rules), how long to wait between tries (exponential backoff with jitter), and what an
HTTP answer means (:func:`classify_response` -> :class:`~fal_video.errors.FalError`).

Retry rules follow fal's own client (``fal_queue_api.md`` section 4.5), with one deliberate
difference: a submit (POST) is only repeated when it provably did not take effect (a connect
error, or an answer that says it was refused: 408/409/429, ingress 502/503/504). A submit whose
fate is unknown (the connection dropped after sending) is never repeated: fal has no idempotency
key, so a blind retry can bill twice (F4).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

from fal_video.errors import FalError, Reason, describe_fields, flatten_detail


@dataclass(frozen=True)
class RetryPolicy:
    """How many tries and how long to wait between them."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0
    connect_timeout: float = 10.0
    read_timeout: float = 30.0

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """Backoff before each retry: base * 2**n, capped, times a jitter factor in [0.5, 1.5)."""
        rng = rng or random.Random()
        for n in range(self.attempts - 1):
            yield min(self.base_delay * 2**n, self.max_delay) * rng.uniform(0.5, 1.5)


RETRYABLE_STATUS = frozenset({408, 409, 429})
INGRESS_STATUS = frozenset({502, 503, 504})


def is_ingress_error(status_code: int, headers: Mapping[str, str], body: str) -> bool:
    """A 502/503/504 from fal's front door (nginx), not from a runner: the request never got in.

    fal's runners answer with an ``x-fal-request-id`` header; ingress errors carry none and
    their body is nginx's HTML page.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    return (
        status_code in INGRESS_STATUS
        and "x-fal-request-id" not in lowered
        and "nginx" in body.lower()
        and "x-fal-request-timeout-type" not in lowered
    )


def is_retryable_answer(status_code: int, headers: Mapping[str, str], body: str) -> bool:
    """An HTTP answer that says the request did not take effect, so repeating it is safe."""
    return status_code in RETRYABLE_STATUS or is_ingress_error(status_code, headers, body)


def _json(body: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, TypeError):
        return None


def classify_response(status_code: int, headers: Mapping[str, str], body: str, *, what: str) -> FalError:
    """Turn a non-2xx answer from fal into a FalError with a reason code.

    ``what`` names the call for the message, e.g. ``"submit to fal-ai/veo3"``. The body is
    quoted only in short, parsed form: fal's bodies never hold the key, and HTML pages are
    reduced to their status line.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    data = _json(body)
    detail = data.get("detail") if isinstance(data, dict) else None
    error_type = (data.get("error_type") if isinstance(data, dict) else None) or lowered.get("x-fal-error-type")
    text = detail if isinstance(detail, str) else (body[:200] if data is None and "<" not in body[:50] else "")
    prefix = f"{what}: HTTP {status_code}"

    def fail(reason: Reason, message: str, fields: list[dict[str, Any]] | None = None) -> FalError:
        return FalError(reason, message, status_code=status_code, fields=fields, error_type=error_type)

    if status_code == 422 or (status_code == 400 and isinstance(detail, list)):
        fields = flatten_detail(detail)
        policy = [f for f in fields if "content_policy" in f["type"]]
        if policy:
            return fail(Reason.CONTENT_POLICY, f"{prefix}: content policy violation: {describe_fields(policy)}", fields)
        return fail(Reason.INPUT_REJECTED, f"{prefix}: input rejected: {describe_fields(fields) or text}", fields)
    if status_code in (401, 403):
        if "locked" in str(text).lower():
            return fail(Reason.ACCOUNT_LOCKED, f"{prefix}: account locked: {text}")
        return fail(Reason.AUTH, f"{prefix}: not authorised (check the fal_default connection's key){_tail(text)}")
    if status_code == 404:
        return fail(Reason.NOT_FOUND, f"{prefix}: not found{_tail(text)}")
    if status_code == 429:
        return fail(Reason.RATE_LIMITED, f"{prefix}: rate limited")
    if status_code == 499 or error_type in ("client_cancelled", "client_disconnected"):
        return fail(Reason.CANCELLED, f"{prefix}: cancelled{_tail(text)}")
    if status_code in RETRYABLE_STATUS or is_ingress_error(status_code, headers, body):
        return fail(Reason.TRANSIENT, f"{prefix}: temporary error at fal's gateway")
    if status_code == 504 and "x-fal-request-timeout-type" in lowered:
        return fail(Reason.TIMED_OUT, f"{prefix}: start deadline passed before a runner started")
    if status_code >= 500:
        return fail(Reason.SERVER_ERROR, f"{prefix}: {error_type or 'server error'}{_tail(text)}")
    return fail(Reason.BAD_REQUEST, f"{prefix}{_tail(text)}")


def _tail(text: Any) -> str:
    text = str(text or "").strip()
    return f": {text[:200]}" if text else ""


# --- per-call retry rules (used by fal_video.hook) --------------------------------------------

SUBMIT, STATUS, RESULT, CANCEL = "submit", "status", "result", "cancel"


def should_retry_answer(call: str, status_code: int, headers: Mapping[str, str], body: str) -> bool:
    """Whether an HTTP answer to ``call`` is worth repeating.

    - submit and cancel: only answers that say the request did not take effect (408/409/429, ingress).
    - status: any of those plus any 5xx; a status GET has no side effect and a 5xx there is not the job's.
    - result: those plus 502/503/504 whatever their headers (F6: a finished video must not be lost to one
      gateway error). A 500 is the job's own failure and is final. The caller turns 5xx retries off when
      the status already reported the job failed (``error`` / ``error_type``), so a failed job costs one GET.
    """
    if is_retryable_answer(status_code, headers, body):
        return True
    if call == STATUS:
        return status_code >= 500
    if call == RESULT:
        return status_code in INGRESS_STATUS
    return False


def same_origin(url: str, base_url: str) -> bool:
    """True when ``url`` has the scheme, host and port of ``base_url``: the only place the key may go."""
    a, b = urlsplit(url), urlsplit(base_url)
    return (a.scheme.lower(), a.hostname, _port(a)) == (b.scheme.lower(), b.hostname, _port(b))


def _port(parts: SplitResult) -> int | None:
    try:
        return parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:
        return -1  # a malformed port never matches a well-formed base


def parse_json(body: str, *, what: str, status_code: int | None = None) -> Any:
    """A JSON body, or FalError(BAD_RESPONSE) quoting only the start of the text."""
    try:
        return json.loads(body)
    except (ValueError, TypeError):
        raise FalError(
            Reason.BAD_RESPONSE, f"{what}: answer is not JSON: {body[:80]!r}", status_code=status_code
        ) from None

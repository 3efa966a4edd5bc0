"""What fal's queue answers look like: routes, URLs and bodies (reference sections 1, 3 and 4).

Pure functions and small dataclasses, no state: the one place to read when checking the
emulator's wire format against ``docs/reference/fal_queue_api.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NAMESPACES = ("workflows", "comfy")

# Section 4.2: the HTTP code that goes with each request error_type.
ERROR_TYPE_STATUS = {
    "request_timeout": 504, "startup_timeout": 504, "runner_scheduling_failure": 503,
    "runner_connection_timeout": 503, "runner_disconnected": 503, "runner_connection_refused": 503,
    "runner_connection_error": 503, "runner_incomplete_response": 502, "runner_server_error": 500,
    "client_disconnected": 499, "client_cancelled": 499, "bad_request": 400, "internal_error": 500,
}  # fmt: skip

NGINX_BODIES = {
    502: "502 Bad Gateway",
    503: "503 Service Temporarily Unavailable",
    504: "504 Gateway Time-out",
}


@dataclass(frozen=True)
class Route:
    """A classified queue API request."""

    kind: str  # submit | status | stream | result | cancel | not_found | method_not_allowed
    app: str | None = None  # owner/app (or namespace/owner/app)
    endpoint: str | None = None  # the full endpoint id (submit only)
    request_id: str | None = None


def classify(method: str, path: str) -> Route:
    """Route like fal: submit on the full endpoint id; request routes on owner/app only.

    Trailing slashes are accepted (the old SDK sends them). A request URL that still carries the
    endpoint's subpath (``owner/app/sub/requests/id``) is not honoured: real clients never send it.
    """
    parts = [p for p in path.split("/") if p]
    keep = 3 if parts and parts[0] in NAMESPACES else 2
    if len(parts) >= keep + 2 and parts[keep] == "requests":
        app, request_id, rest = "/".join(parts[:keep]), parts[keep + 1], parts[keep + 2 :]
        wanted = {
            ("GET", ()): "result",
            ("GET", ("status",)): "status",
            ("GET", ("status", "stream")): "stream",
            ("PUT", ("cancel",)): "cancel",
        }
        kind = wanted.get((method, tuple(rest)))
        if kind:
            return Route(kind, app, request_id=request_id)
        known_path = tuple(rest) in {(), ("status",), ("status", "stream"), ("cancel",)}
        return Route("method_not_allowed" if known_path else "not_found", app, request_id=request_id)
    if method == "POST" and len(parts) >= keep and "requests" not in parts:
        return Route("submit", "/".join(parts[:keep]), endpoint="/".join(parts))
    return Route("not_found")


def request_urls(base: str, app: str, request_id: str) -> dict[str, str]:
    """Absolute response/status/cancel URLs on ``base``, owner/app only (what clients use verbatim)."""
    root = f"{base.rstrip('/')}/{app}/requests/{request_id}"
    return {"response_url": root, "status_url": f"{root}/status", "cancel_url": f"{root}/cancel"}


def status_body(
    state: str,
    request_id: str,
    urls: dict[str, str],
    *,
    logs: list[dict[str, Any]] | None,
    queue_position: int | None = None,
    inference_time: float | None = None,
    error: str | None = None,
    error_type: str | None = None,
) -> dict[str, Any]:
    """A status body with the live key set: logs always present, queue_position only IN_QUEUE."""
    body: dict[str, Any] = {"status": state, "request_id": request_id, **urls, "logs": logs, "metrics": {}}
    if state == "IN_QUEUE":
        body["queue_position"] = queue_position or 0
    if state == "COMPLETED":
        if inference_time is not None:
            body["metrics"] = {"inference_time": round(inference_time, 4)}
        if error_type:
            body["error"] = error
            body["error_type"] = error_type
    return body


def want_logs(value: str | None) -> bool:
    """``logs`` query value: 1/true turn logs on; 0/false/absent leave ``"logs": null``."""
    return (value or "").strip().lower() in ("1", "true")


@dataclass
class FalError:
    """An HTTP error as fal sends it: code, body (either section 4.1 shape) and headers."""

    status_code: int
    body: Any
    error: str  # the status body's ``error`` text once the job is COMPLETED
    error_type: str  # the status body's ``error_type``
    headers: dict[str, str] = field(default_factory=dict)


def request_error(error_type: str, detail: str, status_code: int | None = None) -> FalError:
    """Shape 1: flat ``{"detail", "error_type"}`` plus the ``X-Fal-Error-Type`` header."""
    code = status_code or ERROR_TYPE_STATUS.get(error_type, 500)
    body = {"detail": detail, "error_type": error_type}
    return FalError(code, body, detail, error_type, {"x-fal-error-type": error_type})


def detail_error(items: list[dict[str, Any]], status_code: int = 422, retryable: bool | None = None) -> FalError:
    """Shape 2: ``{"detail": [{loc, msg, type, ...}]}``; error_type = the first item's type [UNVERIFIED]."""
    headers = {} if retryable is None else {"x-fal-retryable": str(retryable).lower()}
    first = items[0] if items else {"msg": "Unprocessable Entity", "type": "value_error"}
    return FalError(status_code, {"detail": items}, str(first.get("msg")), str(first.get("type")), headers)


def content_policy_error(fields: tuple[str, ...] = ("prompt", "image_url")) -> FalError:
    """F7: a content checker flagged the input; one detail item per field, not retryable."""
    items = [
        {
            "loc": ["body", name],
            "msg": "The content could not be processed because it contained material flagged by a content checker.",
            "type": "content_policy_violation",
            "url": "https://docs.fal.ai/errors#content_policy_violation",
            "ctx": {"categories": ["model_moderated"]},
        }
        for name in fields
    ]
    return detail_error(items, 422, retryable=False)


def runner_error() -> FalError:
    """An unhandled exception in the app: 500 ``{"detail": "Internal Server Error"}`` (shape 3)."""
    return FalError(500, {"detail": "Internal Server Error"}, "Internal Server Error", "runner_server_error")


def cancelled_error() -> FalError:
    """[INFERRED] a cancelled job: COMPLETED with client_cancelled, result 499."""
    return request_error("client_cancelled", "The request was cancelled by the client", 499)


def user_timeout_error() -> FalError:
    """X-Fal-Request-Timeout passed before a runner started: 504 + X-Fal-Request-Timeout-Type: user."""
    error = request_error("startup_timeout", "Request timed out before it could start (X-Fal-Request-Timeout)", 504)
    error.headers["x-fal-request-timeout-type"] = "user"
    return error


def nginx_page(status_code: int) -> str:
    """The HTML an nginx ingress sends: fal-client retries 502/503/504 only when it sees 'nginx'."""
    title = NGINX_BODIES.get(status_code, f"{status_code} Error")
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n"
        "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )


def json_decode_detail(message: str, position: int) -> list[dict[str, Any]]:
    """FastAPI's 422 item for a body that is not JSON (what fal's apps answer)."""
    return [{"loc": ["body", position], "msg": "JSON decode error", "type": "json_invalid", "ctx": {"error": message}}]


def not_object_detail(value: Any) -> list[dict[str, Any]]:
    return [{"loc": ["body"], "msg": "Input should be a valid dictionary", "type": "dict_type", "input": value}]

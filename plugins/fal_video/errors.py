"""One error taxonomy for everything that talks to fal or fetches its media.

Every failure is a :class:`FalError` with a :class:`Reason`. The reason is machine-readable and
travels unchanged into trigger events, the ledger and the manifest's ``reason_code`` column, so
users can filter and rerun by it. Messages never contain the API key: they are built from status
codes and response bodies only (fal never echoes the key).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Reason(StrEnum):
    """Why a request or a job did not succeed."""

    AUTH = "auth"  # 401/403: the key is missing, wrong, or lacks permission
    ACCOUNT_LOCKED = "account_locked"  # 403 "User is locked": stop submitting (F8)
    INPUT_REJECTED = "input_rejected"  # 422 validation detail (F5)
    CONTENT_POLICY = "content_policy"  # 422 content_policy_violation (F7)
    RATE_LIMITED = "rate_limited"  # 429
    TRANSIENT = "transient"  # ingress 502/503/504, 408/409, transport errors: safe to retry
    SERVER_ERROR = "server_error"  # 500/503 from the runner: the job failed on fal's side
    NOT_FOUND = "not_found"  # 404: unknown request id or endpoint
    TIMED_OUT = "timed_out"  # our deadline passed (F1, F3)
    CANCELLED = "cancelled"  # the job was cancelled (499 client_cancelled)
    SUBMIT_UNKNOWN = "submit_unknown"  # the submit may or may not have been accepted (F4)
    BAD_RESPONSE = "bad_response"  # a body that is not what the protocol or the model promises
    MEDIA_EXPIRED = "media_expired"  # the output URL answers 403/404/410 (F11)
    MEDIA_INVALID = "media_invalid"  # truncated, not a video, or undecodable (D1, D3)
    BAD_REQUEST = "bad_request"  # any other 4xx: our request is wrong

    @property
    def retryable(self) -> bool:
        """Whether repeating the same request can help (never true for a submit, see FalHook)."""
        return self in (Reason.TRANSIENT, Reason.RATE_LIMITED)


class FalError(Exception):
    """A classified failure. ``reason`` drives retries and the manifest; ``message`` is for people."""

    def __init__(
        self,
        reason: Reason,
        message: str,
        *,
        status_code: int | None = None,
        fields: list[dict[str, Any]] | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status_code = status_code
        self.fields = fields or []  # [{"field": "prompt", "msg": "...", "type": "..."}]
        self.error_type = error_type

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form for trigger events and the ledger."""
        return {
            "reason": self.reason.value,
            "message": self.message,
            "status_code": self.status_code,
            "fields": self.fields,
            "error_type": self.error_type,
        }

    def __repr__(self) -> str:
        return f"FalError({self.reason.value}, {self.message!r}, status_code={self.status_code})"


def flatten_detail(detail: Any) -> list[dict[str, Any]]:
    """Turn fal's ``detail`` (a list of pydantic-style items, or a plain string) into field + message."""
    if isinstance(detail, str):
        return [{"field": "body", "msg": detail, "type": "value_error"}]
    if not isinstance(detail, list):
        return []
    flat = []
    for item in detail:
        if not isinstance(item, dict):
            flat.append({"field": "body", "msg": str(item)[:300], "type": "value_error"})
            continue
        loc = item.get("loc") or []
        parts = [str(p) for p in loc if p != "body"] if isinstance(loc, list) else [str(loc)]
        flat.append(
            {
                "field": ".".join(parts) or "body",
                "msg": str(item.get("msg", ""))[:300],
                "type": str(item.get("type", "value_error")),
            }
        )
    return flat


def describe_fields(fields: list[dict[str, Any]]) -> str:
    """``prompt: msg; image_url: msg`` for messages and the manifest."""
    return "; ".join(f"{f['field']}: {f['msg']}" for f in fields)

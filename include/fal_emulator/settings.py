"""Run-time settings of the emulator: one dataclass, changeable through the admin API.

Several fields pick a behaviour that fal does not document ([UNVERIFIED] in the protocol
reference, ``docs/reference/fal_queue_api.md``). Each of those says so below, and the default
is the reference's best guess.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass
class Settings:
    """Everything a test or a benchmark may tune; times are in seconds."""

    time_scale: float = 1.0  # multiplies every simulated queue/generation time (0.01 = 100x faster)
    concurrency: int = 10  # jobs running at once per key; the rest wait IN_QUEUE (fal: no 429)
    seed: int = 0  # seeds the queue/generation time draws
    generation_seconds: float | None = None  # fixed generation time (before scaling) instead of the model's
    queue_seconds: float | None = None  # fixed queue wait (before scaling) instead of a random one
    queue_seconds_median: float = 3.0  # median of the random queue wait (runner acquisition)
    keys: tuple[str, ...] = ()  # accepted keys; empty: any non-empty Key/Bearer credential
    require_auth: bool = True  # checklist item 2: configurable
    prompt_faults: bool = True  # honour [fal-fault:KIND[:param]] markers in prompts
    # [UNVERIFIED] fal's submit code is 200 or 202; fal-client accepts both.
    submit_status_code: int = 200
    # [UNVERIFIED] result GET before completion: "202" (status body, like aimock) or "400" ({"detail": ...}).
    result_before_completion: str = "202"
    # [UNVERIFIED] cancel while IN_QUEUE: "202" CANCELLATION_REQUESTED (old docs) or "200" OK (new status values).
    cancel_queued: str = "202"
    # fal "sends a cancellation signal to the runner": "cancel" stops the job, "finish" lets it complete.
    cancel_running: str = "cancel"
    # [UNVERIFIED] status/result/stream for an unknown request id: this HTTP code with {"detail": ...}.
    unknown_request_status: int = 404
    # [UNVERIFIED] when invalid input is reported: "submit" (422 on the POST) or "result" (the job is
    # accepted, ends COMPLETED with an error, and the result GET answers 422, as a live report says).
    validation: str = "submit"
    log_window: int = 5  # polled logs: only the newest N entries (a moving window, like fal)
    ping_seconds: float = 1.0  # SSE keep-alive comment interval (wall seconds, not scaled)
    media_ttl_seconds: float | None = None  # media URLs expire this long after completion (wall seconds)
    media_expired_status: int = 404  # what an expired media URL answers (fal's CDN: 403 or 404)
    media_pad_to_bytes: int = 0  # pad MP4s with a trailing `free` box up to this size (still decodable)
    media_chunk_delay_seconds: float = 0.0  # pause between 256 KiB media chunks (a slow CDN; wall seconds)
    render_short_side: int = 144  # pixels; the clip keeps the requested aspect ratio
    render_fps: int = 10
    public_base_url: str | None = None  # base of returned URLs; default: the Host the client used

    def update(self, changes: dict[str, Any]) -> None:
        """Apply ``changes`` with light type checks; unknown names raise ``KeyError``."""
        names = {f.name: f for f in dataclasses.fields(self)}
        for name, value in changes.items():
            if name not in names:
                raise KeyError(f"unknown setting {name!r}; known: {', '.join(sorted(names))}")
            current = getattr(self, name)
            if name == "keys":
                value = tuple(value.split(",") if isinstance(value, str) else value)
            elif isinstance(current, bool) and not isinstance(value, bool):
                value = str(value).lower() in {"1", "true", "yes", "on"}
            elif isinstance(current, (int, float)) and not isinstance(current, bool) and value is not None:
                value = type(current)(value)
            elif name in ("result_before_completion", "cancel_queued") and value is not None:
                value = str(value)
            setattr(self, name, value)
        self._check()

    def _check(self) -> None:
        choices = {
            "result_before_completion": ("202", "400"),
            "cancel_queued": ("202", "200"),
            "cancel_running": ("cancel", "finish"),
            "validation": ("submit", "result"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, not {getattr(self, name)!r}")
        if self.time_scale < 0 or self.concurrency < 1:
            raise ValueError("time_scale must be >= 0 and concurrency >= 1")

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["keys"] = [mask_key(k) for k in self.keys]
        return data

    def copy(self) -> Settings:
        return dataclasses.replace(self)


def mask_key(key: str) -> str:
    """``key_id:secret`` -> ``key_id:***``; other keys keep 4 characters. Never log a secret."""
    if ":" in key:
        return key.split(":", 1)[0] + ":***"
    return key[:4] + "***"

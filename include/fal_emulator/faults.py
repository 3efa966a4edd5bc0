"""Fault injection: which fault kinds exist, how they are armed, and when one fires.

A fault is armed three ways, all ending in the same ``Fault`` records:

* the admin API / ``EmulatorServer.add_fault`` / a config file / ``--fault`` on the command line,
  with matchers (``on`` request kind, ``endpoint``, ``request_id``, ``prompt_contains``, ``key``)
  and counters (``start``: the n-th matching request is the first hit; ``count``: hits, None = all);
* a prompt marker ``[fal-fault:KIND]`` or ``[fal-fault:KIND:param]`` (setting ``prompt_faults``),
  which scopes the fault to that prompt's job (or, for submit faults, to submits of that prompt).
  A marker fault fires on its kind's *first* request kind only (``ingress_error`` -> the submit,
  ``stall`` -> status polls, ``media_expired`` -> media), ``marker_count`` times by default.

"request" faults change one HTTP answer (429, stall, truncated media...). "job" faults decide at
submit how the job ends (stuck in the queue, COMPLETED with an error...).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

API_KINDS = ("submit", "status", "stream", "result", "cancel")
ALL_KINDS = (*API_KINDS, "media")


@dataclass(frozen=True)
class FaultKind:
    """One kind of fault: where it applies and what a prompt marker's parameter means."""

    name: str
    scenario: str  # id in docs/reference/fault_scenarios.md, or what it reproduces
    level: str  # "request" or "job"
    on: tuple[str, ...] = ()  # request kinds it applies to (request level)
    params: dict[str, Any] = field(default_factory=dict)  # defaults
    marker_param: str | None = None  # what the ``:param`` of a prompt marker sets ("count" = hits)
    marker_count: int | None = 1  # hits of a prompt-marker fault (None = every matching request)
    needs_completed: bool = False  # only fires once the job is COMPLETED (result faults)


_KINDS = [
    FaultKind("stall", "F1 status sends headers, then never the body", "request", ("status",),
              {"seconds": 3600.0}, "count"),
    FaultKind("stuck_in_queue", "F3 job never leaves IN_QUEUE", "job"),
    FaultKind("drop_connection", "F4 submit accepted (job exists), connection dropped before the answer",
              "request", ("submit",)),
    FaultKind("model_error", "F5 COMPLETED with error; result 422 detail list", "job",
              params={"msg": "Generation failed: the model rejected the input"}, marker_param="msg"),
    FaultKind("result_504", "F6 result GET 504 (count times) then 200", "request", ("result",),
              {"style": "json"}, "count", 2, needs_completed=True),
    FaultKind("content_policy", "F7 result 422 content_policy_violation on body.prompt and body.image_url", "job"),
    FaultKind("account_locked", "F8 submits answer 403 'User is locked'; status keeps working", "request",
              ("submit",), marker_count=None),
    FaultKind("media_expired", "F11 media URL answers 403/404", "request", ("media",), {"status": 403},
              "status", None),
    FaultKind("truncated_body", "D1 full Content-Length, connection closed part way", "request", ("media",),
              {"fraction": 0.3}, "fraction"),
    FaultKind("html_body", "D3 200 with an HTML 'Access denied' page instead of the video", "request",
              ("media",), {"content_type": "text/html"}, "content_type", None),
    FaultKind("rate_limited", "429 without Retry-After", "request", ("submit",), {}, "count"),
    FaultKind("ingress_error", "nginx 502/503/504 without x-fal-request-id", "request", API_KINDS,
              {"status": 502}, "status"),
    FaultKind("slow", "answer after a delay", "request", ALL_KINDS, {"seconds": 1.0}, "seconds", None),
    FaultKind("unauthorized", "401 even with a valid key", "request", API_KINDS),
    FaultKind("http_error", "any HTTP error with a {'detail': ...} body (on='media': a CDN error)", "request",
              API_KINDS, {"status": 500, "detail": "Internal Server Error"}, "status"),
    FaultKind("malformed_status", "status body missing fields / unknown status / wrong types / not JSON",
              "request", ("status",), {"variant": "missing_fields"}, "variant"),
    FaultKind("malformed_result", "result 200 whose body is not the model's shape", "request", ("result",),
              {"variant": "no_video", "url": "", "file_name": ""}, "variant", needs_completed=True),
    FaultKind("runner_error", "COMPLETED with error; result 500 Internal Server Error", "job"),
    FaultKind("request_error", "COMPLETED with error_type (e.g. runner_disconnected 503); flat body", "job",
              params={"error_type": "runner_disconnected"}, marker_param="error_type"),
]  # fmt: skip
KINDS: dict[str, FaultKind] = {k.name: k for k in _KINDS}
ALIASES = {
    "F1": "stall", "F3": "stuck_in_queue", "F4": "drop_connection", "F5": "model_error", "F6": "result_504",
    "F7": "content_policy", "F8": "account_locked", "F11": "media_expired", "D1": "truncated_body",
    "D3": "html_body", "429": "rate_limited", "401": "unauthorized", "500": "runner_error",
}  # fmt: skip
MATCHERS = ("on", "endpoint", "request_id", "prompt_contains", "key", "start", "count")
MARKER = re.compile(r"\[fal-fault:([A-Za-z0-9_]+)(?::([^\]]*))?\]")


def resolve(kind: str) -> FaultKind:
    name = ALIASES.get(kind, ALIASES.get(kind.upper(), kind))
    if name not in KINDS:
        raise KeyError(f"unknown fault kind {kind!r}; known: {', '.join(sorted(KINDS))}")
    return KINDS[name]


@dataclass
class Context:
    """What a request is about, for matching."""

    kind: str
    app: str | None = None
    endpoint: str | None = None
    request_id: str | None = None
    prompt: str | None = None
    key: str | None = None
    completed: bool = False


@dataclass
class Hit:
    """A fault that fires on this request (or job): its kind and parameters."""

    kind: str
    params: dict[str, Any]


@dataclass
class Fault:
    """An armed fault with its matchers and counters."""

    id: str
    kind: FaultKind
    params: dict[str, Any]
    on: tuple[str, ...]
    endpoint: str | None = None
    request_id: str | None = None
    prompt_contains: str | None = None
    key: str | None = None
    start: int = 1
    count: int | None = None
    seen: int = 0
    fired: int = 0

    def matches(self, ctx: Context) -> bool:
        if self.kind.level == "request" and ctx.kind not in self.on:
            return False
        if self.kind.needs_completed and not ctx.completed:
            return False
        if self.endpoint and self.endpoint.strip("/") not in (ctx.endpoint, ctx.app):
            return False
        if self.request_id and self.request_id != ctx.request_id:
            return False
        if self.prompt_contains and self.prompt_contains not in (ctx.prompt or ""):
            return False
        return not (self.key and self.key != ctx.key)

    def take(self, ctx: Context) -> Hit | None:
        """Count a matching request; return a hit when the counters say this one fires."""
        if not self.matches(ctx):
            return None
        self.seen += 1
        if self.seen < self.start or (self.count is not None and self.fired >= self.count):
            return None
        self.fired += 1
        return Hit(self.kind.name, dict(self.params))

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind.name, "scenario": self.kind.scenario, "params": self.params,
            "on": list(self.on), "endpoint": self.endpoint, "request_id": self.request_id,
            "prompt_contains": self.prompt_contains, "key": self.key, "start": self.start, "count": self.count,
            "seen": self.seen, "fired": self.fired,
        }  # fmt: skip


def make_fault(fault_id: str, kind: str, spec: dict[str, Any]) -> Fault:
    """Build a fault from ``kind`` + a flat dict of matchers and parameters (unknown params rejected)."""
    fk = resolve(kind)
    spec = dict(spec)
    on = spec.pop("on", None) or spec.pop("kind_on", None)
    on_kinds = tuple([on] if isinstance(on, str) else on) if on else fk.on
    if fk.level == "request" and not set(on_kinds) <= set(ALL_KINDS):
        raise ValueError(f"'on' must name request kinds among {ALL_KINDS}")
    count = spec.pop("count", None)
    start = int(spec.pop("start", spec.pop("nth", 1)))
    matchers = {name: spec.pop(name, None) for name in ("endpoint", "request_id", "prompt_contains", "key")}
    unknown = set(spec) - set(fk.params)
    if unknown:
        raise ValueError(f"fault {fk.name!r} has no parameter(s) {sorted(unknown)}; it takes {sorted(fk.params)}")
    params = {**fk.params, **spec}
    return Fault(fault_id, fk, params, on_kinds, start=start, count=None if count is None else int(count), **matchers)


class FaultBook:
    """The armed faults of a running emulator, in the order they were added."""

    def __init__(self) -> None:
        self._faults: dict[str, Fault] = {}
        self._ids = itertools.count(1)

    def add(self, kind: str, spec: dict[str, Any]) -> Fault:
        fault = make_fault(f"fault-{next(self._ids)}", kind, spec)
        self._faults[fault.id] = fault
        return fault

    def remove(self, fault_id: str) -> bool:
        return self._faults.pop(fault_id, None) is not None

    def clear(self) -> None:
        self._faults.clear()

    def list(self) -> list[dict[str, Any]]:
        return [f.as_dict() for f in self._faults.values()]

    def take(self, ctx: Context, level: str) -> list[Hit]:
        """Hits for this request (``level="request"``) or for a job being submitted (``"job"``)."""
        hits = []
        for fault in self._faults.values():
            if fault.kind.level == level:
                hit = fault.take(ctx)
                if hit:
                    hits.append(hit)
        return hits


# --- prompt markers -------------------------------------------------------------------------------


def parse_markers(prompt: str) -> list[tuple[FaultKind, int | None, dict[str, Any]]]:
    """``[fal-fault:KIND:param]`` markers in a prompt -> (kind, hits, params); unknown kinds are ignored."""
    found = []
    for name, raw in MARKER.findall(prompt):
        try:
            fk = resolve(name)
        except KeyError:
            continue
        count, params = fk.marker_count, dict(fk.params)
        if raw and fk.marker_param == "count":
            count = int(raw)
        elif raw and fk.marker_param:
            params[fk.marker_param] = _convert(raw, fk.params.get(fk.marker_param))
        found.append((fk, count, params))
    return found


def _convert(raw: str, default: Any) -> Any:
    if isinstance(default, int) and not isinstance(default, bool):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if raw in ("octet", "binary"):
        return "application/octet-stream"
    return raw


@dataclass
class Armed:
    """A request fault attached to one job by a prompt marker; fires ``remaining`` more times."""

    kind: FaultKind
    params: dict[str, Any]
    remaining: int | None

    def take(self, request_kind: str, completed: bool) -> Hit | None:
        if request_kind != self.kind.on[0] or (self.kind.needs_completed and not completed):
            return None
        if self.remaining is not None:
            if self.remaining <= 0:
                return None
            self.remaining -= 1
        return Hit(self.kind.name, dict(self.params))


class SubmitMarkers:
    """Counts hits of submit-level marker faults per (prompt, kind): a retried submit eventually passes."""

    def __init__(self) -> None:
        self._fired: dict[tuple[str, str], int] = {}

    def take(self, prompt: str) -> list[Hit]:
        hits = []
        for fk, count, params in parse_markers(prompt):
            if fk.level != "request" or fk.on[0] != "submit":
                continue
            fired = self._fired.get((prompt, fk.name), 0)
            if count is None or fired < count:
                self._fired[(prompt, fk.name)] = fired + 1
                hits.append(Hit(fk.name, params))
        return hits

    def clear(self) -> None:
        self._fired.clear()

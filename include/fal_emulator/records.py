"""A log of every queue and media request, for assertions like "exactly one submit per row".

Secrets never enter the log: ``Authorization`` is kept as its scheme plus ``***``.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

MAX_RECORDS = 200_000  # a bound so a long benchmark cannot eat the memory


def mask_authorization(value: str) -> str:
    scheme, _, token = value.partition(" ")
    return f"{scheme} ***" if token else "***"


class Recorder:
    """Recorded requests plus counters per kind, per submitted endpoint and per submitted prompt."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.kinds: Counter[str] = Counter()
        self.endpoints: Counter[str] = Counter()
        self.prompts: Counter[str] = Counter()

    def add(
        self,
        *,
        kind: str,
        method: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: Any = None,
        request_id: str | None = None,
        endpoint: str | None = None,
    ) -> dict[str, Any]:
        """Store one request; the returned dict may be completed later (status_code, request_id)."""
        safe = {k: (mask_authorization(v) if k == "authorization" else v) for k, v in headers.items()}
        record = {
            "kind": kind, "method": method, "path": path, "query": query, "headers": safe, "json": body,
            "request_id": request_id, "endpoint": endpoint, "time": time.time(), "status_code": None,
        }  # fmt: skip
        self.kinds[kind] += 1
        if kind == "submit" and endpoint:
            self.endpoints[endpoint] += 1
            if isinstance(body, dict) and isinstance(body.get("prompt"), str):
                self.prompts[body["prompt"]] += 1
        if len(self.records) < MAX_RECORDS:
            self.records.append(record)
        return record

    def list(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.records if kind is None or r["kind"] == kind]

    def counts(self) -> dict[str, Any]:
        return {
            "kinds": dict(self.kinds),
            "submits_by_endpoint": dict(self.endpoints),
            "submits_by_prompt": dict(self.prompts),
        }

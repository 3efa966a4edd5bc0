"""The read-only video gallery (issue 7): a FastAPI app that the Airflow plugin mounts at ``/fal-gallery``.

Routes, all GET (FastAPI answers HEAD too), relative to the mount prefix::

    /                        the runs under <archive>/runs/, newest first, from their summary.json
    /runs/{folder}           one run: the shared run page template, PAGE_SIZE cards a page,
                             ?status=&model=&page= filter and page through manifest.jsonl
    /runs/{folder}/{name}    download manifest.csv, manifest.jsonl, summary.json or rerun.csv
    /media/videos/{name}     <job_key>.mp4 / .jpg / .json from the archive (Range requests answer 206)

What it reads: the ``runs/`` folder listing, each run's summary.json (cached by mtime and size),
one run's manifest.jsonl line by line, and the files it serves. Never the ledger, never Airflow's
connections, never a scan of ``videos/``. A run folder without summary.json is incomplete (the run
has not finished, or stopped before writing it): it is listed and its page shows what is there.

What it serves: only the names above, matched by a strict pattern, then resolved (symlinks
included) and checked to be a regular file inside the archive root. Anything else is a 404.
The app has no authentication of its own: see fal_video_plugin.py and the README.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse

from fal_video.manifest import ManifestRow, Status, describe_counts, jinja_environment, render_run_page

URL_PREFIX = "/fal-gallery"
DAG_ID = "fal_video_batch"
PAGE_SIZE = 60

FOLDER = re.compile(r"[A-Za-z0-9-][A-Za-z0-9._-]{0,199}")  # what batch.run_folder_name produces
MEDIA = re.compile(r"[A-Za-z0-9-][A-Za-z0-9._-]{0,199}\.(mp4|jpg|json)")
MEDIA_TYPES = {"mp4": "video/mp4", "jpg": "image/jpeg", "json": "application/json"}
RUN_FILES = {
    "manifest.csv": "text/csv; charset=utf-8",
    "manifest.jsonl": "application/x-ndjson; charset=utf-8",
    "summary.json": "application/json",
    "rerun.csv": "text/csv; charset=utf-8",
}


@dataclass
class Run:
    """One folder under runs/, as the run list shows it."""

    folder: str
    summary: dict[str, Any] | None  # None: incomplete (no summary.json, or unreadable)
    problem: str | None
    sort_time: float

    @property
    def run_id(self) -> str:
        return str((self.summary or {}).get("run_id") or self.folder)


@dataclass
class RunPage:
    """One page of a run's rows, with the whole run's counts and models."""

    rows: list[ManifestRow]
    counts: dict[str, int]
    endpoints: list[str]
    matched: int
    unreadable: int
    has_manifest: bool


class Archive:
    """The archive root, read-only: safe paths, cached summaries, streamed manifests."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self._summaries: dict[Path, tuple[tuple[int, int], dict[str, Any] | None, str | None]] = {}

    def inside(self, path: Path) -> Path | None:
        """``path`` resolved (symlinks followed) if it is a regular file inside the root, else None."""
        resolved = path.resolve()
        return resolved if resolved.is_relative_to(self.root) and resolved.is_file() else None

    def run_dir(self, folder: str) -> Path:
        if not FOLDER.fullmatch(folder):
            raise HTTPException(404, "no such run")
        path = (self.root / "runs" / folder).resolve()
        if not path.is_relative_to(self.root) or not path.is_dir():
            raise HTTPException(404, "no such run")
        return path

    def summary(self, run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
        """(summary, None) for a finished run, (None, why) for an incomplete one; cached by mtime."""
        path = run_dir / "summary.json"
        try:
            stat = path.stat()
        except OSError:
            return None, "no summary.json yet: the run has not finished, or it stopped before writing it"
        key = (stat.st_mtime_ns, stat.st_size)
        cached = self._summaries.get(path)
        if cached and cached[0] == key:
            return cached[1], cached[2]
        summary, problem = None, "summary.json is unreadable"
        if self.inside(path):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(data, dict):
                    summary, problem = data, None
            except (OSError, ValueError):
                pass
        self._summaries[path] = (key, summary, problem)
        return summary, problem

    def runs(self) -> list[Run]:
        """Every run folder, newest first (summary's started_at, else the folder's mtime)."""
        try:
            entries = list(os.scandir(self.root / "runs"))
        except OSError:
            return []
        runs = []
        for entry in entries:
            if not FOLDER.fullmatch(entry.name) or not entry.is_dir():
                continue
            run_dir = Path(entry.path)
            if not run_dir.resolve().is_relative_to(self.root):
                continue
            summary, problem = self.summary(run_dir)
            runs.append(Run(entry.name, summary, problem, _started(summary) or entry.stat().st_mtime))
        return sorted(runs, key=lambda run: (run.sort_time, run.folder), reverse=True)

    def page(self, run_dir: Path, *, status: str, model: str, page: int) -> RunPage:
        """Stream manifest.jsonl once: count everything, keep only this page's matching rows."""
        path = self.inside(run_dir / "manifest.jsonl")
        counts: Counter[str] = Counter()
        endpoints: set[str] = set()
        rows: list[ManifestRow] = []
        matched = unreadable = 0
        first = (page - 1) * PAGE_SIZE
        if path:
            with path.open(encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    if not line.strip():
                        continue
                    try:
                        row = ManifestRow.from_dict(json.loads(line))
                    except (ValueError, TypeError, KeyError):
                        unreadable += 1  # e.g. a half-written last line
                        continue
                    counts[row.status.value] += 1
                    endpoints.add(row.endpoint)
                    if (status and row.status.value != status) or (model and row.endpoint != model):
                        continue
                    if first <= matched < first + PAGE_SIZE:
                        rows.append(row)
                    matched += 1
        return RunPage(
            rows=rows,
            counts={s.value: counts[s.value] for s in Status},
            endpoints=sorted(e for e in endpoints if e),
            matched=matched,
            unreadable=unreadable,
            has_manifest=path is not None,
        )


def _started(summary: dict[str, Any] | None) -> float | None:
    try:
        return datetime.fromisoformat(str((summary or {})["started_at"])).timestamp()
    except (KeyError, TypeError, ValueError):
        return None


def _base(request: Request) -> str:
    """The URL path the gallery is mounted at (``/fal-gallery`` inside Airflow, "" on its own)."""
    return request.scope.get("root_path", "").rstrip("/")


def _airflow_run_url(request: Request, run_id: str) -> str:
    """The run's page in the Airflow 3 UI, which is served from the same root as the gallery's mount."""
    return f"{_base(request).removesuffix(URL_PREFIX)}/dags/{DAG_ID}/runs/{quote(run_id, safe='')}"


def create_app(archive_root: str | os.PathLike[str], *, dependencies: list[Any] | None = None) -> FastAPI:
    """The gallery for ``archive_root``; ``dependencies`` run before every route (e.g. Airflow auth)."""
    archive = Archive(archive_root)
    app = FastAPI(title="fal video gallery", docs_url=None, redoc_url=None, openapi_url=None,
                  dependencies=dependencies or [])  # fmt: skip

    def read_only(path: str, **kwargs: Any) -> Any:
        """A route answering GET and HEAD: the only methods the gallery has."""
        return app.api_route(path, methods=["GET", "HEAD"], **kwargs)

    @read_only("/", response_class=HTMLResponse)
    def run_list(request: Request) -> str:
        base = _base(request)
        runs = []
        for run in archive.runs():
            summary = run.summary or {}
            runs.append({
                "folder": run.folder,
                "run_id": run.run_id,
                "url": f"{base}/runs/{run.folder}",
                "complete": run.summary is not None,
                "problem": run.problem,
                "verdict": summary.get("verdict"),
                "counts": {s: n for s, n in (summary.get("counts") or {}).items() if n},
                "cost": summary.get("total_estimated_cost_usd"),
                "wall_seconds": summary.get("wall_seconds"),
                "reused": summary.get("reused"),
                "started_at": summary.get("started_at"),
                "airflow_url": _airflow_run_url(request, summary["run_id"]) if summary.get("run_id") else None,
            })  # fmt: skip
        return jinja_environment().get_template("runs_list.html.j2").render(runs=runs, archive=str(archive.root))

    @read_only("/runs/{folder}", response_class=HTMLResponse)
    def run_page(
        request: Request, folder: str, status: str = "", model: str = "", page: int = Query(1, ge=1, le=100_000)
    ) -> str:
        run_dir = archive.run_dir(folder)
        summary, problem = archive.summary(run_dir)
        result = archive.page(run_dir, status=status, model=model, page=page)
        base = _base(request)
        notices = []
        if summary is None:
            notices.append(f"Incomplete run: {problem}. Showing what the folder holds.")
        if not result.has_manifest:
            notices.append("No manifest.jsonl in this run folder yet.")
        if result.unreadable:
            notices.append(f"{result.unreadable} manifest line(s) could not be read and are not shown.")

        pages = max(1, -(-result.matched // PAGE_SIZE))

        def page_url(number: int) -> str:
            query = {k: v for k, v in (("status", status), ("model", model), ("page", number)) if v}
            return f"{base}/runs/{folder}?{urlencode(query)}"

        nav_links = [("← all runs", f"{base}/", "")]
        if summary and summary.get("run_id"):
            nav_links.append(("Airflow run", _airflow_run_url(request, str(summary["run_id"])), "_top"))
        downloads = {name: f"{base}/runs/{folder}/{name}" for name in RUN_FILES if (run_dir / name).is_file()}
        return render_run_page(
            result.rows,
            summary or {"run_id": folder, "verdict": f"incomplete — {describe_counts(result.counts)} so far"},
            media_base=f"{base}/media",
            manifest_links=downloads,
            counts=result.counts,
            endpoints=result.endpoints,
            pager={
                "page": page,
                "pages": pages,
                "first": (page - 1) * PAGE_SIZE + 1 if result.rows else 0,
                "last": (page - 1) * PAGE_SIZE + len(result.rows),
                "matched": result.matched,
                "status": status,
                "model": model,
                "prev_url": page_url(page - 1) if page > 1 else None,
                "next_url": page_url(page + 1) if page < pages else None,
            },
            notice=" ".join(notices) or None,
            nav_links=nav_links,
        )

    @read_only("/runs/{folder}/{name}")
    def run_file(folder: str, name: str) -> FileResponse:
        if name not in RUN_FILES:
            raise HTTPException(404, "not a run file")
        path = archive.inside(archive.run_dir(folder) / name)
        if path is None:
            raise HTTPException(404, "no such file")
        return FileResponse(path, media_type=RUN_FILES[name], filename=f"{folder}-{name}")

    @read_only("/media/videos/{name}")
    def media(name: str) -> FileResponse:
        match = MEDIA.fullmatch(name)
        path = archive.inside(archive.root / "videos" / name) if match else None
        if path is None:
            raise HTTPException(404, "no such file")
        return FileResponse(path, media_type=MEDIA_TYPES[match.group(1)])  # type: ignore[union-attr]

    return app

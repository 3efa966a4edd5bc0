"""The emulator's state in one object: settings, jobs, faults, records, renders and media.

HTTP handlers (``api.py``, ``admin.py``) stay thin and call into this; tests of the state need
no HTTP. Everything runs on the event loop thread except rendering (worker threads).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from fal_video.catalog import ModelSpec, get_model, per_video

from .faults import Armed, Context, FaultBook, Hit, SubmitMarkers, parse_markers
from .media import MediaFile, MediaStore
from .protocol import FalError, content_policy_error, detail_error, request_error, runner_error
from .queue import Job, JobQueue
from .records import Recorder
from .render import RenderCache, make_spec, prompt_seed
from .settings import Settings

TICK = 0.01  # seconds between background scheduler passes


def generic_spec(endpoint: str) -> ModelSpec:
    """An uncatalogued endpoint: accepted as a generic text-to-video model (fal has hundreds).

    No field rules (arguments pass through), ``{"video": File}`` output, and the catalog's
    ModelSpec defaults for length (5 s) and aspect ratio (16:9, or the request's ``aspect_ratio``).
    """
    return ModelSpec(endpoint, f"{endpoint} (not in the catalog)", (), per_video(0.0, "unknown"))


class Emulator:
    """One running emulator."""

    def __init__(self, settings: Settings, media_dir: Path, faults: list[dict[str, Any]] | None = None) -> None:
        self.settings = settings
        self._initial = settings.copy()
        self._initial_faults = list(faults or [])
        self.queue = JobQueue(settings, self._on_start, self._on_complete)
        self.faults = FaultBook()
        self.markers = SubmitMarkers()
        self.recorder = Recorder()
        self.media = MediaStore()
        self.renders = RenderCache(media_dir / "renders")
        self._generic: dict[str, ModelSpec] = {}
        for spec in self._initial_faults:
            spec = dict(spec)
            self.faults.add(spec.pop("kind"), spec)

    # --- admin ----------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget jobs, records, media tokens and faults; restore the start-up settings."""
        for f in dataclasses.fields(self.settings):
            setattr(self.settings, f.name, getattr(self._initial, f.name))
        self.queue.reset()
        self.renders.cancel_pending()
        self.recorder.clear()
        self.media.clear()
        self.faults.clear()
        self.markers.clear()

    def configure(self, changes: dict[str, Any]) -> dict[str, Any]:
        self.settings.update(changes)
        return self.settings.as_dict()

    def jobs(self) -> list[dict[str, Any]]:
        self.queue.advance()
        return [self.queue.describe(job, self.media_url(job)) for job in self.queue.jobs.values()]

    def media_url(self, job: Job) -> str | None:
        media = self.media.by_request.get(job.request_id)
        return media.url(job.base_url) if media else None

    # --- jobs -------------------------------------------------------------------------------------

    def spec_for(self, endpoint: str) -> ModelSpec:
        spec = get_model(endpoint)
        if spec is None:
            spec = self._generic.setdefault(endpoint, generic_spec(endpoint))
        return spec

    def submit(
        self,
        *,
        endpoint: str,
        app: str,
        key: str,
        arguments: dict[str, Any],
        issues: list[dict[str, Any]],
        base_url: str,
        headers: dict[str, str],
    ) -> Job:
        """Enqueue a validated submit and decide, now, how the job will end."""
        spec = self.spec_for(endpoint)
        job = self.queue.new_job(
            endpoint=endpoint, app=app, key=key, arguments=arguments, spec=spec, base_url=base_url,
            now=time.time(), timeout_header=headers.get("x-fal-request-timeout"),
        )  # fmt: skip
        job.media_ttl = _lifecycle_ttl(headers.get("x-fal-object-lifecycle-preference"), self.settings)
        if issues:  # validation == "result": the runner rejects it, like the live API
            job.planned_error = detail_error(issues, 422)
        ctx = Context("submit", app, endpoint, job.request_id, job.prompt, key)
        hits = self.faults.take(ctx, "job")
        if self.settings.prompt_faults:
            for kind, count, params in parse_markers(job.prompt):
                if kind.level == "job":
                    hits.append(Hit(kind.name, params))
                elif kind.on[0] != "submit":
                    job.armed.append(Armed(kind, params, count))
        for hit in hits:
            self._apply_job_fault(job, hit)
        return job

    def _apply_job_fault(self, job: Job, hit: Hit) -> None:
        if hit.kind == "stuck_in_queue":
            job.stuck = True
            return
        job.planned_error = _job_error(hit)

    def _on_start(self, job: Job) -> None:
        """A runner picked the job up: render its MP4 now, so it is ready by completion."""
        if job.planned_error is not None:
            return
        args, spec, s = job.arguments, job.spec, self.settings
        seed = args.get("seed") if isinstance(args.get("seed"), int) else None
        render = make_spec(job.prompt, spec.aspect_ratio(args), spec.seconds(args), spec.has_audio(args),
                           prompt_seed(job.prompt, seed), s.render_short_side, s.render_fps)  # fmt: skip
        job.output_seed = seed if seed is not None else render.seed % (2**31)
        job.render = self.renders.submit(render, s.media_pad_to_bytes)

        def finished(_future: object) -> None:
            job.render_done_at = time.time()

        job.render.add_done_callback(finished)

    def _on_complete(self, job: Job) -> None:
        render = job.render
        if (
            job.error is None
            and render is not None
            and render.done()
            and not render.cancelled()
            and not render.exception()
        ):
            self.media.add(render.result(), job.request_id, job.media_ttl)

    def output(self, job: Job) -> dict[str, Any]:
        """The result body, shaped as the catalog says: ``{"video": File}`` (+ ``seed``)."""
        media = self.media.by_request[job.request_id]
        body: dict[str, Any] = {"video": media.as_file(job.base_url)}
        if "seed" in job.spec.output_keys:
            body["seed"] = job.output_seed
        return body

    def media_for(self, token: str) -> tuple[MediaFile | None, Job | None]:
        media = self.media.get(token)
        return media, (self.queue.get(media.request_id) if media else None)

    # --- background -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Advance the simulation continuously, so renders start and completions land on time."""
        while True:
            self.queue.advance()
            await asyncio.sleep(TICK)

    def close(self) -> None:
        self.renders.shutdown()


def _job_error(hit: Hit) -> FalError:
    p = hit.params
    if hit.kind == "model_error":
        return detail_error([{"loc": ["body", "prompt"], "msg": str(p["msg"]), "type": "value_error"}], 422)
    if hit.kind == "content_policy":
        return content_policy_error()
    if hit.kind == "request_error":
        error_type = str(p["error_type"])
        return request_error(error_type, error_type.replace("_", " ").capitalize())
    return runner_error()


def _lifecycle_ttl(header: str | None, settings: Settings) -> float | None:
    """``X-Fal-Object-Lifecycle-Preference: {"expiration_duration_seconds": N}`` wins over the setting."""
    if header:
        try:
            value = json.loads(header).get("expiration_duration_seconds")
            if value is None or isinstance(value, (int, float)):
                return None if value is None else float(value)
        except (ValueError, AttributeError):
            pass
    return settings.media_ttl_seconds

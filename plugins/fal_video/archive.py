"""The archive: verified videos, their poster frames and sidecars, on local disk or object storage.

Layout under the root (a local path or any ``ObjectStoragePath`` URI: ``file://``, ``memory://``,
``s3://conn_id@bucket/prefix``)::

    videos/<job_key>.mp4   the video, byte for byte as fal made it
    videos/<job_key>.jpg   a poster frame (for index.html)
    videos/<job_key>.json  the ArchiveRecord sidecar, written last: its presence means "archived and verified"

A paid clip is never lost and never half-written: the body is streamed to a temporary file (outside
``videos/``) while hashed, verified (length, MP4 boxes, PyAV decode, fal's ``file_size``), and only
then moved in, with ``os.replace`` on local disk or one upload from the temporary file on object
storage. A video already present is never downloaded again; a video whose sidecar is missing (a
crash between the two writes) is re-verified from the archive, not re-fetched.

Failures end as an ``ArchiveRecord`` with a state (``media_expired``, ``media_invalid``,
``download_failed``) and a readable reason that holds no query strings (they may carry signatures).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import struct
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av
import httpx

from fal_video.errors import FalError, Reason
from fal_video.http import RetryPolicy
from fal_video.media import Download, MediaPolicy, download, media_client, redact_text, redact_url
from fal_video.records import ArchiveRecord, Outcome

__all__ = [
    "Archive",
    "MediaPolicy",
    "VideoProbe",
    "check_mp4_structure",
    "probe_video",
    "safe_name",
    "verify_video",
    "write_poster",
]

log = logging.getLogger(__name__)

VIDEOS = "videos"
PARTIAL = ".partial"  # local roots: temporary files, same filesystem as videos/ (atomic rename)
STALE_PARTIAL_S = 24 * 3600
HASH_CHUNK = 1024 * 1024
POSTER_QUALITY = 85
RefreshUrl = Callable[[Outcome], "str | None"]


# --- verification ------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoProbe:
    """What PyAV saw in a video file."""

    duration_s: float
    width: int
    height: int
    fps: float
    codec: str
    has_audio: bool


def check_mp4_structure(path: Path) -> None:
    """Raise MEDIA_INVALID unless the file is a complete ISO-BMFF (MP4) box sequence.

    Reads only the 8-16 byte box headers, so it costs the same for a 2 MB or a 2 GB file.
    """
    size = path.stat().st_size
    boxes: list[bytes] = []
    with path.open("rb") as f:
        if f.read(8)[4:] != b"ftyp":
            raise _invalid("not an MP4 file: no 'ftyp' box at offset 4")
        offset = 0
        while offset < size:
            box_type, box_size = _read_box_header(f, offset, size)
            boxes.append(box_type)
            offset += box_size
    if b"moov" not in boxes:
        raise _invalid("incomplete MP4: no 'moov' box (truncated or still being written)")


def _read_box_header(f, offset: int, file_size: int) -> tuple[bytes, int]:
    """(type, size) of the box at ``offset``; size 0 means 'to the end of the file'."""
    f.seek(offset)
    header = f.read(8)
    if len(header) < 8:
        raise _invalid(f"truncated MP4: partial box header at byte {offset}")
    box_size, box_type = struct.unpack(">I4s", header)
    if box_size == 1:
        large = f.read(8)
        if len(large) < 8:
            raise _invalid(f"truncated MP4: partial box header at byte {offset}")
        box_size = struct.unpack(">Q", large)[0]
    elif box_size == 0:
        box_size = file_size - offset
    if box_size < 8 or offset + box_size > file_size:
        raise _invalid(f"truncated MP4: box {box_type!r} at byte {offset} runs past the end of the file")
    return box_type, box_size


def probe_video(path: str | Path) -> VideoProbe:
    """Open the file with PyAV and decode its first video frame; raise MEDIA_INVALID if that fails."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise _invalid("no video stream")
            stream = container.streams.video[0]
            next(container.decode(stream))  # proves the stream decodes, not only that headers parse
            return VideoProbe(
                duration_s=round(_duration(container, stream), 3),
                width=stream.codec_context.width,
                height=stream.codec_context.height,
                fps=round(float(stream.average_rate or stream.guessed_rate or 0), 3),
                codec=stream.codec_context.name,
                has_audio=bool(container.streams.audio),
            )
    except FalError:
        raise
    except StopIteration:
        raise _invalid("the video stream has no decodable frame") from None
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise _invalid(f"not a decodable video: {type(exc).__name__}: {str(exc)[:200]}") from None


def _duration(container, stream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return (container.duration or 0) / av.time_base


def write_poster(video: Path, dest: Path, at_s: float = 0.0) -> None:
    """Save the first frame at or after ``at_s`` seconds as a JPEG (the middle frame shows the clip best)."""
    try:
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            if at_s > 0 and stream.time_base:
                container.seek(int(at_s / stream.time_base), stream=stream)  # lands on the keyframe before
            frame = _frame_at(container, stream, at_s)
            frame.to_image().save(dest, format="JPEG", quality=POSTER_QUALITY)
    except (av.FFmpegError, OSError, ValueError, StopIteration) as exc:
        raise _invalid(f"could not extract a poster frame: {type(exc).__name__}: {str(exc)[:200]}") from None


def _frame_at(container, stream, at_s: float):
    """The first decoded frame whose time is >= at_s, or the last one if none is."""
    last = None
    for frame in container.decode(stream):
        last = frame
        if frame.time is None or frame.time >= at_s:
            return frame
    if last is None:
        raise StopIteration
    return last


def _invalid(message: str) -> FalError:
    return FalError(Reason.MEDIA_INVALID, message)


def verify_video(path: Path) -> VideoProbe:
    """The file's own bytes must be a complete MP4 that PyAV decodes into a real picture."""
    check_mp4_structure(path)
    probe = probe_video(path)
    if probe.width <= 0 or probe.height <= 0 or probe.duration_s <= 0:
        raise _invalid(f"not a usable video: {probe.width}x{probe.height}, {probe.duration_s} s")
    return probe


# --- names -------------------------------------------------------------------------------------

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_RESERVED = frozenset({"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))})


def safe_name(name: str) -> str:
    """Return ``name`` if it can be a file name under the root, else raise ValueError.

    Letters, digits, ``_`` and ``-`` only (so no ``/``, ``..``, NUL, drive or absolute paths), at
    most 128 characters, not a Windows device name. Content keys are hex, so this never bites them.
    """
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or name.lower() in _RESERVED:
        raise ValueError(f"unsafe archive name {str(name)[:40]!r}: use 1-128 letters, digits, '_' or '-'")
    return name


# --- storage backends --------------------------------------------------------------------------


class _LocalStore:
    """A root on local disk: temp files in ``.partial/`` (same filesystem), then ``os.replace``."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, rel: str) -> Path:
        return self.root / rel

    @contextmanager
    def workspace(self, key: str) -> Iterator[Path]:
        partial = self.root / PARTIAL
        partial.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f"{key}-{_OWNER}-", dir=partial))  # the owner lets sweep() spot the dead
        try:
            yield work
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def size(self, rel: str) -> int | None:
        try:
            return self._path(rel).stat().st_size
        except FileNotFoundError:
            return None

    def read_text(self, rel: str) -> str | None:
        try:
            return self._path(rel).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def get_file(self, rel: str, dest: Path) -> None:
        shutil.copyfile(self._path(rel), dest)

    def put_file(self, tmp: Path, rel: str) -> None:
        """Durable, atomic: fsync the data, rename over the target, fsync the directory."""
        target = self._path(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        _fsync(tmp)
        os.replace(tmp, target)
        _fsync(target.parent)

    def sweep(self) -> None:
        """Remove temp dirs left by killed processes: those of a dead process on this host, and old ones.

        A dir of a live process (another run may be writing) or of another host is kept until it is a day old.
        """
        partial = self.root / PARTIAL
        cutoff = time.time() - STALE_PARTIAL_S
        for entry in partial.glob("*") if partial.is_dir() else []:
            try:
                stale = entry.stat().st_mtime < cutoff or _owner_is_dead(entry.name)
            except FileNotFoundError:
                continue
            if stale:
                shutil.rmtree(entry, ignore_errors=True)


class _FsspecStore:
    """A root on object storage: work in a local temp dir, then one upload per file (atomic there)."""

    def __init__(self, root: str) -> None:
        from airflow.sdk import ObjectStoragePath  # heavy import, only needed for object storage

        path = ObjectStoragePath(root)
        try:
            self.fs = path.fs  # Airflow-attached, honours conn_id (s3://conn@bucket/...)
        except ValueError:  # a scheme no provider registers (memory://): plain fsspec
            self.fs = path.__wrapped__.fs
        self.base = path.path.rstrip("/")

    def _path(self, rel: str) -> str:
        return f"{self.base}/{rel}"

    @contextmanager
    def workspace(self, key: str) -> Iterator[Path]:
        work = Path(tempfile.mkdtemp(prefix=f"fal-archive-{key}-"))
        try:
            yield work
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def size(self, rel: str) -> int | None:
        try:
            return int(self.fs.info(self._path(rel))["size"])
        except FileNotFoundError:
            return None

    def read_text(self, rel: str) -> str | None:
        try:
            return self.fs.cat_file(self._path(rel)).decode("utf-8")
        except FileNotFoundError:
            return None

    def get_file(self, rel: str, dest: Path) -> None:
        self.fs.get_file(self._path(rel), str(dest))

    def put_file(self, tmp: Path, rel: str) -> None:
        self.fs.put_file(str(tmp), self._path(rel))

    def sweep(self) -> None:
        """Nothing to sweep: temporary files live on local disk and are removed with their dir."""


_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"
_OWNER = f"{_HOST}.{os.getpid()}"  # fixed at import; a forked worker gets its own below
_WORKSPACE = re.compile(r"[0-9a-zA-Z_-]+?-(?P<host>[A-Za-z0-9]+)\.(?P<pid>\d+)-")


def _refresh_owner() -> None:
    global _OWNER
    _OWNER = f"{_HOST}.{os.getpid()}"


os.register_at_fork(after_in_child=_refresh_owner)


def _owner_is_dead(name: str) -> bool:
    """True for a workspace name made on this host by a process that no longer runs."""
    match = _WORKSPACE.match(name)
    if not match or match["host"] != _HOST:
        return False
    try:
        os.kill(int(match["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, ValueError):
        return False
    return False


def _open_store(root: str) -> _LocalStore | _FsspecStore:
    if root.startswith("file://"):
        return _LocalStore(Path(urlsplit(root).path))
    if "://" in root:
        return _FsspecStore(root)
    return _LocalStore(Path(root))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- the archive -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Verified:
    """A downloaded file that passed every check."""

    download: Download
    probe: VideoProbe
    source: str  # redacted, for the sidecar


class Archive:
    """Verified videos under ``root``; see the module docstring for the layout and the guarantees."""

    def __init__(self, root: str) -> None:
        self.root = str(root)
        self._files = _open_store(self.root)

    @staticmethod
    def paths(job_key: str) -> tuple[str, str, str]:
        """(video, poster, sidecar) paths of a job, relative to the root."""
        key = safe_name(job_key)
        return f"{VIDEOS}/{key}.mp4", f"{VIDEOS}/{key}.jpg", f"{VIDEOS}/{key}.json"

    def existing(self, job_key: str, *, verify: bool = False) -> ArchiveRecord | None:
        """The record of an archived job: its sidecar is present and its video has the recorded size.

        Cheap (two metadata reads); ``verify=True`` also re-hashes the video.
        """
        video, _poster, sidecar = self.paths(job_key)
        record = _parse_sidecar(self._files.read_text(sidecar), job_key)
        if record is None or self._files.size(video) != record.bytes:
            return None
        if verify and self._sha256_of(video) != record.sha256:
            return None
        return record

    def store(
        self,
        outcome: Outcome,
        policy: MediaPolicy,
        *,
        refresh_url: RefreshUrl | None = None,
        retry: RetryPolicy | None = None,
    ) -> ArchiveRecord:
        """Archive one succeeded job's video, or return a record that says why it could not be.

        Raises ValueError only for a job_key that cannot be a file name.
        """
        retry = retry or RetryPolicy()
        with media_client(retry) as client:
            return self._store(outcome, policy, refresh_url, retry, client)

    def archive_all(
        self,
        outcomes: Iterable[Outcome],
        policy: MediaPolicy,
        *,
        refresh_url: RefreshUrl | None = None,
        concurrency: int = 4,
        retry: RetryPolicy | None = None,
    ) -> list[ArchiveRecord]:
        """Archive every succeeded outcome (once per job_key), ``concurrency`` at a time.

        One record per job; one job's failure, even an unexpected exception, never stops the others.
        """
        todo: dict[str, Outcome] = {}
        for outcome in outcomes:
            if outcome.state == "succeeded":
                todo.setdefault(outcome.job_key, outcome)
        if not todo:
            return []
        retry = retry or RetryPolicy()
        workers = max(1, min(concurrency, len(todo)))
        self._files.sweep()
        with media_client(retry, max_connections=workers) as client, ThreadPoolExecutor(workers) as pool:
            futures = {key: pool.submit(self._store, o, policy, refresh_url, retry, client) for key, o in todo.items()}
            return [_result_of(key, future) for key, future in futures.items()]

    # --- one job ---

    def _store(
        self,
        outcome: Outcome,
        policy: MediaPolicy,
        refresh_url: RefreshUrl | None,
        retry: RetryPolicy,
        client: httpx.Client,
    ) -> ArchiveRecord:
        key = safe_name(outcome.job_key)
        if (record := self.existing(key)) is not None:
            return record
        with self._files.workspace(key) as work:
            video, poster = work / f"{key}.mp4", work / f"{key}.jpg"
            try:
                verified = self._recover_orphan(key, video) or _fetch_verified(
                    outcome, video, policy, refresh_url, retry, client
                )
                write_poster(video, poster, at_s=verified.probe.duration_s / 2)
            except FalError as exc:
                log.warning("archive %s: %s (%s)", key, exc.message, exc.reason.value)
                return _failure(key, exc)
            return self._commit(key, outcome, video, poster, verified)

    def _recover_orphan(self, key: str, dest: Path) -> _Verified | None:
        """A video moved in by a run that died before its sidecar: verify it instead of re-fetching."""
        video_rel, _poster, _sidecar = self.paths(key)
        if self._files.size(video_rel) is None:
            return None
        self._files.get_file(video_rel, dest)
        try:
            probe = verify_video(dest)
        except FalError:
            dest.unlink(missing_ok=True)
            return None
        log.info("archive %s: re-verified a video whose sidecar was missing", key)
        download_ = Download(_file_sha256(dest), dest.stat().st_size, "video/mp4")
        return _Verified(download_, probe, source=f"{self.root.rstrip('/')}/{video_rel}")

    def _commit(self, key: str, outcome: Outcome, video: Path, poster: Path, verified: _Verified) -> ArchiveRecord:
        """Move video and poster in, then write the sidecar: only then is the job archived."""
        video_rel, poster_rel, sidecar_rel = self.paths(key)
        self._files.put_file(video, video_rel)
        self._files.put_file(poster, poster_rel)
        probe = verified.probe
        record = ArchiveRecord(
            job_key=key,
            state="archived",
            path=video_rel,
            poster_path=poster_rel,
            sha256=verified.download.sha256,
            bytes=verified.download.bytes,
            duration_s=probe.duration_s,
            width=probe.width,
            height=probe.height,
            fps=probe.fps,
            codec=probe.codec,
            has_audio=probe.has_audio,
        )
        sidecar = {
            **record.as_dict(),
            "request_id": outcome.request_id,
            "source": verified.source,
            "content_type": verified.download.content_type,
            "archived_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        tmp = video.with_suffix(".json")
        tmp.write_text(json.dumps(sidecar, indent=2, sort_keys=True), encoding="utf-8")
        self._files.put_file(tmp, sidecar_rel)
        return record

    def _sha256_of(self, rel: str) -> str:
        with self._files.workspace("verify") as work:
            copy = work / "video.mp4"
            self._files.get_file(rel, copy)
            return _file_sha256(copy)


def _fetch_verified(
    outcome: Outcome,
    dest: Path,
    policy: MediaPolicy,
    refresh_url: RefreshUrl | None,
    retry: RetryPolicy,
    client: httpx.Client,
) -> _Verified:
    """Download and verify, retrying transient failures with backoff and asking once for a fresh URL.

    Every failed attempt removes its temporary file (D1): nothing partial survives a try.
    """
    url, fal_size = _video_source(outcome)
    refreshed = False
    delays = retry.delays()
    tries = 0
    while True:
        tries += 1
        try:
            got = download(url, dest, policy, client)
            _check_fal_size(got, fal_size, url, dest)
            return _Verified(got, verify_video(dest), source=redact_url(url))
        except FalError as exc:
            dest.unlink(missing_ok=True)
            if exc.reason is Reason.MEDIA_EXPIRED and refresh_url is not None and not refreshed:
                refreshed = True
                url = _fresh_url(refresh_url, outcome, exc)
                continue
            if not exc.reason.retryable:
                raise
            delay = next(delays, None)
            if delay is None:
                raise FalError(exc.reason, f"gave up after {tries} tries: {exc.message}") from None
            log.info("archive %s: %s; retrying in %.1f s", outcome.job_key, exc.message, delay)
            time.sleep(delay)


def _video_source(outcome: Outcome) -> tuple[str, int | None]:
    """The video URL and fal's ``file_size`` from the outcome's fal File (any malformed shape is invalid)."""
    video = outcome.video
    url = video.get("url") if isinstance(video, dict) else None
    if not isinstance(url, str) or not url.strip():
        raise _invalid("the fal result holds no video URL")
    size = video.get("file_size") if isinstance(video, dict) else None
    valid_size = isinstance(size, int) and not isinstance(size, bool) and size > 0
    return url.strip(), size if valid_size else None


def _check_fal_size(got: Download, fal_size: int | None, url: str, dest: Path) -> None:
    """fal's File states its size: a different byte count means a damaged transfer, worth a retry.

    Unless the bytes are not an MP4 at all (D3: an HTML page served as octet-stream): that is final.
    """
    if fal_size is not None and got.bytes != fal_size:
        message = f"{redact_url(url)}: received {got.bytes} bytes, fal's file_size says {fal_size}"
        with dest.open("rb") as handle:
            if handle.read(8)[4:] != b"ftyp":
                raise _invalid(f"not an MP4 file: no 'ftyp' box at offset 4 ({message})")
        raise FalError(Reason.TRANSIENT, message)


def _fresh_url(refresh_url: RefreshUrl, outcome: Outcome, expired: FalError) -> str:
    """Ask (once) for a fresh URL from fal's stored result; without one, the media stays expired."""
    try:
        fresh = refresh_url(outcome)
    except Exception as exc:
        message = f"{expired.message}; fetching a fresh URL failed: {type(exc).__name__}: {redact_text(str(exc))[:200]}"
        raise FalError(Reason.MEDIA_EXPIRED, message) from None
    if not isinstance(fresh, str) or not fresh.strip():
        raise FalError(Reason.MEDIA_EXPIRED, f"{expired.message}; fal gave no fresh URL")
    log.info("archive %s: media URL expired, retrying with a fresh one", outcome.job_key)
    return fresh.strip()


_STATE_BY_REASON = {Reason.MEDIA_EXPIRED: "media_expired", Reason.MEDIA_INVALID: "media_invalid"}


def _failure(key: str, exc: FalError) -> ArchiveRecord:
    return ArchiveRecord(job_key=key, state=_STATE_BY_REASON.get(exc.reason, "download_failed"), reason=exc.message)


def _result_of(key: str, future: Future[ArchiveRecord]) -> ArchiveRecord:
    """The job's record; an unexpected exception becomes a download_failed record, not a crash."""
    try:
        return future.result()
    except Exception as exc:
        log.exception("archive %s: unexpected error", key)
        reason = f"unexpected {type(exc).__name__}: {redact_text(str(exc))[:300]}"
        return ArchiveRecord(job_key=key, state="download_failed", reason=reason)


def _parse_sidecar(text: str | None, key: str) -> ArchiveRecord | None:
    if text is None:
        return None
    try:
        data: Any = json.loads(text)
        record = ArchiveRecord.from_dict(data)
    except (ValueError, TypeError):
        return None
    if record.state != "archived" or record.job_key != key or not isinstance(record.bytes, int):
        return None
    return record


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()

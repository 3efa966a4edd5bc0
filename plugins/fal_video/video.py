"""Checking that a file is a real, decodable MP4 video, and taking a poster frame from it.

A generated clip is only archived once its own bytes prove it is a video: the MP4 box structure
(an ``ftyp`` box first, top-level boxes that exactly tile the file, a ``moov`` box) catches HTML
error pages saved as .mp4 (D3) and bodies cut short (D1) even when no ``Content-Length`` was sent;
PyAV then opens it and decodes a frame, which yields the facts the manifest reports.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import av

from fal_video.errors import FalError, Reason

POSTER_QUALITY = 85


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
        offset = 0
        while offset < size:
            box_type, box_size = _read_box_header(f, offset, size)
            if not boxes and box_type != b"ftyp":
                raise _invalid("not an MP4 file: no 'ftyp' box at offset 4")
            boxes.append(box_type)
            offset += box_size
    if not boxes:
        raise _invalid("empty file")
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

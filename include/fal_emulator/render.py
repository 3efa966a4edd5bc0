"""Real, small, deterministic H.264 MP4s for emulated jobs.

A clip is a function of its ``RenderSpec`` only: the same spec gives the same bytes (bit-exact
muxer and encoder flags, one encoder thread, no timestamps), so the files can be cached on disk by
content hash and tests can compare bytes. Each prompt seeds its own palette and motion, and the
prompt text is drawn on every frame, so two prompts give visibly different videos.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

RENDER_VERSION = 1  # bump when the picture or the encoder settings change: invalidates the cache
AUDIO_RATE = 24_000
_MUX_BITEXACT = {"fflags": "+bitexact"}  # no encoder version strings or times in the container
_CODEC_BITEXACT = {"flags": "+bitexact"}


@dataclass(frozen=True)
class RenderSpec:
    """What a clip looks like: everything that influences its bytes, and nothing else."""

    prompt: str
    width: int
    height: int
    fps: int
    frames: int
    audio: bool
    seed: int

    @property
    def key(self) -> str:
        blob = json.dumps({"v": RENDER_VERSION, **asdict(self)}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:32]


def frame_size(aspect: tuple[int, int], short_side: int) -> tuple[int, int]:
    """Width and height for an aspect ratio, short side fixed, both even (yuv420p needs it)."""
    a, b = aspect
    long_side = 2 * round(short_side * max(a, b) / min(a, b) / 2)
    return (long_side, short_side) if a >= b else (short_side, long_side)


def make_spec(
    prompt: str, aspect: tuple[int, int], seconds: float, audio: bool, seed: int, short_side: int = 144, fps: int = 10
) -> RenderSpec:
    width, height = frame_size(aspect, short_side)
    return RenderSpec(prompt, width, height, fps, max(1, round(seconds * fps)), audio, seed)


def prompt_seed(prompt: str, seed: int | None) -> int:
    """A stable 32-bit seed from the prompt (and the request's seed, when it has one)."""
    digest = hashlib.sha256(f"{prompt}\x00{seed}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


# --- pictures --------------------------------------------------------------------------------------


def _text_layer(spec: RenderSpec) -> np.ndarray:
    """The prompt, wrapped, as an RGBA array (drawn once, blended onto every frame)."""
    image = Image.new("RGBA", (spec.width, spec.height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(9, spec.width // 22))
    words, lines, line = spec.prompt.split(), [], ""
    for word in words:
        candidate = f"{line} {word}".strip()
        if draw.textlength(candidate, font=font) <= spec.width - 8 or not line:
            line = candidate
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    step = font.size + 2
    lines = lines[: max(1, (spec.height - 8) // step)]
    for i, text in enumerate(lines):
        draw.text((5, 5 + i * step), text, font=font, fill=(0, 0, 0, 200))
        draw.text((4, 4 + i * step), text, font=font, fill=(255, 255, 255, 255))
    return np.asarray(image, dtype=np.float32) / 255.0


def _frames(spec: RenderSpec) -> list[np.ndarray]:
    rng = np.random.default_rng(spec.seed)
    h, w = spec.height, spec.width
    xs = np.arange(w, dtype=np.float32) / w
    ys = np.arange(h, dtype=np.float32) / h
    base = rng.uniform(0.15, 0.85, size=(3,)).astype(np.float32)
    freq = rng.uniform(2.0, 9.0, size=(3, 2)).astype(np.float32)
    speed = rng.uniform(0.5, 2.5, size=(3,)).astype(np.float32)
    blobs = rng.uniform(0, 1, size=(4, 5)).astype(np.float32)  # cx, cy, radius, phase, hue
    text = _text_layer(spec)
    text_rows = int(np.nonzero(text[..., 3].any(axis=1))[0].max(initial=0)) + 1  # blend only where text is
    alpha = text[:text_rows, :, 3:4]
    text_rgb = text[:text_rows, :, :3] * alpha
    span = np.arange(-h, h, dtype=np.float32)  # discs are smaller than h, so any slice fits
    disc = span[:, np.newaxis] ** 2 + span[np.newaxis, :] ** 2  # squared distance from the centre
    frames = []
    for i in range(spec.frames):
        t = i / spec.fps
        rgb = np.empty((h, w, 3), dtype=np.float32)
        for c in range(3):  # separable waves: a 1-D sine per axis, broadcast (cheap)
            phase = t * speed[c] * 2.0 + c
            across = np.sin(2 * math.pi * freq[c, 0] * xs + phase)
            down = np.sin(2 * math.pi * freq[c, 1] * ys - phase)
            rgb[..., c] = base[c] + 0.15 * (across[np.newaxis, :] + down[:, np.newaxis])
        for cx, cy, radius, phase, hue in blobs:  # moving discs, drawn inside their bounding box only
            r = int((0.05 + 0.12 * radius) * h)
            px = int(((cx + 0.3 * math.sin(t * 1.3 + phase * 6.28)) % 1.0) * w)
            py = int(((cy + 0.3 * math.cos(t * 0.9 + phase * 6.28)) % 1.0) * h)
            y0, y1, x0, x1 = max(0, py - r), min(h, py + r), max(0, px - r), min(w, px + r)
            inside = disc[h - (py - y0) : h + (y1 - py), h - (px - x0) : h + (x1 - px)] < r * r
            rgb[y0:y1, x0:x1][inside] = (hue, 1.0 - hue, 0.5 + 0.5 * math.sin(hue * 6.28))
        rgb[h - 3 :, : int(w * (i + 1) / spec.frames)] = 1.0  # progress bar: motion is obvious
        top = rgb[:text_rows]
        top *= 1 - alpha
        top += text_rgb
        frames.append((np.clip(rgb, 0, 1) * 255).astype(np.uint8))
    return frames


def _tone(spec: RenderSpec, seconds: float) -> np.ndarray:
    rng = np.random.default_rng(spec.seed ^ 0x5EED)
    n = round(seconds * AUDIO_RATE)
    t = np.arange(n, dtype=np.float32) / AUDIO_RATE
    freq = float(rng.uniform(220, 660))
    envelope = 0.5 + 0.5 * np.sin(2 * math.pi * 0.5 * t)
    return (0.2 * envelope * np.sin(2 * math.pi * freq * t)).astype(np.float32)


# --- encoding ----------------------------------------------------------------------------------------


def render_mp4(spec: RenderSpec, path: Path) -> None:
    """Encode ``spec`` to ``path`` (H.264 + optional AAC in MP4), bit-exact for the same spec."""
    with av.open(str(path), mode="w", format="mp4", options=_MUX_BITEXACT) as container:
        video = container.add_stream("libx264", rate=spec.fps)
        video.width, video.height, video.pix_fmt = spec.width, spec.height, "yuv420p"
        video.options = {"preset": "veryfast", "crf": "30", "threads": "1", **_CODEC_BITEXACT}
        audio = None
        if spec.audio:
            audio = container.add_stream("aac", rate=AUDIO_RATE, layout="mono")
            audio.options = dict(_CODEC_BITEXACT)
        for index, pixels in enumerate(_frames(spec)):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, spec.fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio is not None:
            samples = _tone(spec, spec.frames / spec.fps)
            for start in range(0, len(samples), 1024):
                chunk = samples[start : start + 1024][np.newaxis, :]
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                frame.sample_rate, frame.pts = AUDIO_RATE, start
                frame.time_base = Fraction(1, AUDIO_RATE)
                container.mux(audio.encode(frame))
            container.mux(audio.encode(None))


def pad_mp4(source: Path, target: Path, at_least: int) -> None:
    """Copy ``source`` and append a top-level ``free`` box so the file is at least ``at_least`` bytes.

    Players skip ``free`` boxes, so the result still decodes; used for download-throughput tests.
    """
    size = source.stat().st_size
    padding = max(8, at_least - size)
    tmp = target.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    with source.open("rb") as src, tmp.open("wb") as out:
        while chunk := src.read(1 << 20):
            out.write(chunk)
        while padding > 8:
            box = min(padding, 0xFFFF_0000)  # a 32-bit box size; several boxes for huge paddings
            if padding - box and padding - box < 8:
                box -= 8
            out.write(box.to_bytes(4, "big") + b"free")
            remaining = box - 8
            zeros = bytes(1 << 20)
            while remaining:
                n = min(remaining, len(zeros))
                out.write(zeros[:n])
                remaining -= n
            padding -= box
    tmp.replace(target)


class RenderCache:
    """Renders clips on worker threads and keeps them on disk, keyed by content hash.

    ``submit`` returns a future of the final path; concurrent requests for the same clip share
    one render. ``done_at`` records when each finished, so a job can complete no earlier.
    """

    def __init__(self, directory: Path, workers: int = 2) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="render")
        self._futures: dict[str, Future[Path]] = {}
        self._lock = threading.Lock()

    def path_for(self, spec: RenderSpec, pad_to: int = 0) -> Path:
        suffix = f"-pad{pad_to}" if pad_to else ""
        return self.directory / f"{spec.key}{suffix}.mp4"

    def submit(self, spec: RenderSpec, pad_to: int = 0) -> Future[Path]:
        target = self.path_for(spec, pad_to)
        with self._lock:
            future = self._futures.get(target.name)
            if future is None or (future.done() and not target.exists()):
                future = self._pool.submit(self._produce, spec, pad_to, target)
                self._futures[target.name] = future
            return future

    def _produce(self, spec: RenderSpec, pad_to: int, target: Path) -> Path:
        if target.exists():
            return target
        plain = self.path_for(spec)
        if not plain.exists():
            tmp = plain.with_suffix(f".{threading.get_ident()}.tmp.mp4")
            render_mp4(spec, tmp)
            tmp.replace(plain)
        if pad_to and plain.stat().st_size < pad_to:
            pad_mp4(plain, target, pad_to)
            return target
        return plain

    def cancel_pending(self) -> None:
        """Drop renders not yet started (after a reset nobody waits for them)."""
        with self._lock:
            for name, future in list(self._futures.items()):
                if future.cancel():
                    del self._futures[name]

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def timed(fn: Callable[[], object]) -> float:
    """Seconds ``fn`` takes (used by the benchmark)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start

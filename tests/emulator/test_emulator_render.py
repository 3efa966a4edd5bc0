"""The renderer on its own: sizes, determinism, cache and padding (no HTTP)."""

from __future__ import annotations

from pathlib import Path

import pytest
from emulator_helpers import probe

from fal_emulator.render import RenderCache, frame_size, make_spec, pad_mp4, prompt_seed, render_mp4


@pytest.mark.parametrize(
    ("aspect", "size"), [((16, 9), (256, 144)), ((9, 16), (144, 256)), ((1, 1), (144, 144)), ((4, 3), (192, 144))]
)
def test_frame_size_keeps_aspect_with_short_side(aspect, size):
    assert frame_size(aspect, 144) == size


def test_render_is_bit_exact_and_cached(tmp_path: Path):
    spec = make_spec("a lighthouse", (16, 9), 2.0, True, prompt_seed("a lighthouse", None))
    render_mp4(spec, tmp_path / "a.mp4")
    render_mp4(spec, tmp_path / "b.mp4")
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()
    cache = RenderCache(tmp_path / "cache", workers=1)
    first = cache.submit(spec).result()
    assert cache.submit(spec).result() == first and first.read_bytes() == (tmp_path / "a.mp4").read_bytes()
    cache.shutdown()


def test_padding_uses_a_free_box(tmp_path: Path):
    spec = make_spec("pad", (1, 1), 1.0, False, 3)
    render_mp4(spec, tmp_path / "a.mp4")
    pad_mp4(tmp_path / "a.mp4", tmp_path / "p.mp4", 100_000)
    data = (tmp_path / "p.mp4").read_bytes()
    assert len(data) == 100_000 and b"free" in data[-100_000 + (tmp_path / "a.mp4").stat().st_size :][:8]
    assert probe(data)["frames"] == 10

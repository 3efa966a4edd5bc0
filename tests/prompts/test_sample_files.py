"""The prompt files shipped in include/prompts/ validate, and keep the VBench attribution."""

from __future__ import annotations

from pathlib import Path

import pytest

from fal_video.prompts import read_prompts

PROMPTS = Path(__file__).resolve().parents[2] / "include" / "prompts"
VBENCH = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "vbench"


def test_vbench_sample_validates_across_models():
    table = read_prompts(str(PROMPTS / "vbench_sample.csv"), default_endpoint="fal-ai/mochi-v1", strict=True)
    assert len(table.valid) == len(table.rows) >= 24
    endpoints = {row.endpoint for row in table.rows}
    assert {"fal-ai/mochi-v1", "fal-ai/luma-dream-machine", "fal-ai/veo3"} <= endpoints
    assert len(endpoints) >= 3
    assert len({row.metadata["category"] for row in table.rows if "category" in row.metadata}) == 8
    assert all(row.metadata["vbench_source"] for row in table.rows)
    assert len({row.row_id for row in table.rows}) == len(table.rows)


def test_veo3_rows_use_short_clips():
    table = read_prompts(str(PROMPTS / "vbench_sample.csv"), default_endpoint="fal-ai/mochi-v1")
    assert {row.arguments["duration"] for row in table.rows if row.endpoint == "fal-ai/veo3"} == {"4s"}


@pytest.mark.skipif(not VBENCH.is_dir(), reason="shared/datasets/vbench is not beside the checkout")
def test_vbench_prompts_are_copied_unmodified():
    table = read_prompts(str(PROMPTS / "vbench_sample.csv"), default_endpoint="fal-ai/mochi-v1")
    daily = [
        read_prompts(str(path), default_endpoint="fal-ai/mochi-v1")
        for path in sorted((PROMPTS / "daily").glob("*.csv"))
    ]
    for row in table.rows + [row for t in daily for row in t.rows]:
        file, line = row.metadata["vbench_source"].rsplit(":", 1)
        assert (VBENCH / file).read_text(encoding="utf-8").splitlines()[int(line) - 1] == row.prompt


@pytest.mark.parametrize("day", ["2026-12-01", "2026-12-02", "2026-12-03"])
def test_daily_drops_validate(day):
    table = read_prompts(str(PROMPTS / "daily" / f"{day}.csv"), default_endpoint="fal-ai/wan-t2v", strict=True)
    assert 4 <= len(table.valid) <= 6


def test_attribution_is_kept():
    readme = (PROMPTS / "README.md").read_text(encoding="utf-8")
    assert "Vchitect/VBench" in readme and "Apache License 2.0" in readme and "unmodified" in readme
    assert "Apache License" in (PROMPTS / "LICENSE-VBENCH").read_text(encoding="utf-8")

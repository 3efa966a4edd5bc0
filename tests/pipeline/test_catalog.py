"""The catalog: fal's input rules, prices and output shapes, in one place."""

from __future__ import annotations

import pytest

from fal_video.catalog import MODELS, OutputShapeError, app_path, estimate_cost, extract_video, validate_arguments


@pytest.mark.parametrize(("endpoint", "expected"), [
    ("fal-ai/kling-video/v2/master/text-to-video", "fal-ai/kling-video"),
    ("fal-ai/veo3/fast", "fal-ai/veo3"),
    ("fal-ai/wan-t2v", "fal-ai/wan-t2v"),
    ("workflows/owner/app/sub", "workflows/owner/app"),
    ("123-myapp", "123/myapp"),
])  # fmt: skip
def test_app_path_drops_the_subpath(endpoint: str, expected: str) -> None:
    assert app_path(endpoint) == expected


def test_app_path_rejects_ids_without_owner() -> None:
    with pytest.raises(ValueError):
        app_path("justanapp")


def test_string_durations_are_strings_as_fal_requires() -> None:
    _, issues = validate_arguments("fal-ai/kling-video/v2/master/text-to-video", {"prompt": "x", "duration": 5})
    assert [(i.field, i.type) for i in issues] == [("duration", "string_type")]
    clean, issues = validate_arguments("fal-ai/kling-video/v2/master/text-to-video", {"prompt": "x", "duration": "10"})
    assert not issues and clean["duration"] == "10"
    _, issues = validate_arguments("fal-ai/veo3", {"prompt": "x", "duration": "7s"})
    assert issues[0].type == "literal_error" and "'4s'" in issues[0].msg


def test_lax_coercion_of_csv_strings_and_range_checks() -> None:
    clean, issues = validate_arguments("fal-ai/wan-t2v", {"prompt": "x", "num_frames": "90", "seed": "7"})
    assert not issues and clean["num_frames"] == 90 and clean["seed"] == 7
    _, issues = validate_arguments("fal-ai/wan-t2v", {"prompt": "x", "num_frames": "200"})
    assert issues[0].type == "less_than_equal"
    _, issues = validate_arguments("fal-ai/mochi-v1", {})
    assert issues[0].as_fal_detail() == {"loc": ["body", "prompt"], "msg": "Field required", "type": "missing"}


def test_unknown_endpoints_pass_through_with_unknown_cost() -> None:
    args = {"prompt": "x", "anything": [1, 2]}
    assert validate_arguments("someone/new-model", args) == (args, [])
    assert estimate_cost("someone/new-model", args) is None


def test_prices_follow_the_reference() -> None:
    assert estimate_cost("fal-ai/veo3", {"prompt": "x"}) == pytest.approx(3.20)  # 8 s default, audio on
    assert estimate_cost("fal-ai/veo3", {"prompt": "x", "generate_audio": False, "duration": "4s"}) == 0.80
    assert estimate_cost("fal-ai/kling-video/v2/master/text-to-video", {"prompt": "x", "duration": "10"}) == 2.80
    assert estimate_cost("fal-ai/pixverse/v4.5/text-to-video", {"prompt": "x", "duration": "8"}) == 0.80
    assert all(spec.estimate_cost({"prompt": "x", "image_url": "u"}) > 0 for spec in MODELS.values())


def test_veo3_has_audio_by_default_and_aspect_ratios_follow_args() -> None:
    veo = MODELS["fal-ai/veo3"]
    assert veo.has_audio({"prompt": "x"}) and not veo.has_audio({"generate_audio": False})
    assert veo.aspect_ratio({"aspect_ratio": "9:16"}) == (9, 16)
    assert MODELS["fal-ai/wan-t2v"].seconds({}) == pytest.approx(81 / 16)


@pytest.mark.parametrize("body", [None, [], {"images": []}, {"video": "x"}, {"video": {"url": ""}},
                                  {"video": {"url": "u", "file_size": "big"}}])  # fmt: skip
def test_extract_video_refuses_other_shapes(body) -> None:
    with pytest.raises(OutputShapeError):
        extract_video(body)


def test_extract_video_returns_the_file() -> None:
    assert extract_video({"video": {"url": "https://v3.fal.media/x.mp4", "file_size": 10}, "seed": 1})["url"]

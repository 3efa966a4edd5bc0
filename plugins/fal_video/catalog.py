"""The model catalog: the one place that knows fal's video models.

For each endpoint id it records the input fields and their rules, the output shape, the
length and aspect ratio of the clip the input asks for, a price rule, and a typical
generation time. Both the Airflow code (CSV validation, cost estimates, result parsing) and
the local emulator (422 answers, output bodies, rendering) read these facts from here, so a
rule changes in one place only.

Facts come from ``docs/reference/fal_queue_api.md`` section 10. Prices the reference could
not find are marked ``assumed`` and are the estimates this project uses until fal publishes one.

This module is pure Python (no Airflow, no HTTP) so the emulator can import it on its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

_MISSING: Any = object()


@dataclass(frozen=True)
class FieldIssue:
    """One invalid input field, shaped like an item of fal's 422 ``detail`` list."""

    field: str
    msg: str
    type: str
    input: Any = None
    ctx: dict[str, Any] | None = None

    def as_fal_detail(self) -> dict[str, Any]:
        item: dict[str, Any] = {"loc": ["body", self.field], "msg": self.msg, "type": self.type}
        if self.input is not None:
            item["input"] = self.input
        if self.ctx:
            item["ctx"] = self.ctx
        return item


@dataclass(frozen=True)
class InputField:
    """One input field of a model, with pydantic-like lax coercion rules."""

    name: str
    kind: type  # str, int, float or bool
    required: bool = False
    default: Any = _MISSING
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None

    @property
    def has_default(self) -> bool:
        return self.default is not _MISSING

    def coerce(self, value: Any) -> tuple[Any, FieldIssue | None]:
        """Coerce ``value`` the way fal's pydantic models do in lax mode.

        Strings are accepted for numbers and booleans ("5", "true"); numbers are not accepted
        for string fields (fal answers ``string_type``), which is why kling's ``duration`` must be "5".
        """
        converted, issue = _convert(self, value)
        if issue:
            return None, issue
        if self.choices is not None and converted not in self.choices:
            expected = " or ".join(repr(c) for c in self.choices)
            return None, FieldIssue(
                self.name, f"Input should be {expected}", "literal_error", value, {"expected": expected}
            )
        if self.minimum is not None and converted < self.minimum:
            return None, FieldIssue(
                self.name,
                f"Input should be greater than or equal to {self.minimum:g}",
                "greater_than_equal",
                value,
                {"ge": self.minimum},
            )
        if self.maximum is not None and converted > self.maximum:
            return None, FieldIssue(
                self.name,
                f"Input should be less than or equal to {self.maximum:g}",
                "less_than_equal",
                value,
                {"le": self.maximum},
            )
        return converted, None


_TRUE = {"true", "1", "yes", "on", "t", "y"}
_FALSE = {"false", "0", "no", "off", "f", "n"}


def _convert(spec: InputField, value: Any) -> tuple[Any, FieldIssue | None]:
    name = spec.name
    if spec.kind is str:
        if isinstance(value, str):
            return value, None
        return None, FieldIssue(name, "Input should be a valid string", "string_type", value)
    if spec.kind is bool:
        if isinstance(value, bool):
            return value, None
        if isinstance(value, int) and value in (0, 1):
            return bool(value), None
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE, None
        return None, FieldIssue(name, "Input should be a valid boolean", "bool_parsing", value)
    if spec.kind is int:
        if isinstance(value, bool):
            return None, FieldIssue(name, "Input should be a valid integer", "int_type", value)
        if isinstance(value, int):
            return value, None
        if isinstance(value, float) and value.is_integer():
            return int(value), None
        if isinstance(value, str):
            try:
                return int(value.strip()), None
            except ValueError:
                pass
        return None, FieldIssue(
            name, "Input should be a valid integer, unable to parse string as an integer", "int_parsing", value
        )
    if spec.kind is float:
        if isinstance(value, bool):
            return None, FieldIssue(name, "Input should be a valid number", "float_type", value)
        if isinstance(value, (int, float)):
            return float(value), None
        if isinstance(value, str):
            try:
                number = float(value.strip())
                if math.isfinite(number):
                    return number, None
            except ValueError:
                pass
        return None, FieldIssue(
            name, "Input should be a valid number, unable to parse string as a number", "float_parsing", value
        )
    raise TypeError(f"unsupported field kind {spec.kind!r}")  # pragma: no cover - catalog bug


# --- price rules -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Price:
    """How much one job costs, as a function of its (validated, defaulted) arguments."""

    describe: str
    estimate: Callable[[Mapping[str, Any], float], float]
    source: str  # where the number comes from; "assumed" when fal publishes none

    def __call__(self, arguments: Mapping[str, Any], seconds: float) -> float:
        return round(self.estimate(arguments, seconds), 4)


def per_video(usd: float, source: str) -> Price:
    return Price(f"${usd:.2f} per video", lambda _a, _s: usd, source)


def per_second(usd: float, source: str, with_audio: float | None = None) -> Price:
    def estimate(args: Mapping[str, Any], seconds: float) -> float:
        rate = with_audio if with_audio is not None and args.get("generate_audio") else usd
        return rate * seconds

    text = f"${usd:.2f}/s" + (f" (${with_audio:.2f}/s with audio)" if with_audio is not None else "")
    return Price(text, estimate, source)


def per_5s_then_per_second(base: float, extra: float, source: str) -> Price:
    return Price(
        f"${base:.2f} per 5 s + ${extra:.2f} per extra second",
        lambda _a, seconds: base + max(0.0, seconds - 5.0) * extra,
        source,
    )


def by_resolution(table: Mapping[str, float], default: str, source: str, per_5s: bool = False) -> Price:
    def estimate(args: Mapping[str, Any], seconds: float) -> float:
        usd = table.get(str(args.get("resolution", default)), table[default])
        return usd * (math.ceil(seconds / 5.0) if per_5s else 1)

    unit = "per 5 s" if per_5s else "per video"
    text = ", ".join(f"{k} ${v:.2f}" for k, v in table.items()) + f" {unit}"
    return Price(text, estimate, source)


# --- models ------------------------------------------------------------------------------------

ASPECT_RATIOS = {
    "16:9": (16, 9), "9:16": (9, 16), "1:1": (1, 1), "4:3": (4, 3), "3:4": (3, 4),
    "21:9": (21, 9), "9:21": (9, 21),
}  # fmt: skip


@dataclass(frozen=True)
class ModelSpec:
    """Everything this project knows about one fal endpoint."""

    endpoint_id: str
    title: str
    fields: tuple[InputField, ...]
    price: Price
    output_keys: tuple[str, ...] = ("video",)  # keys of the result body; "video" holds a File
    clip_seconds: Callable[[Mapping[str, Any]], float] = lambda _a: 5.0
    default_aspect_ratio: str = "16:9"
    audio_field: str | None = None  # boolean input that turns on an audio track
    generation_seconds: float = 60.0  # median time on a runner, used by the emulator
    image_to_video: bool = False
    field_by_name: dict[str, InputField] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "field_by_name", {f.name: f for f in self.fields})

    @property
    def input_names(self) -> frozenset[str]:
        return frozenset(self.field_by_name)

    def validate(self, arguments: Mapping[str, Any]) -> tuple[dict[str, Any], list[FieldIssue]]:
        """Coerce and check ``arguments``; unknown keys pass through (fal ignores extras).

        Returns the coerced arguments (without defaults filled in) and every issue found.
        """
        issues: list[FieldIssue] = []
        clean: dict[str, Any] = {}
        for spec in self.fields:
            if spec.name not in arguments or arguments[spec.name] is None:
                if spec.required:
                    issues.append(FieldIssue(spec.name, "Field required", "missing"))
                continue
            value, issue = spec.coerce(arguments[spec.name])
            if issue:
                issues.append(issue)
            else:
                clean[spec.name] = value
        prompt = clean.get("prompt")
        if "prompt" in self.field_by_name and isinstance(prompt, str) and not prompt.strip():
            issues.append(FieldIssue("prompt", "String should have at least 1 character", "string_too_short", prompt))
        for key, value in arguments.items():
            if key not in self.field_by_name:
                clean[key] = value
        return clean, issues

    def with_defaults(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments as the model will see them: defaults filled in."""
        full = {f.name: f.default for f in self.fields if f.has_default}
        full.update(arguments)
        return full

    def aspect_ratio(self, arguments: Mapping[str, Any]) -> tuple[int, int]:
        ratio = str(self.with_defaults(arguments).get("aspect_ratio", self.default_aspect_ratio))
        return ASPECT_RATIOS.get(ratio, ASPECT_RATIOS[self.default_aspect_ratio])

    def seconds(self, arguments: Mapping[str, Any]) -> float:
        return float(self.clip_seconds(self.with_defaults(arguments)))

    def has_audio(self, arguments: Mapping[str, Any]) -> bool:
        return bool(self.audio_field and self.with_defaults(arguments).get(self.audio_field))

    def estimate_cost(self, arguments: Mapping[str, Any]) -> float:
        full = self.with_defaults(arguments)
        return self.price(full, self.seconds(full))


def _f(name: str, kind: type = str, **rules: Any) -> InputField:
    if "choices" in rules:
        rules["choices"] = tuple(rules["choices"])
    return InputField(name, kind, **rules)


PROMPT = _f("prompt", required=True)
IMAGE = _f("image_url", required=True)
SEED = _f("seed", int)
NEGATIVE = _f("negative_prompt", default="")


def _seconds_suffix(args: Mapping[str, Any]) -> float:
    return float(str(args["duration"]).rstrip("s"))


def _frames(fps_key: str | None, fps: float) -> Callable[[Mapping[str, Any]], float]:
    def seconds(args: Mapping[str, Any]) -> float:
        rate = float(args.get(fps_key, fps)) if fps_key else fps
        return int(args["num_frames"]) / rate

    return seconds


def _luma(endpoint: str, i2v: bool) -> ModelSpec:
    fields = [PROMPT, _f("aspect_ratio", default="16:9", choices=["16:9", "9:16", "4:3", "3:4", "21:9", "9:21"]),
              _f("loop", bool, default=False)]  # fmt: skip
    if i2v:
        fields += [IMAGE, _f("end_image_url")]
    return ModelSpec(endpoint, "Luma Dream Machine v1.5" + (" (image)" if i2v else ""), tuple(fields),
                     per_video(0.50, "assumed"), generation_seconds=90, image_to_video=i2v)  # fmt: skip


def _veo3(endpoint: str, fast: bool, i2v: bool) -> ModelSpec:
    ratios = ["auto", "9:16", "16:9", "1:1"] if i2v else ["9:16", "16:9", "1:1"]
    durations = ["8s"] if i2v else ["4s", "6s", "8s"]
    fields = [PROMPT, _f("aspect_ratio", default="auto" if i2v else "16:9", choices=ratios),
              _f("duration", default="8s", choices=durations), _f("generate_audio", bool, default=True),
              _f("resolution", default="720p", choices=["720p", "1080p"])]  # fmt: skip
    if i2v:
        fields.append(IMAGE)
    else:
        fields += [NEGATIVE, _f("enhance_prompt", bool, default=True), SEED, _f("auto_fix", bool, default=True)]
    price = (
        per_second(0.10, "fal veo3 developer guide ($0.10-0.15/s)", with_audio=0.15)
        if fast
        else per_second(0.20, "fal llms.txt (veo3)", with_audio=0.40)
    )
    title = "Veo 3" + (" Fast" if fast else "") + (" (image)" if i2v else "")
    return ModelSpec(endpoint, title, tuple(fields), price, clip_seconds=_seconds_suffix, audio_field="generate_audio",
                     generation_seconds=60 if fast else 120, image_to_video=i2v)  # fmt: skip


def _kling(endpoint: str, i2v: bool) -> ModelSpec:
    fields = [PROMPT, _f("duration", default="5", choices=["5", "10"]),
              _f("negative_prompt", default="blur, distort, and low quality"),
              _f("cfg_scale", float, default=0.5, minimum=0, maximum=1)]  # fmt: skip
    fields += [IMAGE] if i2v else [_f("aspect_ratio", default="16:9", choices=["16:9", "9:16", "1:1"])]
    return ModelSpec(endpoint, "Kling 2.0 Master" + (" (image)" if i2v else ""), tuple(fields),
                     per_5s_then_per_second(1.40, 0.28, "fal llms.txt (kling v2 master)"),
                     clip_seconds=_seconds_suffix, generation_seconds=180, image_to_video=i2v)  # fmt: skip


def _pixverse(endpoint: str) -> ModelSpec:
    fields = (PROMPT, _f("aspect_ratio", default="16:9", choices=["16:9", "4:3", "1:1", "3:4", "9:16"]),
              _f("resolution", default="720p", choices=["360p", "540p", "720p", "1080p"]),
              _f("duration", default="5", choices=["5", "8"]), NEGATIVE,
              _f("style", choices=["anime", "3d_animation", "clay", "comic", "cyberpunk"]), SEED)  # fmt: skip
    prices = {"360p": 0.30, "540p": 0.30, "720p": 0.40, "1080p": 0.80}
    return ModelSpec(endpoint, "PixVerse v4.5", fields,
                     by_resolution(prices, "720p", "assumed: the v4 fast prices of fal llms.txt", per_5s=True),
                     clip_seconds=_seconds_suffix, generation_seconds=45)  # fmt: skip


def _build() -> dict[str, ModelSpec]:
    specs = [
        ModelSpec("fal-ai/mochi-v1", "Mochi 1",
                  (PROMPT, NEGATIVE, SEED, _f("enable_prompt_expansion", bool, default=True)),
                  per_video(0.40, "assumed"), clip_seconds=lambda _a: 5.4, generation_seconds=120),
        _luma("fal-ai/luma-dream-machine", i2v=False),
        _luma("fal-ai/luma-dream-machine/image-to-video", i2v=True),
        _veo3("fal-ai/veo3", fast=False, i2v=False),
        _veo3("fal-ai/veo3/fast", fast=True, i2v=False),
        _veo3("fal-ai/veo3/image-to-video", fast=False, i2v=True),
        _veo3("fal-ai/veo3/fast/image-to-video", fast=True, i2v=True),
        _kling("fal-ai/kling-video/v2/master/text-to-video", i2v=False),
        _kling("fal-ai/kling-video/v2/master/image-to-video", i2v=True),
        ModelSpec("fal-ai/minimax/video-01", "MiniMax Hailuo video-01",
                  (PROMPT, _f("prompt_optimizer", bool, default=True)),
                  per_video(0.50, "assumed"), clip_seconds=lambda _a: 6.0, generation_seconds=150),
        ModelSpec("fal-ai/minimax/video-01/image-to-video", "MiniMax Hailuo video-01 (image)",
                  (PROMPT, IMAGE, _f("prompt_optimizer", bool, default=True)),
                  per_video(0.50, "assumed"), clip_seconds=lambda _a: 6.0, generation_seconds=150,
                  image_to_video=True),
        ModelSpec("fal-ai/wan-t2v", "Wan 2.1",
                  (PROMPT, NEGATIVE, _f("num_frames", int, default=81, minimum=81, maximum=100),
                   _f("frames_per_second", int, default=16, minimum=5, maximum=24), SEED,
                   _f("resolution", default="720p", choices=["480p", "580p", "720p"]),
                   _f("aspect_ratio", default="16:9", choices=["9:16", "16:9"]),
                   _f("num_inference_steps", int, default=30, minimum=1),
                   _f("enable_safety_checker", bool), _f("enable_prompt_expansion", bool),
                   _f("turbo_mode", bool)),
                  by_resolution({"480p": 0.20, "580p": 0.40, "720p": 0.40}, "720p",
                                "fal llms.txt (wan-i2v; t2v inferred)"),
                  output_keys=("video", "seed"), clip_seconds=_frames("frames_per_second", 16),
                  generation_seconds=100),
        ModelSpec("fal-ai/ltx-video", "LTX-Video",
                  (PROMPT, _f("negative_prompt", default="low quality, worst quality, deformed, distorted"), SEED,
                   _f("num_inference_steps", int, default=30, minimum=1),
                   _f("guidance_scale", float, default=3.0, minimum=0)),
                  per_video(0.02, "assumed"), output_keys=("video", "seed"), generation_seconds=20),
        ModelSpec("fal-ai/ltx-video/image-to-video", "LTX-Video (image)",
                  (PROMPT, IMAGE, _f("negative_prompt", default="low quality, worst quality, deformed, distorted"),
                   SEED, _f("num_inference_steps", int, default=30, minimum=1),
                   _f("guidance_scale", float, default=3.0, minimum=0)),
                  per_video(0.02, "assumed"), output_keys=("video", "seed"), generation_seconds=20,
                  image_to_video=True),
        ModelSpec("fal-ai/hunyuan-video", "HunyuanVideo",
                  (PROMPT, _f("num_inference_steps", int, default=30, minimum=1), SEED,
                   _f("pro_mode", bool, default=False),
                   _f("aspect_ratio", default="16:9", choices=["16:9", "9:16"]),
                   _f("resolution", default="720p", choices=["480p", "580p", "720p"]),
                   _f("num_frames", default="129", choices=["129", "85"]),
                   _f("enable_safety_checker", bool)),
                  per_video(0.40, "assumed"), output_keys=("video", "seed"), clip_seconds=_frames(None, 24),
                  generation_seconds=240),
        _pixverse("fal-ai/pixverse/v4.5/text-to-video"),
    ]  # fmt: skip
    return {spec.endpoint_id: spec for spec in specs}


MODELS: dict[str, ModelSpec] = _build()


def get_model(endpoint_id: str) -> ModelSpec | None:
    """The spec of a known endpoint, or None: unknown endpoints still work, with arguments passed through."""
    return MODELS.get(endpoint_id.strip("/"))


def estimate_cost(endpoint_id: str, arguments: Mapping[str, Any]) -> float | None:
    """Estimated USD for one job; None when the endpoint is not in the catalog (cost unknown)."""
    spec = get_model(endpoint_id)
    return spec.estimate_cost(arguments) if spec else None


def validate_arguments(endpoint_id: str, arguments: Mapping[str, Any]) -> tuple[dict[str, Any], list[FieldIssue]]:
    """Coerce and check arguments for ``endpoint_id``; unknown endpoints pass through unchanged."""
    spec = get_model(endpoint_id)
    if spec is None:
        return dict(arguments), []
    return spec.validate(arguments)


# --- endpoint ids and result bodies -----------------------------------------------------------

_NAMESPACES = ("workflows", "comfy")


def app_path(endpoint_id: str) -> str:
    """``owner/app`` (or ``namespace/owner/app``): the part fal keeps for status, result and cancel URLs.

    ``fal-ai/kling-video/v2/master/text-to-video`` -> ``fal-ai/kling-video``.
    """
    parts = [p for p in endpoint_id.strip("/").split("/") if p]
    if len(parts) == 1 and "-" in parts[0] and parts[0].split("-", 1)[0].isdigit():
        parts = parts[0].split("-", 1)  # legacy "123-myapp"
    keep = 3 if parts and parts[0] in _NAMESPACES else 2
    if len(parts) < keep:
        raise ValueError(f"endpoint id {endpoint_id!r} is not of the form owner/app[/path]")
    return "/".join(parts[:keep])


class OutputShapeError(ValueError):
    """A 200 result body that is not what the model returns (no video File with a URL)."""


def extract_video(output: Any) -> dict[str, Any]:
    """The ``video`` File of a result body; raises OutputShapeError for any other shape."""
    if not isinstance(output, Mapping):
        raise OutputShapeError(f"result body is a {type(output).__name__}, expected an object with 'video'")
    video = output.get("video")
    if not isinstance(video, Mapping):
        keys = ", ".join(sorted(map(str, output))) or "nothing"
        raise OutputShapeError(f"result body has no 'video' object (keys: {keys})")
    url = video.get("url")
    if not isinstance(url, str) or not url:
        raise OutputShapeError("result 'video' has no 'url' string")
    size = video.get("file_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise OutputShapeError(f"result 'video.file_size' is not a byte count: {size!r}")
    return dict(video)

"""Real MP4s: decodable, deterministic, different per prompt, shaped by the catalog; CDN behaviour."""

from __future__ import annotations

import time

import httpx
import pytest
from emulator_helpers import client, probe, submit, wait_completed


@pytest.fixture
def http(emulator):
    with client(emulator) as c:
        yield c


def generate(http: httpx.Client, endpoint: str, args: dict) -> dict:
    body = submit(http, endpoint, args)
    wait_completed(http, body["status_url"])
    result = http.get(body["response_url"])
    assert result.status_code == 200, result.text
    return result.json()["video"]


@pytest.mark.parametrize(
    ("endpoint", "args", "size", "seconds", "audio"),
    [
        ("fal-ai/veo3/fast", {"prompt": "waves", "duration": "4s"}, (256, 144), 4.0, ["aac"]),
        ("fal-ai/veo3", {"prompt": "waves", "aspect_ratio": "9:16", "generate_audio": False}, (144, 256), 8.0, []),
        ("fal-ai/kling-video/v2/master/text-to-video", {"prompt": "a", "aspect_ratio": "1:1"}, (144, 144), 5.0, []),
        ("fal-ai/mochi-v1", {"prompt": "m"}, (256, 144), 5.4, []),
        ("fal-ai/luma-dream-machine", {"prompt": "l", "aspect_ratio": "21:9"}, (336, 144), 5.0, []),
    ],
)
def test_mp4_follows_the_request(emulator, http, endpoint, args, size, seconds, audio):
    video = generate(http, endpoint, args)
    data = http.get(video["url"]).content
    assert len(data) == video["file_size"] and data[4:8] == b"ftyp"
    info = probe(data)
    assert (info["width"], info["height"]) == size and info["codec"] == "h264"
    assert info["duration"] == pytest.approx(seconds, abs=0.15)
    assert info["audio"] == audio


def test_same_input_same_bytes_different_prompt_different_video(emulator, http):
    a1 = http.get(generate(http, "fal-ai/ltx-video", {"prompt": "red bird", "seed": 1})["url"]).content
    a2 = http.get(generate(http, "fal-ai/ltx-video", {"prompt": "red bird", "seed": 1})["url"]).content
    b = http.get(generate(http, "fal-ai/ltx-video", {"prompt": "blue fish", "seed": 1})["url"]).content
    assert a1 == a2 and a1 != b


def test_media_is_public_with_length_type_and_ranges(emulator, http):
    url = generate(http, "fal-ai/ltx-video", {"prompt": "range"})["url"]
    assert "/files/v3/" in url
    full = httpx.get(url)  # no Authorization, like fal's CDN
    assert full.status_code == 200 and full.headers["content-type"] == "video/mp4"
    assert int(full.headers["content-length"]) == len(full.content)
    part = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == full.content[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(full.content)}"
    tail = httpx.get(url, headers={"Range": "bytes=-8"})
    assert tail.content == full.content[-8:]
    assert httpx.get(url, headers={"Range": f"bytes={len(full.content)}-"}).status_code == 416
    assert httpx.get(url.replace("/files/v3/", "/files/v3/x")).status_code == 404
    assert [r["kind"] for r in emulator.requests("media")] == ["media"] * 5


def test_media_expiry_setting_and_lifecycle_header(emulator, http):
    emulator.configure(media_ttl_seconds=1.0, media_expired_status=403)
    url = generate(http, "fal-ai/ltx-video", {"prompt": "expire"})["url"]
    assert httpx.get(url).status_code == 200
    time.sleep(1.05)
    assert httpx.get(url).status_code == 403
    body = submit(
        http, "fal-ai/ltx-video", {"prompt": "keep"},
        headers={"X-Fal-Object-Lifecycle-Preference": '{"expiration_duration_seconds": null}'},
    )  # fmt: skip
    wait_completed(http, body["status_url"])
    url = http.get(body["response_url"]).json()["video"]["url"]
    time.sleep(1.05)
    assert httpx.get(url).status_code == 200


def test_padding_keeps_a_decodable_mp4(emulator, http):
    emulator.configure(media_pad_to_bytes=3_000_000)
    video = generate(http, "fal-ai/ltx-video", {"prompt": "pad"})
    assert video["file_size"] >= 3_000_000
    data = httpx.get(video["url"]).content
    assert len(data) == video["file_size"]
    assert probe(data)["duration"] == pytest.approx(5.0, abs=0.15)

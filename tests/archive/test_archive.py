"""Archive.store / existing / archive_all against real MP4s on a loopback server (D1, D3, F11)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import fsspec
import pytest
from archive_helpers import FAST, HTML, Reply, outcome
from PIL import Image

from fal_video.archive import Archive, MediaPolicy, probe_video
from fal_video.errors import FalError, Reason
from fal_video.records import ArchiveRecord, Outcome

HTTP = MediaPolicy(allow_http=True)
KEY = "a1b2c3d4e5f6a1b2c3d4e5f6"
ROOT = Path(__file__).resolve().parents[2]


def archived_files(root: Path) -> list[str]:
    videos = root / "videos"
    return sorted(p.name for p in videos.iterdir()) if videos.exists() else []


def assert_nothing_archived(root: Path) -> None:
    assert archived_files(root) == []
    partial = root / ".partial"
    assert not partial.exists() or list(partial.iterdir()) == []


# --- the happy path ------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "has_audio"), [("av", True), ("silent", False)])
def test_store_verifies_and_archives_a_real_video(tmp_path, media_server, mp4s, name, has_audio):
    body = mp4s[name]
    url = media_server.route("/files/v.mp4", Reply(body=body))
    record = Archive(str(tmp_path)).store(outcome(url, file_size=len(body)), HTTP, retry=FAST)

    assert record.state == "archived", record.reason
    assert record.path == f"videos/{KEY}.mp4" and record.poster_path == f"videos/{KEY}.jpg"
    assert record.sha256 == hashlib.sha256(body).hexdigest() and record.bytes == len(body)
    assert (record.width, record.height, record.fps, record.codec) == (64, 36, 24.0, "h264")
    assert record.duration_s == pytest.approx(1.0, abs=0.1)
    assert record.has_audio is has_audio
    assert (tmp_path / record.path).read_bytes() == body
    with Image.open(tmp_path / record.poster_path) as poster:
        assert (poster.format, poster.size) == ("JPEG", (64, 36))
    sidecar = json.loads((tmp_path / f"videos/{KEY}.json").read_text())
    assert sidecar["sha256"] == record.sha256 and sidecar["request_id"] == f"req-{KEY}"
    assert archived_files(tmp_path) == [f"{KEY}.jpg", f"{KEY}.json", f"{KEY}.mp4"]


def test_second_store_reuses_the_archive_without_downloading(tmp_path, media_server, mp4s):
    url = media_server.route("/v.mp4", Reply(body=mp4s["av"]))
    archive = Archive(str(tmp_path))
    first = archive.store(outcome(url), HTTP, retry=FAST)
    second = Archive(str(tmp_path)).store(outcome(url), HTTP, retry=FAST)
    assert first == second and first.state == "archived"
    assert media_server.hits("/v.mp4") == 1
    assert archive.existing(KEY, verify=True) == first


def test_existing_rejects_a_video_that_changed(tmp_path, media_server, mp4s):
    url = media_server.route("/v.mp4", Reply(body=mp4s["av"]))
    archive = Archive(str(tmp_path))
    archive.store(outcome(url), HTTP, retry=FAST)
    video = tmp_path / f"videos/{KEY}.mp4"
    data = bytearray(video.read_bytes())
    data[-1] ^= 0xFF  # same size, different bytes: only a re-hash notices
    video.write_bytes(bytes(data))
    assert archive.existing(KEY) is not None
    assert archive.existing(KEY, verify=True) is None
    video.write_bytes(bytes(data[:-10]))  # a different size: the cheap check notices
    assert archive.existing(KEY) is None
    assert Archive(str(tmp_path)).existing("0" * 24) is None


def test_memory_object_storage_root(media_server, mp4s):
    url = media_server.route("/v.mp4", Reply(body=mp4s["av"]))
    archive = Archive("memory://archive-test/run1")
    record = archive.store(outcome(url), HTTP, retry=FAST)
    assert record.state == "archived", record.reason
    fs = fsspec.filesystem("memory")
    assert fs.cat_file(f"/archive-test/run1/videos/{KEY}.mp4") == mp4s["av"]
    assert fs.cat_file(f"/archive-test/run1/videos/{KEY}.jpg")[:3] == b"\xff\xd8\xff"
    assert json.loads(fs.cat_file(f"/archive-test/run1/videos/{KEY}.json"))["state"] == "archived"
    assert Archive("memory://archive-test/run1").existing(KEY, verify=True) == record
    fs.rm("/archive-test", recursive=True)


def test_file_uri_root(tmp_path, media_server, mp4s):
    url = media_server.route("/v.mp4", Reply(body=mp4s["silent"]))
    record = Archive(tmp_path.as_uri()).store(outcome(url), HTTP, retry=FAST)
    assert record.state == "archived"
    assert (tmp_path / "videos" / f"{KEY}.mp4").read_bytes() == mp4s["silent"]


def test_data_uri_source(tmp_path, mp4s):
    uri = "data:video/mp4;base64," + base64.b64encode(mp4s["av"]).decode()
    record = Archive(str(tmp_path)).store(outcome(uri), MediaPolicy(), retry=FAST)
    assert record.state == "archived", record.reason
    assert record.sha256 == hashlib.sha256(mp4s["av"]).hexdigest()
    assert json.loads((tmp_path / f"videos/{KEY}.json").read_text())["source"].startswith("data:video/mp4")


@pytest.mark.parametrize(
    "uri",
    [
        "data:text/html;base64," + base64.b64encode(HTML).decode(),
        "data:video/mp4;base64," + base64.b64encode(HTML).decode(),
        "data:video/mp4;base64,@@not-base64@@",
        "data:video/mp4",
    ],
)
def test_bad_data_uris_are_invalid(tmp_path, uri):
    record = Archive(str(tmp_path)).store(outcome(uri), MediaPolicy(), retry=FAST)
    assert record.state == "media_invalid"
    assert_nothing_archived(tmp_path)


# --- D1: truncated downloads -------------------------------------------------------------------


def test_truncated_body_is_retried_and_removed(tmp_path, media_server, mp4s):
    body = mp4s["av"]
    url = media_server.route("/v.mp4", Reply(body=body, truncate_at=len(body) // 3), Reply(body=body))
    record = Archive(str(tmp_path)).store(outcome(url), HTTP, retry=FAST)
    assert record.state == "archived"
    assert media_server.hits("/v.mp4") == 2
    assert (tmp_path / record.path).read_bytes() == body
    assert list((tmp_path / ".partial").iterdir()) == []


def test_always_truncated_ends_download_failed_with_nothing_kept(tmp_path, media_server, mp4s):
    body = mp4s["av"]
    url = media_server.route("/v.mp4", Reply(body=body, truncate_at=1000))
    record = Archive(str(tmp_path)).store(outcome(url), HTTP, retry=FAST)
    assert record.state == "download_failed"
    assert "gave up after 3 tries" in record.reason
    assert media_server.hits("/v.mp4") == FAST.attempts
    assert_nothing_archived(tmp_path)


def test_truncated_file_with_a_matching_content_length_is_caught_by_its_boxes(tmp_path, media_server, mp4s):
    cut = mp4s["av"][: len(mp4s["av"]) - 500]  # the server is honest about a short file
    url = media_server.route("/v.mp4", Reply(body=cut))
    record = Archive(str(tmp_path)).store(outcome(url), HTTP, retry=FAST)
    assert record.state == "media_invalid"
    assert "truncated" in record.reason
    assert_nothing_archived(tmp_path)


def test_fal_file_size_mismatch_is_not_archived(tmp_path, media_server, mp4s):
    url = media_server.route("/v.mp4", Reply(body=mp4s["av"]))
    record = Archive(str(tmp_path)).store(outcome(url, file_size=len(mp4s["av"]) + 1), HTTP, retry=FAST)
    assert record.state == "download_failed"
    assert "file_size" in record.reason
    assert_nothing_archived(tmp_path)


def test_download_killed_midway_leaves_nothing_in_videos(tmp_path, media_server, mp4s):
    """Issue 5 item 3: the process dies mid-download; the rerun completes; nothing partial is visible."""
    body = mp4s["av"]
    url = media_server.route("/v.mp4", Reply(body=body, truncate_at=len(body) // 2, stall=(stall := threading.Event())))
    script = (
        "import sys; from fal_video.archive import Archive, MediaPolicy; from fal_video.records import Outcome; "
        f"Archive(sys.argv[1]).store(Outcome({KEY!r}, 'r', 'succeeded', video={{'url': sys.argv[2]}}), "
        "MediaPolicy(allow_http=True))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins")}
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path), url], env=env)
    try:
        assert media_server.sent_partial.wait(30)
        _wait_for(lambda: any((tmp_path / ".partial").rglob("*.mp4")))  # the download is under way
        assert archived_files(tmp_path) == []
    finally:
        proc.kill()
        proc.wait()
        stall.set()
    assert archived_files(tmp_path) == []

    media_server.route("/v.mp4", Reply(body=body))
    record = Archive(str(tmp_path)).store(outcome(url), HTTP, retry=FAST)
    assert record.state == "archived"
    assert archived_files(tmp_path) == [f"{KEY}.jpg", f"{KEY}.json", f"{KEY}.mp4"]


# --- D3: not a video ---------------------------------------------------------------------------


def test_html_page_served_as_text_html_is_rejected_without_retry(tmp_path, media_server):
    url = media_server.route("/v.mp4", Reply(body=HTML, content_type="text/html; charset=utf-8"))
    record = Archive(str(tmp_path)).store(outcome(url), HTTP, retry=FAST)
    assert record.state == "media_invalid"
    assert "text/html" in record.reason
    assert media_server.hits("/v.mp4") == 1
    assert_nothing_archived(tmp_path)


def test_html_bytes_served_as_octet_stream_are_rejected_by_their_bytes(tmp_path, media_server):
    url = media_server.route("/v.mp4", Reply(body=HTML, content_type="application/octet-stream"))
    record = Archive(str(tmp_path)).store(outcome(url), HTTP, retry=FAST)
    assert record.state == "media_invalid"
    assert "ftyp" in record.reason
    assert_nothing_archived(tmp_path)


def test_mp4_boxes_that_do_not_decode_are_rejected(tmp_path, media_server, mp4s):
    ftyp_only = mp4s["av"][:32] + b"\x00\x00\x00\x10moov" + b"\x00" * 8  # well-formed boxes, no streams
    url = media_server.route("/v.mp4", Reply(body=ftyp_only))
    record = Archive(str(tmp_path)).store(outcome(url), HTTP, retry=FAST)
    assert record.state == "media_invalid"
    assert_nothing_archived(tmp_path)


def test_probe_video_raises_media_invalid(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(HTML)
    with pytest.raises(FalError) as err:
        probe_video(bad)
    assert err.value.reason is Reason.MEDIA_INVALID


@pytest.mark.parametrize("video", [None, {}, {"url": ""}, {"url": 42}, "https://x/v.mp4"])
def test_malformed_fal_file_is_invalid(tmp_path, video):
    bad = Outcome(job_key=KEY, request_id="r", state="succeeded", video=video)
    record = Archive(str(tmp_path)).store(bad, HTTP, retry=FAST)
    assert record.state == "media_invalid"
    assert "no video URL" in record.reason


# --- F11: expired media, transient errors --------------------------------------------------------


@pytest.mark.parametrize("status", [403, 404, 410])
def test_expired_media_without_refresh_is_media_expired(tmp_path, media_server, status):
    url = media_server.route("/v.mp4", Reply(status, b"gone", "text/plain"))
    record = Archive(str(tmp_path)).store(outcome(url + "?sig=SECRET"), HTTP, retry=FAST)
    assert record.state == "media_expired"
    assert f"HTTP {status}" in record.reason and "SECRET" not in record.reason
    assert media_server.hits("/v.mp4") == 1


def test_expired_media_is_refreshed_once(tmp_path, media_server, mp4s):
    old = media_server.route("/old.mp4", Reply(403, b"expired", "text/plain"))
    fresh = media_server.route("/fresh.mp4", Reply(body=mp4s["av"]))
    calls: list[Outcome] = []

    def refresh(o: Outcome) -> str:
        calls.append(o)
        return fresh

    record = Archive(str(tmp_path)).store(outcome(old), HTTP, refresh_url=refresh, retry=FAST)
    assert record.state == "archived"
    assert [c.job_key for c in calls] == [KEY]


@pytest.mark.parametrize("answer", ["still-expired", None, "raises"])
def test_refresh_that_does_not_help_ends_media_expired(tmp_path, media_server, answer):
    old = media_server.route("/old.mp4", Reply(404, b"no", "text/plain"))
    also_old = media_server.route("/also-old.mp4", Reply(410, b"no", "text/plain"))
    calls = []

    def refresh(o: Outcome) -> str | None:
        calls.append(o)
        if answer == "raises":
            raise RuntimeError("fal said 500")
        return also_old if answer else None

    record = Archive(str(tmp_path)).store(outcome(old), HTTP, refresh_url=refresh, retry=FAST)
    assert record.state == "media_expired"
    assert len(calls) == 1
    assert_nothing_archived(tmp_path)


@pytest.mark.parametrize("status", [503, 429, 500])
def test_transient_status_is_retried(tmp_path, media_server, mp4s, status):
    url = media_server.route("/v.mp4", Reply(status, b"busy", "text/plain"), Reply(body=mp4s["av"]))
    record = Archive(str(tmp_path)).store(outcome(url), HTTP, retry=FAST)
    assert record.state == "archived"
    assert media_server.hits("/v.mp4") == 2


def test_persistent_503_ends_download_failed(tmp_path, media_server):
    url = media_server.route("/v.mp4", Reply(503, b"busy", "text/plain"))
    record = Archive(str(tmp_path)).store(outcome(url), HTTP, retry=FAST)
    assert record.state == "download_failed"
    assert "HTTP 503" in record.reason
    assert media_server.hits("/v.mp4") == FAST.attempts


def test_connection_refused_ends_download_failed(tmp_path, media_server):
    url = media_server.url("/v.mp4")
    media_server.httpd.server_close()  # nothing listens on the port any more
    record = Archive(str(tmp_path)).store(outcome(url), HTTP, retry=FAST)
    assert record.state == "download_failed"
    assert "ConnectError" in record.reason


# --- names, ordering, recovery -----------------------------------------------------------------


@pytest.mark.parametrize("key", ["../evil", "/etc/passwd", "a/b", "a\x00b", "x" * 300, "", ".hidden", "CON", "a..b"])
def test_unsafe_job_keys_never_become_paths(tmp_path, media_server, mp4s, key):
    url = media_server.route("/v.mp4", Reply(body=mp4s["av"]))
    root = tmp_path / "root"
    archive = Archive(str(root))
    with pytest.raises(ValueError):
        archive.store(outcome(url, key=key), HTTP, retry=FAST)
    with pytest.raises(ValueError):
        archive.existing(key)
    [record] = archive.archive_all([outcome(url, key=key)], HTTP, retry=FAST)
    assert record.state == "download_failed" and "unsafe archive name" in record.reason
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == []


def test_sidecar_is_written_last(tmp_path, media_server, mp4s, monkeypatch):
    url = media_server.route("/v.mp4", Reply(body=mp4s["av"]))
    archive = Archive(str(tmp_path))
    order: list[str] = []
    real_put = archive._files.put_file

    def spy(tmp: Path, rel: str) -> None:
        order.append(rel)
        real_put(tmp, rel)

    monkeypatch.setattr(archive._files, "put_file", spy)
    archive.store(outcome(url), HTTP, retry=FAST)
    assert order == [f"videos/{KEY}.mp4", f"videos/{KEY}.jpg", f"videos/{KEY}.json"]


def test_video_without_sidecar_is_reverified_not_refetched(tmp_path, media_server, mp4s, monkeypatch):
    """A crash between moving the video in and writing its sidecar loses nothing, even once the URL expired."""
    url = media_server.route("/v.mp4", Reply(body=mp4s["av"]))
    archive = Archive(str(tmp_path))
    real_put = archive._files.put_file

    def crash_on_sidecar(tmp: Path, rel: str) -> None:
        if rel.endswith(".json"):
            raise OSError("disk went away")
        real_put(tmp, rel)

    monkeypatch.setattr(archive._files, "put_file", crash_on_sidecar)
    with pytest.raises(OSError):
        archive.store(outcome(url), HTTP, retry=FAST)
    assert archive.existing(KEY) is None

    media_server.route("/v.mp4", Reply(410, b"gone", "text/plain"))
    record = Archive(str(tmp_path)).store(outcome(url), HTTP, retry=FAST)
    assert record.state == "archived" and record.sha256 == hashlib.sha256(mp4s["av"]).hexdigest()
    assert media_server.hits("/v.mp4") == 1


# --- archive_all ---------------------------------------------------------------------------------


def test_archive_all_isolates_failures_and_skips_what_is_done(tmp_path, media_server, mp4s):
    good = [outcome(media_server.route(f"/ok{i}.mp4", Reply(body=mp4s["av"])), key=f"{i:024x}") for i in range(6)]
    bad = outcome(media_server.route("/bad.mp4", Reply(body=HTML, content_type="text/html")), key="b" * 24)
    failed = Outcome(job_key="c" * 24, request_id="r", state="failed", reason="boom")
    archive = Archive(str(tmp_path))

    records = archive.archive_all([*good, bad, failed, good[0]], HTTP, concurrency=4, retry=FAST)
    by_key = {r.job_key: r for r in records}
    assert len(records) == 7 and set(by_key) == {o.job_key for o in good} | {bad.job_key}
    assert by_key[bad.job_key].state == "media_invalid"
    assert all(by_key[o.job_key].state == "archived" for o in good)

    again = archive.archive_all([*good, bad], HTTP, concurrency=4, retry=FAST)
    assert {r.job_key: r for r in again} == by_key
    assert all(media_server.hits(f"/ok{i}.mp4") == 1 for i in range(6))
    assert media_server.hits("/bad.mp4") == 2  # failures are tried again by a rerun


def test_archive_all_runs_downloads_concurrently(tmp_path, media_server, mp4s):
    gate = threading.Event()
    jobs = [
        outcome(media_server.route(f"/s{i}.mp4", Reply(body=mp4s["av"], truncate_at=10, stall=gate)), key=f"{i:024x}")
        for i in range(3)
    ]
    archive = Archive(str(tmp_path))
    done: list[ArchiveRecord] = []
    runner = threading.Thread(target=lambda: done.extend(archive.archive_all(jobs, HTTP, concurrency=3, retry=FAST)))
    runner.start()
    _wait_for(lambda: len(media_server.seen) == 3)  # three requests in flight while every body stalls
    for i in range(3):
        media_server.route(f"/s{i}.mp4", Reply(body=mp4s["av"]))
    gate.set()
    runner.join(30)
    assert sorted(r.state for r in done) == ["archived"] * 3


def _wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)

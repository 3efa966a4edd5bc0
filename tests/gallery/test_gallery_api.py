"""The gallery over HTTP: run list, run page, filters, pagination, media with Range, refusals."""

from __future__ import annotations

import http.client
import json
import os
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient
from gallery_helpers import (
    BIG,
    BIG_ROWS,
    DEMO,
    DEMO_RUN_ID,
    FAIL_REASON,
    REJECT_REASON,
    SECRET,
    VEO3,
    gallery_server_app,
)

from fal_video.gallery import PAGE_SIZE, create_app

P = "/fal-gallery"


class Page(HTMLParser):
    """Tags with their attributes, and the text, of an HTML page."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [a for name, a in self.tags if name == tag and all(a.get(k) == v for k, v in attrs.items())]

    @property
    def all_text(self) -> str:
        return "".join(self.text)


@pytest.fixture(scope="module")
def client(archive) -> TestClient:
    return TestClient(gallery_server_app(archive.root))


def get_page(client: TestClient, url: str) -> Page:
    response = client.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    return Page(response.text)


def test_run_list_newest_first_with_summaries_and_incomplete_runs(client):
    page = get_page(client, f"{P}/")
    folders = [row["data-folder"] for row in page.all("tr") if row.get("data-folder")]
    assert set(folders[:2]) == {"half", "empty"}  # no summary: ordered by folder mtime (now)
    assert folders[2:] == [BIG, DEMO]  # by summary started_at
    text = page.all_text
    assert "3 succeeded" in text and "1 rejected" in text and "1 failed" in text
    assert "$2.20" in text  # 3 x 0.4 + 2 x 0.5
    assert "250 s" in text  # wall time of the demo run
    assert text.count("incomplete") >= 2 and "no summary.json yet" in text
    hrefs = [a["href"] for a in page.all("a")]
    assert f"{P}/runs/{DEMO}" in hrefs and f"{P}/runs/half" in hrefs
    airflow = page.all("a", target="_top")
    assert {a["href"] for a in airflow} >= {"/dags/fal_video_batch/runs/manual__2026-12-01T10%3A00%3A00%2B00%3A00"}


def test_run_page_shows_videos_reasons_and_links(client):
    page = get_page(client, f"{P}/runs/{DEMO}")
    cards = [a["data-status"] for a in page.all("article")]
    assert cards == ["succeeded", "rejected", "succeeded", "failed", "succeeded"]
    videos = page.all("video")
    sources = [s["src"] for s in page.all("source")]
    assert len(videos) == 3 and sources[0] == f"{P}/media/videos/fox.mp4"
    assert all(v["poster"].startswith(f"{P}/media/videos/") for v in videos)
    assert REJECT_REASON in page.all_text and FAIL_REASON in page.all_text
    hrefs = {a["href"]: a for a in page.all("a")}
    assert (
        hrefs[f"/dags/fal_video_batch/runs/{DEMO_RUN_ID.replace(':', '%3A').replace('+', '%2B')}"]["target"] == "_top"
    )
    assert hrefs[f"{P}/"].get("target") is None  # back to the list, inside the frame
    for name in ("manifest.csv", "manifest.jsonl", "summary.json", "rerun.csv"):
        assert f"{P}/runs/{DEMO}/{name}" in hrefs
    assert not page.all("a", href=f"{P}/runs/{DEMO}/plan.json")
    for url in sources + [v["poster"] for v in videos]:
        assert client.get(url).status_code == 200, url


def test_manifest_downloads(client, archive):
    response = client.get(f"{P}/runs/{DEMO}/manifest.jsonl")
    assert response.status_code == 200 and "attachment" in response.headers["content-disposition"]
    rows = [json.loads(line) for line in response.text.splitlines()]
    assert [r["status"] for r in rows] == ["succeeded", "rejected", "succeeded", "failed", "succeeded"]
    csv = client.get(f"{P}/runs/{DEMO}/manifest.csv")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.content == (archive.root / "runs" / DEMO / "manifest.csv").read_bytes()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=rejected", ["rejected"]),
        ("status=succeeded", ["succeeded"] * 3),
        (f"model={VEO3}", ["failed", "succeeded"]),
        (f"status=succeeded&model={VEO3}", ["succeeded"]),
        ("status=cancelled", []),
    ],
)
def test_filters_by_status_and_model(client, query, expected):
    page = get_page(client, f"{P}/runs/{DEMO}?{query}")
    assert [a["data-status"] for a in page.all("article")] == expected
    assert len(page.all("video")) == expected.count("succeeded")
    assert "matching the filters" in page.all_text
    # the filters keep showing the whole run's choices and counts
    assert "5 rows: 3 succeeded, 1 rejected, 1 failed" in page.all_text
    assert {o["value"] for o in page.all("option")} >= {"", "succeeded", "rejected", "failed", VEO3}


def test_pagination_renders_one_page_of_cards(client):
    first = get_page(client, f"{P}/runs/{BIG}")
    assert len(first.all("article")) == PAGE_SIZE == len(first.all("video"))
    assert "rows 1\u201360 of 130" in first.all_text
    assert not first.all("a", rel="prev")
    assert first.all("a", rel="next")[0]["href"] == f"{P}/runs/{BIG}?page=2"

    last = get_page(client, f"{P}/runs/{BIG}?page=3")
    assert len(last.all("article")) == BIG_ROWS - 2 * PAGE_SIZE
    assert "rows 121\u2013130 of 130" in last.all_text and "page 3 of 3" in last.all_text
    assert last.all("article")[0]["id"] == "row-121"
    assert last.all("a", rel="prev")[0]["href"] == f"{P}/runs/{BIG}?page=2"
    assert not last.all("a", rel="next")

    filtered = get_page(client, f"{P}/runs/{BIG}?status=succeeded")
    assert filtered.all("a", rel="next")[0]["href"] == f"{P}/runs/{BIG}?status=succeeded&page=2"
    assert client.get(f"{P}/runs/{BIG}?page=0").status_code == 422


def test_video_range_requests(client, archive):
    data = archive.video.read_bytes()
    whole = client.get(f"{P}/media/videos/fox.mp4")
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-type"] == "video/mp4" and whole.headers["accept-ranges"] == "bytes"

    part = client.get(f"{P}/media/videos/fox.mp4", headers={"Range": "bytes=100-299"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-299/{len(data)}"
    assert part.content == data[100:300]

    tail = client.get(f"{P}/media/videos/fox.mp4", headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == data[-50:]

    head = client.head(f"{P}/media/videos/fox.mp4")
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(data) and not head.content

    poster = client.get(f"{P}/media/videos/fox.jpg")
    assert poster.status_code == 200 and poster.headers["content-type"] == "image/jpeg"


@pytest.mark.parametrize(
    "path",
    [
        "/media/videos/../../ledger/fox.json",
        "/media/videos/..%2f..%2fledger%2ffox.json",
        "/media/videos/%2e%2e%2f%2e%2e%2fledger%2ffox.json",
        "/media/videos/%2e%2e/%2e%2e/ledger/fox.json",
        "/media/videos/%252e%252e%252fledger%252ffox.json",
        "/media/videos/..%5c..%5cledger%5cfox.json",
        "/media/videos/escape.mp4",  # a symlink out of the root
        "/media/videos/notes.txt",  # not a served kind
        "/media/videos/fox.json%00.mp4",
        "/media/videos/%2fetc%2fpasswd",
        "/media/videos//etc/passwd",
        "/media/ledger/fox.json",
        "/media/..%2fledger%2ffox.json",
        "/runs/%2e%2e/ledger/fox.json",
        "/runs/..%2fledger/fox.json",
        f"/runs/{DEMO}/plan.json",  # a run file that is not offered for download
        f"/runs/{DEMO}/..%2f..%2fledger%2ffox.json",
        "/runs/%2e%2e%2f%2e%2e%2f..",
        "/runs/.hidden",
        "/runs/nope",
        "/../outside-secret.txt",
        "/%2e%2e/outside-secret.txt",
    ],
)
def test_path_traversal_is_refused(gallery_server, path):
    """Raw requests over a socket: http.client sends the path exactly as written (no normalising)."""
    connection = http.client.HTTPConnection("127.0.0.1", gallery_server.port, timeout=10)
    connection.request("GET", P + path)
    response = connection.getresponse()
    body = response.read().decode("utf-8", "replace")
    connection.close()
    assert response.status in (400, 404), (path, response.status, body[:200])
    assert SECRET not in body and "req-fox" not in body


def test_only_get_and_head(client, archive):
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert client.request(method, f"{P}/").status_code == 405
        assert client.request(method, f"{P}/media/videos/fox.mp4").status_code == 405
    assert client.head(f"{P}/runs/{DEMO}").status_code == 200
    app = create_app(archive.root)
    paths = {route.path: route.methods for route in app.routes if hasattr(route, "methods")}
    assert paths and all(methods == {"GET", "HEAD"} for methods in paths.values()), paths


def test_half_written_run_folder_still_loads(client):
    page = get_page(client, f"{P}/runs/half")
    notice = " ".join(page.all_text.split())
    assert "Incomplete run: no summary.json yet" in notice
    assert "1 manifest line(s) could not be read" in notice
    assert [a["data-status"] for a in page.all("article")] == ["succeeded", "rejected"]
    assert REJECT_REASON in page.all_text
    assert not page.all("a", target="_top")  # no run id known without summary.json
    assert [a["href"] for a in page.all("a")] == [f"{P}/", f"{P}/runs/half/manifest.jsonl"]


def test_empty_run_folder_and_missing_run(client):
    page = get_page(client, f"{P}/runs/empty")
    assert "No manifest.jsonl in this run folder yet." in page.all_text and "No rows in this run." in page.all_text
    assert client.get(f"{P}/runs/does-not-exist").status_code == 404


def test_missing_runs_folder_lists_nothing(tmp_path):
    client = TestClient(gallery_server_app(tmp_path / "no-archive-yet"))
    page = get_page(client, f"{P}/")
    assert "No runs in the archive yet" in page.all_text


def test_summaries_are_cached_until_the_file_changes(tmp_path):
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    summary = run / "summary.json"
    summary.write_text(json.dumps({"run_id": "r1", "verdict": "first verdict"}))
    client = TestClient(gallery_server_app(tmp_path))
    assert "first verdict" in client.get(f"{P}/").text
    summary.write_text(json.dumps({"run_id": "r1", "verdict": "second verdict"}))
    stat = summary.stat()
    os.utime(summary, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert "second verdict" in client.get(f"{P}/").text
    summary.write_text("{not json")
    assert "summary.json is unreadable" in client.get(f"{P}/").text
    assert client.get(f"{P}/runs/r1").status_code == 200


def test_prompts_are_escaped(tmp_path):
    from gallery_helpers import video_row

    from fal_video.manifest import write_run

    row = video_row("r1", "fox", '<script>alert("x")</script>')
    write_run(tmp_path / "runs" / "x", [row], run_id="<b>x</b>", source="s.csv")
    client = TestClient(gallery_server_app(tmp_path))
    for url in (f"{P}/", f"{P}/runs/x"):
        html = client.get(url).text
        assert "<script>alert" not in html and "<b>x</b>" not in html

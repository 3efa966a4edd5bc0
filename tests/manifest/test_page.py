"""index.html / the gallery run page: escaped, one player per video, reasons shown, media found."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from fal_video.manifest import media_url, read_jsonl, render_run_page, write_run

LINKS = {"manifest.csv": "manifest.csv", "manifest.jsonl": "manifest.jsonl"}


class Page(HTMLParser):
    """The tags, attributes and text of a page (enough to assert on without a browser)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


def test_prompt_html_is_escaped(scenario):
    scenario.row('<script>alert("x")</script><img src=x onerror=alert(1)>', metadata={})
    html = render_run_page(scenario.build(), {"run_id": "<b>run</b>"}, media_base="../..", manifest_links=LINKS)
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>run</b>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert len(Page(html).all("script")) == 1  # only the page's own filter script


def test_one_video_player_per_succeeded_or_reused_row(mixed):
    html = render_run_page(mixed.build(), {}, media_base="../..", manifest_links=LINKS)
    videos = Page(html).all("video")
    assert len(videos) == 2  # one succeeded, one reused; failed/rejected/timed_out rows have none
    assert all(v["preload"] == "none" and "controls" in v and v["poster"].startswith("../../posters/") for v in videos)


def test_rejected_and_failed_rows_are_shown_with_their_reasons(mixed):
    html = render_run_page(mixed.build(), {}, media_base="../..", manifest_links=LINKS)
    page = Page(html)
    cards = [attrs["data-status"] for attrs in page.all("article")]
    assert cards == ["succeeded", "reused", "rejected", "failed", "timed_out"]
    text = "".join(page.text)
    assert "demo.csv line 4, field prompt: Field required" in text
    assert "fal answered 500: runner crashed" in text and "deadline of 600 s passed" in text
    assert "5 rows: 1 succeeded, 1 reused, 1 rejected, 1 failed, 1 timed_out" in text


def test_page_has_filters_links_and_no_external_assets(mixed):
    html = render_run_page(mixed.build(), {"run_id": "r"}, media_base="../..", manifest_links=LINKS)
    page = Page(html)
    selects = {attrs["id"] for attrs in page.all("select")}
    assert selects == {"filter-status", "filter-endpoint"}
    models = {attrs["value"] for attrs in page.all("option")}
    assert {"fal-ai/mochi-v1", "fal-ai/luma-dream-machine", "fal-ai/veo3", "failed"} <= models
    assert [a["href"] for a in page.all("a")] == ["manifest.csv", "manifest.jsonl"]
    urls = [v for _tag, attrs in page.tags for k, v in attrs.items() if k in ("src", "href", "poster") and v]
    assert not [u for u in urls if "//" in u or u.startswith(("http", "data:"))]
    assert not page.all("link")


def test_static_page_media_paths_resolve_from_the_run_folder(mixed, tmp_path: Path):
    archive = tmp_path / "archive"
    rows = mixed.build()
    for row in rows:
        for rel in (row.video_path, row.poster_path):
            if rel:
                (archive / rel).parent.mkdir(parents=True, exist_ok=True)
                (archive / rel).write_bytes(b"media")
    run_dir = archive / "runs" / "scheduled__2025-01-01T00:00:00+00:00"
    write_run(run_dir, rows, run_id="scheduled__2025-01-01T00:00:00+00:00", source="demo.csv")
    page = Page((run_dir / "index.html").read_text(encoding="utf-8"))
    sources = [attrs["src"] for attrs in page.all("source")] + [v["poster"] for v in page.all("video")]
    assert len(sources) == 4
    for src in sources:
        assert src.startswith("../../") and (run_dir / src).resolve().is_file(), src
    for link in page.all("a"):
        assert (run_dir / link["href"]).is_file()


def test_gallery_renders_the_same_template_from_manifest_jsonl_with_its_own_prefix(mixed, tmp_path: Path):
    write_run(tmp_path, mixed.build(), run_id="r", source="demo.csv")
    dicts = [row.as_dict() for row in read_jsonl(tmp_path / "manifest.jsonl")]
    html = render_run_page(
        dicts, {}, media_base="/fal-gallery/media", manifest_links={"Airflow run": "/dags/fal_video_batch/runs/r"}
    )
    page = Page(html)
    assert all(attrs["src"].startswith("/fal-gallery/media/videos/") for attrs in page.all("source"))
    assert page.all("a") == [{"href": "/dags/fal_video_batch/runs/r"}]


def test_media_urls_only_come_from_plain_relative_paths():
    assert media_url("../..", "videos/abc.mp4") == "../../videos/abc.mp4"
    assert media_url("", "videos/a b#c.mp4") == "videos/a%20b%23c.mp4"
    for bad in ("javascript:alert(1)", "/etc/passwd", "../../secret", "videos/../../x", "\\\\host\\share", None, ""):
        assert media_url("../..", bad) is None, bad


def test_empty_run_renders_a_page():
    html = render_run_page([], {"run_id": "empty"}, media_base="../..", manifest_links={})
    assert "No rows in this run." in html and "0 rows" in html

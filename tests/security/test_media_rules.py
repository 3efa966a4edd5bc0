"""Issue 5 item 7: which media URLs the DAG's archive step fetches, and that none carries the key.

fal's result body is untrusted input. The emulator's ``malformed_result`` fault with ``variant=url``
puts any URL into a real job's result, so these run the whole DAG (`airflow dags test`): submit,
trigger, archive, manifest. A refused URL must end as a ``media_invalid`` row with a reason, and no
request may reach the host it names. ``recorder`` is a loopback server that keeps every header.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from security_helpers import LeakScan, RecordingServer, write_csv

from fal_video.media import MediaPolicy


def arm(emulator, marker: str, **params: str) -> None:
    """Every result of the job whose prompt holds ``marker`` gets this video ``url`` / ``file_name``."""
    emulator.add_fault("malformed_result", count=None, prompt_contains=marker, variant="url", **params)


def media_requests(emulator) -> list[dict]:
    return emulator.requests("media")


def assert_no_authorization(emulator, recorder: RecordingServer) -> None:
    for seen in recorder.seen:
        assert "authorization" not in seen.headers and "proxy-authorization" not in seen.headers, seen
    for record in media_requests(emulator):
        assert "authorization" not in record["headers"], record["headers"]


def test_only_http_https_urls_are_fetched_and_redirects_carry_no_key(
    run_dag, sec_emulator, recorder: RecordingServer, sec_key: str, tmp_path: Path
) -> None:
    port = recorder.port
    arm(sec_emulator, "XFILE", url="file:///etc/passwd")
    arm(sec_emulator, "XFTP", url=f"ftp://127.0.0.1:{port}/ftp.mp4")
    arm(sec_emulator, "XJS", url=f"javascript:fetch('http://127.0.0.1:{port}/js')")
    arm(sec_emulator, "XDATA", url="data:text/html,<script>alert(1)</script>")
    arm(sec_emulator, "XREDFILE", url=recorder.redirect("/to-file", "file:///etc/passwd"))
    arm(sec_emulator, "XREDFTP", url=recorder.redirect("/to-ftp", f"ftp://127.0.0.1:{port}/ftp2.mp4"))
    arm(sec_emulator, "XBOUNCE", url=recorder.bounce())  # 127.0.0.1:recorder -> localhost:emulator
    rows = [
        {"id": "file", "prompt": "a red car XFILE"},
        {"id": "ftp", "prompt": "a blue car XFTP"},
        {"id": "js", "prompt": "a green car XJS"},
        {"id": "data-html", "prompt": "a pink car XDATA"},
        {"id": "redirect-file", "prompt": "a grey car XREDFILE"},
        {"id": "redirect-ftp", "prompt": "a gold car XREDFTP"},
        {"id": "redirect-other-host", "prompt": "a white car XBOUNCE"},
        {"id": "plain", "prompt": "a black car"},
    ]
    result = run_dag(write_csv(tmp_path / "prompts.csv", rows))
    assert result.returncode == 0, result.output[-4000:]
    got = {r["row_id"]: r for r in result.manifest}

    for row_id, says in [("file", "is not https:// or http://"), ("ftp", "is not https:// or http://"),
                         ("js", "is not https:// or http://"), ("data-html", "text/html, not a video"),
                         ("redirect-file", "is not https:// or http://"),
                         ("redirect-ftp", "is not https:// or http://")]:  # fmt: skip
        row = got[row_id]
        assert (row["status"], row["reason_code"]) == ("failed", "media_invalid"), row
        assert says in row["reason"], row
        assert not row.get("video_path"), row
    assert got["plain"]["status"] == got["redirect-other-host"]["status"] == "succeeded", got

    # Nothing was fetched for a refused URL: the recorder saw only the two redirect starts, once each
    # (media_invalid is final: no retry), and nothing at the ftp/js targets.
    assert sorted(s.path for s in recorder.seen if not s.path.startswith("/bounce")) == ["/to-file", "/to-ftp"]
    assert len(recorder.hits("/bounce")) == 1
    # The emulator served media only for the two rows that succeeded, and the redirected one came in
    # on another host name and port than the redirect: still no Authorization on either hop.
    hosts = sorted(r["headers"].get("host", "").split(":")[0] for r in media_requests(sec_emulator))
    assert hosts == ["127.0.0.1", "localhost"], hosts
    assert_no_authorization(sec_emulator, recorder)
    assert {r["headers"].get("authorization") for r in sec_emulator.requests() if r["kind"] != "media"} == {"Key ***"}
    assert not any(p.read_bytes().startswith(b"root:") for p in (tmp_path / "archive").rglob("*") if p.is_file())
    assert LeakScan(sec_key).tree(tmp_path / "archive") == []


def test_media_hosts_allow_list_is_checked_on_every_hop(
    run_dag, sec_emulator, recorder: RecordingServer, tmp_path: Path
) -> None:
    arm(sec_emulator, "XOTHER", url=f"http://localhost:{recorder.port}/direct.mp4")
    arm(sec_emulator, "XBOUNCE", url=recorder.bounce())
    rows = [
        {"id": "other-host", "prompt": "a tall tower XOTHER"},
        {"id": "redirect-other-host", "prompt": "a short tower XBOUNCE"},
        {"id": "allowed", "prompt": "a round tower"},
    ]
    extra = {"allow_http": True, "media_hosts": ["127.0.0.1", ".example.invalid"]}
    result = run_dag(write_csv(tmp_path / "prompts.csv", rows), extra=extra)
    assert result.returncode == 0, result.output[-4000:]
    got = {r["row_id"]: r for r in result.manifest}
    for row_id in ("other-host", "redirect-other-host"):
        assert (got[row_id]["status"], got[row_id]["reason_code"]) == ("failed", "media_invalid"), got[row_id]
        assert "host localhost is not in the allowed media hosts" in got[row_id]["reason"]
    assert got["allowed"]["status"] == "succeeded", got["allowed"]

    assert recorder.hits("/direct.mp4") == []  # refused before any request
    assert len(recorder.hits("/bounce")) == 1  # the first hop is allowed (127.0.0.1) ...
    hosts = [r["headers"].get("host", "") for r in media_requests(sec_emulator)]
    assert len(hosts) == 1 and hosts[0].startswith("127.0.0.1:"), hosts  # ... its localhost target is not
    assert_no_authorization(sec_emulator, recorder)


def test_http_media_is_refused_when_the_connection_does_not_allow_http(
    recorder: RecordingServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sec_key: str
) -> None:
    """The emulator speaks plain http, so its connection must allow http; a real (https) connection
    does not. The DAG's archive task function runs here with such a connection: the archive step only
    reads the connection's media policy (fal is contacted only to refresh an expired URL)."""
    from fal_video.batch import archive_chunk

    conn = {"conn_type": "fal", "host": "https://queue.fal.run", "password": sec_key, "extra": {}}
    monkeypatch.setenv("AIRFLOW_CONN_FAL_SEC_HTTPS", json.dumps(conn))
    url = recorder.route("/v.mp4", 200, {"Content-Type": "video/mp4"}, b"\x00\x00\x00\x18ftypisom")
    outcome = {"job_key": "ab" * 16, "request_id": "r-1", "state": "succeeded",
               "video": {"url": url, "content_type": "video/mp4", "file_name": "output.mp4"}}  # fmt: skip
    records = archive_chunk({"outcomes": [outcome]}, {"archive_root": str(tmp_path / "archive")}, "fal_sec_https")
    assert [(r["state"], "is not https://" in r["reason"]) for r in records] == [("media_invalid", True)], records
    assert recorder.seen == []
    assert not (tmp_path / "archive" / "videos").exists() or not any((tmp_path / "archive" / "videos").iterdir())


@pytest.mark.parametrize(
    ("hosts", "url", "ok"),
    [
        ((".fal.media",), "https://v3.fal.media/files/x.mp4", True),
        ((".fal.media",), "https://fal.media/x.mp4", True),
        ((".fal.media",), "https://evilfal.media/x.mp4", False),
        ((".fal.media",), "https://fal.media.evil.example/x.mp4", False),
        (("v3.fal.media",), "https://v3.fal.media/x.mp4", True),
        (("v3.fal.media",), "https://a.v3.fal.media/x.mp4", False),
        (("V3.Fal.Media",), "https://v3.fal.media/x.mp4", True),
    ],
)
def test_media_hosts_entries_are_names_or_dot_suffixes(hosts, url, ok) -> None:
    """The connection documents ``media_hosts`` as host names or ``.suffix`` domains (hook.MediaPolicy)."""
    from fal_video.errors import FalError

    policy = MediaPolicy(allowed_hosts=hosts)
    if ok:
        policy.check(url)
    else:
        with pytest.raises(FalError, match="not in the allowed media hosts"):
            policy.check(url)

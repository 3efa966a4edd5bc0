"""Which media URLs are fetched, and that no request ever carries credentials (issue 5 item 7)."""

from __future__ import annotations

import pytest
from archive_helpers import FAST, Reply, outcome

from fal_video.archive import Archive, MediaPolicy
from fal_video.errors import FalError, Reason
from fal_video.media import redact_text, redact_url

HTTP = MediaPolicy(allow_http=True)


def test_https_only_policy_refuses_http_without_a_request(tmp_path, media_server, mp4s):
    url = media_server.route("/v.mp4", Reply(body=mp4s["av"]))
    record = Archive(str(tmp_path)).store(outcome(url), MediaPolicy(), retry=FAST)
    assert record.state == "media_invalid"
    assert "https://" in record.reason
    assert media_server.seen == []


@pytest.mark.parametrize(
    "url",
    ["ftp://127.0.0.1/v.mp4", "file:///etc/passwd", "gopher://x/v", "javascript:alert(1)", "http:///nohost.mp4"],
)
def test_other_schemes_are_refused(url):
    with pytest.raises(FalError) as err:
        HTTP.check(url)
    assert err.value.reason is Reason.MEDIA_INVALID


def test_url_with_credentials_is_refused(tmp_path, media_server, mp4s):
    media_server.route("/v.mp4", Reply(body=mp4s["av"]))
    url = f"http://user:s3cret@127.0.0.1:{media_server.port}/v.mp4"
    record = Archive(str(tmp_path)).store(outcome(url), HTTP, retry=FAST)
    assert record.state == "media_invalid"
    assert "credentials" in record.reason and "s3cret" not in record.reason
    assert media_server.seen == []


def test_allowed_hosts_refuse_other_hosts(tmp_path, media_server, mp4s):
    url = media_server.route("/v.mp4", Reply(body=mp4s["av"]))
    record = Archive(str(tmp_path)).store(outcome(url), MediaPolicy(True, ("v3.fal.media",)), retry=FAST)
    assert record.state == "media_invalid"
    assert "allowed media hosts" in record.reason
    assert media_server.seen == []


def test_redirect_to_another_host_carries_no_authorization(tmp_path, media_server, other_server, mp4s, monkeypatch):
    # A .netrc with credentials for both hosts: a client that trusted the environment would send them.
    netrc = tmp_path / "netrc"
    netrc.write_text("".join(f"machine {h} login fal password KEY-SECRET\n" for h in ("127.0.0.1", "localhost")))
    monkeypatch.setenv("NETRC", str(netrc))
    target = other_server.route("/files/v.mp4", Reply(body=mp4s["av"]))
    target = target.replace("127.0.0.1", "localhost")
    url = media_server.route("/start", Reply(302, headers={"Location": target}, content_type=None))

    policy = MediaPolicy(allow_http=True, allowed_hosts=("127.0.0.1", "localhost"))
    record = Archive(str(tmp_path / "archive")).store(outcome(url), policy, retry=FAST)

    assert record.state == "archived", record.reason
    seen = media_server.seen + other_server.seen
    assert [s.path for s in seen] == ["/start", "/files/v.mp4"]
    assert all("authorization" not in s.headers for s in seen)
    assert all("KEY-SECRET" not in str(s.headers) for s in seen)


def test_allowed_hosts_are_checked_after_a_redirect(tmp_path, media_server, other_server, mp4s):
    target = other_server.route("/files/v.mp4", Reply(body=mp4s["av"])).replace("127.0.0.1", "localhost")
    url = media_server.route("/start", Reply(302, headers={"Location": target}, content_type=None))
    record = Archive(str(tmp_path)).store(outcome(url), MediaPolicy(True, ("127.0.0.1",)), retry=FAST)
    assert record.state == "media_invalid"
    assert "localhost" in record.reason
    assert other_server.seen == []


def test_redirect_from_https_policy_to_http_is_refused(media_server):
    policy = MediaPolicy(allow_http=False)
    with pytest.raises(FalError):
        policy.check("http://cdn.example/v.mp4")


def test_redirect_hops_are_capped(tmp_path, media_server):
    url = media_server.route("/loop", Reply(302, headers={"Location": "/loop"}, content_type=None))
    record = Archive(str(tmp_path)).store(outcome(url), HTTP, retry=FAST)
    assert record.state == "media_invalid"
    assert "redirects" in record.reason
    assert media_server.hits("/loop") == 6  # the first request + 5 hops


def test_redirect_to_a_data_uri_is_refused(tmp_path, media_server):
    url = media_server.route("/r", Reply(302, headers={"Location": "data:video/mp4;base64,AAAA"}, content_type=None))
    assert Archive(str(tmp_path)).store(outcome(url), HTTP, retry=FAST).state == "media_invalid"


def test_max_bytes_is_enforced(tmp_path, media_server, mp4s):
    url = media_server.route("/v.mp4", Reply(body=mp4s["av"]))
    record = Archive(str(tmp_path)).store(outcome(url), MediaPolicy(True, max_bytes=1000), retry=FAST)
    assert record.state == "media_invalid"
    assert "limit" in record.reason
    assert not (tmp_path / "videos").exists()


def test_messages_never_hold_query_strings():
    url = "https://v3.fal.media/files/x.mp4?X-Amz-Signature=SECRET#frag"
    assert redact_url(url) == "https://v3.fal.media/files/x.mp4"
    assert "SECRET" not in redact_text(f"error for url '{url}' here")
    assert redact_url("https://u:p@h.example:8443/a?b=c") == "https://h.example:8443/a"
    assert redact_url("data:video/mp4;base64," + "A" * 1000).startswith("data:video/mp4;base64 (")

"""The Airflow plugin: registered with Airflow, and behind Airflow's login inside a real api-server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fal_video.gallery import URL_PREFIX

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def test_plugin_declares_the_app_and_the_nav_entry():
    import fal_video_plugin

    plugin = fal_video_plugin.FalVideoGalleryPlugin
    (app,) = plugin.fastapi_apps
    assert app["url_prefix"] == URL_PREFIX == "/fal-gallery" and isinstance(app["app"], FastAPI)
    assert not URL_PREFIX.startswith(("/api/v2", "/ui", "/execution", "/auth", "/pluginsv2"))
    (view,) = plugin.external_views
    assert view["href"] == f"{URL_PREFIX}/" and view["url_route"] and view["destination"] == "nav"


def test_airflow_loads_the_plugin():
    from airflow import plugins_manager

    apps, _middlewares = plugins_manager.get_fastapi_plugins()
    assert [a["url_prefix"] for a in apps if a["name"] == "fal_video_gallery"] == [URL_PREFIX]
    views, _react = plugins_manager._get_ui_plugins()
    assert [v["href"] for v in views if v["name"] == "Video gallery"] == [f"{URL_PREFIX}/"]


def test_the_plugin_app_refuses_anonymous_requests():
    import fal_video_plugin

    client = TestClient(fal_video_plugin.gallery_app)
    assert client.get("/").status_code == 401
    assert client.get("/media/videos/x.mp4").status_code == 401


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def api_server(archive, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """``airflow api-server`` on a loopback port, with its own home, SQLite DB and the demo archive."""
    home = tmp_path_factory.mktemp("airflow-home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "FAL_VIDEO_ARCHIVE": str(archive.root),
    }
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=180)
    port = _free_port()
    log = (home / "api-server.log").open("wb")
    process = subprocess.Popen(
        [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (home / "api-server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "api-server did not start"
            try:
                if requests.get(f"{url}/api/v2/monitor/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        yield url, home
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


@pytest.mark.stack  # a real api-server: ~40 s on 2 cores
def test_api_server_serves_the_gallery_to_logged_in_users_only(api_server):
    api_server, home = api_server
    anonymous = requests.get(f"{api_server}{URL_PREFIX}/", timeout=10)
    assert anonymous.status_code == 401
    forged = requests.get(f"{api_server}{URL_PREFIX}/", headers={"Authorization": "Bearer not-a-jwt"}, timeout=10)
    assert forged.status_code == 403

    password = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
    login = requests.post(f"{api_server}/auth/token", json={"username": "admin", "password": password}, timeout=10)
    token = login.json()["access_token"]

    as_bearer = requests.get(f"{api_server}{URL_PREFIX}/", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert as_bearer.status_code == 200 and "fal video runs" in as_bearer.text
    # the Airflow UI's session cookie, which the browser also sends to the gallery's iframe
    session = requests.Session()
    session.cookies.set("_token", token)
    page = session.get(f"{api_server}{URL_PREFIX}/runs/manual__2026-12-01T10_00_00_00_00", timeout=10)
    assert page.status_code == 200 and f'src="{URL_PREFIX}/media/videos/fox.mp4"' in page.text
    assert 'href="/dags/fal_video_batch/runs/manual__2026-12-01T10%3A00%3A00%2B00%3A00"' in page.text
    video = session.get(f"{api_server}{URL_PREFIX}/media/videos/fox.mp4", headers={"Range": "bytes=0-99"}, timeout=10)
    assert video.status_code == 206 and len(video.content) == 100

    plugins = requests.get(f"{api_server}/api/v2/plugins", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    names = {p["name"] for p in plugins.json()["plugins"]}
    assert "fal_video_gallery" in names

"""Airflow plugin: the fal video gallery (issue 7), mounted at /fal-gallery and shown in the UI's nav.

The api-server mounts ``fastapi_apps`` at their ``url_prefix`` and gives them no authentication of
their own (Airflow 3.3, apache/airflow#72655). So the gallery app requires, on every request, what
Airflow's own UI routes require: a valid Airflow JWT (the UI's ``_token`` cookie, which the browser
also sends to the same-origin iframe, or an ``Authorization: Bearer`` token) whose user may read
runs of the fal_video_batch DAG. It uses the auth manager's own checks
(``airflow.api_fastapi.core_api.security``), imported at request time: this module is also imported
by task workers and the dag processor, which must not pay for the api-server's imports.

The archive root is ``FAL_VIDEO_ARCHIVE`` (default ``<project>/archive``), read when the
api-server starts; plugins are not reloaded, so restart the api-server after changing it.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, Request

from fal_video.batch import archive_root_for
from fal_video.gallery import DAG_ID, URL_PREFIX, create_app


async def require_airflow_reader(request: Request) -> None:
    """401 without a valid Airflow token, 403 unless the user may read fal_video_batch's runs."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user, requires_access_dag
    from starlette.concurrency import run_in_threadpool

    user = await get_user(request, None, await bearer_scheme(request))
    check = requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=DAG_ID)
    await run_in_threadpool(check, request, user)  # the auth manager may query the metadata DB


gallery_app = create_app(archive_root_for(None), dependencies=[Depends(require_airflow_reader)])


class FalVideoGalleryPlugin(AirflowPlugin):
    name = "fal_video_gallery"
    fastapi_apps = [{"name": "fal_video_gallery", "app": gallery_app, "url_prefix": URL_PREFIX}]
    external_views = [
        {
            "name": "Video gallery",
            "href": f"{URL_PREFIX}/",
            "url_route": "fal-video-gallery",
            "destination": "nav",
            "category": "browse",
        }
    ]

"""The simulated AI Studios v3 endpoints: token, export, progress, get project, download.

`SimulatedApi.dispatch` is the one way in: it takes the state's lock, finds the route, lets its
endpoint compute the answer and records the call, all before anything is written back. A new
endpoint is one more `Route`; a new per-project fact is one more field of `ProjectState`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from aistudios_local.simulator.messages import (
    Answer,
    Call,
    Request,
    SignedUrl,
    error,
    json_answer,
    ok,
    s3_error,
    status_answer,
)
from aistudios_local.simulator.scenario import BAD_ENVELOPE, MALFORMED, RESET, Scenario
from aistudios_local.simulator.state import SimulatorState

__all__ = ["RESOLUTIONS", "Reply", "Route", "SimulatedApi"]

#: Resolutions the export endpoint accepts (documented).
RESOLUTIONS = frozenset({"4k", "1080", "720", "480"})

_API = re.escape("/api/odin/v3")
_OBJECT_ID_RE = re.compile(r"^[0-9a-fA-F]{24}$")
_URL_LIFETIME_S = 3600


@dataclass(frozen=True)
class Reply:
    """An endpoint's answer and what the call record says about it."""

    answer: Answer
    project_id: str | None = None
    body: dict[str, Any] | None = None


Endpoint = Callable[[Request, re.Match[str], bool], Reply]
"""An endpoint: the request, its route's path match and whether its token is valid."""
ProjectEndpoint = Callable[[Request, str, bool], Answer]
"""An endpoint of a route whose path names the project: request, project id, token valid."""


@dataclass(frozen=True)
class Route:
    """A method set and a path pattern (matched whole) answered by one endpoint."""

    methods: frozenset[str]
    path: re.Pattern[str]
    endpoint: Endpoint


def _unauthorized() -> Answer:
    return error(401, "UNAUTHORIZED", "missing, invalid or expired token")


def _not_found() -> Answer:
    # The real answer is undocumented (AISTUDIOS_API.md): the envelope's failure, with a 404.
    return error(404, "PROJECT_NOT_FOUND", "project not found")


def _path_project(answer: ProjectEndpoint) -> Endpoint:
    """Make an `Endpoint` of `answer`: the route's first group is the project the call is about."""

    def endpoint(request: Request, match: re.Match[str], authorized: bool) -> Reply:
        return Reply(answer(request, match[1], authorized), match[1])

    return endpoint


class SimulatedApi:
    """Answer requests against a `SimulatorState`.

    Parameters
    ----------
    state
        The account the endpoints read and change.
    """

    def __init__(
        self,
        state: SimulatorState,
        on_submit: Callable[[str, str, Scenario, float], None] | None = None,
    ) -> None:
        self.state = state
        self.on_submit = on_submit
        """Called (lock held) with an accepted submit's project, webhookUrl, scenario, time."""
        get, post = frozenset({"GET"}), frozenset({"POST"})
        self.routes: tuple[Route, ...] = (
            Route(post, re.compile(f"{_API}/auth/token"), self._token),
            Route(post, re.compile(f"{_API}/editor/project/export"), self._export),
            Route(
                get, re.compile(f"{_API}/editor/progress/([^/]+)"), _path_project(self._progress)
            ),
            Route(get, re.compile(f"{_API}/editor/project/([^/]+)"), _path_project(self._project)),
            Route(get | {"HEAD"}, re.compile(r"/downloads/([0-9a-f]+)\.mp4"), self._download),
        )

    def dispatch(self, request: Request) -> Answer:
        """Answer one request and record it before anything is written back.

        Parameters
        ----------
        request
            The request as the server read it.

        Returns
        -------
        Answer
            What to write back.
        """
        with self.state.lock:
            authorized = (
                request.authorization is not None and request.authorization in self.state.tokens
            )
            reply = Reply(error(404, "NOT_FOUND", "no such endpoint"))
            for route in self.routes:
                match = route.path.fullmatch(request.path)
                if request.method in route.methods and match is not None:
                    reply = route.endpoint(request, match, authorized)
                    break
            status = 0 if reply.answer.reset else reply.answer.status
            self.state.calls.append(
                Call(request.method, request.path, status, reply.project_id, authorized, reply.body)
            )
        return reply.answer

    def _token(self, request: Request, _: re.Match[str], authorized: bool) -> Reply:
        try:
            payload = json.loads(request.raw)
        except ValueError:
            return Reply(error(400, "INVALID_PARAMETER", "body must be JSON"))
        if not isinstance(payload, dict):
            return Reply(error(400, "INVALID_PARAMETER", "body must be a JSON object"))
        app_id, user_key = payload.get("appId"), payload.get("userKey")
        if not isinstance(app_id, str) or not isinstance(user_key, str):
            return Reply(error(400, "INVALID_PARAMETER", "appId and userKey are required"))
        # Both comparisons always run: no early exit that would time which one failed.
        good_app = hmac.compare_digest(app_id.encode(), self.state.app_id.encode())
        good_key = hmac.compare_digest(user_key.encode(), self.state.user_key.encode())
        if not (good_app and good_key):
            return Reply(error(401, "INVALID_CREDENTIALS", "appId or userKey is not valid"))
        self.state.tokens_minted += 1
        return Reply(ok({"token": self.state.mint()}))

    def _export(self, request: Request, _: re.Match[str], authorized: bool) -> Reply:
        try:
            payload = json.loads(request.raw)
        except ValueError:
            payload = None
        body = payload if isinstance(payload, dict) else None
        if not authorized:
            return Reply(_unauthorized(), None, body)
        if body is None:
            return Reply(error(400, "INVALID_PARAMETER", "body must be a JSON object"))
        project_id = body.get("projectId")
        if not isinstance(project_id, str) or not _OBJECT_ID_RE.match(project_id):
            msg = "projectId must be 24 hex characters"
            return Reply(error(400, "INVALID_PROJECT_ID", msg), None, body)
        if not self.state.knows(project_id):
            return Reply(_not_found(), project_id, body)
        resolution = body.get("resolution", "1080")
        if resolution not in RESOLUTIONS:
            msg = "resolution must be one of 4k, 1080, 720, 480"
            return Reply(error(400, "INVALID_RESOLUTION", msg), project_id, body)
        for key in ("workspaceId", "webhookUrl"):
            if key in body and not isinstance(body[key], str):
                msg = f"{key} must be a string"
                return Reply(error(400, "INVALID_PARAMETER", msg), project_id, body)

        self.state.count_authorized(project_id)
        project, scenario = self.state.project(project_id), self.state.scenario(project_id)
        attempt = project.submit_attempts
        project.submit_attempts += 1
        if attempt < len(scenario.submit_failures):
            return Reply(status_answer(scenario.submit_failures[attempt]), project_id, body)
        if scenario.reject_submit is not None:
            code, msg = scenario.reject_submit
            return Reply(error(400, code, msg), project_id, body)
        webhook = body.get("webhookUrl")
        project.restart(resolution, webhook)
        self.state.render_started(project)
        if webhook and self.on_submit is not None:
            self.on_submit(project_id, webhook, scenario, project.submitted_at)
        return Reply(ok({"projectId": project_id}), project_id, body)

    def _progress(self, request: Request, project_id: str, authorized: bool) -> Answer:
        if not authorized:
            return _unauthorized()
        if not self.state.knows(project_id):
            return _not_found()
        self.state.count_authorized(project_id)
        project, scenario = self.state.project(project_id), self.state.scenario(project_id)
        attempt = project.progress_attempts
        project.progress_attempts += 1
        if attempt < len(scenario.progress_failures):
            fault = scenario.progress_failures[attempt]
            if fault == RESET:
                return Answer(0, reset=True)
            if fault == MALFORMED:
                return Answer(200, b'{"success": true, "data": {"state": "expor')
            if fault == BAD_ENVELOPE:
                return json_answer(200, {"state": "exporting", "progress": 50.0})
            return status_answer(int(fault))
        if not project.submitted:
            return error(404, "PROJECT_NOT_FOUND", "no export for this project")

        project.polls += 1
        steps = scenario.progress_steps
        value = float(steps[min(project.polls, len(steps)) - 1])
        if scenario.linear_seconds:
            elapsed = time.time() - project.submitted_at
            value = min(100.0, round(100.0 * elapsed / scenario.linear_seconds, 2))
        data: dict[str, Any] = {"progress": value}
        if scenario.fail_at_poll is not None and project.polls >= scenario.fail_at_poll:
            data["state"] = scenario.failure_state
        elif value >= 100:
            data["state"] = scenario.done_state
            missing = scenario.url_missing_polls
            if missing == -1 or project.missing_url_answers < missing:
                project.missing_url_answers += 1
            else:
                data["downloadUrl"] = project.last_url = self._issue_url(request, project_id)
        else:
            data["state"] = "exporting"
        project.state, project.progress = data["state"], value
        project.done = data["state"] == scenario.done_state
        if data["state"] != "exporting":
            self.state.render_ended(project)
        return ok(data)

    def _project(self, request: Request, project_id: str, authorized: bool) -> Answer:
        if not authorized:
            return _unauthorized()
        if not self.state.knows(project_id):
            return _not_found()
        self.state.count_authorized(project_id)
        project, scenario = self.state.project(project_id), self.state.scenario(project_id)
        if not project.submitted:
            return error(404, "PROJECT_NOT_FOUND", "no such project")
        url = project.last_url
        if url is None and project.done:
            url = project.last_url = self._issue_url(request, project_id)
        return ok(
            {
                "project": {
                    "_id": project_id,
                    "name": f"Simulated project {project_id[:6]}",
                    # The get-projects reference's word for a project ready for download.
                    "state": "exported" if project.done else project.state,
                    "progress": int(project.progress),
                    "download_url": None if scenario.project_url_missing else url,
                    "backendTaskId": hashlib.sha256(project_id.encode()).hexdigest()[:24],
                    "exportType": "video",
                    "createdAt": int(project.created_at * 1000),
                    "updatedAt": int(time.time() * 1000),
                }
            }
        )

    def _issue_url(self, request: Request, project_id: str) -> str:
        """Hand out a fresh signed download URL (a new signature every time)."""
        project, scenario = self.state.project(project_id), self.state.scenario(project_id)
        if scenario.download_url is not None:
            return scenario.download_url
        signed = SignedUrl(
            project_id=project_id,
            resolution=project.resolution,
            size=self.state.video_size(scenario),
            opaque=secrets.token_hex(12),
            expires=int(time.time()) + _URL_LIFETIME_S,
            expired=project.urls_issued < scenario.expired_urls,
        )
        project.urls_issued += 1
        signature = self.state.sign(signed)
        # Download URLs name the host the client used (localhost or 127.0.0.1), as a real
        # server's would, so that a client trusting exactly that origin accepts them.
        return (
            f"{request.base_url}/downloads/{signed.opaque}.mp4"
            f"?expires={signed.expires}&signature={signature}"
        )

    def _download(self, request: Request, match: re.Match[str], authorized: bool) -> Reply:
        params = parse_qs(request.query)
        signature = params.get("signature", [""])[0]
        expires = params.get("expires", [""])[0]
        signed = self.state.signed.get(signature)
        if signed is None or signed.opaque != match[1] or expires != str(signed.expires):
            return Reply(s3_error("SignatureDoesNotMatch", "The request signature is not valid."))
        if signed.expired or time.time() > signed.expires:
            return Reply(s3_error("AccessDenied", "Request has expired"), signed.project_id)
        cut = False
        if request.method == "GET":
            project = self.state.project(signed.project_id)
            cut = project.downloads < self.state.scenario(signed.project_id).cut_downloads
            project.downloads += 1
        answer = Answer(200, content_type="video/mp4", video=signed, cut=cut)
        return Reply(answer, signed.project_id)

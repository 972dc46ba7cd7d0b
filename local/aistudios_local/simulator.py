"""An in-process AI Studios v3 API simulator with per-project fault injection.

It speaks the documented endpoints (token, export, progress, get project) plus a download host of
signed, streamed MP4s, on a loopback port in a daemon thread. A frozen `Scenario` per project makes
every behaviour the exporter must survive reproducible over real HTTP: stalls, failures, throttling,
malformed answers, resets, missing or expiring download URLs, cut downloads, token revocation.

Run it standalone with ``python -m aistudios_local.simulator [--port N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import random
import re
import secrets
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, cast
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "DEFAULT_VIDEO_SIZE",
    "AiStudiosSimulator",
    "Call",
    "Scenario",
    "iter_video",
    "main",
    "video_bytes",
    "video_sha256",
]

#: Default video size: a little over 3 MiB and not a multiple of any multipart part size.
DEFAULT_VIDEO_SIZE = 3 * 1024 * 1024 + 12345
#: Resolutions the export endpoint accepts (documented).
RESOLUTIONS = frozenset({"4k", "1080", "720", "480"})

_API = "/api/odin/v3"
_TOKEN_PATH = f"{_API}/auth/token"
_EXPORT_PATH = f"{_API}/editor/project/export"
_PROGRESS_RE = re.compile(rf"^{_API}/editor/progress/([^/]+)$")
_PROJECT_RE = re.compile(rf"^{_API}/editor/project/([^/]+)$")
_DOWNLOAD_RE = re.compile(r"^/downloads/([0-9a-f]+)\.mp4$")
_OBJECT_ID_RE = re.compile(r"^[0-9a-fA-F]{24}$")
_PROGRESS_FAULTS = frozenset({"malformed", "bad-envelope", "reset"})
_CHUNK = 64 * 1024
_MAX_BODY = 1024 * 1024
_URL_LIFETIME_S = 3600


@dataclass(frozen=True)
class Scenario:
    """How one project's export behaves; the defaults give a clean, successful export.

    Parameters
    ----------
    progress_steps
        What successive progress calls report; the last value repeats, so a tuple ending below 100
        is a stalled export.
    fail_at_poll
        From this progress call (1-based, counted since the last accepted submit) on, the state is
        `failure_state`.
    failure_state
        The state reported by a failing export.
    url_missing_polls
        At 100 %, omit ``downloadUrl`` for this many progress answers (-1: forever).
    submit_failures
        HTTP statuses answering the first export POSTs (an envelope for 4xx, an HTML page for 5xx).
    progress_failures
        Answers for the first progress calls: an HTTP status, ``"malformed"`` (200, not JSON),
        ``"bad-envelope"`` (200 JSON without success/data) or ``"reset"`` (connection reset,
        no answer).
    reject_submit
        Answer every export POST ``success: false`` with this ``(code, msg)``, HTTP 400.
    expired_urls
        The first N download URLs handed out answer 403, as an expired pre-signed S3 URL does.
    cut_downloads
        The first N downloads promise the full Content-Length, then close after about half the
        bytes.
    download_url
        Hand out this ``downloadUrl`` verbatim instead of the simulator's own.
    video_size
        Override the simulator's video size for this project.
    revoke_token_after
        After this many authorized API calls for this project, revoke every token minted so far.
    """

    progress_steps: tuple[float, ...] = (0.0, 35.5, 72.0, 100.0)
    fail_at_poll: int | None = None
    failure_state: str = "failed"
    url_missing_polls: int = 0
    submit_failures: tuple[int, ...] = ()
    progress_failures: tuple[int | str, ...] = ()
    reject_submit: tuple[str, str] | None = None
    expired_urls: int = 0
    cut_downloads: int = 0
    download_url: str | None = None
    video_size: int | None = None
    revoke_token_after: int | None = None

    def __post_init__(self) -> None:
        if not self.progress_steps:
            raise ValueError("progress_steps must not be empty")
        for fault in self.progress_failures:
            if isinstance(fault, str) and fault not in _PROGRESS_FAULTS:
                raise ValueError(f"unknown progress failure {fault!r}")
        if self.video_size is not None and self.video_size < 0:
            raise ValueError("video_size must be >= 0")


@dataclass(frozen=True)
class Call:
    """One request the simulator answered; secrets (token, appId, userKey, URL query) are not kept.

    Parameters
    ----------
    method
        HTTP method.
    path
        Request path without its query string.
    status
        HTTP status answered; 0 when the connection was reset without an answer.
    project_id
        The project the call was about, if any.
    authorized
        Whether the request carried a currently valid AI Studios token.
    body
        The JSON body of an export POST; None for every other call (the token POST included).
    """

    method: str
    path: str
    status: int
    project_id: str | None
    authorized: bool
    body: dict[str, Any] | None


def _video_header(size: int) -> bytes:
    """Return an ``ftyp`` box and an ``mdat`` box header spanning the rest of `size` bytes."""
    ftyp = struct.pack(">I4s4sI16s", 32, b"ftyp", b"isom", 0x200, b"isomiso2avc1mp41")
    rest = size - len(ftyp)
    if rest < 2**32:
        mdat = struct.pack(">I4s", max(rest, 0), b"mdat")
    else:  # 64-bit "largesize" form for videos of 4 GiB and more
        mdat = struct.pack(">I4sQ", 1, b"mdat", rest)
    return (ftyp + mdat)[:size]


def iter_video(
    project_id: str, resolution: str = "1080", size: int = DEFAULT_VIDEO_SIZE
) -> Iterator[bytes]:
    """Yield the simulated video of a project in chunks of at most 64 KiB.

    Parameters
    ----------
    project_id, resolution, size
        The bytes are a deterministic function of these three.

    Yields
    ------
    bytes
        An MP4 ``ftyp`` box and ``mdat`` header, then pseudo-random bytes; `size` bytes in all.
    """
    header = _video_header(size)
    if header:
        yield header
    # Not for security: a seeded generator makes the bytes reproducible without storing them.
    rng = random.Random(f"aistudios-sim:{project_id}:{resolution}:{size}")  # noqa: S311
    remaining = size - len(header)
    while remaining > 0:
        n = min(_CHUNK, remaining)
        yield rng.randbytes(n)
        remaining -= n


def video_bytes(project_id: str, resolution: str = "1080", size: int = DEFAULT_VIDEO_SIZE) -> bytes:
    """Return the whole simulated video of a project (for tests; see `iter_video`).

    Parameters
    ----------
    project_id, resolution, size
        As in `iter_video`.

    Returns
    -------
    bytes
        Exactly the bytes the download endpoint serves.
    """
    return b"".join(iter_video(project_id, resolution, size))


def video_sha256(project_id: str, resolution: str = "1080", size: int = DEFAULT_VIDEO_SIZE) -> str:
    """Return the hex SHA-256 of the simulated video, hashed while streaming.

    Parameters
    ----------
    project_id, resolution, size
        As in `iter_video`.

    Returns
    -------
    str
        Lower-case hex digest.
    """
    digest = hashlib.sha256()
    for chunk in iter_video(project_id, resolution, size):
        digest.update(chunk)
    return digest.hexdigest()


@dataclass
class _Project:
    """Mutable per-project state; guarded by the simulator's lock."""

    submitted: bool = False
    resolution: str = "1080"
    polls: int = 0  # progress answers since the last accepted submit
    missing_url_answers: int = 0
    state: str = "exporting"
    progress: float = 0.0
    last_url: str | None = None
    created_at: float = field(default_factory=time.time)
    # Lifetime counters: faults consume them once, whatever resubmits happen.
    submit_attempts: int = 0
    progress_attempts: int = 0
    urls_issued: int = 0
    downloads: int = 0
    authorized_calls: int = 0
    revoked: bool = False


@dataclass(frozen=True)
class _SignedUrl:
    project_id: str
    resolution: str
    size: int
    opaque: str
    expires: int
    expired: bool


@dataclass(frozen=True)
class _Answer:
    """What the handler writes back; a video is streamed rather than held in `body`."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    video: _SignedUrl | None = None
    cut: bool = False
    reset: bool = False


def _json(status: int, payload: object) -> _Answer:
    return _Answer(status, json.dumps(payload).encode())


def _ok(data: dict[str, Any]) -> _Answer:
    return _json(200, {"success": True, "data": data})


def _error(status: int, code: str, msg: str) -> _Answer:
    return _json(status, {"success": False, "error": {"code": code, "msg": msg}})


def _status_answer(status: int) -> _Answer:
    """Answer an injected status: an envelope for 4xx, an HTML page (as a proxy sends) for 5xx."""
    phrase = HTTPStatus(status).phrase
    if status >= 500:
        page = f"<html><head><title>{status} {phrase}</title></head><h1>{phrase}</h1></html>"
        return _Answer(status, page.encode(), "text/html; charset=utf-8")
    return _error(status, phrase.upper().replace(" ", "_"), phrase)


def _s3_error(code: str, msg: str) -> _Answer:
    body = f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>{msg}</Message></Error>"
    return _Answer(403, body.encode(), "application/xml")


DEFAULT_APP_ID = "local-app-id"
DEFAULT_USER_KEY = "local-user-key"
"""The credentials a simulator accepts unless told otherwise (they guard nothing real)."""


_LOOPBACK_HOST = re.compile(r"(localhost|127\.0\.0\.1|\[::1\]):([0-9]{1,5})")


class AiStudiosSimulator:
    """A loopback HTTP server speaking the AI Studios v3 export API, with fault injection.

    Parameters
    ----------
    app_id, user_key
        The credentials the token endpoint accepts.
    host, port
        Where to listen; port 0 picks a free port. Keep it on loopback.
    default_scenario
        The scenario of every project without its own (`set_scenario`).
    video_size
        Size of the served videos unless a scenario overrides it.

    Examples
    --------
    >>> with AiStudiosSimulator() as sim:  # doctest: +SKIP
    ...     sim.set_scenario("65fa6b07dca2e367461a2925", Scenario(cut_downloads=1))
    ...     requests.post(
    ...         f"{sim.base_url}/api/odin/v3/editor/project/export",
    ...         json={"projectId": "65fa6b07dca2e367461a2925"},
    ...         headers={"Authorization": sim.issue_token()},
    ...         timeout=5,
    ...     ).json()
    {'success': True, 'data': {'projectId': '65fa6b07dca2e367461a2925'}}
    """

    def __init__(
        self,
        *,
        app_id: str = DEFAULT_APP_ID,
        user_key: str = DEFAULT_USER_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        default_scenario: Scenario | None = None,
        video_size: int = DEFAULT_VIDEO_SIZE,
    ) -> None:
        self._app_id = app_id
        self._user_key = user_key
        self._host = host
        self._port = port
        self._default = default_scenario if default_scenario is not None else Scenario()
        self._video_size = video_size
        self._lock = threading.Lock()
        self._request_base = ""
        self._scenarios: dict[str, Scenario] = {}
        self._projects: dict[str, _Project] = {}
        self._tokens: set[str] = set()
        self._ever_issued: list[str] = []
        self._signed: dict[str, _SignedUrl] = {}
        self._calls: list[Call] = []
        self._tokens_minted = 0
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Start serving in a daemon thread.

        Returns
        -------
        Self
            The simulator, so ``sim = AiStudiosSimulator().start()`` works.
        """
        if self._server is not None:
            return self
        server = _Server((self._host, self._port), _Handler)
        server.simulator = self
        self._server = server
        # A short poll interval keeps stop() quick (shutdown waits for the loop to notice).
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="aistudios-simulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection; safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # unblock handler threads waiting on idle keep-alive connections
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` of the running server."""
        if self._server is None:
            raise RuntimeError("simulator is not running; call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- configuration and inspection --------------------------------------------------------

    def secrets_issued(self) -> list[str]:
        """Every secret this simulator knows or handed out: credentials, tokens, URL signatures.

        Tests search logs, execution data and events for these to prove none leaked.
        """
        with self._lock:
            return [self._app_id, self._user_key, *self._ever_issued]

    @property
    def credentials(self) -> tuple[str, str]:
        """The ``(appId, userKey)`` this simulator accepts, to seed a credentials secret."""
        return self._app_id, self._user_key

    def set_scenario(self, project_id: str, scenario: Scenario) -> None:
        """Make `project_id` behave as `scenario` from its next call on.

        Parameters
        ----------
        project_id
            The project.
        scenario
            Its behaviour.
        """
        with self._lock:
            self._scenarios[project_id] = scenario

    def issue_token(self) -> str:
        """Mint a valid token without an HTTP call (not counted in `tokens_minted`).

        Returns
        -------
        str
            The token.
        """
        with self._lock:
            return self._mint()

    def revoke_tokens(self) -> None:
        """Revoke every token minted so far, as an expiry would."""
        with self._lock:
            self._tokens.clear()

    @property
    def tokens_minted(self) -> int:
        """How many tokens were minted over HTTP."""
        with self._lock:
            return self._tokens_minted

    @property
    def calls(self) -> list[Call]:
        """A snapshot of every call answered so far, oldest first."""
        with self._lock:
            return list(self._calls)

    def download_count(self, project_id: str) -> int:
        """Return how many downloads of the project's video started (answered 200, cut ones too).

        Parameters
        ----------
        project_id
            The project.

        Returns
        -------
        int
            The count.
        """
        with self._lock:
            project = self._projects.get(project_id)
            return project.downloads if project else 0

    def poll_count(self, project_id: str) -> int:
        """Return how many progress answers the project's current export has given.

        Parameters
        ----------
        project_id
            The project.

        Returns
        -------
        int
            Progress calls answered with a state since the last accepted submit.
        """
        with self._lock:
            project = self._projects.get(project_id)
            return project.polls if project else 0

    def expected_sha256(self, project_id: str) -> str:
        """Return the SHA-256 of the video the project's current export serves.

        Parameters
        ----------
        project_id
            The project; its resolution is the one of its last accepted submit.

        Returns
        -------
        str
            Lower-case hex digest, as `video_sha256`.
        """
        with self._lock:
            project = self._projects.get(project_id, _Project())
            resolution, size = project.resolution, self._size(self._scenario(project_id))
        return video_sha256(project_id, resolution, size)

    # -- request handling (called by _Handler, one thread per connection) --------------------

    def _base_for(self, host: str | None) -> str:
        match = _LOOPBACK_HOST.fullmatch(host or "")
        if match is None or self._server is None or int(match[2]) != self._server.server_port:
            return self.base_url
        return f"http://{host}"

    def _scenario(self, project_id: str) -> Scenario:
        return self._scenarios.get(project_id, self._default)

    def _size(self, scenario: Scenario) -> int:
        return scenario.video_size if scenario.video_size is not None else self._video_size

    def _project(self, project_id: str) -> _Project:
        return self._projects.setdefault(project_id, _Project())

    def _mint(self) -> str:
        token = secrets.token_urlsafe(32)
        self._tokens.add(token)
        self._ever_issued.append(token)
        return token

    def _count_authorized(self, project_id: str) -> None:
        """Count an authorized call; revoke every token once the scenario's budget is spent."""
        project, scenario = self._project(project_id), self._scenario(project_id)
        project.authorized_calls += 1
        limit = scenario.revoke_token_after
        if limit is not None and not project.revoked and project.authorized_calls >= limit:
            project.revoked = True
            self._tokens.clear()

    def _dispatch(
        self,
        method: str,
        target: str,
        authorization: str | None,
        raw: bytes,
        host: str | None = None,
    ) -> _Answer:
        """Answer one request and record it before anything is written back."""
        parts = urlsplit(target)
        path = parts.path
        with self._lock:
            # Download URLs name the host the client used (localhost or 127.0.0.1), as a real
            # server's would, so that a client trusting exactly that origin accepts them.
            self._request_base = self._base_for(host)
            authorized = authorization is not None and authorization in self._tokens
            project_id: str | None = None
            body: dict[str, Any] | None = None
            if method == "POST" and path == _TOKEN_PATH:
                answer = self._token(raw)
            elif method == "POST" and path == _EXPORT_PATH:
                answer, project_id, body = self._export(raw, authorized)
            elif method == "GET" and (m := _PROGRESS_RE.match(path)):
                project_id = m.group(1)
                answer = self._progress(project_id, authorized)
            elif method == "GET" and (m := _PROJECT_RE.match(path)):
                project_id = m.group(1)
                answer = self._get_project(project_id, authorized)
            elif method in ("GET", "HEAD") and (m := _DOWNLOAD_RE.match(path)):
                answer, project_id = self._download(m.group(1), parts.query, method == "GET")
            else:
                answer = _error(404, "NOT_FOUND", "no such endpoint")
            status = 0 if answer.reset else answer.status
            self._calls.append(Call(method, path, status, project_id, authorized, body))
        return answer

    def _token(self, raw: bytes) -> _Answer:
        try:
            payload = json.loads(raw)
        except ValueError:
            return _error(400, "INVALID_PARAMETER", "body must be JSON")
        if not isinstance(payload, dict):
            return _error(400, "INVALID_PARAMETER", "body must be a JSON object")
        app_id, user_key = payload.get("appId"), payload.get("userKey")
        if not isinstance(app_id, str) or not isinstance(user_key, str):
            return _error(400, "INVALID_PARAMETER", "appId and userKey are required")
        # Both comparisons always run: no early exit that would time which one failed.
        good_app = hmac.compare_digest(app_id.encode(), self._app_id.encode())
        good_key = hmac.compare_digest(user_key.encode(), self._user_key.encode())
        if not (good_app and good_key):
            return _error(401, "INVALID_CREDENTIALS", "appId or userKey is not valid")
        self._tokens_minted += 1
        return _ok({"token": self._mint()})

    def _export(
        self, raw: bytes, authorized: bool
    ) -> tuple[_Answer, str | None, dict[str, Any] | None]:
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = None
        body = payload if isinstance(payload, dict) else None
        if not authorized:
            return _error(401, "UNAUTHORIZED", "missing, invalid or expired token"), None, body
        if body is None:
            return _error(400, "INVALID_PARAMETER", "body must be a JSON object"), None, None
        project_id = body.get("projectId")
        if not isinstance(project_id, str) or not _OBJECT_ID_RE.match(project_id):
            msg = "projectId must be 24 hex characters"
            return _error(400, "INVALID_PROJECT_ID", msg), None, body
        resolution = body.get("resolution", "1080")
        if resolution not in RESOLUTIONS:
            return (
                _error(400, "INVALID_RESOLUTION", "resolution must be one of 4k, 1080, 720, 480"),
                project_id,
                body,
            )
        for key in ("workspaceId", "webhookUrl"):
            if key in body and not isinstance(body[key], str):
                return _error(400, "INVALID_PARAMETER", f"{key} must be a string"), project_id, body

        self._count_authorized(project_id)
        project, scenario = self._project(project_id), self._scenario(project_id)
        attempt = project.submit_attempts
        project.submit_attempts += 1
        if attempt < len(scenario.submit_failures):
            return _status_answer(scenario.submit_failures[attempt]), project_id, body
        if scenario.reject_submit is not None:
            code, msg = scenario.reject_submit
            return _error(400, code, msg), project_id, body
        # An accepted submit (re)starts the export.
        project.submitted = True
        project.resolution = resolution
        project.polls = 0
        project.missing_url_answers = 0
        project.state, project.progress, project.last_url = "exporting", 0.0, None
        return _ok({"projectId": project_id}), project_id, body

    def _progress(self, project_id: str, authorized: bool) -> _Answer:
        if not authorized:
            return _error(401, "UNAUTHORIZED", "missing, invalid or expired token")
        self._count_authorized(project_id)
        project, scenario = self._project(project_id), self._scenario(project_id)
        attempt = project.progress_attempts
        project.progress_attempts += 1
        if attempt < len(scenario.progress_failures):
            fault = scenario.progress_failures[attempt]
            if fault == "reset":
                return _Answer(0, reset=True)
            if fault == "malformed":
                return _Answer(200, b'{"success": true, "data": {"state": "expor')
            if fault == "bad-envelope":
                return _json(200, {"state": "exporting", "progress": 50.0})
            return _status_answer(int(fault))
        if not project.submitted:
            return _error(404, "PROJECT_NOT_FOUND", "no export for this project")

        project.polls += 1
        steps = scenario.progress_steps
        value = float(steps[min(project.polls, len(steps)) - 1])
        data: dict[str, Any] = {"progress": value}
        if scenario.fail_at_poll is not None and project.polls >= scenario.fail_at_poll:
            data["state"] = scenario.failure_state
        elif value >= 100:
            data["state"] = "completed"
            missing = scenario.url_missing_polls
            if missing == -1 or project.missing_url_answers < missing:
                project.missing_url_answers += 1
            else:
                data["downloadUrl"] = project.last_url = self._issue_url(project_id)
        else:
            data["state"] = "exporting"
        project.state, project.progress = data["state"], value
        return _ok(data)

    def _get_project(self, project_id: str, authorized: bool) -> _Answer:
        if not authorized:
            return _error(401, "UNAUTHORIZED", "missing, invalid or expired token")
        self._count_authorized(project_id)
        project = self._project(project_id)
        if not project.submitted:
            return _error(404, "PROJECT_NOT_FOUND", "no such project")
        url = project.last_url
        if url is None and project.state == "completed":
            url = project.last_url = self._issue_url(project_id)
        return _ok(
            {
                "project": {
                    "_id": project_id,
                    "name": f"Simulated project {project_id[:6]}",
                    "state": project.state,
                    "progress": int(project.progress),
                    "download_url": url,
                    "backendTaskId": hashlib.sha256(project_id.encode()).hexdigest()[:24],
                    "exportType": "video",
                    "createdAt": int(project.created_at * 1000),
                    "updatedAt": int(time.time() * 1000),
                }
            }
        )

    def _issue_url(self, project_id: str) -> str:
        """Hand out a fresh signed download URL (a new signature every time)."""
        project, scenario = self._project(project_id), self._scenario(project_id)
        if scenario.download_url is not None:
            return scenario.download_url
        signed = _SignedUrl(
            project_id=project_id,
            resolution=project.resolution,
            size=self._size(scenario),
            opaque=secrets.token_hex(12),
            expires=int(time.time()) + _URL_LIFETIME_S,
            expired=project.urls_issued < scenario.expired_urls,
        )
        project.urls_issued += 1
        signature = secrets.token_hex(32)
        self._signed[signature] = signed
        self._ever_issued.append(signature)
        return (
            f"{self._request_base or self.base_url}/downloads/{signed.opaque}.mp4"
            f"?expires={signed.expires}&signature={signature}"
        )

    def _download(self, opaque: str, query: str, is_get: bool) -> tuple[_Answer, str | None]:
        params = parse_qs(query)
        signature = params.get("signature", [""])[0]
        expires = params.get("expires", [""])[0]
        signed = self._signed.get(signature)
        if signed is None or signed.opaque != opaque or expires != str(signed.expires):
            return _s3_error("SignatureDoesNotMatch", "The request signature is not valid."), None
        if signed.expired or time.time() > signed.expires:
            return _s3_error("AccessDenied", "Request has expired"), signed.project_id
        cut = False
        if is_get:
            project, scenario = self._project(signed.project_id), self._scenario(signed.project_id)
            cut = project.downloads < scenario.cut_downloads
            project.downloads += 1
        return _Answer(200, content_type="video/mp4", video=signed, cut=cut), signed.project_id

    def _track(self, conn: socket.socket, opened: bool) -> None:
        with self._lock:
            if opened:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    simulator: AiStudiosSimulator


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real clients expect; every answer has a length
    server_version = "AiStudiosSimulator/1.0"

    @property
    def _sim(self) -> AiStudiosSimulator:
        return cast(_Server, self.server).simulator

    def setup(self) -> None:
        super().setup()
        self._sim._track(self.connection, opened=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._sim._track(self.connection, opened=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: request lines can carry signed URL query strings."""

    def do_GET(self) -> None:
        """Answer a GET."""
        self._handle("GET")

    def do_HEAD(self) -> None:
        """Answer a HEAD (downloads only)."""
        self._handle("HEAD")

    def do_POST(self) -> None:
        """Answer a POST."""
        self._handle("POST")

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self.close_connection = True
            self._write(_error(413, "PAYLOAD_TOO_LARGE", "body too large"), head=False)
            return
        raw = self.rfile.read(length) if length > 0 else b""
        answer = self._sim._dispatch(
            method, self.path, self.headers.get("Authorization"), raw, self.headers.get("Host")
        )
        self._write(answer, head=method == "HEAD")

    def _write(self, answer: _Answer, *, head: bool) -> None:
        if answer.reset:
            # Linger 0 turns the close into a TCP RST: the client sees a reset, not an answer.
            self.close_connection = True
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            return
        video = answer.video
        length = video.size if video is not None else len(answer.body)
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if head:
            return
        if video is None:
            self.wfile.write(answer.body)
            return
        self._stream(video, stop_after=length // 2 if answer.cut else length)

    def _stream(self, video: _SignedUrl, *, stop_after: int) -> None:
        sent = 0
        try:
            for chunk in iter_video(video.project_id, video.resolution, video.size):
                piece = chunk[: stop_after - sent]
                self.wfile.write(piece)
                sent += len(piece)
                if sent >= stop_after:
                    break
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away; nothing left to do
            return
        if sent < video.size:
            # A cut download: fewer bytes than Content-Length promised, then end of stream.
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_WR)


def main(argv: list[str] | None = None) -> None:
    """Serve the simulator on loopback until Ctrl-C.

    Parameters
    ----------
    argv
        Command-line arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(
        prog="python -m aistudios_local.simulator",
        description="Serve a simulated AI Studios v3 API on 127.0.0.1 "
        "(appId local-app-id, userKey local-user-key).",
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any free)")
    parser.add_argument(
        "--video-size", type=int, default=DEFAULT_VIDEO_SIZE, help="size of served videos in bytes"
    )
    args = parser.parse_args(argv)
    with AiStudiosSimulator(port=args.port, video_size=args.video_size) as sim:
        print(sim.base_url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()

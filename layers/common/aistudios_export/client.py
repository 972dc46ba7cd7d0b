"""The AI Studios v3 HTTP client: one connection pool, one base URL, timeouts, one error translator.

The token is sent raw in ``Authorization`` (no ``Bearer``), as every documented sample does.
A 401/403 is answered by re-reading the token secret once (another function may have
refreshed it); only if that yields the same token does :class:`Unauthorized` reach the caller,
so that the state machine refreshes the token exactly once.
"""

from __future__ import annotations

import hashlib
import json as jsonlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import urllib3
from aws_lambda_powertools import Logger

from aistudios_export import transport
from aistudios_export.answers import read_answer, says_not_found
from aistudios_export.errors import (
    ApiError,
    ConfigurationError,
    NetworkError,
    ProjectNotFound,
    RateLimited,
    RequestRejected,
    ServiceUnavailable,
    Unauthorized,
)
from aistudios_export.observability import Metric, record

logger = Logger(service="aistudios-export", child=True)

TOKEN_PATH = "/api/odin/v3/auth/token"  # noqa: S105 - a path, not a password
EXPORT_PATH = "/api/odin/v3/editor/project/export"
PROGRESS_PATH = "/api/odin/v3/editor/progress/{project_id}"
PROJECT_PATH = "/api/odin/v3/editor/project/{project_id}"

DEFAULT_TIMEOUT = (3.05, 15.0)
"""(connect, read) seconds for every API call."""
MAX_THROTTLED_TRIES = 3
"""Tries of one call within one invocation, whatever ``Retry-After`` says (a past date is 0 s)."""
PROBE_PROJECT_ID = "0" * 24
"""A project id no account has: asking for its progress proves only that a token is accepted."""


def token_fingerprint(token: str) -> str:
    """Name a token without revealing it: 16 hex digits of its SHA-256 (``"none"`` for no token).

    Examples
    --------
    >>> token_fingerprint("")
    'none'
    >>> len(token_fingerprint("a-token"))
    16
    """
    return hashlib.sha256(token.encode()).hexdigest()[:16] if token else "none"


def check_base_url(base_url: str) -> str:
    """Return ``base_url`` without its trailing ``/``, or refuse what is not an http(s) origin.

    Raises
    ------
    ConfigurationError
        Naming the value when it has no http(s) scheme or host, carries a path, query or
        user info, or a host name that is not ASCII (IDNA's ``xn--`` form is).
    """
    try:
        parts = urlsplit(base_url.strip())
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or "@" in parts.netloc
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ConfigurationError(
            f"the AI Studios API URL {base_url[:200]!r} is not an http(s) origin "
            "such as https://app.aistudios.com"
        )
    if not parts.netloc.isascii():
        raise ConfigurationError(
            f"the AI Studios API URL {base_url[:200]!r} has a host name that is not ASCII: "
            "write it in its IDNA (xn--) form"
        )
    return f"{parts.scheme}://{parts.netloc}"


class TokenSource(Protocol):
    """Returns the current token: a cached copy, or with ``fresh=True`` a fresh read."""

    def __call__(self, *, fresh: bool = False) -> str:
        """Return the token (``""`` when none was minted yet)."""
        ...


@dataclass(frozen=True)
class Progress:
    """One answer of the progress endpoint.

    ``download_url`` is a possibly signed URL: never log it or put it in state-machine data.
    """

    state: str
    progress: float
    download_url: str | None

    def __repr__(self) -> str:
        shown = "<redacted>" if self.download_url else None
        return f"Progress(state={self.state!r}, progress={self.progress}, download_url={shown})"


@dataclass(frozen=True)
class ProjectInfo:
    """What the get-project endpoint says of a project's export (``data.project``).

    ``download_url`` is a possibly signed URL: never log it or put it in state-machine data.
    """

    state: str
    progress: float | None
    download_url: str | None

    def __repr__(self) -> str:
        shown = "<redacted>" if self.download_url else None
        return f"ProjectInfo(state={self.state!r}, progress={self.progress}, download_url={shown})"


class AiStudiosClient:
    """A client of the AI Studios v3 API.

    Parameters
    ----------
    base_url
        ``https://app.aistudios.com`` or another compatible server.
    token
        Returns the API token (see :data:`TokenSource`); not needed for :meth:`mint_token`.
    http
        The urllib3 pool manager whose connections are reused; by default a new one
        (:func:`~aistudios_export.transport.pool_manager`), through the proxy that
        ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` name for ``base_url``, if any.
    timeout
        ``(connect, read)`` seconds applied to every call.
    rate_limit_wait
        Seconds this client may spend in all waiting out ``Retry-After`` of 429 answers before
        it raises :class:`RateLimited` (0: raise at once, and let the state machine back off).
    sleep
        Pauses between a 429 and the next try (tests pass a fake).
    """

    def __init__(
        self,
        base_url: str,
        token: TokenSource | None = None,
        *,
        http: urllib3.PoolManager | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        rate_limit_wait: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = check_base_url(base_url)
        self._token = token
        self._http = http or transport.pool_manager(proxy=transport.proxy_for(self.base_url))
        self._timeout = transport.timeout(timeout)
        self._rate_limit_wait = rate_limit_wait
        self._sleep = sleep

    # --- endpoints ------------------------------------------------------------------------

    def mint_token(self, app_id: str, user_key: str) -> str:
        """Exchange appId/userKey for a new API token (valid 24 hours)."""
        data = self._call(
            "POST", TOKEN_PATH, json={"appId": app_id, "userKey": user_key}, auth=False
        )
        token = data.get("token")
        if not isinstance(token, str) or not token:
            raise ServiceUnavailable(
                "token answer has no data.token", method="POST", path=TOKEN_PATH
            )
        return token

    def accepts_token(self, token: str) -> bool:
        """Tell whether the API accepts ``token``, with one harmless authenticated call.

        The call asks for the progress of :data:`PROBE_PROJECT_ID`: any answer but a refusal
        of the token (401/403), an unknown project included, means the token works.

        Raises
        ------
        NetworkError, RateLimited, ServiceUnavailable
            When the API could not give an answer either way.
        """
        path = PROGRESS_PATH.format(project_id=PROBE_PROJECT_ID)
        try:
            self._once("GET", path, None, token=token)
        except Unauthorized:
            return False
        except RequestRejected:
            return True
        return True

    def submit_export(self, body: Mapping[str, str]) -> str:
        """Ask AI Studios to export a project; return the project id it answers with.

        Raises
        ------
        ProjectNotFound
            When AI Studios answers that it does not know the project (see
            :func:`~aistudios_export.answers.says_not_found`).
        """
        try:
            data = self._call("POST", EXPORT_PATH, json=dict(body))
        except RequestRejected as rejected:
            if not says_not_found(rejected):
                raise
            raise ProjectNotFound(
                f"AI Studios does not know project {str(body.get('projectId', ''))[:24]} "
                f"(or this account cannot see it): {rejected}",
                method=rejected.method,
                path=rejected.path,
                status=rejected.status,
                code=rejected.code,
            ) from None
        project_id = data.get("projectId", body.get("projectId"))
        if not isinstance(project_id, str):
            raise ServiceUnavailable(
                "export answer has no data.projectId", method="POST", path=EXPORT_PATH
            )
        return project_id

    def get_progress(self, project_id: str) -> Progress:
        """Return the export progress of a project (and its download URL once done)."""
        path = PROGRESS_PATH.format(project_id=project_id)
        data = self._call("GET", path)
        progress, state, url = data.get("progress"), data.get("state", ""), data.get("downloadUrl")
        if isinstance(progress, str):
            try:
                progress = float(progress)
            except ValueError:
                progress = None
        if (
            isinstance(progress, bool)
            or not isinstance(progress, int | float)
            or not 0 <= progress <= 100
            or not isinstance(state, str)
            or not (url is None or isinstance(url, str))
        ):
            raise ServiceUnavailable("progress answer is malformed", method="GET", path=path)
        return Progress(state=state, progress=float(progress), download_url=url or None)

    def get_project(self, project_id: str) -> ProjectInfo:
        """Return what the get-project endpoint says of a project's export.

        It is the documented second place to find the download URL
        (``data.project.download_url``), for when the progress answer lacks it.

        Raises
        ------
        ServiceUnavailable
            When ``data.project`` is missing or its fields have the wrong types.
        """
        path = PROJECT_PATH.format(project_id=project_id)
        data = self._call("GET", path)
        project = data.get("project")
        if not isinstance(project, dict):
            raise ServiceUnavailable("project answer has no data.project", method="GET", path=path)
        state, progress = project.get("state") or "", project.get("progress")
        url = project.get("download_url")
        if (
            not isinstance(state, str)
            or not (url is None or isinstance(url, str))
            or not (progress is None or _is_number(progress))
        ):
            raise ServiceUnavailable("project answer is malformed", method="GET", path=path)
        return ProjectInfo(
            state=state,
            progress=None if progress is None else float(progress),
            download_url=url or None,
        )

    # --- transport ------------------------------------------------------------------------

    def _call(
        self, method: str, path: str, *, json: Mapping[str, Any] | None = None, auth: bool = True
    ) -> dict[str, Any]:
        """Make one call; one that ends in an error counts in ``AiStudiosErrors`` by its name."""
        try:
            return self._call_waiting(method, path, json=json, auth=auth)
        except ApiError as e:
            record(Metric.AI_STUDIOS_ERRORS, 1, dimension=type(e).__name__)
            raise

    def _call_waiting(
        self, method: str, path: str, *, json: Mapping[str, Any] | None, auth: bool
    ) -> dict[str, Any]:
        """Make one call, waiting out what ``Retry-After`` asks for within the wait budget."""
        waited = 0.0
        for attempt in range(MAX_THROTTLED_TRIES):
            try:
                return self._call_authorized(method, path, json=json, auth=auth)
            except RateLimited as throttled:
                delay = throttled.retry_after
                last = attempt == MAX_THROTTLED_TRIES - 1
                if delay is None or last or waited + delay > self._rate_limit_wait:
                    raise
            logger.info("throttled by AI Studios; waiting as asked", extra={"seconds": delay})
            self._sleep(delay)
            waited += delay
        raise AssertionError("unreachable: the last try raises")  # pragma: no cover

    def _call_authorized(
        self, method: str, path: str, *, json: Mapping[str, Any] | None, auth: bool
    ) -> dict[str, Any]:
        if not auth:
            return self._once(method, path, json, token=None)
        if self._token is None:
            raise Unauthorized("no token source configured", method=method, path=path)
        token = self._token()
        try:
            return self._once(method, path, json, token=token)
        except Unauthorized as refused:
            fresh = self._token(fresh=True)
            if not fresh or fresh == token:
                raise _naming_token(refused, token) from None
        logger.info("token was replaced since it was cached; repeating the call once")
        try:
            return self._once(method, path, json, token=fresh)
        except Unauthorized as refused:
            raise _naming_token(refused, fresh) from None

    def _once(
        self, method: str, path: str, json: Mapping[str, Any] | None, *, token: str | None
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        body = None
        if json is not None:
            body = jsonlib.dumps(dict(json)).encode()
            headers["Content-Type"] = "application/json"
        if token is not None:
            if not token:
                raise Unauthorized("the token secret holds no token yet", method=method, path=path)
            if not _fits_a_header(token):
                # http.client would refuse it with the token in its message. As refused, the
                # state machine mints a new one in its place.
                raise Unauthorized(
                    "the token in the token secret cannot be sent: it holds whitespace or "
                    "control characters at its ends or inside",
                    method=method,
                    path=path,
                    token_fingerprint=token_fingerprint(token),
                )
            headers["Authorization"] = token
        url = self.base_url + path
        try:
            # No redirect is followed: the token goes to the configured origin only, and a
            # 3xx is an answer that is not the envelope.
            response = self._http.request(
                method,
                url,
                body=body,
                headers=headers,
                timeout=self._timeout,
                retries=False,  # whatever the pool's default: the waits are this client's
                redirect=False,
            )
        except transport.NETWORK_ERRORS as e:
            raise NetworkError(
                f"{method} {url} failed: {transport.network_failure(e)} ({type(e).__name__})",
                method=method,
                path=path,
            ) from e
        return read_answer(method, path, response)


def _fits_a_header(token: str) -> bool:
    r"""Tell whether ``token`` can be an ``Authorization`` value as it is (printable ASCII).

    Examples
    --------
    >>> _fits_a_header("tok-1"), _fits_a_header("tok-1\n"), _fits_a_header(" tok")
    (True, False, False)
    """
    return token.isascii() and token.isprintable() and token == token.strip()


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _naming_token(refused: Unauthorized, token: str) -> Unauthorized:
    """Return ``refused`` again, now naming the token that was refused (by fingerprint)."""
    return Unauthorized(
        str(refused),
        method=refused.method,
        path=refused.path,
        status=refused.status,
        code=refused.code,
        token_fingerprint=token_fingerprint(token),
    )

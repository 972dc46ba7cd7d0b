"""`AiStudiosSimulator`: the simulated AI Studios v3 API as one object, and its command line.

It puts together the account state, its endpoints and a loopback HTTP server; tests configure
and inspect it through this class only.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

from aistudios_local.simulator.endpoints import SimulatedApi
from aistudios_local.simulator.messages import Call
from aistudios_local.simulator.scenario import Scenario
from aistudios_local.simulator.server import SimulatorServer
from aistudios_local.simulator.state import (
    DEFAULT_APP_ID,
    DEFAULT_USER_KEY,
    NO_PROJECT,
    SimulatorState,
)
from aistudios_local.simulator.video import DEFAULT_VIDEO_SIZE, video_sha256
from aistudios_local.simulator.webhooks import WebhookCall, WebhookCaller

__all__ = ["AiStudiosSimulator", "main"]


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
    projects
        The account's projects. ``None`` (the default, for local runs where the caller picks
        the id) makes every well-formed id a project but :data:`NO_PROJECT`; a collection makes
        every id outside it unknown. A project given a scenario (`set_scenario`) is known in
        any case. An unknown project is answered as a real service would: HTTP 404,
        ``{"success": false, "error": {"code": "PROJECT_NOT_FOUND", ...}}``.

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
        projects: Iterable[str] | None = None,
    ) -> None:
        self._state = SimulatorState(
            app_id=app_id,
            user_key=user_key,
            default_scenario=default_scenario if default_scenario is not None else Scenario(),
            video_size=video_size,
            projects=None if projects is None else frozenset(projects),
        )
        self._webhooks = WebhookCaller()
        self._api = SimulatedApi(self._state, on_submit=self._webhooks.schedule)
        self._server = SimulatorServer(
            self._api.dispatch, host=host, port=port, lock=self._state.lock
        )

    def start(self) -> Self:
        """Start serving in a daemon thread.

        Returns
        -------
        Self
            The simulator, so ``sim = AiStudiosSimulator().start()`` works.
        """
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving, cancel pending webhook calls and close every connection; safe twice."""
        self._webhooks.stop()
        self._server.stop()

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
        return self._server.base_url

    def secrets_issued(self) -> list[str]:
        """Every secret this simulator knows or handed out: credentials, tokens, URL signatures.

        Tests search logs, execution data and events for these to prove none leaked.
        """
        return self._state.secrets_issued()

    @property
    def credentials(self) -> tuple[str, str]:
        """The ``(appId, userKey)`` this simulator accepts, to seed a credentials secret."""
        return self._state.app_id, self._state.user_key

    def set_scenario(self, project_id: str, scenario: Scenario) -> None:
        """Make `project_id` behave as `scenario` from its next call on (and the account's own).

        Parameters
        ----------
        project_id
            The project.
        scenario
            Its behaviour.
        """
        self._state.set_scenario(project_id, scenario)

    @property
    def webhook_calls(self) -> list[WebhookCall]:
        """Every webhook call made so far (scheduled or `send_webhook`), oldest first."""
        return list(self._webhooks.calls)

    def send_webhook(self, url: str, payload: Any = None, *, raw: bytes = b"") -> int:
        """POST a webhook call of the test's own (a forged one, say); return the HTTP status."""
        return self._webhooks.send(url, payload, raw=raw)

    def submitted_at(self, project_id: str) -> float:
        """Return when the project's current export was accepted (epoch seconds; 0: never)."""
        with self._state.lock:
            project = self._state.projects.get(project_id)
            return project.submitted_at if project else 0.0

    def issue_token(self) -> str:
        """Mint a valid token without an HTTP call (not counted in `tokens_minted`).

        Returns
        -------
        str
            The token.
        """
        return self._state.issue_token()

    def revoke_tokens(self) -> None:
        """Revoke every token minted so far, as an expiry would."""
        self._state.revoke_tokens()

    @property
    def tokens_minted(self) -> int:
        """How many tokens were minted over HTTP."""
        return self._state.minted_over_http()

    @property
    def renders_in_flight(self) -> int:
        """How many accepted exports have not yet reported ``completed`` or ``failed``."""
        return self._state.renders()[0]

    @property
    def max_renders_in_flight(self) -> int:
        """The most exports ever rendering at the same time (what an account-wide limit bounds)."""
        return self._state.renders()[1]

    @property
    def calls(self) -> list[Call]:
        """A snapshot of every call answered so far, oldest first."""
        return self._state.answered()

    def download_count(self, project_id: str) -> int:
        """Return how many downloads of a project's video started.

        Parameters
        ----------
        project_id
            The project whose video is counted.

        Returns
        -------
        int
            Downloads answered 200, cut ones included; HEAD requests are not downloads.
        """
        return self._state.counts(project_id)[0]

    def poll_count(self, project_id: str) -> int:
        """Return how many progress answers the project's current export has given.

        Counting restarts with every accepted submit; faults injected by the scenario do not count.

        Parameters
        ----------
        project_id
            The project.

        Returns
        -------
        int
            Progress calls answered with a state.
        """
        return self._state.counts(project_id)[1]

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
        resolution, size = self._state.current_video(project_id)
        return video_sha256(project_id, resolution, size)


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
        f"(appId {DEFAULT_APP_ID}, userKey {DEFAULT_USER_KEY}).",
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any free)")
    parser.add_argument(
        "--video-size", type=int, default=DEFAULT_VIDEO_SIZE, help="size of served videos in bytes"
    )
    parser.add_argument(
        "--project",
        action="append",
        metavar="ID",
        help="a project of the account (repeat it); with none, every 24-hex id is one "
        f"but {NO_PROJECT}",
    )
    args = parser.parse_args(argv)
    # Ctrl-C and SIGTERM only set a flag, whenever they come: no KeyboardInterrupt can land
    # halfway through starting or stopping the server.
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    with AiStudiosSimulator(
        port=args.port, video_size=args.video_size, projects=args.project
    ) as sim:
        print(sim.base_url, flush=True)
        while not stopping.wait(0.5):
            pass

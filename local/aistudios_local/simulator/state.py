"""What the simulated AI Studios account knows: projects, tokens, signed URLs and calls.

One lock guards all of it. The endpoints hold it while they compute an answer (so an answer
and the state it leaves are one step); the locked methods here are what tests inspect.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

from aistudios_local.simulator.messages import Call, SignedUrl
from aistudios_local.simulator.scenario import Scenario

__all__ = ["DEFAULT_APP_ID", "DEFAULT_USER_KEY", "NO_PROJECT", "ProjectState", "SimulatorState"]

DEFAULT_APP_ID = "local-app-id"
DEFAULT_USER_KEY = "local-user-key"
"""The credentials a simulator accepts unless told otherwise (they guard nothing real)."""
NO_PROJECT = "0" * 24
"""A well-formed project id that no simulated account has, whatever its configuration."""


@dataclass
class ProjectState:
    """Mutable per-project state; guarded by the simulator's lock."""

    submitted: bool = False
    resolution: str = "1080"
    polls: int = 0  # progress answers since the last accepted submit
    missing_url_answers: int = 0
    state: str = "exporting"
    progress: float = 0.0
    done: bool = False  # the current export reported its scenario's done state at 100 %
    last_url: str | None = None
    created_at: float = field(default_factory=time.time)
    # Lifetime counters: faults consume them once, whatever resubmits happen.
    submit_attempts: int = 0
    progress_attempts: int = 0
    urls_issued: int = 0
    downloads: int = 0
    authorized_calls: int = 0
    revoked: bool = False
    submitted_at: float = 0.0  # when the current export was accepted
    webhook_url: str | None = None
    rendering: bool = False  # an accepted export that has not reported completed or failed yet

    def restart(self, resolution: str, webhook_url: str | None = None) -> None:
        """Start a new export (an accepted submit); lifetime counters keep counting."""
        self.submitted = True
        self.submitted_at = time.time()
        self.webhook_url = webhook_url
        self.resolution = resolution
        self.polls = 0
        self.missing_url_answers = 0
        self.state, self.progress, self.last_url = "exporting", 0.0, None
        self.done = False


class SimulatorState:
    """The simulated account: credentials, scenarios, projects, tokens, signed URLs, calls.

    Methods whose docstring says "caller holds `lock`" are for the endpoints, which take the
    lock once per request; every other method takes it itself.

    Parameters
    ----------
    app_id, user_key
        The credentials the token endpoint accepts.
    default_scenario
        The scenario of every project without its own.
    video_size
        Size of the served videos unless a scenario overrides it.
    projects
        The account's projects; ``None``: every well-formed id but :data:`NO_PROJECT`. A project
        given a scenario is the account's in any case.
    """

    def __init__(
        self,
        *,
        app_id: str,
        user_key: str,
        default_scenario: Scenario,
        video_size: int,
        projects: frozenset[str] | None = None,
    ) -> None:
        self.lock = threading.Lock()
        self.app_id = app_id
        self.user_key = user_key
        self.default_scenario = default_scenario
        self.default_video_size = video_size
        self.scenarios: dict[str, Scenario] = {}
        self.known = None if projects is None else frozenset(p.lower() for p in projects)
        self.projects: dict[str, ProjectState] = {}
        self.tokens: set[str] = set()
        self.ever_issued: list[str] = []
        self.signed: dict[str, SignedUrl] = {}
        self.calls: list[Call] = []
        self.tokens_minted = 0
        self.rendering = 0
        self.max_rendering = 0

    # Called by the endpoints with the lock held.

    def scenario(self, project_id: str) -> Scenario:
        """Return the project's scenario (caller holds `lock`)."""
        return self.scenarios.get(project_id, self.default_scenario)

    def knows(self, project_id: str) -> bool:
        """Tell whether the project is the account's (caller holds `lock`)."""
        if project_id in self.scenarios:
            return True
        if self.known is None:
            return project_id.lower() != NO_PROJECT
        return project_id.lower() in self.known

    def video_size(self, scenario: Scenario) -> int:
        """Return the size of the videos served under `scenario` (caller holds `lock`)."""
        return scenario.video_size if scenario.video_size is not None else self.default_video_size

    def project(self, project_id: str) -> ProjectState:
        """Return the project's state, created on first use (caller holds `lock`)."""
        return self.projects.setdefault(project_id, ProjectState())

    def render_started(self, project: ProjectState) -> None:
        """Count the project's render as in flight, once however often it is resubmitted.

        The caller holds `lock`.
        """
        if not project.rendering:
            project.rendering = True
            self.rendering += 1
            self.max_rendering = max(self.max_rendering, self.rendering)

    def render_ended(self, project: ProjectState) -> None:
        """Count the project's render as over: it reported completed or failed.

        The caller holds `lock`.
        """
        if project.rendering:
            project.rendering = False
            self.rendering -= 1

    def mint(self) -> str:
        """Mint a valid token (caller holds `lock`)."""
        token = secrets.token_urlsafe(32)
        self.tokens.add(token)
        self.ever_issued.append(token)
        return token

    def count_authorized(self, project_id: str) -> None:
        """Count an authorized call; revoke every token once the scenario's budget is spent.

        The caller holds `lock`.
        """
        project, scenario = self.project(project_id), self.scenario(project_id)
        project.authorized_calls += 1
        limit = scenario.revoke_token_after
        if limit is not None and not project.revoked and project.authorized_calls >= limit:
            project.revoked = True
            self.tokens.clear()

    def sign(self, signed: SignedUrl) -> str:
        """Remember a download URL under a fresh signature; return it (caller holds `lock`)."""
        signature = secrets.token_hex(32)
        self.signed[signature] = signed
        self.ever_issued.append(signature)
        return signature

    # Locked: configuration and inspection from other threads.

    def set_scenario(self, project_id: str, scenario: Scenario) -> None:
        """Make `project_id` behave as `scenario` from its next call on."""
        with self.lock:
            self.scenarios[project_id] = scenario

    def issue_token(self) -> str:
        """Mint a valid token outside any request."""
        with self.lock:
            return self.mint()

    def revoke_tokens(self) -> None:
        """Revoke every token minted so far."""
        with self.lock:
            self.tokens.clear()

    def secrets_issued(self) -> list[str]:
        """Return the credentials and every token and URL signature handed out."""
        with self.lock:
            return [self.app_id, self.user_key, *self.ever_issued]

    def minted_over_http(self) -> int:
        """Return how many tokens the token endpoint minted."""
        with self.lock:
            return self.tokens_minted

    def renders(self) -> tuple[int, int]:
        """Return ``(in flight now, most ever in flight at once)``."""
        with self.lock:
            return self.rendering, self.max_rendering

    def answered(self) -> list[Call]:
        """Return a snapshot of the calls answered so far, oldest first."""
        with self.lock:
            return list(self.calls)

    def counts(self, project_id: str) -> tuple[int, int]:
        """Return the project's ``(downloads, polls)``; zeros for a project never seen."""
        with self.lock:
            project = self.projects.get(project_id)
            return (project.downloads, project.polls) if project else (0, 0)

    def current_video(self, project_id: str) -> tuple[str, int]:
        """Return ``(resolution, size)`` of the video the project's current export serves."""
        with self.lock:
            project = self.projects.get(project_id, ProjectState())
            return project.resolution, self.video_size(self.scenario(project_id))

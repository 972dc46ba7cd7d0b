"""Relay confirmed progress to the webhook a request brought: the caller still gets its call.

AI Studios takes one ``webhookUrl`` per export. When this stack's own wakes the execution, a
request's own is kept in the job (``relayWebhookUrl``) and called from CheckProgress once the
progress is confirmed with AI Studios, in AI Studios' shape: ``{progress, download_url}`` (the
URL once the export is done), plus ``projectId``. One POST per confirmed change, no redirects,
short timeouts, the URL checked as download URLs are (https, public addresses only, pinned); a
relay that fails is logged without its URL's query and never fails the export.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import requests
from aws_lambda_powertools import Logger

from aistudios_export.errors import ForbiddenDownloadUrl

if TYPE_CHECKING:
    from aistudios_export.pinning import PinnedAdapter
    from aistudios_export.urlguard import UrlPolicy

logger = Logger(service="aistudios-export", child=True)

TIMEOUT = (3.0, 5.0)
"""Connect and read timeouts of a relayed call (CheckProgress has 30 s)."""


class WebhookRelay:
    """POST relayed webhook calls through a pinned session.

    Most exports bring no webhook to relay: the session, the URL guard and the pinning are set
    up at the first relayed call.

    Parameters
    ----------
    policy
        Which URLs may be called (:func:`~aistudios_export.urlguard.check_url`).
    session
        The HTTP session; a new one when None.
    """

    def __init__(self, policy: UrlPolicy | None = None, session: requests.Session | None = None):
        self._policy = policy
        self._session = session
        self._ready: tuple[UrlPolicy, requests.Session, PinnedAdapter] | None = None

    def _set_up(self) -> tuple[UrlPolicy, requests.Session, PinnedAdapter]:
        from aistudios_export.pinning import pinned_adapter
        from aistudios_export.urlguard import UrlPolicy

        if self._ready is None:
            session = self._session or requests.Session()
            self._ready = (self._policy or UrlPolicy(), session, pinned_adapter(session))
        return self._ready

    def __call__(self, url: str, payload: Mapping[str, Any]) -> bool:
        """Send ``payload`` to ``url``; return whether it was answered 2xx (never raises)."""
        from aistudios_export.urlguard import check_url, redact_url

        policy, session, adapter = self._set_up()
        try:
            checked = check_url(url, policy)
            adapter.pin(checked)
            answer = session.post(url, json=dict(payload), timeout=TIMEOUT, allow_redirects=False)
        except (ForbiddenDownloadUrl, requests.RequestException, OSError) as e:
            logger.warning(
                "webhook relay failed", extra={"url": redact_url(url), "error": type(e).__name__}
            )
            return False
        if not 200 <= answer.status_code < 300:
            logger.warning(
                "webhook relay refused",
                extra={"url": redact_url(url), "status": answer.status_code},
            )
            return False
        return True


def relayed_payload(project_id: str, progress: float, download_url: str | None) -> dict[str, Any]:
    """Return the body of a relayed call, in the shape AI Studios documents.

    Examples
    --------
    >>> relayed_payload("p", 42.5, None)
    {'progress': 42, 'projectId': 'p'}
    >>> relayed_payload("p", 100.0, "https://cdn/v.mp4")
    {'progress': 100, 'projectId': 'p', 'download_url': 'https://cdn/v.mp4'}
    """
    payload: dict[str, Any] = {"progress": int(progress), "projectId": project_id}
    if progress >= 100 and download_url:
        payload["download_url"] = download_url
    return payload

"""Relay confirmed progress to the webhook a request brought: the caller still gets its call.

AI Studios takes one ``webhookUrl`` per export. When this stack's own wakes the execution, a
request's own is kept in the job (``relayWebhookUrl``) and called from CheckProgress once the
progress is confirmed with AI Studios, in AI Studios' shape: ``{progress, download_url}`` (the
URL once the export is done), plus ``projectId``. One POST per confirmed change, no redirects,
short timeouts, the URL checked as download URLs are (https, public addresses only, pinned); a
relay that fails is logged without its URL's query and never fails the export.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from aistudios_export.errors import ForbiddenDownloadUrl
from aistudios_export.transport import NETWORK_ERRORS

if TYPE_CHECKING:
    from aistudios_export.pinning import PinnedPools
    from aistudios_export.urlguard import UrlPolicy

logger = Logger(service="aistudios-export", child=True)

_FAILURES: tuple[type[BaseException], ...] = (ForbiddenDownloadUrl, *NETWORK_ERRORS)
"""What a relayed call may fail with: a URL the guard refuses, or the network."""

TIMEOUT = (3.0, 5.0)
"""Connect and read timeouts of a relayed call (CheckProgress has 30 s)."""


class WebhookRelay:
    """POST relayed webhook calls over pinned connections.

    Most exports bring no webhook to relay: the connections, the URL guard and the pinning are
    set up at the first relayed call.

    Parameters
    ----------
    policy
        Which URLs may be called (:func:`~aistudios_export.urlguard.check_url`); when None,
        public https URLs and `trusted_origin`'s.
    pools
        The pinned connections; new ones when None.
    trusted_origin
        The one loopback origin that may also be called (the local stack's test receiver), as
        :meth:`~aistudios_export.urlguard.UrlPolicy.from_trusted_origin` reads it; None or ""
        (every deployment): none. Unused when `policy` is given.
    """

    def __init__(
        self,
        policy: UrlPolicy | None = None,
        pools: PinnedPools | None = None,
        *,
        trusted_origin: str | None = None,
    ):
        self._policy = policy
        self._pools = pools
        self._trusted_origin = trusted_origin
        self._ready: tuple[UrlPolicy, PinnedPools] | None = None

    def _set_up(self) -> tuple[UrlPolicy, PinnedPools]:
        from aistudios_export.pinning import PinnedPools
        from aistudios_export.urlguard import UrlPolicy

        if self._ready is None:
            policy = self._policy or UrlPolicy.from_trusted_origin(self._trusted_origin)
            self._ready = (policy, self._pools or PinnedPools())
        return self._ready

    def __call__(self, url: str, payload: Mapping[str, Any]) -> bool:
        """Send ``payload`` to ``url``; return whether it was answered 2xx (never raises)."""
        from aistudios_export.urlguard import check_url, redact_url

        policy, pools = self._set_up()
        try:
            answer = pools.request(
                check_url(url, policy),
                "POST",
                headers={"Content-Type": "application/json"},
                body=json.dumps(dict(payload)).encode(),
                timeout=TIMEOUT,
                preload_content=False,  # the status is all that is read: a huge body is not
            )
            answer.close()
        except _FAILURES as e:
            logger.warning(
                "webhook relay failed", extra={"url": redact_url(url), "error": type(e).__name__}
            )
            return False
        if not 200 <= answer.status < 300:
            logger.warning(
                "webhook relay refused",
                extra={"url": redact_url(url), "status": answer.status},
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

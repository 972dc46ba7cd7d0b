"""List exports, most recent first, a page at a time.

A listing walks the export state machine's executions (``ListExecutions``), skipping those that
are no exports or that a filter leaves out. Its continuation token says where the next page
starts: a Step Functions page (its token) and a position within it, so a page may end anywhere
and the next one continues at the very next execution.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from aistudios_export.aws_errors import error_code
from aistudios_export.errors import InvalidRequest, Problem
from aistudios_export.exports.machine import ExportsService
from aistudios_export.exports.types import STATUSES, Page, Summary, summary_fields
from aistudios_export.models import REQUESTED_PROJECT_ID
from aistudios_export.naming import is_export_id

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions.type_defs import ExecutionListItemTypeDef

MAX_LIMIT = 100
"""The largest page of :meth:`ExportLister.page`."""
MAX_TOKEN_LENGTH = 4096
"""The longest continuation token a client may pass back (the API refuses longer ones)."""
_LIST_PAGE = 100
"""ListExecutions page size; a continuation token counts positions within such a page."""
_LIST_PAGES_PER_CALL = 10
"""Bound on ListExecutions calls per page when a filter skips most executions."""


class ExportLister(ExportsService):
    """Lists exports, most recent first; built as an :class:`ExportsService`."""

    def page(
        self,
        *,
        project_id: str | None = None,
        status: str | None = None,
        limit: int = 20,
        next_token: str | None = None,
    ) -> Page:
        """Return a page of exports, most recent first.

        Parameters
        ----------
        project_id
            Only this project's exports.
        status
            Only exports in this status (one of :data:`STATUSES`).
        limit
            At most this many exports (1 to :data:`MAX_LIMIT`); a page may hold fewer when a
            filter skips many executions, with a ``next_token`` to continue.
        next_token
            The ``next_token`` of the previous page.

        Raises
        ------
        InvalidRequest
            Naming the bad parameter.
        """
        problems: list[Problem] = []
        if project_id is not None:
            if not REQUESTED_PROJECT_ID.fullmatch(project_id):
                problems.append(("projectId", "must be a 24-character hexadecimal ObjectId"))
            project_id = project_id.lower()
        if status is not None and status not in STATUSES:
            problems.append(("status", f"must be one of {' | '.join(STATUSES)}"))
        if not 1 <= limit <= MAX_LIMIT:
            problems.append(("limit", f"must be from 1 to {MAX_LIMIT}"))
        sfn_token, skip = _decode_token(next_token, problems)
        if problems:
            raise InvalidRequest(problems)

        found: list[Summary] = []
        for _ in range(_LIST_PAGES_PER_CALL):
            executions, following = self._executions(sfn_token, status)
            for position in range(skip, len(executions)):
                execution = executions[position]
                export_id = execution["name"]
                if not is_export_id(export_id) or (
                    project_id is not None and not export_id.startswith(project_id + "-")
                ):
                    continue
                found.append(Summary(**summary_fields(export_id, execution)))
                if len(found) == limit:
                    if position + 1 < len(executions):
                        return Page(found, _encode_token(sfn_token, position + 1))
                    return Page(found, _encode_token(following, 0) if following else None)
            sfn_token, skip = following, 0
            if not sfn_token:
                return Page(found, None)
        return Page(found, _encode_token(sfn_token, 0))

    def _executions(
        self, sfn_token: str | None, status: str | None
    ) -> tuple[list[ExecutionListItemTypeDef], str | None]:
        """Return one ``ListExecutions`` page and the token of the next (None at the end)."""
        kwargs: dict[str, Any] = {"nextToken": sfn_token} if sfn_token else {}
        if status is not None:
            kwargs["statusFilter"] = status
        try:
            page = self.machine.sfn.list_executions(
                stateMachineArn=self.machine.arn, maxResults=_LIST_PAGE, **kwargs
            )
        except ClientError as e:
            if error_code(e) == "InvalidToken":
                raise InvalidRequest([("nextToken", "is not a token of this listing")]) from None
            raise
        return list(page["executions"]), page.get("nextToken")


def _encode_token(sfn_token: str | None, skip: int) -> str:
    """Return the token of the page that starts at position ``skip`` of a Step Functions page."""
    raw = json.dumps({"t": sfn_token, "s": skip}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str | None, problems: list[Problem]) -> tuple[str | None, int]:
    """Return ``(Step Functions token, skip)`` of ``token``; note a problem when it is none."""
    if token is None:
        return None, 0
    try:
        value = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        sfn_token, skip = value["t"], value["s"]
        if (sfn_token is None or isinstance(sfn_token, str)) and (
            isinstance(skip, int) and not isinstance(skip, bool) and 0 <= skip < _LIST_PAGE
        ):
            return sfn_token, skip
    except (ValueError, TypeError, KeyError, binascii.Error):
        pass
    problems.append(("nextToken", "is not a token of this listing"))
    return None, 0

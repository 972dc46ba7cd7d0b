"""Start, follow and list exports: one export is one execution of the export state machine.

Free of AWS event types: ``functions/api`` turns HTTP into these calls and their results back
into HTTP. Each job has its own module, and they share the result types:

- :class:`ExportStarter` (:mod:`.start`) starts an export at most once per idempotency key or
  dedupe window;
- :class:`StatusReader` (:mod:`.status`) reads an export's status, progress and video;
- :class:`ExportLister` (:mod:`.listing`) lists exports a page at a time;
- :class:`ExportController` (:mod:`.control`) cancels and redrives exports;
- :mod:`.types` holds what they answer with, :mod:`.machine` the state machine they work on.

Each is an :class:`ExportsService`, configured by
:class:`~aistudios_export.settings.HttpApiSettings`.
"""

from aistudios_export.exports.control import ExportController
from aistudios_export.exports.listing import MAX_LIMIT, MAX_TOKEN_LENGTH, ExportLister
from aistudios_export.exports.machine import ExportMachine, ExportsService
from aistudios_export.exports.start import IDEMPOTENCY_KEY, ExportStarter, parse_request
from aistudios_export.exports.status import StatusReader
from aistudios_export.exports.types import STATUSES, Page, Started, Status, Summary, Video

__all__ = [
    "IDEMPOTENCY_KEY",
    "MAX_LIMIT",
    "MAX_TOKEN_LENGTH",
    "STATUSES",
    "ExportController",
    "ExportLister",
    "ExportMachine",
    "ExportStarter",
    "ExportsService",
    "Page",
    "Started",
    "Status",
    "StatusReader",
    "Summary",
    "Video",
    "parse_request",
]

"""The exit statuses of the operator commands, and the error that ends a command with one."""

from __future__ import annotations

OK = 0
"""The command did what it was asked; a followed export or batch SUCCEEDED."""
FAILED = 1
"""A followed export or batch ended FAILED, TIMED_OUT or ABORTED; ``doctor`` found a problem;
AI Studios refused the credentials."""
USAGE = 2
"""Bad arguments: nothing was called."""
NOT_FOUND = 3
"""No such stack, stack output or export."""
CONFLICT = 4
"""The export's state does not allow it (cancel a finished export, redrive a success)."""
AWS_ERROR = 5
"""AWS refused or could not be reached (credentials, permissions, endpoint, unsupported call)."""
STILL_RUNNING = 6
"""``--wait`` gave up after ``--wait-seconds``; the export or batch is still running."""
INTERRUPTED = 130
"""Ctrl-C: following stopped; the export or batch goes on."""

EPILOG = """\
exit status:
  0    done; a followed export or batch SUCCEEDED
  1    the export or batch FAILED, TIMED_OUT or was ABORTED; doctor found a problem;
       AI Studios refused the credentials
  2    bad arguments (nothing was called)
  3    no such stack, stack output or export
  4    the export's state does not allow it (cancel a finished export, redrive a success)
  5    AWS refused or could not be reached (credentials, permissions, endpoint)
  6    --wait gave up after --wait-seconds; the export is still running
  130  interrupted (Ctrl-C): following stopped, the export goes on
"""


class CommandError(Exception):
    """Ends a command with ``message`` on stderr and exit status ``code``.

    Parameters
    ----------
    message
        What went wrong, in plain words (never a secret).
    code
        One of this module's exit statuses.
    """

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code

"""Errors a user can cause.

A :class:`UserError` is raised where a bad value is first seen (a malformed budget, a missing
file, an invalid spec). The CLI prints its message as one line on stderr and exits with code 2;
anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input, reported as one line and exit code 2."""

    exit_code = 2

"""Errors shared by both sides."""


class UserError(Exception):
    """A problem the user can fix: shown as one line, exit code 2, no traceback."""

"""UserError, shared by both sides: the host's commands and the device's jobs raise it for a
problem the user can fix.

Neutral ground: the images ship this module with the device side (toolkit/images/naming.py,
device_files), so it obeys the device side's rules (Python 3.6, standard library only).
"""


class UserError(Exception):
    """A problem the user can fix: shown as one line, exit code 2, no traceback."""

"""One exception type for every error a user can fix; the workflow prints it as one line
(`error: MSG`: vaegaps.pipeline.stage), with the Python traceback below it only when asked for."""

from __future__ import annotations

import os

# Set to 1 to see the traceback below a vaegaps error (README, "Troubleshooting").
TRACEBACK_ENV = "VAEGAPS_TRACEBACK"


class VaegapsError(Exception):
    """A problem with the user's input, data or config; the message names it and the fix."""


def traceback_wanted(verbose: bool = False) -> bool:
    """Whether a vaegaps error should show its traceback: `verbose` (the workflow's --verbose), or
    VAEGAPS_TRACEBACK set to anything but empty or 0."""
    return verbose or os.environ.get(TRACEBACK_ENV, "") not in ("", "0")

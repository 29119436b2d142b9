"""One exception type for every error a user can fix; stage scripts and the Snakefile print it as
one line (`error: MSG`), with the Python traceback below it only when asked for."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

# Set to 1 to see the traceback below a vaegaps error (README, "Troubleshooting").
TRACEBACK_ENV = "VAEGAPS_TRACEBACK"


class VaegapsError(Exception):
    """A problem with the user's input, data or config; the message names it and the fix."""


def traceback_wanted(verbose: bool = False) -> bool:
    """Whether a vaegaps error should show its traceback: Snakemake's --verbose, or
    VAEGAPS_TRACEBACK set to anything but empty or 0."""
    return verbose or os.environ.get(TRACEBACK_ENV, "") not in ("", "0")


@contextlib.contextmanager
def one_line(verbose: bool = False) -> Iterator[None]:
    """At parse time (or in a hook) of the Snakefile: a VaegapsError leaves as the single line
    `error: MSG` (a SystemExit, which Snakemake lets through), not as Snakemake's report of an
    exception with its file and traceback lines; that report when a traceback is wanted."""
    try:
        yield
    except VaegapsError as exc:
        if traceback_wanted(verbose):
            raise
        raise SystemExit(f"error: {exc}") from None

"""One exception type for every error a user can fix; the workflow prints it as one line
(`error: MSG`: vaegaps.pipeline.stage), with the Python traceback below it only when asked for.

A missing or damaged file's error ends with what to do about it (`FileHints`). The library's own
words name no tool, only the stage that writes the file; the layer that runs the library through a
workflow registers hints naming the exact command that rebuilds it (vaegaps.pipeline.rebuild)."""

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


class FileHints:
    """What the error of a missing or damaged file tells the user to do, after its `;`. These are
    the library's own words; a subclass registered with `set_file_hints` adds the exact command."""

    def missing(self, path, writer: str = "the stage that writes it") -> str:
        """For a file not there yet: run `writer` (what writes `path`) first."""
        return f"run {writer} first"

    def damaged(self, path) -> str:
        """For a file that cannot be read: moved aside, never deleted (whatever is still readable
        in it stays), and written again by its stage (a training checkpoint: training restarts)."""
        return "move it aside and rerun the stage that writes it"


_hints = FileHints()


def file_hints() -> FileHints:
    """The hints registered now (the library's own unless a workflow registered its own)."""
    return _hints


def set_file_hints(hints: FileHints) -> FileHints:
    """Register `hints` for every later error of a missing or damaged file; returns the ones they
    replace, so that a caller can put them back."""
    global _hints
    previous, _hints = _hints, hints
    return previous


def damaged_message(path, why, hint: str | None = None) -> str:
    """One line: the damaged file, why it cannot be read, and what to do (`hint`, else the
    registered hints')."""
    why = " ".join(str(why).split())[:160]
    return f"{path} is damaged ({why}); {hint or file_hints().damaged(path)}"

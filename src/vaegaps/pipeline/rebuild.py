"""The workflow's hints for a missing or damaged file (vaegaps.errors.FileHints): the exact
`snakemake` command that builds or rebuilds it. Registered by every stage (vaegaps.pipeline.stage)
and by the preflight, which also records the run's command line for its jobs (COMMAND_ENV), so the
library's loaders (vaegaps.io, vaegaps.data) name the command without knowing it. Standard
library and vaegaps.errors only."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from ..errors import FileHints, set_file_hints

# The snakemake command line of this run (with its --configfile), set by the main process for its
# jobs, so that an error names the exact command that rebuilds a file.
COMMAND_ENV = "VAEGAPS_SNAKEMAKE"


def rerun_command() -> str:
    """`snakemake --cores 1` with this run's --configfile options (see COMMAND_ENV)."""
    return os.environ.get(COMMAND_ENV) or "snakemake --cores 1"


def command_line(configfiles=()) -> str:
    """The `snakemake` command, with these --configfile options, that a rebuild hint names."""
    return " ".join(["snakemake --cores 1", *(f"--configfile {shlex.quote(str(c))}" for c in configfiles)])


def checkpoint_model(checkpoint) -> Path:
    """The model a training checkpoint belongs to: RES/resume/MODEL/train/KEY/train.ckpt is
    RES/trained/MODEL/KEY/model.pt's (one folder per settings key)."""
    p = Path(checkpoint)
    i = len(p.parts) - 1 - p.parts[::-1].index("resume")
    return Path(*p.parts[:i], "trained", *p.parts[i + 1:-3], p.parts[-2], "model.pt")


def rebuild_hint(path) -> str:
    """What to run when `path` (a data Parquet, model, snapshot or training checkpoint) is damaged:
    the exact command, after the words that say what it does."""
    p = Path(path)
    sm, q = rerun_command(), shlex.quote
    if p.name == "train.ckpt" and "resume" in p.parts and p.parts[-3:-2] == ("train",):
        # no Snakemake output: moved aside (never deleted: the rest of it may still be read),
        # training of these settings starts again from epoch 1 if their model is needed
        model = checkpoint_model(p)
        aside = p.with_name(p.name + ".damaged")
        return f"move it aside and rerun: mv {q(str(p))} {q(str(aside))} && {sm} {q(str(model))}"
    if p.parent.name == "snapshots":  # inside the training job's directory output
        return f"rebuild it: {sm} --force {q(str(p.parent.parent / 'model.pt'))}"
    return f"rebuild it: {sm} --force {q(str(p))}"


class WorkflowHints(FileHints):
    """The library's hints with the exact command of this run: the one that builds a missing file,
    the one that rebuilds a damaged one (`rebuild_hint`)."""

    def missing(self, path, writer: str = "the stage that writes it") -> str:
        return f"{super().missing(path, writer)}: {rerun_command()} {path}"

    def damaged(self, path) -> str:
        return rebuild_hint(path)


def register() -> FileHints:
    """Make the library's errors name this workflow's commands; returns the hints replaced."""
    return set_file_hints(WorkflowHints())

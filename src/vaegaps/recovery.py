"""Recovering from kills and damaged files, in the jobs and at parse time: the run lock that tells
a killed run's stale Snakemake locks from a live run's, and the exact command that rebuilds a
damaged file. Standard library only: every stage imports it (through vaegaps.stage and vaegaps.io).

Snakemake refuses to run ("Directory cannot be locked") while .snakemake/locks/ holds lock files
that name its outputs, and a run killed with kill -9 never removes its own. Every live vaegaps
run, its main process and each of its jobs, holds a shared flock on .snakemake/vaegaps.run.lock,
which the kernel drops when the process dies, however it dies. A new run that gets that lock
exclusively therefore knows that no live run uses this folder, and removes the lock files before
Snakemake reads them (vaegaps.preflight). While any run, or any job of a killed run, lives, it
leaves them, and Snakemake refuses as usual.
"""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no stale-lock removal, Snakemake's own behaviour
    fcntl = None

RUN_LOCK = Path(".snakemake") / "vaegaps.run.lock"
SNAKEMAKE_LOCKS = Path(".snakemake") / "locks"
# The snakemake command line of this run (with its --configfile), set by the main process for its
# jobs, so that an error names the exact command that rebuilds a file.
COMMAND_ENV = "VAEGAPS_SNAKEMAKE"
_HELD: dict[str, object] = {}  # lock files kept open for the life of the process


# ----------------------------------------------------------------------------- stale locks

def _flock(f, op: int, timeout: float) -> bool:
    """flock(op) without blocking, retried for `timeout` seconds; False when not acquired or when
    the file system has no flock (then nothing is removed: Snakemake's own behaviour)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(f, op | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        except OSError:
            return False


def _open_run_lock(workdir, create: bool):
    path = Path(workdir) / RUN_LOCK
    key = str(path.resolve())
    if fcntl is None or key in _HELD or not (create or path.parent.is_dir()):
        return None, key
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "a+"), key  # readable too: NFS emulates a shared flock by a read lock
    except OSError:  # a read-only folder: Snakemake reports it itself
        return None, key


def claim_run(workdir=".") -> list[Path]:
    """Main process: remove Snakemake's lock files if no live run holds the run lock (they are
    stale), then hold it shared for the life of this process. Returns the files removed."""
    f, key = _open_run_lock(workdir, create=True)
    if f is None:
        return []
    removed = []
    if _flock(f, fcntl.LOCK_EX, timeout=0):
        # This process only parses the Snakefile yet: none of these files is its own.
        for lock in sorted((Path(workdir) / SNAKEMAKE_LOCKS).glob("*.lock")):
            try:
                lock.unlink()
                removed.append(lock)
            except FileNotFoundError:
                pass
    # Shared from now on, like every job of this run. flock converts by unlocking first: a run
    # starting in between takes the exclusive lock only for its own (empty) cleanup; wait for it.
    if _flock(f, fcntl.LOCK_SH, timeout=30):
        _HELD[key] = f
    else:
        f.close()
    return removed


def hold_run_lock(workdir=".") -> bool:
    """Job process: hold the run lock shared while the job runs, so that a run started after
    this job's Snakemake was killed does not remove the locks of a job still writing. Only in a
    Snakemake working folder (one with .snakemake/)."""
    f, key = _open_run_lock(workdir, create=False)
    if f is None:
        return key in _HELD
    if _flock(f, fcntl.LOCK_SH, timeout=30):
        _HELD[key] = f
        return True
    f.close()
    return False


# ----------------------------------------------------------------------------- rebuild commands

def snakemake_command() -> str:
    """`snakemake --cores 1` with this run's --configfile options (see COMMAND_ENV)."""
    return os.environ.get(COMMAND_ENV) or "snakemake --cores 1"


def command_line(configfiles=()) -> str:
    """The `snakemake` command, with these --configfile options, that a rebuild hint names."""
    return " ".join(["snakemake --cores 1", *(f"--configfile {shlex.quote(str(c))}" for c in configfiles)])


def rebuild_hint(path) -> str:
    """What to run when `path` (a data Parquet, model, snapshot or training checkpoint) is damaged:
    the exact command, after the words that say what it does."""
    p = Path(path)
    sm, q = snakemake_command(), shlex.quote
    if p.name == "train.ckpt" and "resume" in p.parts and p.parts[-3:-2] == ("train",):
        # RES/resume/MODEL/train/KEY/train.ckpt, no Snakemake output: moved aside (never deleted:
        # the rest of it may still be read), training of these settings starts again from epoch 1
        # if their model (RES/trained/MODEL/KEY/model.pt) is needed
        i = len(p.parts) - 1 - p.parts[::-1].index("resume")
        model = Path(*p.parts[:i], "trained", *p.parts[i + 1:-3], p.parts[-2], "model.pt")
        aside = p.with_name(p.name + ".damaged")
        return f"move it aside and rerun: mv {q(str(p))} {q(str(aside))} && {sm} {q(str(model))}"
    if p.parent.name == "snapshots":  # inside the training job's directory output
        return f"rebuild it: {sm} --force {q(str(p.parent.parent / 'model.pt'))}"
    return f"rebuild it: {sm} --force {q(str(p))}"


def damaged_message(path, why: str) -> str:
    """One line: the damaged file, why it cannot be read, and the command that rebuilds it."""
    why = " ".join(str(why).split())[:160]
    return f"{path} is damaged ({why}); {rebuild_hint(path)}"

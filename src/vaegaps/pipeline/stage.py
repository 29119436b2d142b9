"""What the Snakefile and every stage script share: one-line errors (`one_line` at parse time, `stage`
in a job), and for a job its log file, thread count, run lock and the provenance its Parquet outputs
record (the study's settings, passed explicitly through `Stage`: no global state)."""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import sys
import time
import traceback
from collections.abc import Iterator
from typing import Any

from ..errors import VaegapsError, traceback_wanted


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


def share_source(src) -> None:
    """Make the jobs the Snakefile starts import the package from `src` (the src/ beside the
    Snakefile, which the Snakefile itself imports): put it first on PYTHONPATH, which every job
    inherits, so a copy installed elsewhere (or none) never runs a stage. An editable install
    (pip install -e .) of the same checkout resolves to the same files."""
    src = str(src)
    path = os.environ.get("PYTHONPATH", "")
    if path.split(os.pathsep)[0] != src:
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (src, path) if p)


class Stage:
    """One job of the workflow: the provenance every Parquet it writes records (`study`: the whole
    study's settings, defaults filled) and the writer that records it."""

    def __init__(self, config: dict):
        self.provenance: dict[str, Any] = {"study": dict(config)} if config else {}

    def write_parquet(self, df, path, metadata: dict[str, Any] | None = None) -> None:
        """vaegaps.io.write_parquet with this job's provenance beside `metadata`."""
        from ..io import write_parquet

        write_parquet(df, path, {**self.provenance, **(metadata or {})})


@contextlib.contextmanager
def stage(snakemake) -> Iterator[Stage]:
    """Log to the rule's log file, pin torch threads to the rule's threads, and turn a
    VaegapsError, or a full disk or read-only folder met anywhere, into a one-line message and
    exit status 1 (outputs are written atomically, so nothing half-written is left). The job
    holds its run's lock while it runs (vaegaps.pipeline.recovery: its locks are not stale), and
    the library's errors of a missing or damaged file name the command that rebuilds it
    (vaegaps.pipeline.rebuild). Yields the job's `Stage`, whose writer records the study's
    settings in each Parquet."""
    from ..errors import set_file_hints
    from .rebuild import register
    from .recovery import hold_run_lock

    hold_run_lock()
    previous = register()
    try:
        with _job(snakemake) as job:
            yield job
    finally:
        set_file_hints(previous)  # matters only where a stage runs in-process (the tests)


@contextlib.contextmanager
def _job(snakemake) -> Iterator[Stage]:
    """stage() once its lock is held and its hints registered: log, threads, one-line errors."""
    log_file = snakemake.log[0] if len(snakemake.log) else None
    try:
        logging.basicConfig(filename=log_file, level=logging.INFO, force=True,
                            format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    except OSError as exc:
        _exit_on_write_error(exc)
        raise
    _pin_threads(snakemake.threads)
    job = Stage(snakemake.config)
    start = time.monotonic()
    try:
        yield job
        _log_cost(start)
    except VaegapsError as exc:
        logging.getLogger("vaegaps").error("%s", exc)
        _exit(exc)
    except OSError as exc:  # a write outside vaegaps.io (e.g. copying files): same one line
        _exit_on_write_error(exc)
        raise


def _log_cost(start: float) -> None:
    """One log line with the job's wall time and its process CPU time since start-up (imports
    included), so a run's CPU can be broken down by job from its logs."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    logging.getLogger("vaegaps").info("stage done: %.1f s wall, %.1f CPU-s (%.1f user, %.1f system)",
                                      time.monotonic() - start, use.ru_utime + use.ru_stime,
                                      use.ru_utime, use.ru_stime)


def _exit_on_write_error(exc: OSError) -> None:
    """Exit with one line if `exc` is a full disk, read-only folder or permission error."""
    from ..io import write_error

    err = write_error(exc.filename or "results", exc)
    if err is not None:
        logging.getLogger("vaegaps").error("%s", err)
        _exit(err)


def _exit(err: Exception) -> None:
    """Exit with `error: MSG`, below the traceback when VAEGAPS_TRACEBACK asks for it."""
    if traceback_wanted():
        traceback.print_exc()
    sys.exit(f"error: {err}")


def _pin_threads(n: int) -> None:
    """The job's thread share for torch: set now if the script imported torch already, else
    through the environment torch reads when it is first imported (tables and gathering stages
    never import it, which saves seconds per job)."""
    n = str(max(1, int(n)))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = n
    if "torch" in sys.modules:
        from ..runtime import set_threads

        set_threads(int(n))


def part_of(snakemake) -> tuple[int, int]:
    """(p, k) of a job that runs part p of k, from its {part} and {parts} wildcards."""
    return int(snakemake.wildcards.part), int(snakemake.wildcards.parts)

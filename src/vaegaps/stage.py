"""What every Snakemake stage script shares: log file, thread count, device, one-line errors."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Iterator

from .errors import VaegapsError


@contextlib.contextmanager
def stage(snakemake) -> Iterator[None]:
    """Log to the rule's log file, pin torch threads to the rule's threads, and turn a
    VaegapsError into a one-line message and exit status 1 (outputs are written atomically,
    so nothing half-written is left)."""
    log_file = snakemake.log[0] if len(snakemake.log) else None
    logging.basicConfig(filename=log_file, level=logging.INFO, force=True,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    from . import io

    _pin_threads(snakemake.threads)
    io.STUDY.clear()
    io.STUDY.update(dict(snakemake.config))
    try:
        yield
    except VaegapsError as exc:
        logging.getLogger("vaegaps").error("%s", exc)
        sys.exit(f"error: {exc}")


def _pin_threads(n: int) -> None:
    """The job's thread share for torch: set now if the script imported torch already, else
    through the environment torch reads when it is first imported (tables and gathering stages
    never import it, which saves seconds per job)."""
    n = str(max(1, int(n)))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = n
    if "torch" in sys.modules:
        from .runtime import set_threads

        set_threads(int(n))


def part_of(snakemake) -> tuple[int, int]:
    """(p, k) of a job that runs part p of k, from its {part} and {parts} wildcards."""
    return int(snakemake.wildcards.part), int(snakemake.wildcards.parts)


def evaluation_stage(snakemake, estimator: str, settings: dict, estimate) -> None:
    """The body of every per-datapoint evaluation stage: part {part} of {parts} of the evaluation
    set through estimate(model, index, x), written with its provenance (gathered later)."""
    from .evaluate import evaluate_set
    from .io import write_parquet

    sm = snakemake
    ev = sm.params.evaluation
    part = part_of(sm)
    provenance = {"estimator": estimator, "split": ev["split"], "settings": settings,
                  "seed": sm.config["seed"]}
    df = evaluate_set(sm.input.model, sm.input.data, ev, sm.config["device"], sm.params.resume,
                      estimate, provenance, part)
    write_parquet(df, sm.output[0], {**provenance, "part": part[0], "parts": part[1]})

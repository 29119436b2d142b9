"""Scatter and resume: an evaluation stage's datapoints cut into parts (one job each) and, inside
a job, into chunks saved as they finish, so a killed job restarts at its first unfinished chunk.
Gathering the parts gives the same Parquet for any number of parts. No torch import here: the
gather jobs stay cheap."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..config import digest
from ..errors import VaegapsError
from ..io import file_digest, read_metadata, write_parquet

if TYPE_CHECKING:  # annotations only
    import numpy as np
    import torch

log = logging.getLogger(__name__)
PACKAGE_DIR = Path(__file__).resolve().parent.parent  # src/vaegaps


def part_bounds(n: int, part: int, parts: int) -> tuple[int, int]:
    """[start, stop) of part `part` (from 0) when n datapoints are cut into `parts` consecutive,
    near-equal parts."""
    if not 0 <= part < parts:
        raise VaegapsError(f"part {part} of {parts} does not exist; parts are numbered 0..{parts - 1}")
    if parts > n:
        raise VaegapsError(f"evaluation.parts ({parts}) is more than the {n} datapoints; lower it")
    return n * part // parts, n * (part + 1) // parts


def run_in_chunks(estimate: Callable[[np.ndarray, torch.Tensor], pd.DataFrame], index: np.ndarray,
                  x: torch.Tensor, chunk_size: int, resume_dir: str | Path, key: str = "") -> pd.DataFrame:
    """estimate(index, x) over consecutive chunks, each saved to resume_dir as it finishes, so a
    killed job restarts at its first unfinished chunk. A saved chunk is reused only if it was made
    under the same `key`. Chunking does not change results."""
    resume_dir = Path(resume_dir)
    parts = []
    for start in range(0, len(index), chunk_size):
        stop = min(start + chunk_size, len(index))
        chunk_path = resume_dir / f"chunk_{index[start]}_{index[stop - 1]}.parquet"
        if chunk_path.exists() and read_metadata(chunk_path).get("key") == key:
            log.info("chunk %d-%d: reusing %s", start, stop, chunk_path)
            parts.append(pd.read_parquet(chunk_path))
            continue
        chunk = estimate(index[start:stop], x[start:stop])
        write_parquet(chunk, chunk_path, {"partial": True, "key": key})
        log.info("chunk %d-%d of %d done", start, stop, len(index))
        parts.append(chunk)
    return pd.concat(parts, ignore_index=True)


PER_PART_METADATA = ("part", "parts", "versions")  # may differ between parts of one stage


def gather_parts(paths: list[str | Path], keys=("index",)) -> tuple[pd.DataFrame, dict]:
    """The parts 0..k-1 written by one evaluation stage, concatenated in datapoint order, and
    their shared metadata. Parts made under different settings are an error, not a silent mix.
    `keys`: the columns that name a row (one row per datapoint: index; a refinement curve, one
    per datapoint and step count: index, steps)."""
    metas = [read_metadata(p) for p in paths]
    k = len(paths)
    for i, (path, meta) in enumerate(zip(paths, metas)):
        if (meta.get("part"), meta.get("parts")) != (i, k):
            raise VaegapsError(f"{path} is part {meta.get('part')} of {meta.get('parts')}, expected "
                               f"{i} of {k}; delete it and rerun")
    shared = [{key: v for key, v in m.items() if key not in PER_PART_METADATA} for m in metas]
    if any(s != shared[0] for s in shared):
        raise VaegapsError(f"the parts {paths[0]} ... were made with different settings; "
                           "delete them and rerun")
    df = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    if not df["index"].is_monotonic_increasing or df.duplicated(subset=list(keys)).any():
        raise VaegapsError(f"the parts {paths[0]} ... overlap or are out of order; delete them and rerun")
    return df, {**shared[0], "parts": k}


@functools.cache
def package_digest() -> str:
    """Digest of this package's Python sources: chunks saved by other code (e.g. before a column
    was added) are recomputed, never mixed into a rerun's output."""
    src = sorted(PACKAGE_DIR.rglob("*.py"))
    return digest({str(p.relative_to(PACKAGE_DIR)): file_digest(p) for p in src})


def chunk_key(provenance: dict, files: dict) -> str:
    """The digest that keys a stage's resumable chunks: its provenance, the package's code and the
    digests of the files (name -> path) its results depend on, so any change recomputes them."""
    return digest({**provenance, "code": package_digest(),
                   **{name: file_digest(path) for name, path in files.items()}})

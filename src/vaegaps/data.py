"""The prepared-dataset file: `prepare_dataset` writes one Parquet per dataset, `load_split` and
`image_shape` read it back.

The table has columns `split` (train/valid/test), `index` (position within the split), `label`
(int64; -1 where the source has none) and `pixels` (list of uint8 0/1 of length C*H*W, in C,H,W
order); its metadata records each raw file's source and SHA-256, the preprocessing and the split
sizes. What each dataset is lives in `datasets.py`, getting its raw files in `fetch.py`, reading
their formats in `parsers.py`.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .datasets import _BUILDERS, SPLITS, Splits, _digits_source, _spec
from .errors import VaegapsError, damaged_message, file_hints
from .fetch import _obtain
from .io import read_metadata, write_parquet

log = logging.getLogger(__name__)


def _frame(splits: Splits) -> pd.DataFrame:
    """One table for all splits; pixels as an Arrow list<uint8> column built without Python loops.
    The frame holds it as object dtype (one uint8 array per image, views into Arrow's buffer), not
    as an ArrowExtensionArray: pandas records the column's dtype in the file, and an ArrowDtype
    there makes plain `pd.read_parquet(path)` fail unless given dtype_backend="pyarrow"."""
    xs = [splits[s][0] for s in SPLITS]
    n = [len(x) for x in xs]
    x = np.concatenate(xs)
    offsets = np.arange(len(x) + 1, dtype=np.int64) * x.shape[1]
    pixels = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(x.reshape(-1), pa.uint8()))
    pixels = pixels.cast(pa.list_(pa.uint8())) if offsets[-1] < 2**31 else pixels
    return pd.DataFrame({
        "split": np.repeat(np.array(SPLITS, dtype=object), n),
        "index": np.concatenate([np.arange(k, dtype=np.int64) for k in n]),
        "label": np.concatenate([splits[s][1] for s in SPLITS]).astype(np.int64),
        "pixels": pixels.to_numpy(zero_copy_only=False),
    })


def prepare_dataset(name: str, out_path: str | os.PathLike, source_dir: str | os.PathLike | None = None,
                    cache_dir: str | os.PathLike | None = None, download: bool = True,
                    base_url: str | None = None, checksums: dict | None = None, retries: int = 3,
                    timeout: float = 60, splits: dict[str, int] | None = None,
                    provenance: dict | None = None) -> None:
    """Find, verify, parse, binarize and split dataset `name`; write one Parquet at `out_path`.

    `base_url`, `checksums` ({file name: sha256 or (size, sha256)}, of the decompressed content
    for Fashion-MNIST) and `splits` ({split: size}) override the registry, for mirrors and tests.
    `retries` is the number of extra download attempts after the first. `provenance`: more metadata
    for the Parquet (a workflow stage's study settings).
    """
    spec = _spec(name)
    sizes = {**spec.splits, **(splits or {})}
    t0 = time.perf_counter()
    raw, sources, shas = {}, {}, {}
    for f in spec.files:
        raw[f.name], sources[f.name], shas[f.name] = _obtain(
            spec, f, source_dir=source_dir, cache_dir=cache_dir, download=download, base_url=base_url,
            checksums=checksums, retries=retries, timeout=timeout)
    if not spec.files:
        sources, shas = _digits_source()
    t1 = time.perf_counter()
    arrays = _BUILDERS[name](raw, sizes)
    for split in SPLITS:
        x, y = arrays[split]
        if x.shape != (sizes[split], spec.n_pixels) or y.shape != (sizes[split],):
            raise VaegapsError(f"{name} {split} split has {x.shape[0]} images of {x.shape[1]} pixels, expected "
                               f"{sizes[split]} of {spec.n_pixels}; replace the raw files with the original ones")
    df = _frame(arrays)
    write_parquet(df, out_path, metadata={
        **(provenance or {}),
        "dataset": name,
        "image_shape": list(spec.image_shape),
        "source": sources,
        "sha256": shas,
        "preprocessing": spec.preprocessing,
        "splits": {s: int(sizes[s]) for s in SPLITS},
    })
    log.info("%s: %s written (%s) in %.1f s (%.1f s finding and verifying files)", name, out_path,
             ", ".join(f"{s} {sizes[s]}" for s in SPLITS), time.perf_counter() - t0, t1 - t0)


def image_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """(C, H, W) of the images in a prepared dataset."""
    _require(path)
    return tuple(int(d) for d in read_metadata(path)["image_shape"])


def load_split(path: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(index int64 (n,), x float32 (n, P) of 0/1, labels int64 (n,)) of one split, in index order."""
    if split not in SPLITS:
        raise VaegapsError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    _require(path)
    try:
        table = pq.read_table(path, columns=["index", "label", "pixels"], filters=[("split", "=", split)])
    except (pa.ArrowException, OSError) as exc:  # damaged inside, or not a prepared dataset
        raise VaegapsError(damaged_message(path, f"{type(exc).__name__}: {exc}")) from exc
    index = table["index"].to_numpy().astype(np.int64)
    labels = table["label"].to_numpy().astype(np.int64)
    pixels = table["pixels"].combine_chunks()
    flat = pixels.flatten().to_numpy(zero_copy_only=False)
    x = flat.reshape(len(index), -1).astype(np.float32) if len(index) else np.zeros((0, 0), np.float32)
    if np.any(np.diff(index) < 0):  # written in order, but do not rely on it
        order = np.argsort(index, kind="stable")
        index, x, labels = index[order], x[order], labels[order]
    return index, x, labels


def _require(path: str | os.PathLike) -> None:
    """`path` exists and its Parquet footer reads: a missing or truncated file is one line naming it
    and what to do (vaegaps.errors.file_hints: in a workflow, the command), not a pyarrow traceback."""
    if not Path(path).is_file():
        raise VaegapsError(f"missing dataset file {path}; {file_hints().missing(path, 'the prepare_dataset stage')}")
    try:
        pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise VaegapsError(damaged_message(path, f"{type(exc).__name__}: {exc}")) from exc

"""Atomic writes of Parquet tables and torch state dicts, with provenance in the metadata."""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import VaegapsError, file_hints

META_KEY = b"vaegaps"


def versions() -> dict[str, str]:
    """Versions of everything that can change a number in the outputs (read from the installed
    packages' metadata: a stage that never needs torch does not pay for importing it)."""
    import numpy

    from . import __version__

    return {
        "vaegaps": __version__,
        "python": platform.python_version(),
        "torch": importlib.metadata.version("torch"),
        "numpy": numpy.__version__,
        "pandas": pd.__version__,
        "pyarrow": pa.__version__,
    }


# What to do about a write that failed for want of space or permission (one line, no traceback).
_WRITE_FIXES = {
    errno.ENOSPC: "no space left on device: free space, or set results: to a folder on another disk",
    errno.EDQUOT: "disk quota exceeded: free space, or set results: to a folder on another disk",
    errno.EFBIG: "file too large for this file system: set results: to a folder on another disk",
    errno.EROFS: "read-only file system: set results: to a writable folder",
    errno.EACCES: "permission denied: make the folder writable, or set results: to another folder",
    errno.EPERM: "permission denied: make the folder writable, or set results: to another folder",
}


def write_error(path, exc: OSError) -> VaegapsError | None:
    """The one-line error for a write to `path` that failed with a full disk, a read-only file
    system or a permission error; None for any other OSError (left to propagate as it is)."""
    fix = _WRITE_FIXES.get(exc.errno)
    return VaegapsError(f"cannot write {path}: {fix}") if fix else None


@functools.cache
def _file_mode() -> int:
    """The mode a newly created file gets under this process's umask (mkstemp's 0600 would hide
    results from the rest of a group on a shared cluster)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.
    The temporary file is removed whatever happens, and a full disk or read-only folder is a
    one-line VaegapsError naming `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        err = write_error(path, exc)
        if err is None:
            raise
        raise err from exc
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except OSError as exc:
        # The block only writes tmp (pyarrow's OSError carries the errno but no file name).
        err = write_error(path, exc)
        if err is None:
            raise
        raise err from exc
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet(df: pd.DataFrame, path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> None:
    """Write `df` atomically; `metadata` (JSON-able) and package versions go in the file's schema
    (a workflow stage adds its study's settings: vaegaps.pipeline.stage.Stage.write_parquet)."""
    meta = {"versions": versions(), **(metadata or {})}
    table = pa.Table.from_pandas(df, preserve_index=False)
    schema_meta = dict(table.schema.metadata or {})
    schema_meta[META_KEY] = json.dumps(meta, default=str, sort_keys=True).encode()
    table = table.replace_schema_metadata(schema_meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def write_csv(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a table as CSV (no index column), atomically."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def write_text(text: str, path: str | os.PathLike) -> None:
    """Write text (e.g. a Markdown table), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The vaegaps metadata written by `write_parquet`."""
    meta = pq.read_schema(path).metadata or {}
    if META_KEY not in meta:
        raise VaegapsError(f"{path} has no vaegaps metadata; rebuild it with the workflow")
    return json.loads(meta[META_KEY])


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (streamed): ties a result to the exact model and data it used."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    """torch.save to a temp file, then rename, so a kill never leaves half a checkpoint.
    Serialised in memory first: torch's own file writer reports a full disk as a bare
    RuntimeError ("enforce fail at inline_container.cc"), a plain write as OSError with its errno."""
    from io import BytesIO

    import torch

    buf = BytesIO()
    torch.save(obj, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getbuffer())


def load_torch(path: str | os.PathLike, map_location: Any = "cpu", rebuild: str | None = None) -> Any:
    """Load tensors only (weights_only=True): a checkpoint can never run code. A missing or
    damaged file is one line naming it and what to do: `rebuild` (e.g. "rebuild it: COMMAND"),
    by default the registered hints' (vaegaps.errors.file_hints: in a workflow, its command)."""
    import torch

    path = Path(path)
    if not path.exists():
        raise VaegapsError(f"missing file {path}; {file_hints().missing(path)}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt or foreign file
        why = " ".join(str(exc).split())[:120]
        raise VaegapsError(f"cannot read {path} ({type(exc).__name__}: {why}); "
                           f"{rebuild or file_hints().damaged(path)}") from exc

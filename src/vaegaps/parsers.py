"""Raw dataset file formats: IDX (Fashion-MNIST), Larochelle's .amat (binarized MNIST) and the
CIFAR-10 binary batches inside their tarball. Bytes in, numpy arrays out: no network, no registry.
Nothing is ever unpickled: CIFAR-10 is read from its binary tarball with `tarfile`, in memory.
"""

from __future__ import annotations

import io
import os
import tarfile
import zlib
from pathlib import Path

import numpy as np

from .errors import VaegapsError

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(data: bytes, name: str = "IDX data") -> np.ndarray:
    """Parse an (uncompressed) IDX file: 2 zero bytes, dtype code, ndim, big-endian int32 dims."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise VaegapsError(f"{name} is not an IDX file (bad magic number); replace it with the original file")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise VaegapsError(f"{name} is truncated inside its IDX header; replace it with the original file")
    shape = tuple(int(d) for d in np.frombuffer(data, ">i4", ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise VaegapsError(f"{name} has {len(data)} bytes but its IDX header {shape} needs {expected}; "
                           "replace it with the original file")
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_amat(source: str | os.PathLike | bytes, n_pixels: int = 784, name: str | None = None) -> np.ndarray:
    """Parse a Larochelle .amat file (whitespace-separated 0/1, one image per line) to uint8 (n, n_pixels).

    Vectorised over bytes (np.loadtxt takes minutes on 39M values): every token must be a single
    '0' or '1', so we check that no two digits touch and count digits per line.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), name or "amat data"
    else:
        data, name = Path(source).read_bytes(), name or str(source)
    b = np.frombuffer(data, np.uint8)
    digit = (b == ord("0")) | (b == ord("1"))
    newline = b == ord("\n")
    space = newline | (b == ord(" ")) | (b == ord("\t")) | (b == ord("\r"))
    if not np.all(digit | space) or np.any(digit[1:] & digit[:-1]):
        raise VaegapsError(f"{name} holds tokens other than 0/1; replace it with the original .amat file")
    line = np.cumsum(newline) - newline  # line number of each byte
    counts = np.bincount(line[digit], minlength=int(line[-1]) + 1 if len(b) else 0)
    counts = counts[counts > 0]  # blank lines carry no image
    if np.any(counts != n_pixels):
        raise VaegapsError(f"{name} has lines with {sorted(set(counts.tolist()) - {n_pixels})[:3]} values "
                           f"instead of {n_pixels}; replace it with the original .amat file")
    return (b[digit] - ord("0")).reshape(-1, n_pixels)


def read_cifar_binary(data: bytes, name: str = "CIFAR batch") -> tuple[np.ndarray, np.ndarray]:
    """Parse a CIFAR-10 binary batch: records of 1 label byte + 3072 bytes (R, G, B planes of 32x32).

    Returns labels int64 (n,) and images uint8 (n, 3, 32, 32) in C,H,W order (the file's own order).
    """
    record = 1 + 3 * 32 * 32
    if len(data) == 0 or len(data) % record:
        raise VaegapsError(f"{name} has {len(data)} bytes, not a multiple of the {record}-byte record; "
                           "replace the CIFAR-10 archive with the original")
    rec = np.frombuffer(data, np.uint8).reshape(-1, record)
    labels = rec[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise VaegapsError(f"{name} has labels above 9; replace the CIFAR-10 archive with the original")
    return labels, rec[:, 1:].reshape(-1, 3, 32, 32)


def _cifar_members(archive: bytes, wanted: list[str], name: str) -> dict[str, bytes]:
    """Read only the expected regular-file members of the tarball, as bytes (nothing is extracted)."""
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            for member in tar:
                if member.name not in wanted:
                    continue  # readme, batches.meta.txt, or anything foreign: never read
                if not member.isfile() or member.name in found:
                    raise VaegapsError(f"{name} has a suspicious member {member.name} (link or duplicate); "
                                       "replace it with the original archive")
                found[member.name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise VaegapsError(f"{name} is not a readable tar.gz ({type(exc).__name__}: {exc}); "
                           "replace it with the original archive") from exc
    missing = [m for m in wanted if m not in found]
    if missing:
        raise VaegapsError(f"{name} lacks {', '.join(missing)}; replace it with the original archive")
    return found

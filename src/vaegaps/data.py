"""Datasets: find the raw files, verify them, parse, binarize, split, and write one Parquet.

Every dataset ends up as one table with columns `split` (train/valid/test), `index` (position
within the split), `label` (int64; -1 where the source has none) and `pixels` (list of uint8 0/1
of length C*H*W, in C,H,W order). Raw files are looked up in `source_dir`, then in system folders
(Debian's Fashion-MNIST package), then in `cache_dir`, and only then downloaded; every file is
checked against its size and SHA-256 before use, wherever it came from. Nothing is ever
unpickled: CIFAR-10 is read from its binary tarball with `tarfile`, in memory.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import logging
import os
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import VaegapsError
from .io import atomic_path, read_metadata, write_parquet

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
# Where `apt-get install dataset-fashion-mnist` puts the four IDX .gz files (`dpkg -L`).
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
_BACKOFF_S = 1.0  # first retry delay; doubles each attempt (tests set it to 0)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class RawFile:
    """One raw file; size and sha256 are of the content (for gzip files: decompressed)."""

    name: str
    size: int
    sha256: str
    gzip: bool = False  # distributed as `name.gz`; Debian recompressed them, so hash the content

    @property
    def download_name(self) -> str:
        return self.name + ".gz" if self.gzip else self.name


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    image_shape: tuple[int, int, int]  # (C, H, W)
    splits: dict[str, int]
    preprocessing: str
    files: tuple[RawFile, ...] = ()
    base_url: str | None = None
    system_dirs: tuple[str, ...] = ()

    @property
    def n_pixels(self) -> int:
        return int(np.prod(self.image_shape))


DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(
        name="digits",
        image_shape=(1, 8, 8),
        splits={"train": 1297, "valid": 250, "test": 250},
        preprocessing="sklearn load_digits; value >= 8 (of 16) -> 1; "
        "permutation numpy.random.default_rng(0) of the 1797 images, then train/valid/test in order",
    ),
    "mnist": DatasetSpec(
        name="mnist",
        image_shape=(1, 28, 28),
        splits={"train": 50000, "valid": 10000, "test": 10000},
        preprocessing="fixed binarization of Larochelle & Murray (2011), used as is; no labels (-1)",
        files=(
            RawFile("binarized_mnist_train.amat", 78_400_000,
                    "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d"),
            RawFile("binarized_mnist_valid.amat", 15_680_000,
                    "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2"),
            RawFile("binarized_mnist_test.amat", 15_680_000,
                    "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c"),
        ),
        base_url="https://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/",
    ),
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist",
        image_shape=(1, 28, 28),
        splits={"train": 50000, "valid": 10000, "test": 10000},
        preprocessing="pixel/255 >= 0.5 -> 1 (static); train = first 50,000 of the train file, "
        "valid = last 10,000 of the train file, test = t10k",
        files=(
            RawFile("train-images-idx3-ubyte", 47_040_016,
                    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", gzip=True),
            RawFile("train-labels-idx1-ubyte", 60_008,
                    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", gzip=True),
            RawFile("t10k-images-idx3-ubyte", 7_840_016,
                    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", gzip=True),
            RawFile("t10k-labels-idx1-ubyte", 10_008,
                    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", gzip=True),
        ),
        base_url="https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        system_dirs=(DEBIAN_FASHION_MNIST_DIR,),
    ),
    "cifar10": DatasetSpec(
        name="cifar10",
        image_shape=(3, 32, 32),
        splits={"train": 45000, "valid": 5000, "test": 10000},
        preprocessing="binary version; per channel pixel/255 >= 0.5 -> 1, kept 3x32x32 (C,H,W); "
        "valid = first 5,000 training records, train = the remaining 45,000, test = test_batch",
        files=(
            RawFile("cifar-10-binary.tar.gz", 170_052_171,
                    "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"),
        ),
        base_url="https://www.cs.toronto.edu/~kriz/",
    ),
}

# ----------------------------------------------------------------------------- parsers

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


# ----------------------------------------------------------------------------- builders
# Each builder turns the verified raw contents into {split: (pixels uint8 (n, P) of 0/1, labels int64)}.

Parts = dict[str, tuple[np.ndarray, np.ndarray]]


def _build_digits(raw: dict[str, bytes], splits: dict[str, int]) -> Parts:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data >= 8).astype(np.uint8)
    perm = np.random.default_rng(0).permutation(len(x))
    return _consecutive(x[perm], d.target[perm].astype(np.int64), splits, "digits")


def _build_mnist(raw: dict[str, bytes], splits: dict[str, int]) -> Parts:
    parts = {}
    for split in SPLITS:
        fname = f"binarized_mnist_{split}.amat"
        x = read_amat(raw[fname], name=fname)
        parts[split] = (x, np.full(len(x), -1, np.int64))  # the fixed binarization ships no labels
    return parts


def _build_fashion_mnist(raw: dict[str, bytes], splits: dict[str, int]) -> Parts:
    def pair(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        x = read_idx(raw[f"{prefix}-images-idx3-ubyte"], f"{prefix}-images-idx3-ubyte")
        y = read_idx(raw[f"{prefix}-labels-idx1-ubyte"], f"{prefix}-labels-idx1-ubyte")
        if x.ndim != 3 or x.shape[1:] != (28, 28) or y.shape != (len(x),):
            raise VaegapsError(f"Fashion-MNIST {prefix} files have shapes {x.shape} and {y.shape}, "
                               "expected (n, 28, 28) and (n,); replace them with the original files")
        # pixel/255 >= 0.5  <=>  pixel >= 127.5  <=>  pixel >= 128 (exact in integers)
        return (x.reshape(len(x), -1) >= 128).astype(np.uint8), y.astype(np.int64)

    x, y = pair("train")
    n_tr, n_va = splits["train"], splits["valid"]
    if len(x) != n_tr + n_va:
        raise VaegapsError(f"Fashion-MNIST train file has {len(x)} images, expected {n_tr + n_va}; "
                           "replace it with the original file")
    xt, yt = pair("t10k")
    return {"train": (x[:n_tr], y[:n_tr]), "valid": (x[len(x) - n_va:], y[len(x) - n_va:]), "test": (xt, yt)}


def _build_cifar10(raw: dict[str, bytes], splits: dict[str, int]) -> Parts:
    batches = [f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)]
    test = "cifar-10-batches-bin/test_batch.bin"
    members = _cifar_members(raw["cifar-10-binary.tar.gz"], batches + [test], "cifar-10-binary.tar.gz")
    train = [read_cifar_binary(members[b], b) for b in batches]
    y = np.concatenate([t[0] for t in train])
    x = np.concatenate([t[1] for t in train]).reshape(len(y), -1)
    x = (x >= 128).astype(np.uint8)  # per channel pixel/255 >= 0.5, exact in integers
    yt, xt = read_cifar_binary(members[test], test)
    # docs/method.md §2: validation is the FIRST block of training records, train the rest
    parts = _consecutive(x, y, {"valid": splits["valid"], "train": splits["train"]}, "CIFAR-10 training batches")
    parts["test"] = ((xt.reshape(len(yt), -1) >= 128).astype(np.uint8), yt)
    return parts


def _consecutive(x: np.ndarray, y: np.ndarray, sizes: dict[str, int], what: str) -> Parts:
    """Cut x, y into consecutive blocks of the given sizes, in the dict's order."""
    if len(x) != sum(sizes.values()):
        raise VaegapsError(f"{what} hold {len(x)} records, expected {sum(sizes.values())}; "
                           "replace the raw files with the original ones")
    bounds = np.cumsum([0, *sizes.values()])
    return {s: (x[a:b], y[a:b]) for s, a, b in zip(sizes, bounds[:-1], bounds[1:])}


_BUILDERS: dict[str, Callable[[dict[str, bytes], dict[str, int]], Parts]] = {
    "digits": _build_digits,
    "mnist": _build_mnist,
    "fashion_mnist": _build_fashion_mnist,
    "cifar10": _build_cifar10,
}

# ----------------------------------------------------------------------------- finding files


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_content(path: Path, decompress: bool, fix: str, what: str | None = None) -> bytes:
    """The file's bytes, gunzipped if asked: Fashion-MNIST checksums are of the content."""
    data = path.read_bytes()
    if not decompress:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise VaegapsError(f"{what or path} is not a valid gzip file ({exc}); {fix}") from exc


def _verify(content: bytes, f: RawFile, expected: tuple[int | None, str], where: str, fix: str) -> str:
    size, sha = expected
    got = _sha256(content)
    if got != sha or (size is not None and len(content) != size):
        want = f"{size} bytes sha256 {sha}" if size is not None else f"sha256 {sha}"
        raise VaegapsError(f"checksum mismatch for {f.name} from {where}: expected {want}, "
                           f"got {len(content)} bytes sha256 {got}; {fix}")
    return got


def _expected(f: RawFile, checksums: dict | None) -> tuple[int | None, str]:
    """Size and sha256 to check; an override is a sha256 string or a (size, sha256) pair."""
    value = (checksums or {}).get(f.name)
    if value is None:
        return f.size, f.sha256
    if isinstance(value, str):
        return None, value
    return int(value[0]), str(value[1])


def _local_candidates(folder: Path, f: RawFile) -> list[Path]:
    names = [f.name + ".gz", f.name] if f.gzip else [f.name]
    return [folder / n for n in names if (folder / n).is_file()]


def _obtain(spec: DatasetSpec, f: RawFile, *, source_dir, cache_dir, download, base_url, checksums,
            retries, timeout) -> tuple[bytes, str, str]:
    """Find one raw file (source_dir, system folders, cache, download); return content, source, sha256."""
    expected = _expected(f, checksums)
    url = (base_url or spec.base_url or "").rstrip("/") + "/" + f.download_name
    folders = []
    if source_dir is not None:
        folders.append((Path(source_dir), f"replace {{path}} with the file from {url}"))
    folders += [(Path(d), f"reinstall the package that put {{path}} there, or set data.source_dir.{spec.name} "
                          f"to a folder with the files from {url}") for d in spec.system_dirs]
    cache = Path(cache_dir) / spec.name if cache_dir is not None else None
    if cache is not None:
        folders.append((cache, "delete {path} and rerun to download it again"))
    for folder, fix in folders:
        for path in _local_candidates(folder, f):
            fix_here = fix.format(path=path)
            content = _read_content(path, f.gzip and path.suffix == ".gz", fix_here)
            return content, str(folder), _verify(content, f, expected, str(path), fix_here)
    get_them = (f"download {', '.join(g.download_name for g in spec.files)} from {base_url or spec.base_url} "
                f"into a folder and set data.source_dir.{spec.name} to it in the config")
    looked = ", ".join(str(p) for p, _ in folders) or "no folder (no source_dir or cache_dir set)"
    if not download:
        raise VaegapsError(f"{spec.name}: missing {f.download_name} (looked in {looked}) and downloads are "
                           f"off; {get_them}")
    if cache is None:
        raise VaegapsError(f"{spec.name}: missing {f.download_name} and no cache_dir to download it into; "
                           f"set data.cache_dir in the config, or {get_them}")
    content = _download(url, cache / f.download_name, f, expected, retries, timeout, get_them)
    return content, url, _sha256(content)


def _download(url: str, dest: Path, f: RawFile, expected, retries: int, timeout: float, get_them: str) -> bytes:
    """Download into the cache via a temp file; only a verified file is renamed into place."""
    created = not dest.parent.exists()
    try:
        with atomic_path(dest) as tmp:
            _http_get(url, tmp, retries, timeout, get_them)
            fix = f"the bad download was deleted; check your network or mirror, or {get_them}"
            content = _read_content(tmp, f.gzip, fix, what=f"download from {url}")
            _verify(content, f, expected, url, fix)
        return content
    except BaseException:
        if created:  # leave no empty cache folder behind either
            try:
                dest.parent.rmdir()
            except OSError:
                pass
        raise


def _http_get(url: str, dest: Path, retries: int, timeout: float, get_them: str) -> None:
    """GET url into dest, retrying transient failures with exponential backoff."""
    error: Exception | None = None
    for attempt in range(retries + 1):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as out:
                _copy_with_progress(resp, out, int(resp.headers.get("Content-Length") or 0), url)
            return
        except urllib.error.HTTPError as exc:
            if exc.code < 500 and exc.code not in (408, 429):  # permanent: retrying cannot help
                raise VaegapsError(f"cannot download {url} (HTTP {exc.code}); {get_them}") from exc
            error = exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            error = exc
        if attempt < retries:
            delay = _BACKOFF_S * 2**attempt
            log.warning("download of %s failed (%s); retry %d/%d in %.0f s", url, error, attempt + 1, retries, delay)
            time.sleep(delay)
    raise VaegapsError(f"cannot download {url} after {retries + 1} attempts ({error}); {get_them}")


def _copy_with_progress(resp, out, total: int, url: str) -> None:
    done, next_report = 0, 10
    log.info("downloading %s (%s bytes)", url, total or "unknown")
    while chunk := resp.read(_CHUNK):
        out.write(chunk)
        done += len(chunk)
        if total and done * 100 >= next_report * total:
            log.info("  %3d%% of %s", done * 100 // total, url)
            next_report = done * 100 // total // 10 * 10 + 10
    if total and done != total:  # a dropped connection can look like a short, clean EOF
        raise http.client.IncompleteRead(b"", total - done)


# ----------------------------------------------------------------------------- public API


def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise VaegapsError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def _digits_source() -> tuple[dict[str, str], dict[str, str]]:
    import sklearn
    from sklearn.datasets import load_digits

    d = load_digits()
    sha = _sha256(d.data.astype(np.uint8).tobytes() + d.target.astype(np.uint8).tobytes())
    return ({"load_digits": f"sklearn.datasets.load_digits (scikit-learn {sklearn.__version__})"},
            {"load_digits": sha})  # sha256 of data then target, as uint8 bytes


def _frame(parts: Parts) -> pd.DataFrame:
    """One table for all splits; pixels as an Arrow list<uint8> column built without Python loops.
    The frame holds it as object dtype (one uint8 array per image, views into Arrow's buffer), not
    as an ArrowExtensionArray: pandas records the column's dtype in the file, and an ArrowDtype
    there makes plain `pd.read_parquet(path)` fail unless given dtype_backend="pyarrow"."""
    xs = [parts[s][0] for s in SPLITS]
    n = [len(x) for x in xs]
    x = np.concatenate(xs)
    offsets = np.arange(len(x) + 1, dtype=np.int64) * x.shape[1]
    pixels = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(x.reshape(-1), pa.uint8()))
    pixels = pixels.cast(pa.list_(pa.uint8())) if offsets[-1] < 2**31 else pixels
    return pd.DataFrame({
        "split": np.repeat(np.array(SPLITS, dtype=object), n),
        "index": np.concatenate([np.arange(k, dtype=np.int64) for k in n]),
        "label": np.concatenate([parts[s][1] for s in SPLITS]).astype(np.int64),
        "pixels": pixels.to_numpy(zero_copy_only=False),
    })


def prepare_dataset(name: str, out_path: str | os.PathLike, source_dir: str | os.PathLike | None = None,
                    cache_dir: str | os.PathLike | None = None, download: bool = True,
                    base_url: str | None = None, checksums: dict | None = None, retries: int = 3,
                    timeout: float = 60, splits: dict[str, int] | None = None) -> None:
    """Find, verify, parse, binarize and split dataset `name`; write one Parquet at `out_path`.

    `base_url`, `checksums` ({file name: sha256 or (size, sha256)}, of the decompressed content
    for Fashion-MNIST) and `splits` ({split: size}) override the registry, for mirrors and tests.
    `retries` is the number of extra download attempts after the first.
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
    parts = _BUILDERS[name](raw, sizes)
    for split in SPLITS:
        x, y = parts[split]
        if x.shape != (sizes[split], spec.n_pixels) or y.shape != (sizes[split],):
            raise VaegapsError(f"{name} {split} split has {x.shape[0]} images of {x.shape[1]} pixels, expected "
                               f"{sizes[split]} of {spec.n_pixels}; replace the raw files with the original ones")
    df = _frame(parts)
    write_parquet(df, out_path, metadata={
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
    from .recovery import damaged_message

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
    """`path` exists and its Parquet footer reads: a truncated file is one line naming it and the
    command that rebuilds it, not a pyarrow traceback."""
    from .recovery import damaged_message, snakemake_command

    if not Path(path).is_file():
        raise VaegapsError(f"missing dataset file {path}; run the prepare_dataset stage first: "
                           f"{snakemake_command()} {path}")
    try:
        pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise VaegapsError(damaged_message(path, f"{type(exc).__name__}: {exc}")) from exc

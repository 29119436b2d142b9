"""The dataset registry: what each dataset is (raw files with their sizes and SHA-256, image
shape, split sizes, preprocessing text) and how its verified raw contents become binarized splits.

Every dataset ends up as {split: (pixels uint8 (n, C*H*W) of 0/1 in C,H,W order, labels int64;
-1 where the source has none)} for the splits train, valid and test. Finding and verifying the raw
files is `fetch.py`'s job, reading their formats `parsers.py`'s, writing the Parquet `data.py`'s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from .errors import VaegapsError
from .parsers import _cifar_members, read_amat, read_cifar_binary, read_idx

SPLITS = ("train", "valid", "test")
# Where `apt-get install dataset-fashion-mnist` puts the four IDX .gz files (`dpkg -L`).
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


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
    """One dataset of the registry (datasets.yaml): its raw files and what is made of them."""

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


def _load_registry(path: Path = Path(__file__).with_name("datasets.yaml")) -> dict[str, DatasetSpec]:
    """The registry's entries (datasets.yaml: data, kept out of the code) as DatasetSpecs."""
    entries = yaml.safe_load(path.read_text())
    return {name: DatasetSpec(name=name, image_shape=tuple(e["image_shape"]), splits=dict(e["splits"]),
                              preprocessing=e["preprocessing"],
                              files=tuple(RawFile(**f) for f in e.get("files", ())),
                              base_url=e.get("base_url"), system_dirs=tuple(e.get("system_dirs", ())))
            for name, e in entries.items()}


DATASETS: dict[str, DatasetSpec] = _load_registry()


# ----------------------------------------------------------------------------- builders
# Each builder turns the verified raw contents into {split: (pixels uint8 (n, P) of 0/1, labels int64)}.

Splits = dict[str, tuple[np.ndarray, np.ndarray]]


def _build_digits(raw: dict[str, bytes], splits: dict[str, int]) -> Splits:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data >= 8).astype(np.uint8)
    perm = np.random.default_rng(0).permutation(len(x))
    return _consecutive(x[perm], d.target[perm].astype(np.int64), splits, "digits")


def _build_mnist(raw: dict[str, bytes], splits: dict[str, int]) -> Splits:
    out = {}
    for split in SPLITS:
        fname = f"binarized_mnist_{split}.amat"
        x = read_amat(raw[fname], name=fname)
        out[split] = (x, np.full(len(x), -1, np.int64))  # the fixed binarization ships no labels
    return out


def _build_fashion_mnist(raw: dict[str, bytes], splits: dict[str, int]) -> Splits:
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


def _build_cifar10(raw: dict[str, bytes], splits: dict[str, int]) -> Splits:
    batches = [f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)]
    test = "cifar-10-batches-bin/test_batch.bin"
    members = _cifar_members(raw["cifar-10-binary.tar.gz"], batches + [test], "cifar-10-binary.tar.gz")
    train = [read_cifar_binary(members[b], b) for b in batches]
    y = np.concatenate([t[0] for t in train])
    x = np.concatenate([t[1] for t in train]).reshape(len(y), -1)
    x = (x >= 128).astype(np.uint8)  # per channel pixel/255 >= 0.5, exact in integers
    yt, xt = read_cifar_binary(members[test], test)
    # docs/method.md §2: validation is the FIRST block of training records, train the rest
    out = _consecutive(x, y, {"valid": splits["valid"], "train": splits["train"]}, "CIFAR-10 training batches")
    out["test"] = ((xt.reshape(len(yt), -1) >= 128).astype(np.uint8), yt)
    return out


def _consecutive(x: np.ndarray, y: np.ndarray, sizes: dict[str, int], what: str) -> Splits:
    """Cut x, y into consecutive blocks of the given sizes, in the dict's order."""
    if len(x) != sum(sizes.values()):
        raise VaegapsError(f"{what} hold {len(x)} records, expected {sum(sizes.values())}; "
                           "replace the raw files with the original ones")
    bounds = np.cumsum([0, *sizes.values()])
    return {s: (x[a:b], y[a:b]) for s, a, b in zip(sizes, bounds[:-1], bounds[1:])}


_BUILDERS: dict[str, Callable[[dict[str, bytes], dict[str, int]], Splits]] = {
    "digits": _build_digits,
    "mnist": _build_mnist,
    "fashion_mnist": _build_fashion_mnist,
    "cifar10": _build_cifar10,
}


# ----------------------------------------------------------------------------- lookup

def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise VaegapsError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def _digits_source() -> tuple[dict[str, str], dict[str, str]]:
    import sklearn
    from sklearn.datasets import load_digits

    d = load_digits()
    # hashlib directly, not fetch's helper: the registry must not import the fetching code
    sha = hashlib.sha256(d.data.astype(np.uint8).tobytes() + d.target.astype(np.uint8).tobytes()).hexdigest()
    return ({"load_digits": f"sklearn.datasets.load_digits (scikit-learn {sklearn.__version__})"},
            {"load_digits": sha})  # sha256 of data then target, as uint8 bytes

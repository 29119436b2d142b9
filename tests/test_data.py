"""Data preparation: parsers on tiny generated files, local folders, downloads from a local HTTP
server (never the real network), failure modes that must leave nothing behind, and the real
digits (and Debian's Fashion-MNIST, where installed)."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import io
import logging
import struct
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from vaegaps import datasets, fetch
from vaegaps.data import image_shape, load_split, prepare_dataset
from vaegaps.datasets import DATASETS
from vaegaps.errors import VaegapsError
from vaegaps.io import read_metadata
from vaegaps.parsers import read_amat, read_cifar_binary, read_idx

SHA = lambda b: hashlib.sha256(b).hexdigest()


# ----------------------------------------------------------------------------- generators

def idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.ascontiguousarray(arr, np.uint8)
    return bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}i", *arr.shape) + arr.tobytes()


def amat_bytes(x: np.ndarray) -> bytes:
    return "".join(" ".join(map(str, row)) + "\n" for row in x.tolist()).encode()


def cifar_batch(labels: np.ndarray, images: np.ndarray) -> bytes:
    rec = np.concatenate([labels.astype(np.uint8)[:, None], images.reshape(len(labels), -1)], axis=1)
    return rec.astype(np.uint8).tobytes()


def tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def make_fashion(folder: Path, n_train=5, n_test=2, gz=True) -> tuple[dict, dict]:
    """Tiny IDX files; pixel value = 127 or 128 alternately so the threshold is tested exactly."""
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) + 3) % 10,
    }
    arrays["train-images-idx3-ubyte"][0, 0, :4] = [127, 128, 0, 255]
    folder.mkdir(parents=True, exist_ok=True)
    sums = {}
    for name, arr in arrays.items():
        raw = idx_bytes(arr)
        sums[name] = (len(raw), SHA(raw))
        (folder / (name + ".gz" if gz else name)).write_bytes(gzip.compress(raw) if gz else raw)
    return arrays, sums


def make_mnist(folder: Path, sizes=(4, 3, 2)) -> tuple[dict, dict]:
    rng = np.random.default_rng(2)
    folder.mkdir(parents=True, exist_ok=True)
    arrays, sums = {}, {}
    for split, n in zip(("train", "valid", "test"), sizes):
        x = rng.integers(0, 2, (n, 784))
        raw = amat_bytes(x)
        name = f"binarized_mnist_{split}.amat"
        (folder / name).write_bytes(raw)
        arrays[split], sums[name] = x, (len(raw), SHA(raw))
    return arrays, sums


def make_cifar(folder: Path, per_batch=2, n_test=2) -> tuple[dict, bytes]:
    """Five training batches and a test batch of `per_batch` records each, plus a foreign member."""
    rng = np.random.default_rng(3)
    members, arrays = {}, {}
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        n = n_test if name == "test_batch" else per_batch
        y, x = rng.integers(0, 10, n), rng.integers(0, 256, (n, 3, 32, 32))
        arrays[name] = (y, x)
        members[f"cifar-10-batches-bin/{name}.bin"] = cifar_batch(y, x)
    members["cifar-10-batches-bin/readme.html"] = b"<html>ignored</html>"
    archive = tar_gz(members)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cifar-10-binary.tar.gz").write_bytes(archive)
    return arrays, archive


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------- local HTTP server

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/www on 127.0.0.1 (port 0) for the test; yields (folder, base URL)."""
    www = tmp_path / "www"
    www.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(fetch, "_BACKOFF_S", 0.0)


# ----------------------------------------------------------------------------- parsers

def test_read_idx_values_shape_and_errors():
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    out = read_idx(idx_bytes(arr))
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, arr)
    with pytest.raises(VaegapsError, match="bytes but its IDX header"):
        read_idx(idx_bytes(arr)[:-1])
    with pytest.raises(VaegapsError, match="bytes but its IDX header"):
        read_idx(idx_bytes(arr) + b"\0")
    with pytest.raises(VaegapsError, match="not an IDX file"):
        read_idx(b"\x01\x02\x08\x01" + b"\0" * 8)


def test_read_amat_values_and_errors(tmp_path):
    x = np.random.default_rng(0).integers(0, 2, (3, 784))
    path = tmp_path / "a.amat"
    path.write_bytes(amat_bytes(x))
    out = read_amat(path)
    assert out.dtype == np.uint8 and out.shape == (3, 784)
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(read_amat(amat_bytes(x) + b"\n"), x)  # trailing blank line is fine
    bad = amat_bytes(x).replace(b"1", b"2", 1)
    with pytest.raises(VaegapsError, match="tokens other than 0/1"):
        read_amat(bad)
    with pytest.raises(VaegapsError, match="tokens other than 0/1"):
        read_amat(amat_bytes(x).replace(b"0 ", b"0", 1))  # "01" is one token
    with pytest.raises(VaegapsError, match="instead of 784"):
        read_amat(amat_bytes(x)[:-3] + b"\n")


def test_read_cifar_binary_plane_order_and_errors():
    y = np.array([3, 7])
    x = np.random.default_rng(0).integers(0, 256, (2, 3, 32, 32))
    labels, images = read_cifar_binary(cifar_batch(y, x))
    np.testing.assert_array_equal(labels, y)
    np.testing.assert_array_equal(images, x)  # file order R plane, G plane, B plane = C,H,W
    raw = cifar_batch(y, x)
    assert raw[1] == x[0, 0, 0, 0] and raw[1 + 1024] == x[0, 1, 0, 0] and raw[1 + 32] == x[0, 0, 1, 0]
    with pytest.raises(VaegapsError, match="not a multiple"):
        read_cifar_binary(raw[:-1])


# ----------------------------------------------------------------------------- local folders

def test_fashion_from_source_dir(tmp_path):
    arrays, sums = make_fashion(tmp_path / "src")
    out = tmp_path / "fm.parquet"
    prepare_dataset("fashion_mnist", out, source_dir=tmp_path / "src", download=False, checksums=sums,
                    splits={"train": 3, "valid": 2, "test": 2})
    imgs = arrays["train-images-idx3-ubyte"].reshape(5, -1)
    for split, rows in [("train", slice(0, 3)), ("valid", slice(3, 5))]:
        index, x, y = load_split(out, split)
        assert x.dtype == np.float32 and x.shape == (len(index), 784)
        np.testing.assert_array_equal(index, np.arange(len(index)))
        np.testing.assert_array_equal(x, (imgs[rows] >= 128).astype(np.float32))
        np.testing.assert_array_equal(y, arrays["train-labels-idx1-ubyte"][rows])
    _, x, y = load_split(out, "test")
    np.testing.assert_array_equal(x, (arrays["t10k-images-idx3-ubyte"].reshape(2, -1) >= 128))
    np.testing.assert_array_equal(y, arrays["t10k-labels-idx1-ubyte"])
    assert load_split(out, "train")[1][0, :4].tolist() == [0, 1, 0, 1]  # 127 -> 0, 128 -> 1
    meta = read_metadata(out)
    assert meta["dataset"] == "fashion_mnist" and image_shape(out) == (1, 28, 28)
    assert meta["sha256"] == {k: v[1] for k, v in sums.items()}  # of the decompressed bytes
    assert set(meta["source"].values()) == {str(tmp_path / "src")}
    assert meta["splits"] == {"train": 3, "valid": 2, "test": 2}


def test_fashion_accepts_decompressed_files(tmp_path):
    _, sums = make_fashion(tmp_path / "src", gz=False)
    out = tmp_path / "fm.parquet"
    prepare_dataset("fashion_mnist", out, source_dir=tmp_path / "src", download=False, checksums=sums,
                    splits={"train": 3, "valid": 2, "test": 2})
    assert len(load_split(out, "valid")[0]) == 2


def test_wrong_idx_size_is_an_error(tmp_path):
    arrays, sums = make_fashion(tmp_path / "src", gz=False)
    path = tmp_path / "src" / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes() + b"\0")
    sums["t10k-labels-idx1-ubyte"] = SHA(path.read_bytes())  # right checksum, wrong layout
    with pytest.raises(VaegapsError, match="t10k-labels-idx1-ubyte has .* bytes but its IDX header"):
        prepare_dataset("fashion_mnist", tmp_path / "fm.parquet", source_dir=tmp_path / "src", download=False,
                        checksums=sums, splits={"train": 3, "valid": 2, "test": 2})
    assert not (tmp_path / "fm.parquet").exists()


def test_local_checksum_mismatch_names_the_file(tmp_path):
    _, sums = make_mnist(tmp_path / "src")
    sums["binarized_mnist_valid.amat"] = "0" * 64
    with pytest.raises(VaegapsError, match=r"checksum mismatch for binarized_mnist_valid\.amat from .*src"):
        prepare_dataset("mnist", tmp_path / "m.parquet", source_dir=tmp_path / "src", download=False,
                        checksums=sums, splits={"train": 4, "valid": 3, "test": 2})
    assert not (tmp_path / "m.parquet").exists()


def test_real_checksums_are_checked_by_default(tmp_path):
    make_mnist(tmp_path / "src")
    with pytest.raises(VaegapsError, match="expected 78400000 bytes sha256 ad693b29"):
        prepare_dataset("mnist", tmp_path / "m.parquet", source_dir=tmp_path / "src", download=False)


def test_cifar_from_source_dir_split_layout(tmp_path):
    arrays, archive = make_cifar(tmp_path / "src")
    out = tmp_path / "c.parquet"
    prepare_dataset("cifar10", out, source_dir=tmp_path / "src", download=False,
                    checksums={"cifar-10-binary.tar.gz": SHA(archive)}, splits={"train": 7, "valid": 3, "test": 2})
    y = np.concatenate([arrays[f"data_batch_{k}"][0] for k in range(1, 6)])
    x = np.concatenate([arrays[f"data_batch_{k}"][1] for k in range(1, 6)]).reshape(10, -1)
    _, xv, yv = load_split(out, "valid")
    _, xt, yt = load_split(out, "train")
    _, xs, ys = load_split(out, "test")
    np.testing.assert_array_equal(yv, y[:3])  # validation = FIRST training records
    np.testing.assert_array_equal(yt, y[3:])
    np.testing.assert_array_equal(xv, x[:3] >= 128)
    np.testing.assert_array_equal(xt, x[3:] >= 128)
    np.testing.assert_array_equal(xs, arrays["test_batch"][1].reshape(2, -1) >= 128)
    np.testing.assert_array_equal(ys, arrays["test_batch"][0])
    assert xs.shape == (2, 3072) and image_shape(out) == (3, 32, 32)


def test_cifar_rejects_link_members(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-bin/data_batch_1.bin")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(buf.getvalue())
    with pytest.raises(VaegapsError, match="suspicious member"):
        prepare_dataset("cifar10", tmp_path / "c.parquet", source_dir=tmp_path, download=False,
                        checksums={"cifar-10-binary.tar.gz": SHA(buf.getvalue())})


# ----------------------------------------------------------------------------- downloads

def test_download_mnist_then_reuse_cache(tmp_path, server, caplog):
    caplog.set_level(logging.INFO, logger="vaegaps.fetch")  # the progress report
    www, url = server
    arrays, sums = make_mnist(www)
    out, cache = tmp_path / "out" / "m.parquet", tmp_path / "cache"
    kw = dict(checksums=sums, splits={"train": 4, "valid": 3, "test": 2}, base_url=url)
    prepare_dataset("mnist", out, cache_dir=cache, **kw)
    assert f"100% of {url}binarized_mnist_test.amat" in caplog.text  # progress report
    meta = read_metadata(out)
    assert meta["source"] == {n: url + n for n in sums}
    assert meta["sha256"] == {n: v[1] for n, v in sums.items()}
    assert meta["splits"] == {"train": 4, "valid": 3, "test": 2} and meta["image_shape"] == [1, 28, 28]
    for split in ("train", "valid", "test"):
        index, x, y = load_split(out, split)
        np.testing.assert_array_equal(x, arrays[split])
        assert (y == -1).all() and index.dtype == np.int64
    assert [p.name for p in files_under(cache)] == sorted(sums)  # no temp files
    for f in files_under(www):
        f.unlink()  # the server has nothing now: the second run must use the cache
    prepare_dataset("mnist", out, cache_dir=cache, download=False, **kw)
    assert set(read_metadata(out)["source"].values()) == {str(cache / "mnist")}


def test_corrupt_download_leaves_nothing(tmp_path, server):
    www, url = server
    _, sums = make_mnist(www)
    sums["binarized_mnist_train.amat"] = (sums["binarized_mnist_train.amat"][0], "f" * 64)
    out, cache = tmp_path / "out" / "m.parquet", tmp_path / "cache"
    with pytest.raises(VaegapsError, match=rf"checksum mismatch for binarized_mnist_train\.amat from {url}"):
        prepare_dataset("mnist", out, cache_dir=cache, base_url=url, checksums=sums,
                        splits={"train": 4, "valid": 3, "test": 2})
    assert not out.exists() and not out.parent.exists()
    assert files_under(cache) == []


def test_truncated_archive_download(tmp_path, server):
    www, url = server
    _, archive = make_cifar(www)
    cut = archive[: len(archive) // 2]
    (www / "cifar-10-binary.tar.gz").write_bytes(cut)
    out, cache = tmp_path / "c.parquet", tmp_path / "cache"
    kw = dict(cache_dir=cache, base_url=url, splits={"train": 7, "valid": 3, "test": 2})
    with pytest.raises(VaegapsError, match="checksum mismatch"):  # checksum of the full archive
        prepare_dataset("cifar10", out, checksums={"cifar-10-binary.tar.gz": SHA(archive)}, **kw)
    assert files_under(cache) == [] and not out.exists()
    with pytest.raises(VaegapsError, match="not a readable tar.gz"):  # checksum matches the cut file
        prepare_dataset("cifar10", out, checksums={"cifar-10-binary.tar.gz": SHA(cut)}, **kw)
    assert not out.exists()
    assert not [p for p in files_under(tmp_path) if p.name.endswith(".tmp")]


def test_download_fashion_gz_verifies_content(tmp_path, server, monkeypatch):
    www, url = server
    _, sums = make_fashion(www)
    # hide Debian's real files, which come before the cache and would not match these checksums
    monkeypatch.setitem(DATASETS, "fashion_mnist", dataclasses.replace(DATASETS["fashion_mnist"], system_dirs=()))
    out, cache = tmp_path / "fm.parquet", tmp_path / "cache"
    prepare_dataset("fashion_mnist", out, cache_dir=cache, base_url=url, checksums=sums,
                    splits={"train": 3, "valid": 2, "test": 2})
    assert sorted(p.name for p in files_under(cache)) == sorted(n + ".gz" for n in sums)
    assert read_metadata(out)["sha256"] == {k: v[1] for k, v in sums.items()}


def test_http_404_and_unreachable_server(tmp_path, server):
    _, url = server
    with pytest.raises(VaegapsError, match=r"\(HTTP 404\); download binarized_mnist_train\.amat"):
        prepare_dataset("mnist", tmp_path / "m.parquet", cache_dir=tmp_path / "cache", base_url=url)
    with pytest.raises(VaegapsError, match="after 3 attempts"):
        prepare_dataset("mnist", tmp_path / "m.parquet", cache_dir=tmp_path / "cache", retries=2,
                        base_url="http://127.0.0.1:1/", timeout=2)
    assert files_under(tmp_path) == []


# ----------------------------------------------------------------------------- user errors

def test_unknown_dataset_lists_known_ones(tmp_path):
    with pytest.raises(VaegapsError, match="unknown dataset 'svhn'; choose one of digits, mnist"):
        prepare_dataset("svhn", tmp_path / "x.parquet")


def test_missing_files_without_download_names_folder_and_url(tmp_path):
    with pytest.raises(VaegapsError) as err:
        prepare_dataset("cifar10", tmp_path / "c.parquet", source_dir=tmp_path / "nowhere",
                        cache_dir=tmp_path / "cache", download=False)
    msg = str(err.value)
    assert "\n" not in msg
    assert str(tmp_path / "nowhere") in msg and str(tmp_path / "cache") in msg
    assert "https://www.cs.toronto.edu/~kriz/" in msg and "data.source_dir.cifar10" in msg
    with pytest.raises(VaegapsError, match="set data.cache_dir"):
        prepare_dataset("mnist", tmp_path / "m.parquet")  # nowhere to download into
    assert files_under(tmp_path) == []


def test_load_split_errors(tmp_path):
    with pytest.raises(VaegapsError, match="unknown split"):
        load_split(tmp_path / "x.parquet", "validation")
    with pytest.raises(VaegapsError, match="run the prepare_dataset stage"):
        load_split(tmp_path / "x.parquet", "train")


# ----------------------------------------------------------------------------- real data

def test_digits_real(tmp_path):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    prepare_dataset("digits", a)
    prepare_dataset("digits", b)
    sizes = {}
    for split in ("train", "valid", "test"):
        ia, xa, ya = load_split(a, split)
        ib, xb, yb = load_split(b, split)
        np.testing.assert_array_equal(xa, xb)  # deterministic
        np.testing.assert_array_equal(ya, yb)
        assert xa.shape[1] == 64 and set(np.unique(xa)) <= {0.0, 1.0}
        sizes[split] = len(ia)
    assert sizes == {"train": 1297, "valid": 250, "test": 250}
    assert image_shape(a) == (1, 8, 8)
    from sklearn.datasets import load_digits

    d = load_digits()
    perm = np.random.default_rng(0).permutation(1797)
    _, xt, yt = load_split(a, "test")
    np.testing.assert_array_equal(xt, d.data[perm[1547:]] >= 8)
    np.testing.assert_array_equal(yt, d.target[perm[1547:]])


@pytest.mark.skipif(not Path(datasets.DEBIAN_FASHION_MNIST_DIR).is_dir(),
                    reason=f"Debian package dataset-fashion-mnist not installed ({datasets.DEBIAN_FASHION_MNIST_DIR})")
def test_fashion_mnist_from_debian_package_offline(tmp_path):
    out = tmp_path / "fm.parquet"
    prepare_dataset("fashion_mnist", out, download=False)
    for split, n in {"train": 50000, "valid": 10000, "test": 10000}.items():
        index, x, y = load_split(out, split)
        assert x.shape == (n, 784) and len(y) == n and set(np.unique(x)) == {0.0, 1.0}
        assert set(np.unique(y)) == set(range(10))
    assert set(read_metadata(out)["source"].values()) == {datasets.DEBIAN_FASHION_MNIST_DIR}

"""Getting one raw dataset file: found locally (the configured source_dir, system folders such as
Debian's Fashion-MNIST package, the cache) or downloaded into the cache with retries, and checked
against its size and SHA-256 before use, wherever it came from. Failures are one-line VaegapsErrors
that say how to fix them.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from .datasets import DatasetSpec, RawFile
from .errors import VaegapsError
from .io import atomic_path

log = logging.getLogger(__name__)

_BACKOFF_S = 1.0  # first retry delay; doubles each attempt (tests set it to 0)
_READ_BYTES = 1 << 20  # one read of a download: progress is reported between reads


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
    while block := resp.read(_READ_BYTES):
        out.write(block)
        done += len(block)
        if total and done * 100 >= next_report * total:
            log.info("  %3d%% of %s", done * 100 // total, url)
            next_report = done * 100 // total // 10 * 10 + 10
    if total and done != total:  # a dropped connection can look like a short, clean EOF
        raise http.client.IncompleteRead(b"", total - done)

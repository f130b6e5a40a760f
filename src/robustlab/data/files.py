"""Finding, checking and downloading the files of a dataset.

Files are looked up, in this order, in ``data_dir``, ``$ROBUSTLAB_DATA``, ``~/.cache/robustlab``
(each as ``<root>/<name>/`` then ``<root>/``) and the dataset's system folders (Debian installs
Fashion-MNIST to /usr/share/datasets/fashion-mnist). A missing file is downloaded from its
official address into ``<first writable root>/<name>/``, checked against its SHA-256 while it
streams, and renamed into place only when it matches.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import DataError
from ..io import atomic_write
from ..progress import progress_bar
from .spec import DatasetSpec, FileSpec

CHUNK = 1 << 20
TIMEOUT_S = 60


def roots(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Writable roots in order of preference."""
    out = []
    if data_dir:
        out.append(Path(data_dir).expanduser())
    env = os.environ.get("ROBUSTLAB_DATA", "")
    if env:
        out.append(Path(env).expanduser())
    out.append(Path.home() / ".cache" / "robustlab")
    return out


def search_dirs(spec: DatasetSpec, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Every folder a file of ``spec`` may be in, in the order they are searched."""
    out: list[Path] = []
    for root in roots(data_dir):
        out += [root / spec.name, root]
    out += [Path(d) for d in spec.system_dirs]
    return list(dict.fromkeys(out))


def locate(file: FileSpec, dirs: list[Path]) -> Path | None:
    """The first copy of ``file`` in ``dirs``: the published file, its un-gzipped form, or the
    folder its archive unpacks to."""
    names = [file.filename]
    if file.filename.endswith(".gz") and not file.filename.endswith(".tar.gz"):
        names.append(file.filename[:-3])
    for d in dirs:
        for n in names:
            if (d / n).is_file():
                return d / n
        if file.extracted and (d / file.extracted).is_dir():
            return d / file.extracted
    return None


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def is_checkable(file: FileSpec, path: Path) -> bool:
    """Only the published bytes have a digest; an unpacked folder or un-gzipped copy has not."""
    return bool(file.sha256) and path.is_file() and path.name == file.filename


def check_status(file: FileSpec, path: Path | None) -> str:
    """"missing", "unchecked", "ok" or "mismatch"."""
    if path is None:
        return "missing"
    if not is_checkable(file, path):
        return "unchecked"
    return "ok" if sha256_of(path) in file.sha256 else "mismatch"


def require_match(spec: DatasetSpec, file: FileSpec, path: Path) -> None:
    if not is_checkable(file, path):
        return
    digest = sha256_of(path)
    if digest not in file.sha256:
        raise DataError(
            f"{path}: SHA-256 {digest} is not that of the official {file.filename} "
            f"({' or '.join(file.sha256)}); the file is corrupt, truncated or not the official "
            f"one. Delete it and run `robustlab data fetch {spec.name}` to download it again.")


def _writable_dir(spec: DatasetSpec, data_dir) -> Path:
    tried = []
    for root in roots(data_dir):
        target = root / spec.name
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError:
            tried.append(str(target))
            continue
        if os.access(target, os.W_OK):
            return target
        tried.append(str(target))
    raise DataError(f"{spec.name}: no writable folder to download into; tried {', '.join(tried)}."
                    " Pass --data-dir or set ROBUSTLAB_DATA to a writable folder.")


def _stream(url: str, file: FileSpec, tmp: str) -> str:
    """Copy ``url`` to ``tmp``; return the SHA-256 of what arrived."""
    h = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
        length = resp.headers.get("Content-Length") if resp.headers is not None else None
        total = int(length) if length else file.size
        with open(tmp, "wb") as out, progress_bar(f"download {file.filename}", total,
                                                  unit="B") as bar:
            while True:
                block = resp.read(CHUNK)
                if not block:
                    break
                out.write(block)
                h.update(block)
                bar.advance(len(block))
    return h.hexdigest()


def download(spec: DatasetSpec, file: FileSpec, dest_dir: Path) -> Path:
    """Download ``file`` into ``dest_dir`` from the first of its URLs that works and gives the
    right bytes. Nothing is left behind unless it matches its SHA-256."""
    dest = dest_dir / file.filename
    problems = []
    for url in file.urls:
        digest = ""

        def write(tmp: str, url: str = url) -> None:
            nonlocal digest
            digest = _stream(url, file, tmp)
            if file.sha256 and digest not in file.sha256:
                raise DataError(f"{url}: downloaded file has SHA-256 {digest}, expected "
                                f"{' or '.join(file.sha256)}; it was deleted")
            if file.size is not None and not file.sha256 and os.path.getsize(tmp) != file.size:
                raise DataError(f"{url}: downloaded {os.path.getsize(tmp)} bytes, expected "
                                f"{file.size}; it was deleted")

        try:
            return atomic_write(dest, write)
        except DataError as e:
            problems.append(str(e))
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            problems.append(f"{url}: {getattr(e, 'reason', None) or e}")
    try:
        dest_dir.rmdir()  # only if empty: a failed download leaves no empty cache folder
    except OSError:
        pass
    raise DataError(
        f"{spec.name}: could not download {file.filename}: " + "; ".join(problems)
        + f". Download it by hand from {file.urls[0]} and put it in {dest_dir} "
          "(or in a folder given with --data-dir).")


def missing_message(spec: DatasetSpec, file: FileSpec, dirs: list[Path]) -> str:
    return (f"{spec.name}: {file.filename} not found; looked in {', '.join(map(str, dirs))}. "
            f"Download it from {file.urls[0]} (or run `robustlab data fetch {spec.name}`) and "
            "put it in one of those folders, or pass --data-dir.")


def ensure_files(spec: DatasetSpec, split: str | None = None, *, data_dir=None,
                 download_missing: bool = True, check: bool = True) -> dict[FileSpec, Path]:
    """Find (or download) the files ``split`` needs, every non-optional file when ``split`` is
    None. With ``check``, a found file whose SHA-256 is wrong is an error."""
    files = [f for f in spec.files if (split in f.splits if split else not f.optional)]
    dirs = search_dirs(spec, data_dir)
    out = {}
    for f in files:
        path = locate(f, dirs)
        if path is None:
            if not download_missing or not f.urls:
                raise DataError(missing_message(spec, f, dirs))
            path = download(spec, f, _writable_dir(spec, data_dir))
        elif check:
            require_match(spec, f, path)
        out[f] = path
    return out


def verify_files(spec: DatasetSpec, data_dir=None) -> dict[str, str]:
    """Status of each file: "ok", "missing", "mismatch" or "unchecked" (an unpacked folder or an
    un-gzipped copy, which have no published digest). Optional files appear only when present."""
    dirs = search_dirs(spec, data_dir)
    out = {}
    for f in spec.files:
        path = locate(f, dirs)
        if path is None and f.optional:
            continue
        out[f.filename] = check_status(f, path)
    return out

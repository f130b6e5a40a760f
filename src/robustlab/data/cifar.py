"""CIFAR-10 / CIFAR-100 python batches, read without trusting pickle.

The official batches are pickled dicts (``b"data"``: uint8 N×3072 in channel-major order,
``b"labels"`` or ``b"fine_labels"``) written by Python 2. ``pickle.load`` on them would run
whatever a tampered file asks for, so :class:`SafeUnpickler` resolves only the few globals that
rebuild numpy arrays and refuses everything else. Batches are read from the ``.tar.gz`` straight
from memory, or from an unpacked ``cifar-10-batches-py/`` (``cifar-100-python/``) folder.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError


def _allowed() -> dict[tuple[str, str], object]:
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric
    import _codecs

    ok: dict[tuple[str, str], object] = {("numpy", "ndarray"): np.ndarray,
                                         ("numpy", "dtype"): np.dtype,
                                         # Python 3 writes bytes in protocol 2 through it
                                         ("_codecs", "encode"): _codecs.encode}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        ok[(mod, "_reconstruct")] = multiarray._reconstruct
        ok[(mod, "scalar")] = multiarray.scalar
    if hasattr(numeric, "_frombuffer"):  # numpy's protocol-5 array reduction
        for mod in ("numpy.core.numeric", "numpy._core.numeric"):
            ok[(mod, "_frombuffer")] = numeric._frombuffer
    return ok


class SafeUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; any other global is a DataError."""

    def __init__(self, file, *, source: str = "<pickle>"):
        super().__init__(file, encoding="bytes")
        self._source = source
        self._ok = _allowed()

    def find_class(self, module: str, name: str):
        obj = self._ok.get((module, name))
        if obj is None:
            raise DataError(f"{self._source}: refusing to unpickle {module}.{name}; a CIFAR "
                            "batch holds only numpy arrays, lists and bytes (file tampered "
                            "with or not a CIFAR batch)")
        return obj

    def persistent_load(self, pid):
        raise DataError(f"{self._source}: refusing a pickle with persistent ids")


def safe_loads(data: bytes, source: str = "<pickle>"):
    try:
        return SafeUnpickler(io.BytesIO(data), source=source).load()
    except DataError:
        raise
    except Exception as e:  # any malformed pickle: EOF, bad opcode, bad array state
        raise DataError(f"{source}: truncated or corrupt pickle ({type(e).__name__}: {e})"
                        ) from None


def _read_members(path: Path, folder: str, names: list[str]) -> dict[str, bytes]:
    """The named batch files, from a folder or from inside the archive at ``path``."""
    if path.is_dir():
        out = {}
        for n in names:
            p = path / n
            if not p.is_file():
                raise DataError(f"{path}: missing {n}; the folder should hold the unpacked "
                                f"{folder}/ of the official archive")
            out[n] = p.read_bytes()
        return out
    wanted = {f"{folder}/{n}": n for n in names}
    out = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                key = wanted.get(member.name)
                if key is not None and member.isfile():
                    f = tar.extractfile(member)
                    out[key] = f.read() if f is not None else b""
                    if len(out) == len(wanted):
                        break
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DataError(f"{path}: truncated or corrupt archive ({e})") from None
    missing = [n for n in names if n not in out]
    if missing:
        raise DataError(f"{path}: archive lacks {', '.join(folder + '/' + m for m in missing)}")
    return out


def _batch_arrays(obj, source: str, label_key: bytes, num_classes: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(obj, dict) or b"data" not in obj or label_key not in obj:
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise DataError(f"{source}: not a CIFAR batch (expected keys b'data' and {label_key!r}, "
                        f"found {keys})")
    data, labels = obj[b"data"], np.asarray(obj[label_key])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32:
        shape = getattr(data, "shape", None)
        raise DataError(f"{source}: b'data' should be uint8 N×3072, got {shape}")
    if labels.ndim != 1 or len(labels) != len(data):
        raise DataError(f"{source}: {len(data)} images but labels of shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{source}: labels outside 0..{num_classes - 1}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def load_cifar(path: Path, folder: str, members: list[str], label_key: bytes,
               num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(images N×3×32×32 uint8, labels N int64) from the batches ``members`` of one split."""
    raw = _read_members(path, folder, members)
    xs, ys = [], []
    for m in members:
        source = f"{path}:{m}"
        x, y = _batch_arrays(safe_loads(raw[m], source), source, label_key, num_classes)
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


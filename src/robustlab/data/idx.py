"""IDX files (MNIST, Fashion-MNIST), gzipped or raw.

The format (LeCun et al.): two zero bytes, a type code (0x08 for unsigned bytes), the number of
dimensions, one big-endian uint32 per dimension, then the payload in C order.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError

UBYTE = 0x08


def read_bytes(path: Path) -> bytes:
    raw = Path(path).read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:
        raise DataError(f"{path}: truncated or corrupt gzip data ({e})") from None


def parse_idx(data: bytes, path: Path | str = "<bytes>") -> np.ndarray:
    """The array an IDX file holds; every inconsistency is a DataError naming ``path``."""
    if len(data) < 4:
        raise DataError(f"{path}: {len(data)} bytes is too short for an IDX header")
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or ndim == 0:
        raise DataError(f"{path}: not an IDX file (magic number {data[:4].hex()})")
    if dtype != UBYTE:
        raise DataError(f"{path}: IDX type code 0x{dtype:02x}; only unsigned bytes (0x08) are "
                        "used by image datasets")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header ({len(data)} bytes, needs {header})")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims, dtype=np.int64))
    actual = len(data) - header
    if actual != expected:
        what = "truncated" if actual < expected else "has trailing bytes"
        raise DataError(f"{path}: IDX payload {what}: dimensions {tuple(dims)} need {expected} "
                        f"bytes, the file holds {actual}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(path: Path) -> np.ndarray:
    return parse_idx(read_bytes(path), path)


def load_idx_pair(images_path: Path, labels_path: Path, num_classes: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(images N×1×H×W uint8, labels N int64) from an images file and a labels file."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3:
        raise DataError(f"{images_path}: expected N×H×W images, got dimensions {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected N labels, got dimensions {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds "
                        f"{len(labels)} labels")
    if len(labels) and int(labels.max()) >= num_classes:
        raise DataError(f"{labels_path}: label {int(labels.max())} out of range for "
                        f"{num_classes} classes")
    return images[:, None], labels.astype(np.int64)

"""The data layer on small files written here: every format, checksums, corrupt files, the
download path (urlopen monkeypatched; there is no network), the val carve, augmentation, batch
order, image grids and the `robustlab data` commands."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from robustlab import data
from robustlab.data import registry
from robustlab.data.augment import Augment, random_crop, random_flip
from robustlab.data.cifar import safe_loads
from robustlab.data.idx import parse_idx
from robustlab.data.loader import batches_per_epoch, iterate_batches, mix_batches
from robustlab.errors import DataError, UserError
from robustlab.report.images import grid_png_bytes, image_grid, save_png

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """No real cache or $ROBUSTLAB_DATA may leak into a test."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ROBUSTLAB_DATA", raising=False)


# ----------------------------------------------------------------------------- file writers

def idx_bytes(a: np.ndarray) -> bytes:
    a = np.ascontiguousarray(a, dtype=np.uint8)
    return struct.pack(">HBB", 0, 0x08, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) \
        + a.tobytes()


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def coded_images(n: int, c: int, h: int, seed: int = 0) -> np.ndarray:
    """Random uint8 N×C×H×W images whose first two pixels encode their index."""
    x = np.random.default_rng(seed).integers(0, 256, (n, c, h, h), dtype=np.uint8)
    x[:, 0, 0, 0] = np.arange(n) % 256
    x[:, 0, 0, 1] = np.arange(n) // 256
    return x


def ids(images: torch.Tensor) -> set[int]:
    return set((images[:, 0, 0, 0].long() + 256 * images[:, 0, 0, 1].long()).tolist())


def mnist_files(n_train=60, n_test=20) -> dict[str, bytes]:
    rng = np.random.default_rng(1)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = coded_images(n, 1, 28, seed=n)[:, 0]
        y = np.arange(n) % 10
        rng.shuffle(y)
        out[f"{prefix}-images-idx3-ubyte.gz"] = gzip.compress(idx_bytes(x))
        out[f"{prefix}-labels-idx1-ubyte.gz"] = gzip.compress(idx_bytes(y))
    return out


def write_all(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, b in files.items():
        (folder / name).write_bytes(b)
    return folder


def trust(monkeypatch, name: str, files: dict[str, bytes]) -> None:
    """Register ``name`` with the digests of these test files instead of the official ones."""
    spec = registry._SPECS[name]
    new = tuple(dataclasses.replace(f, sha256=(sha(files[f.filename]),))
                if f.filename in files else f for f in spec.files)
    monkeypatch.setitem(registry._SPECS, name, dataclasses.replace(spec, files=new))


def cifar_batch(n: int, label_key: bytes, num_classes: int, seed: int) -> dict:
    x = coded_images(n, 3, 32, seed)
    return {b"batch_label": b"testing batch", b"data": x.reshape(n, 3072),
            label_key: [int(v) for v in np.arange(n) % num_classes],
            b"filenames": [f"img_{i}.png".encode() for i in range(n)]}


def cifar10_tar(n_per_batch: int = 6, mutate=None) -> bytes:
    members = {f"data_batch_{i}": cifar_batch(n_per_batch, b"labels", 10, i)
               for i in range(1, 6)}
    members["test_batch"] = cifar_batch(n_per_batch, b"labels", 10, 99)
    members["batches.meta"] = {b"label_names": [c.encode() for c in
                                                registry.CIFAR10.classes],
                               b"num_cases_per_batch": n_per_batch, b"num_vis": 3072}
    blobs = {k: pickle.dumps(v, protocol=2) for k, v in members.items()}
    if mutate:
        mutate(blobs)
    return tar_gz({f"cifar-10-batches-py/{k}": b for k, b in blobs.items()})


def tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, b in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(b)
            tar.addfile(info, io.BytesIO(b))
    return buf.getvalue()


# ----------------------------------------------------------------------------- registry

def test_registry_names_and_specs():
    assert data.list_datasets() == ["fashion-mnist", "mnist", "cifar10", "cifar100", "svhn",
                                    "npz"]
    for name in data.list_datasets()[:-1]:
        s = data.get_spec(name)
        assert len(s.classes) == s.num_classes
        assert len(s.mean) == len(s.std) == s.in_channels
        assert all(len(d) == 64 for f in s.files for d in f.sha256)
    assert data.get_spec("cifar100").num_classes == 100
    assert data.get_spec("cifar10").mean == (0.4914, 0.4822, 0.4465)
    with pytest.raises(UserError, match="known datasets: fashion-mnist, mnist"):
        data.get_spec("imagenet")
    a = data.get_spec("mnist")
    a.classes.append("x")
    assert len(data.get_spec("mnist").classes) == 10  # callers get copies


# ----------------------------------------------------------------------------- IDX

def test_idx_gz_loads_and_checksums_match(tmp_path, monkeypatch):
    files = mnist_files()
    write_all(tmp_path / "mnist", files)
    trust(monkeypatch, "mnist", files)
    train = data.load("mnist", "train", data_dir=tmp_path)
    test = data.load("mnist", "test", data_dir=tmp_path)
    assert train.images.shape == (60, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.labels.dtype == torch.int64 and len(test) == 20
    raw = gzip.decompress(files["train-labels-idx1-ubyte.gz"])[8:]
    assert train.labels.tolist() == list(raw)
    assert ids(train.images) == set(range(60))
    x = train.float_images()
    assert x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1
    assert torch.equal(x, train.images.float() / 255)
    assert set(data.verify("mnist", tmp_path).values()) == {"ok"}


def test_idx_raw_files_are_accepted_unchecked(tmp_path):
    files = {k[:-3]: gzip.decompress(v) for k, v in mnist_files().items()}
    write_all(tmp_path, files)  # directly in the data dir, un-gzipped
    assert len(data.load("mnist", "test", data_dir=tmp_path)) == 20
    assert set(data.verify("mnist", tmp_path).values()) == {"unchecked"}


def test_idx_truncated_and_corrupt(tmp_path, monkeypatch):
    good = idx_bytes(np.zeros((10, 28, 28), np.uint8))
    with pytest.raises(DataError, match=r"x\.idx: IDX payload truncated.*need 7840 bytes, the "
                                        r"file holds 7839"):
        parse_idx(good[:-1], "x.idx")
    with pytest.raises(DataError, match="trailing bytes"):
        parse_idx(good + b"\0", "x.idx")
    with pytest.raises(DataError, match="not an IDX file"):
        parse_idx(b"\x01\x02" + good[2:], "x.idx")
    with pytest.raises(DataError, match="type code 0x0d"):
        parse_idx(b"\0\0\x0d\x01" + good[4:], "x.idx")
    # a truncated gzip inside a dataset folder: the error names the file
    files = mnist_files()
    files["t10k-images-idx3-ubyte.gz"] = files["t10k-images-idx3-ubyte.gz"][:-100]
    write_all(tmp_path / "mnist", files)
    trust(monkeypatch, "mnist", files)  # so the checksum passes and the reader sees the damage
    with pytest.raises(DataError, match=r"mnist/t10k-images-idx3-ubyte.gz: truncated or corrupt "
                                        r"gzip"):
        data.load("mnist", "test", data_dir=tmp_path)
    # raw and truncated: an exact byte count in the message
    raw = gzip.decompress(mnist_files()["t10k-images-idx3-ubyte.gz"])[:-28]
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz").unlink()
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte").write_bytes(raw)
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: IDX payload truncated: "
                                        r"dimensions \(20, 28, 28\) need 15680 bytes"):
        data.load("mnist", "test", data_dir=tmp_path)


def test_checksum_mismatch_is_reported_and_refused(tmp_path):
    write_all(tmp_path / "mnist", mnist_files())  # not the official bytes
    status = data.verify("mnist", tmp_path)
    assert status == {f: "mismatch" for f in status} and len(status) == 4
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: SHA-256 [0-9a-f]{64} is "
                                        r"not that of the official"):
        data.load("mnist", "train", data_dir=tmp_path)


def test_missing_without_download_names_places_and_url(tmp_path):
    with pytest.raises(DataError) as e:
        data.load("mnist", "test", data_dir=tmp_path / "d", download=False)
    msg = str(e.value)
    assert str(tmp_path / "d" / "mnist") in msg and str(tmp_path / "home") in msg
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz" in msg
    assert data.verify("mnist", tmp_path)["t10k-labels-idx1-ubyte.gz"] == "missing"


# ----------------------------------------------------------------------------- download

class FakeResponse(io.BytesIO):
    def __init__(self, body: bytes):
        super().__init__(body)
        self.headers = {"Content-Length": str(len(body))}


def serve(monkeypatch, table: dict[str, object]) -> list[str]:
    """urlopen that answers from ``table`` (bytes, or an exception to raise) and logs calls."""
    calls = []

    def fake_urlopen(url, timeout=None):
        calls.append(url)
        answer = table.get(url, urllib.error.URLError("no network in tests"))
        if isinstance(answer, Exception):
            raise answer
        return FakeResponse(answer)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    return calls


def test_download_checks_sha256_and_falls_back_to_mirror(tmp_path, monkeypatch):
    files = mnist_files()
    trust(monkeypatch, "mnist", files)
    primary = "https://ossci-datasets.s3.amazonaws.com/mnist/"
    mirror = "https://yann.lecun.com/exdb/mnist/"
    table = {primary + k: v for k, v in files.items()}
    table[primary + "t10k-labels-idx1-ubyte.gz"] = urllib.error.URLError("down")
    table[mirror + "t10k-labels-idx1-ubyte.gz"] = files["t10k-labels-idx1-ubyte.gz"]
    calls = serve(monkeypatch, table)
    paths = data.fetch("mnist", tmp_path)
    assert sorted(p.name for p in paths) == sorted(files)
    assert all(p.parent == tmp_path / "mnist" for p in paths)
    assert mirror + "t10k-labels-idx1-ubyte.gz" in calls
    assert sorted(os.listdir(tmp_path / "mnist")) == sorted(files)  # no temporary files left
    assert len(data.load("mnist", "test", data_dir=tmp_path)) == 20
    calls.clear()
    data.fetch("mnist", tmp_path)
    assert calls == []  # present files are not downloaded again


def test_download_mismatch_deletes_and_raises(tmp_path, monkeypatch):
    files = mnist_files()
    trust(monkeypatch, "mnist", files)
    bad = {k: v[:-1] + bytes([v[-1] ^ 1]) for k, v in files.items()}
    spec = registry._SPECS["mnist"]
    serve(monkeypatch, {u: bad[f.filename] for f in spec.files for u in f.urls})
    with pytest.raises(DataError, match=r"downloaded file has SHA-256 .* it was deleted"):
        data.load("mnist", "train", data_dir=tmp_path)
    assert not (tmp_path / "mnist").exists()  # nothing left, not even an empty folder


def test_download_network_failure_says_where_to_put_files(tmp_path, monkeypatch):
    serve(monkeypatch, {})
    with pytest.raises(DataError) as e:
        data.fetch("cifar10", tmp_path)
    msg = str(e.value)
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in msg
    assert "no network in tests" in msg and f"put it in {tmp_path / 'cifar10'}" in msg


# ----------------------------------------------------------------------------- CIFAR

def test_cifar10_tar_and_folder(tmp_path, monkeypatch):
    blob = cifar10_tar(6)
    write_all(tmp_path / "cifar10", {"cifar-10-python.tar.gz": blob})
    trust(monkeypatch, "cifar10", {"cifar-10-python.tar.gz": blob})
    train = data.load("cifar10", "train", data_dir=tmp_path)
    test = data.load("cifar10", "test", data_dir=tmp_path)
    assert train.images.shape == (30, 3, 32, 32) and len(test) == 6
    assert data.verify("cifar10", tmp_path) == {"cifar-10-python.tar.gz": "ok"}
    # channel-major rows of 3072 become C×H×W: red plane first
    first = cifar_batch(6, b"labels", 10, 1)
    assert torch.equal(train.images[:6], torch.from_numpy(first[b"data"].reshape(6, 3, 32, 32)))
    assert train.labels[:6].tolist() == first[b"labels"]
    # the same batches unpacked into a folder
    other = tmp_path / "unpacked"
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(other, filter="data")
    again = data.load("cifar10", "train", data_dir=other)
    assert torch.equal(again.images, train.images)
    assert data.verify("cifar10", other) == {"cifar-10-python.tar.gz": "unchecked"}


def test_cifar100_fine_labels(tmp_path):
    members = {"train": cifar_batch(12, b"fine_labels", 100, 1),
               "test": cifar_batch(4, b"fine_labels", 100, 2),
               "meta": {b"fine_label_names": [c.encode() for c in registry.CIFAR100_CLASSES]}}
    folder = tmp_path / "cifar-100-python"
    write_all(folder, {k: pickle.dumps(v, protocol=4) for k, v in members.items()})
    d = data.load("cifar100", "train", data_dir=tmp_path)
    assert d.labels.tolist() == members["train"][b"fine_labels"]
    assert d.spec.num_classes == 100


class Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_foreign_globals_is_refused(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({b"data": Evil(marker), b"labels": [0]}, protocol=2)
    with pytest.raises(DataError, match=r"refusing to unpickle (posix|os|nt)\.system"):
        safe_loads(evil, "evil")
    assert not marker.exists()

    def plant(blobs):
        blobs["data_batch_3"] = evil

    blob = cifar10_tar(2, mutate=plant)
    write_all(tmp_path / "cifar10", {"cifar-10-python.tar.gz": blob})
    trust(monkeypatch, "cifar10", {"cifar-10-python.tar.gz": blob})
    with pytest.raises(DataError, match=r"cifar-10-python.tar.gz:data_batch_3: refusing"):
        data.load("cifar10", "train", data_dir=tmp_path)
    assert not marker.exists()


def test_cifar_corrupt_archive_and_batch(tmp_path, monkeypatch):
    blob = cifar10_tar(2)[:-500]
    write_all(tmp_path / "cifar10", {"cifar-10-python.tar.gz": blob})
    trust(monkeypatch, "cifar10", {"cifar-10-python.tar.gz": blob})
    with pytest.raises(DataError, match="cifar-10-python.tar.gz: truncated or corrupt archive"):
        data.load("cifar10", "test", data_dir=tmp_path)
    with pytest.raises(DataError, match="truncated or corrupt pickle"):
        safe_loads(pickle.dumps(cifar_batch(2, b"labels", 10, 0), protocol=2)[:-50], "b")

    def wrong_shape(blobs):
        batch = cifar_batch(2, b"labels", 10, 0)
        batch[b"data"] = batch[b"data"][:, :100]
        blobs["test_batch"] = pickle.dumps(batch, protocol=2)

    blob = cifar10_tar(2, mutate=wrong_shape)
    write_all(tmp_path / "cifar10", {"cifar-10-python.tar.gz": blob})
    trust(monkeypatch, "cifar10", {"cifar-10-python.tar.gz": blob})
    with pytest.raises(DataError, match=r"test_batch: b'data' should be uint8 N×3072"):
        data.load("cifar10", "test", data_dir=tmp_path)


# ----------------------------------------------------------------------------- SVHN

def svhn_mat(path: Path, n: int, seed: int) -> np.ndarray:
    from scipy.io import savemat

    x = coded_images(n, 3, 32, seed)                        # N,C,H,W
    y = (np.arange(n) % 10 + 1).reshape(n, 1).astype(np.uint8)  # 1..10, 10 is the digit 0
    savemat(path, {"X": x.transpose(2, 3, 1, 0), "y": y})  # H,W,C,N as published
    return x


def test_svhn_mat(tmp_path, monkeypatch):
    folder = tmp_path / "svhn"
    folder.mkdir()
    x = svhn_mat(folder / "train_32x32.mat", 25, 0)
    svhn_mat(folder / "test_32x32.mat", 7, 1)
    trust(monkeypatch, "svhn", {n: (folder / n).read_bytes()
                                for n in ("train_32x32.mat", "test_32x32.mat")})
    d = data.load("svhn", "train", data_dir=tmp_path)
    assert torch.equal(d.images, torch.from_numpy(x))
    assert d.labels.tolist() == [(i % 10 + 1) % 10 for i in range(25)]
    assert data.verify("svhn", tmp_path) == {"train_32x32.mat": "ok", "test_32x32.mat": "ok"}
    raw = (folder / "test_32x32.mat").read_bytes()
    (folder / "test_32x32.mat").write_bytes(raw[: len(raw) // 2])
    assert data.verify("svhn", tmp_path)["test_32x32.mat"] == "mismatch"
    trust(monkeypatch, "svhn", {"test_32x32.mat": raw[: len(raw) // 2]})
    with pytest.raises(DataError, match=r"test_32x32.mat: truncated or corrupt .mat file"):
        data.load("svhn", "test", data_dir=tmp_path)


# ----------------------------------------------------------------------------- npz

def test_npz_spec_from_file(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    lab = rng.integers(0, 7, 40)
    lab[0] = 6
    np.savez(tmp_path / "gen.npz", image=img, label=lab)
    d = data.load("npz", "train", path=tmp_path / "gen.npz")
    assert d.images.shape == (40, 3, 32, 32)
    assert torch.equal(d.images, torch.from_numpy(img).permute(0, 3, 1, 2))
    assert d.spec.num_classes == 7 and d.spec.in_channels == 3 and d.spec.image_size == 32
    mean = img.reshape(-1, 3).mean(0) / 255
    assert np.allclose(d.spec.mean, mean, atol=1e-4)
    assert np.allclose(d.spec.std, (img.reshape(-1, 3) / 255).std(0), atol=1e-4)
    sub = d.subset(torch.tensor([3, 1]))
    assert torch.equal(sub.images[0], d.images[3]) and sub.labels.tolist() == lab[[3, 1]].tolist()
    grey = tmp_path / "grey.npz"
    np.savez(grey, image=img[..., 0], label=lab)
    assert data.load("npz", "train", path=grey).spec.in_channels == 1


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "k.npz", images=np.zeros((2, 8, 8, 3), np.uint8), label=[0, 1])
    with pytest.raises(DataError, match=r"expected arrays 'image' and 'label', found"):
        data.load("npz", "train", path=tmp_path / "k.npz")
    np.savez(tmp_path / "f.npz", image=np.zeros((2, 8, 8, 3), np.float32), label=[0, 1])
    with pytest.raises(DataError, match="must be uint8"):
        data.load("npz", "train", path=tmp_path / "f.npz")
    np.savez(tmp_path / "o.npz", image=np.zeros((2, 8, 8, 3), np.uint8),
             label=np.array([{"x": 1}, 2], dtype=object))
    with pytest.raises(DataError, match="o.npz: truncated or corrupt npz"):
        data.load("npz", "train", path=tmp_path / "o.npz")
    np.savez(tmp_path / "g.npz", image=np.zeros((20, 8, 8, 3), np.uint8), label=np.arange(20))
    raw = (tmp_path / "g.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="t.npz: truncated or corrupt npz"):
        data.load("npz", "train", path=tmp_path / "t.npz")
    with pytest.raises(UserError, match="needs the path"):
        data.load("npz", "train")


# ----------------------------------------------------------------------------- val carve

def test_val_carve_is_fixed_and_disjoint(tmp_path, monkeypatch):
    tr, va = data.val_carve(100, 15, seed=3)
    tr2, va2 = data.val_carve(100, 15, seed=3)
    assert torch.equal(va, va2) and torch.equal(tr, tr2)
    assert len(va) == 15 and len(tr) == 85
    assert sorted(tr.tolist() + va.tolist()) == list(range(100))
    assert not torch.equal(data.val_carve(100, 15, seed=4)[1], va)
    with pytest.raises(UserError, match="leaves no training examples"):
        data.val_carve(10, 10)

    files = mnist_files()
    write_all(tmp_path / "mnist", files)
    trust(monkeypatch, "mnist", files)
    kw = dict(data_dir=tmp_path, val_size=12, val_seed=5)
    train, val = data.load("mnist", "train", **kw), data.load("mnist", "val", **kw)
    assert len(train) == 48 and len(val) == 12
    assert ids(train.images).isdisjoint(ids(val.images))
    assert ids(train.images) | ids(val.images) == set(range(60))
    assert ids(data.load("mnist", "val", **kw).images) == ids(val.images)
    with pytest.raises(UserError, match="give val_size > 0"):
        data.load("mnist", "val", data_dir=tmp_path)


# ----------------------------------------------------------------------------- augmentation

def test_random_crop():
    x = torch.rand(16, 3, 8, 8)
    assert random_crop(x, 0) is x
    g = torch.Generator().manual_seed(0)
    y = random_crop(x, 2, g)
    assert y.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(16):  # each output is one window of its own padded input
        assert any(torch.equal(y[i], padded[i, :, dy:dy + 8, dx:dx + 8])
                   for dy in range(5) for dx in range(5))
    same = torch.rand(1, 1, 8, 8).expand(32, 1, 8, 8)
    out = random_crop(same, 3, torch.Generator().manual_seed(1))
    assert len({tuple(o.flatten().tolist()) for o in out}) > 5  # per-example offsets
    a = random_crop(x, 2, torch.Generator().manual_seed(7))
    b = random_crop(x, 2, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_random_flip():
    x = torch.rand(64, 1, 5, 5)
    y = random_flip(x, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(y[i], x[i].flip(2)) for i in range(64)])
    kept = torch.tensor([torch.equal(y[i], x[i]) for i in range(64)])
    assert bool((flipped | kept).all()) and 10 < int(flipped.sum()) < 54
    z = random_flip(y, torch.Generator().manual_seed(0))
    assert torch.equal(z, x)  # the same coin flips twice undo each other


def test_augment_combines_and_runs_on_gpu():
    x = torch.rand(8, 3, 6, 6)
    assert Augment(0, False)(x) is x
    out = Augment(crop_padding=1, flip=True)(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and not torch.equal(out, x)
    if torch.cuda.is_available():
        xc = x.cuda()
        oc = Augment(1, True)(xc, torch.Generator().manual_seed(0))
        assert oc.device.type == "cuda" and torch.equal(oc.cpu(), out)


# ----------------------------------------------------------------------------- batches

def test_iterate_batches():
    got = list(iterate_batches(10, 4, shuffle=False))
    assert [b.tolist() for b in got] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert len(list(iterate_batches(10, 4, shuffle=False, drop_last=True))) == 2
    a = torch.cat(list(iterate_batches(50, 8, shuffle=True,
                                       generator=torch.Generator().manual_seed(1))))
    b = torch.cat(list(iterate_batches(50, 8, shuffle=True,
                                       generator=torch.Generator().manual_seed(1))))
    assert torch.equal(a, b) and sorted(a.tolist()) == list(range(50))
    assert not torch.equal(a, torch.arange(50))


def test_mix_batches_ratio_and_determinism():
    def run(seed, frac=0.3):
        return list(mix_batches(100, 37, 20, frac, torch.Generator().manual_seed(seed)))

    batches = run(0)
    assert len(batches) == batches_per_epoch(100, 37, 20, 0.3) == 8  # ceil(100 / 14)
    assert all(len(e) == 6 for _, e in batches)  # round(20 * 0.3)
    assert all(len(r) == 14 for r, _ in batches[:-1]) and len(batches[-1][0]) == 2
    real = torch.cat([r for r, _ in batches])
    assert sorted(real.tolist()) == list(range(100))
    extra = torch.cat([e for _, e in batches])
    assert len(set(extra[:37].tolist())) == 37 and int(extra.max()) < 37  # no repeats per pass
    again = run(0)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
               for a, b in zip(batches, again))
    assert not torch.equal(run(1)[0][0], batches[0][0])
    only_real = run(0, frac=0.0)
    assert len(only_real) == 5 and all(len(e) == 0 for _, e in only_real)
    only_extra = run(0, frac=1.0)
    assert len(only_extra) == 2 and all(len(r) == 0 and len(e) == 20 for r, e in only_extra)
    with pytest.raises(UserError, match="extra set is empty"):
        list(mix_batches(10, 0, 4, 0.5, torch.Generator()))


# ----------------------------------------------------------------------------- image grids

def test_image_grid_and_png(tmp_path):
    x = torch.zeros(5, 1, 4, 4)
    x[3] = 1.0
    g = image_grid(x, nrow=2, padding=1, pad_value=0.5)
    assert g.shape == (3 * 5 + 1, 2 * 5 + 1, 3)
    assert np.all(g[6:10, 6:10] == 1.0) and np.all(g[1:5, 1:5] == 0.0) and g[0, 0, 0] == 0.5
    assert np.all(g[11:15, 6:10] == 0.5)  # the empty sixth cell stays padding
    png = grid_png_bytes(torch.rand(6, 3, 8, 8), nrow=3)
    assert png.startswith(PNG_MAGIC)
    out = save_png(g, tmp_path / "g.png")
    import matplotlib.image as mpimg

    back = mpimg.imread(out)
    assert back.shape[:2] == g.shape[:2]
    assert np.allclose(back[..., :3], g, atol=1 / 255)
    labelled = grid_png_bytes(torch.rand(4, 1, 8, 8), nrow=2, labels=list("abcd"), scale=2)
    assert labelled.startswith(PNG_MAGIC)
    save_png(torch.rand(3, 3, 8, 8), tmp_path / "b.png", row_labels=["r0", "r1"], nrow=2)
    assert (tmp_path / "b.png").read_bytes().startswith(PNG_MAGIC)


# ----------------------------------------------------------------------------- CLI

def test_cli_data_check_list_fetch(tmp_path, monkeypatch, capsys):
    from robustlab.cli.main import main

    files = mnist_files()
    trust(monkeypatch, "mnist", files)
    d = str(tmp_path / "d")
    assert main(["data", "check", "mnist", "--data-dir", d, "--quiet"]) == 2
    serve(monkeypatch, {u: files[f.filename] for f in registry._SPECS["mnist"].files
                        for u in f.urls})
    assert main(["data", "fetch", "mnist", "--data-dir", d]) == 0
    capsys.readouterr()
    assert main(["data", "check", "mnist", "--data-dir", d, "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    png = tmp_path / "s.png"
    assert main(["data", "check", "mnist", "--data-dir", d, "--out", str(png)]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and "60" in out and "total" in out
    assert png.read_bytes().startswith(PNG_MAGIC)
    assert main(["data", "list", "--data-dir", d]) == 0
    assert "mnist" in capsys.readouterr().out
    # a corrupted file: check fails with code 2 and says which file
    p = Path(d) / "mnist" / "train-labels-idx1-ubyte.gz"
    p.write_bytes(p.read_bytes()[:-3])
    assert main(["data", "check", "mnist", "--data-dir", d, "--quiet"]) == 2
    assert "train-labels-idx1-ubyte.gz mismatch" in capsys.readouterr().err


# ----------------------------------------------------------------------------- real data

@pytest.mark.skipif(not (FASHION_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
                    reason="Fashion-MNIST not installed in /usr/share/datasets")
def test_real_fashion_mnist_test_split():
    d = data.load("fashion-mnist", "test", download=False)
    assert len(d) == 10000 and d.images.shape[1:] == (1, 28, 28)
    assert d.class_counts() == [1000] * 10
    status = data.verify("fashion-mnist")
    assert status["t10k-images-idx3-ubyte.gz"] == "ok"

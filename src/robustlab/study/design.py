"""A study folder from an evaluation run saved with ``--save-adv``.

Items are the test images that the model classified correctly and an attack then broke
(results.json ``broken_by`` names an attack). Each item has two versions, clean and perturbed;
participants fall into two Latin-square groups, and group g sees item i in version (i + g) mod 2,
so every participant sees each source image once and each version is seen equally often.
Attention checks are clean images the model classifies correctly and that are not items; the
order of a participant's sequence is drawn at random when they start.

Layout::

    STUDY/manifest.json   items, checks, classes, eps, attack, SHA-256 of every image
    STUDY/images/*.png    nearest-neighbour upscaled (28 -> 224 by default)
    STUDY/admin_token     the admin page's key
    STUDY/study.sqlite    participants, assignments, responses (storage.py)
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..io import atomic_write_bytes, atomic_write_json, atomic_write_text

VERSIONS = ("clean", "adv")
N_GROUPS = 2
DEFAULT_SIZE = 224  # viewing size in pixels (Fashion-MNIST's 28 x 8)


def _png(img: np.ndarray, size: int) -> bytes:
    """A CHW [0, 1] image as PNG, upscaled by nearest neighbour to about ``size`` pixels."""
    import io

    import matplotlib.image as mpimg

    arr = np.asarray(img, dtype=np.float32).transpose(1, 2, 0)
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    scale = max(1, size // arr.shape[0])
    arr = arr.repeat(scale, axis=0).repeat(scale, axis=1)
    buf = io.BytesIO()
    mpimg.imsave(buf, np.clip(arr, 0, 1), format="png")
    return buf.getvalue()


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _eval_inputs(eval_run: Path):
    """(spec, clean x, y, x_adv, results) of an evaluation run, checked."""
    import torch

    from ..experiments.evaluate import load_eval_data, resume_spec

    spec, path = resume_spec(str(eval_run), None)
    adv_path = path / "adversarial.npz"
    if not adv_path.is_file():
        raise UserError(f"{path}: no adversarial.npz; run the evaluation with --save-adv")
    results = json.loads((path / "results.json").read_text()) if \
        (path / "results.json").is_file() else None
    if not results or "broken_by" not in results:
        raise UserError(f"{path}: no finished results.json; finish the evaluation first")
    with np.load(adv_path, allow_pickle=False) as z:
        x_adv, labels = z["image"], z["label"]
    _, x, y, dspec = load_eval_data(spec)
    if len(x) != len(x_adv) or not np.array_equal(y.numpy(), labels):
        raise UserError(f"{path}: adversarial.npz does not match the evaluated data")
    return spec, path, x.numpy(), labels, x_adv, results, dspec, torch


def _model_labels(spec, x_adv: np.ndarray, torch) -> np.ndarray:
    from ..experiments.evaluate import load_eval_model

    model = load_eval_model(spec, torch.device("cpu"))
    out = []
    with torch.no_grad():
        for i in range(0, len(x_adv), 256):
            out.append(model(torch.from_numpy(x_adv[i:i + 256])).argmax(1).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def create_study(eval_run: str | Path, out: Path, n: int, n_checks: int = 4,
                 size: int = DEFAULT_SIZE, seed: int = 0) -> dict:
    """Write a study folder at ``out`` with up to ``n`` fooling items; returns the manifest."""
    if n < 1:
        raise UserError("--n must be at least 1")
    spec, path, x, y, x_adv, results, dspec, torch = _eval_inputs(Path(eval_run))
    broken = results["broken_by"]
    fooled = [i for i, b in enumerate(broken) if b not in (None, "clean")]
    if not fooled:
        raise UserError(f"{path}: no adversarial example fooled the model; nothing to study")
    rng = random.Random(seed)
    chosen = sorted(rng.sample(fooled, min(n, len(fooled))))
    robust = [i for i, b in enumerate(broken) if b is None]
    checks = sorted(rng.sample(robust, min(n_checks, len(robust))))
    pred = _model_labels(spec, x_adv[chosen], torch) if chosen else []
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)

    def save(name: str, img) -> dict:
        p = out / "images" / name
        atomic_write_bytes(p, _png(img, size))
        return {"file": f"images/{name}", "sha256": sha256(p)}

    items = []
    for k, (i, m) in enumerate(zip(chosen, pred)):
        iid = f"i{k:04d}"
        items.append({"id": iid, "source_index": i, "true_label": int(y[i]),
                      "model_label": int(m), "attack": broken[i],
                      "clean": save(f"{iid}-clean.png", x[i]),
                      "adv": save(f"{iid}-adv.png", x_adv[i])})
    check_items = [{"id": f"c{k:02d}", "source_index": i, "true_label": int(y[i]),
                    **save(f"c{k:02d}.png", x[i])} for k, i in enumerate(checks)]
    classes = list(getattr(dspec, "classes", None) or [str(c) for c in range(dspec.num_classes)])
    manifest = {
        "eval_run": str(path.resolve()), "model": spec.model, "dataset": results.get("dataset"),
        "norm": spec.norm, "eps": spec.eps[0], "attack": results.get("attack"),
        "n_eval": len(broken), "clean_accuracy": results["clean_accuracy"],
        "robust_accuracy": results["robust_accuracy"], "n_fooled": len(fooled),
        "classes": classes, "n_groups": N_GROUPS, "versions": list(VERSIONS),
        "seed": seed, "items": items, "checks": check_items,
    }
    atomic_write_json(out / "manifest.json", manifest)
    if not (out / "admin_token").exists():
        atomic_write_text(out / "admin_token", secrets.token_urlsafe(24) + "\n")
    return manifest


def load_manifest(study: str | Path) -> dict:
    p = Path(study) / "manifest.json"
    if not p.is_file():
        raise UserError(f"{study}: not a study folder (no manifest.json)")
    return json.loads(p.read_text())


def verify_images(study: str | Path, manifest: dict) -> None:
    """Every image's SHA-256 matches the manifest (a changed file would change the study)."""
    for e in [*(v for it in manifest["items"] for v in (it["clean"], it["adv"])),
              *manifest["checks"]]:
        p = Path(study) / e["file"]
        if not p.is_file() or sha256(p) != e["sha256"]:
            raise UserError(f"{p}: missing or changed since the study was created (SHA-256)")


def sequence_for(manifest: dict, group: int, rng: random.Random) -> list[tuple[str, str]]:
    """(item id, version) pairs of one participant of ``group``, shuffled, checks included."""
    seq = [(it["id"], VERSIONS[(k + group) % len(VERSIONS)])
           for k, it in enumerate(manifest["items"])]
    seq += [(c["id"], "check") for c in manifest["checks"]]
    rng.shuffle(seq)
    return seq

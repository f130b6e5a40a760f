"""`robustlab generate`: class-conditional images from a classifier (Mirza et al., ECCV 2024;
Santurkar et al., NeurIPS 2019), saved as an .npz in the data layer's format and scored with
FID, KID and IS against the test set on an independent feature network
(``analysis/feature_net.py``), never on the model that generated them.

Seeds are fitted on the training split (``generation/seeds.py``); each class gets
``n_per_class`` samples. The seeds themselves are scored too: a sampler is only worth its
steps if it beats its starting points.
"""

from __future__ import annotations

import io
import time

import numpy as np
import torch

from ..analysis.energy import joint_energy
from ..analysis.image_quality import fid_from_features, inception_score, kid_from_features
from ..errors import UserError
from ..generation import SEED_KINDS, fit_seeds, make_sampler
from ..io import atomic_write_bytes
from ..runs import Run
from .common import resolve_device


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def _scores(fnet, real_f, x: torch.Tensor, kid_subsets: int, kid_size: int, seed: int) -> dict:
    f, p = fnet.features_and_probs(x)
    kid, kid_std = kid_from_features(real_f, f, subsets=kid_subsets, subset_size=kid_size,
                                     seed=seed)
    is_mean, is_std = inception_score(p)
    return {fnet.label("FID"): fid_from_features(real_f, f), fnet.label("KID"): kid,
            fnet.label("KID") + " std": kid_std, fnet.label("IS"): is_mean,
            fnet.label("IS") + " std": is_std}


def generate_experiment(model_path: str, *, sampler: str = "sgld", seed_init: str = "pca",
                        n_per_class: int = 100, steps: int | None = None,
                        step_size: float | None = None, momentum: float | None = None,
                        noise_std: float | None = None, eps: float | None = None,
                        variance: float = 0.95, feature_net: str = "", cache_dir: str = "",
                        feature_epochs: int = 2, n_ref: int = 10000, kid_subsets: int = 100,
                        kid_subset_size: int = 1000, batch_size: int = 250, seed: int = 0,
                        runs_dir: str = "runs", device: str = "auto", weights: str = "model",
                        dataset: str = "", data_dir: str = "", data_path: str = "",
                        quiet: bool | None = None) -> Run:
    from .. import data
    from ..analysis.feature_net import default_feature_net, load_feature_net
    from .evaluate import EvalSpec, eval_dataset_of, load_eval_model

    if steps is not None and steps < 1:
        raise UserError(f"generate: --steps must be >= 1, got {steps}")
    settings = {"steps": steps, "step_size": step_size}
    if sampler == "sgld":
        if eps is not None:
            raise UserError("generate: --eps is a setting of the pgd sampler, not of sgld")
        settings.update(momentum=momentum, noise_std=noise_std)
    elif sampler == "pgd":
        if momentum is not None or noise_std is not None:
            raise UserError("generate: --momentum and --noise-std are settings of the sgld "
                            "sampler, not of pgd")
        settings["eps"] = eps
    smp = make_sampler(sampler, **settings)
    if seed_init not in SEED_KINDS:
        raise UserError(f"unknown seed initialisation {seed_init!r}; choose from "
                        f"{', '.join(SEED_KINDS)}")
    if not 0 < variance <= 1:
        raise UserError(f"generate: --variance must be in (0, 1], got {variance}")
    for name, v in (("n_per_class", n_per_class), ("n_ref", n_ref), ("batch_size", batch_size),
                    ("kid_subsets", kid_subsets), ("kid_subset_size", kid_subset_size),
                    ("feature_epochs", feature_epochs)):
        if v < 1:
            raise UserError(f"generate: {name} must be >= 1, got {v}")
    dev = resolve_device(device)
    spec = EvalSpec(model=model_path, weights=weights, dataset=dataset, data_dir=data_dir,
                    data_path=data_path, split="train")
    name, ddir, train_path = eval_dataset_of(spec)
    _, _, test_path = eval_dataset_of(EvalSpec(model=model_path, dataset=dataset,
                                           data_dir=data_dir, data_path=data_path,
                                           split="test"))
    train = data.load(name, "train", data_dir=ddir or None, path=train_path or None)
    test = data.load(name, "test", data_dir=ddir or None, path=test_path or None)
    shape = tuple(train.images.shape[1:])
    model = load_eval_model(spec, dev)
    cfg = getattr(model, "config", {})
    want = (cfg.get("in_channels"), cfg.get("image_size"), cfg.get("image_size"))
    if None not in want and tuple(want) != shape:
        raise UserError(f"the model takes images of shape {want} but {name} has {shape}")
    if feature_net:
        fnet = load_feature_net(feature_net, tuple(test.images.shape[1:]), device=dev)
    else:
        fnet = default_feature_net(name, data_dir=ddir, data_path=train_path,
                                   cache_dir=cache_dir or None, epochs=feature_epochs,
                                   device=dev, quiet=quiet)
    if tuple(fnet.input_shape) != shape:
        raise UserError(f"the model's images have shape {shape} but the feature network "
                        f"{fnet.name} takes {tuple(fnet.input_shape)}")
    num_classes = train.spec.num_classes
    seeds = fit_seeds(train.float_images(), train.labels, seed_init, num_classes,
                      variance=variance)
    del train
    run = Run.create(runs_dir, "generate", "generate", dataset=name, arch=cfg.get("name"))
    t0 = time.time()
    xs, x0s, ys, per_class = [], [], [], []
    for c in range(num_classes):
        g = torch.Generator().manual_seed(seed * 1_000_003 + c)
        x0 = seeds.sample(c, n_per_class, generator=g)
        out = []
        for lo in range(0, n_per_class, batch_size):
            xb = x0[lo:lo + batch_size].to(dev)
            yb = torch.full((len(xb),), c, dtype=torch.long, device=dev)
            out.append(smp(model, xb, yb, generator=g).cpu())
        x = torch.cat(out)
        x8 = _to_uint8(x)
        with torch.no_grad():
            y = torch.full((n_per_class,), c, dtype=torch.long)
            l0 = torch.cat([model(x0[i:i + batch_size].to(dev)).cpu()
                            for i in range(0, n_per_class, batch_size)])
            l1 = torch.cat([model((x8[i:i + batch_size].float() / 255).to(dev)).cpu()
                            for i in range(0, n_per_class, batch_size)])
        per_class.append({"class": c, "name": _class_name(test.spec, c),
                          "joint_energy_seed": float(joint_energy(l0, y).mean()),
                          "joint_energy_sample": float(joint_energy(l1, y).mean()),
                          "seed_hit_rate": float((l0.argmax(1) == c).float().mean()),
                          "sample_hit_rate": float((l1.argmax(1) == c).float().mean()),
                          "seed_components": seeds.components[c]})
        xs.append(x8)
        x0s.append(_to_uint8(x0))
        ys.append(y)
        if not quiet:
            print(f"generate: class {c}: E(x,y) {per_class[-1]['joint_energy_seed']:.3f} -> "
                  f"{per_class[-1]['joint_energy_sample']:.3f}", flush=True)
    samples, seeds8, labels = torch.cat(xs), torch.cat(x0s), torch.cat(ys)
    sample_seconds = time.time() - t0
    buf = io.BytesIO()
    np.savez(buf, image=samples.permute(0, 2, 3, 1).numpy(), label=labels.numpy())
    atomic_write_bytes(run.file("samples.npz"), buf.getvalue())
    real = test.images[:n_ref].float() / 255
    real_f, real_p = fnet.features_and_probs(real)
    metrics = _scores(fnet, real_f, samples.float() / 255, kid_subsets, kid_subset_size, seed)
    seed_metrics = _scores(fnet, real_f, seeds8.float() / 255, kid_subsets, kid_subset_size,
                           seed)
    test_is = inception_score(real_p)
    wall = time.time() - t0
    results = {
        "model": model_path, "dataset": name, "sampler": sampler,
        "sampler_settings": smp.settings(samples[:1].float()) if sampler == "pgd"
        else smp.settings(),
        "seed_init": seed_init, "variance": variance if seed_init == "pca" else None,
        "n_per_class": n_per_class, "n_samples": int(len(samples)), "n_reference": len(real),
        "reference": f"{name} test", "feature_net": {"name": fnet.name, "sha256": fnet.sha256,
                                                      "path": fnet.path},
        "metrics": metrics, "seed_metrics": seed_metrics,
        "reference_IS": {fnet.label("IS"): test_is[0], fnet.label("IS") + " std": test_is[1]},
        "kid": {"subsets": kid_subsets, "subset_size": kid_subset_size,
                "kernel": "(a·b/D + 1)^3"},
        "per_class": per_class, "samples_file": "samples.npz", "seed": seed,
        "sample_seconds": sample_seconds, "wall_seconds": wall,
    }
    run.write_results(results)
    run.add_result(model=model_path, dataset=name, split="test", n_examples=len(samples),
                   attack=f"generate-{sampler}", **{k.replace(" ", "_"): v
                                                   for k, v in metrics.items()})
    run.update_index(status="done", wall_seconds=wall, summary=metrics)
    from ..report.generate import generate_report

    run.write_report(generate_report(run.run_id, results, samples, seeds8, labels,
                                     num_classes))
    return run


def _class_name(spec, c: int) -> str:
    classes = getattr(spec, "classes", None)
    return classes[c] if classes and c < len(classes) else str(c)

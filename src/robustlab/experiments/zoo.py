"""`robustlab zoo`: benchmark a zoo of models as Su et al. ("Is robustness the cost of
accuracy? A comprehensive study on the robustness of 18 deep image classification models",
ECCV 2018) do.

For every model: clean error, minimal adversarial distortion (C&W ℓ2, EAD ℓ1, I-FGSM and FGSM
ℓ∞ by ε search) on the correctly classified images, attack success rates, CLEVER ℓ2 and ℓ∞;
over the zoo: transferability over every ordered pair of models, the accuracy-robustness Pareto
frontier, the fit of each distortion against ln(clean error), and the architecture families.

This module orchestrates; the jobs are elsewhere: the zoo file (`zoo_spec.py`, which documents
its format), images and models (`zoo_load.py`), the measurements and zoo analyses
(`zoo_measure.py`, on `analysis/zoo.py`, `clever.py`, `transfer.py`) and the report
(`report/zoo.py`). Their public names are importable from here as before the split.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from ..analysis.transfer import transfer_matrix
from ..analysis.zoo import CLEVERS, DISTORTIONS
from ..report.zoo import fit_plot, heatmap, pareto_plot, robustness_metrics_from, zoo_report
from ..runs import Run
from .common import check_fits, resolve_device
from .zoo_load import family_for, load_entry, zoo_data
from .zoo_measure import (
    analyse,
    measure_model,
    minimal_distortion,
    robustness_metrics,
    transfer_attack,
)
from .zoo_spec import (
    METRICS,
    TRANSFER_ATTACKS,
    CleverSettings,
    CWSettings,
    EADSettings,
    EpsSearchSettings,
    ModelEntry,
    TransferSettings,
    ZooSection,
    ZooSpec,
    load_zoo,
    zoo_toml_text,
)

__all__ = [
    "CLEVERS", "DISTORTIONS", "METRICS", "TRANSFER_ATTACKS", "CWSettings", "CleverSettings",
    "EADSettings", "EpsSearchSettings", "ModelEntry", "TransferSettings", "ZooSection", "ZooSpec",
    "analyse", "family_for", "fit_plot", "heatmap", "load_entry", "load_zoo", "measure_model",
    "minimal_distortion", "pareto_plot", "robustness_metrics", "robustness_metrics_from",
    "zoo_experiment", "zoo_report",
]


def zoo_experiment(zoo_toml_path: str | Path, *, runs_dir: str | None = None,
                   quiet: bool | None = None, overrides: list[str] | None = None,
                   device: str | None = None) -> Run:
    """Benchmark every model of the zoo file; returns the run folder holding results.json,
    report.html and one index row per (model, metric)."""
    spec = load_zoo(zoo_toml_path, overrides)
    zoo = spec.zoo
    if zoo.threads:
        torch.set_num_threads(zoo.threads)
    dev = resolve_device(device or zoo.device)
    dataset, x, y, dspec = zoo_data(zoo, spec.models)
    x, y = x.to(dev), y.to(dev)
    # Every model is loaded before any work, so that a bad one fails first.
    loaded = {e.name: load_entry(e, dspec, dev, spec.published.get(e.name)) for e in spec.models}
    for e in spec.models:  # a model that cannot take these images fails before a run folder
        check_fits(loaded[e.name], tuple(x.shape[1:]), dspec.num_classes,
                   f"zoo model {e.name}: dataset {dataset}")
    run = Run.create(runs_dir or zoo.runs_dir, zoo.name, "zoo", dataset=dataset)
    run.write_config(zoo_toml_text(spec))
    with run.failing_marks_index():
        t0 = time.time()
        rows = []
        for e in spec.models:
            model = loaded[e.name]
            r = measure_model(model, x, y, zoo, quiet, e.name)
            cfg = getattr(model, "config", {})
            rows.append({"name": e.name, "family": family_for(e, model),
                         "arch": e.arch or cfg.get("name", ""),
                         "source": e.run or e.checkpoint or e.weights,
                         "params": int(sum(p.numel() for p in model.parameters())), **r})
            if e.name in spec.published:  # RobustBench's numbers, beside robustlab's
                rows[-1]["published"] = spec.published[e.name]
            run.log({"model": e.name, "clean_accuracy": r["clean_accuracy"]})
        results: dict = {"dataset": dataset, "split": zoo.split, "n_examples": int(len(y)),
                         "metrics": list(zoo.metrics), "settings": dataclasses.asdict(zoo),
                         "models": rows}
        xt, yt = x[:zoo.transfer.n], y[:zoo.transfer.n]
        if "transfer" in zoo.metrics:
            torch.manual_seed(zoo.seed)
            results["transfer"] = transfer_matrix(loaded, xt, yt, transfer_attack(zoo, False),
                                                  batch_size=zoo.batch_size)
            results["transfer"]["attack"] = zoo.transfer.attack
        if "transfer-targeted" in zoo.metrics:
            torch.manual_seed(zoo.seed)
            results["transfer_targeted"] = transfer_matrix(
                loaded, xt, yt, transfer_attack(zoo, True), targeted=True,
                target_mode="least-likely", batch_size=zoo.batch_size)
            results["transfer_targeted"]["attack"] = "cw-l2-targeted"
        results.update(analyse(rows, zoo))
        results["wall_seconds"] = time.time() - t0
        run.write_results(results)
        _index(run, results, zoo)
        run.update_index(status="done", wall_seconds=results["wall_seconds"],
                         summary={"models": len(rows), "dataset": dataset})
        run.write_report(zoo_report(run.run_id, results))
    return run


def _index(run: Run, results: dict, zoo: ZooSection) -> None:
    common = dict(dataset=results["dataset"], split=results["split"])
    for r in results["models"]:
        base = dict(common, model=r["name"], clean_accuracy=r["clean_accuracy"],
                    family=r["family"], arch=r["arch"])
        run.add_result(**base, n_examples=r["n_examples"], attack="clean",
                       clean_error=r["clean_error"], **_published_extra(r))
        for key, norm, _ in DISTORTIONS:
            if key in r:
                s = r[key]
                run.add_result(**base, n_examples=s["n"], norm=norm, attack=key,
                               robust_accuracy=None, mean_distortion=s["mean"],
                               median_distortion=s["median"], success_rate=s["success_rate"])
        for key, norm, _ in CLEVERS:
            if key in r:
                run.add_result(**base, n_examples=r[key]["n"], norm=norm, attack=key,
                               clever=r[key]["mean"], radius=r[key]["radius"])
    for key in ("transfer", "transfer_targeted"):
        t = results.get(key)
        if not t:
            continue
        for i, src in enumerate(t["names"]):
            for j, dst in enumerate(t["names"]):
                extra = {"source": src, "target": dst, "success_rate": t["untargeted"][i][j],
                         "transfer_attack": t["attack"]}
                if t.get("targeted"):
                    extra.update(top1=t["top1"][i][j], top5=t["top5"][i][j])
                run.add_result(**common, model=dst, n_examples=t["counts"][i][j],
                               attack=key.replace("_", "-"), **extra)


def _published_extra(row: dict) -> dict:
    """RobustBench's published accuracies (percent) for the index row of the clean error."""
    pub = row.get("published") or {}
    return {f"published_{k}": pub[k] for k in ("clean_acc", "autoattack_acc")
            if pub.get(k) not in (None, "")}

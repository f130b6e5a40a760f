"""`robustlab energy`: the energy landscape of one or more models (Mirza et al., ECCV 2024).

Per model, on the first ``n`` examples of a split: E(x) and E(x, y) of the natural inputs and of
the adversarial inputs of each attack family (untargeted PGD and APGD-CE; targeted APGD-T,
FAB-T and C&W-ℓ2; black-box Square), the share of adversarial inputs with lower E(x) than their
natural one, TRADES' KL decomposed into energies on the KL-maximising adversary, and for a
training run the three phases from its ``metrics.jsonl``. Writes results.json, energies.npz
(per-example energies, for other plots) and report.html in a new run folder.

Attack settings are lighter than AutoAttack's so that a CPU run finishes: ``steps`` for every
iterative attack, ``targets`` target classes for APGD-T and FAB-T (AutoAttack: 9), C&W-ℓ2
targeted at the least likely class with max(100, steps) Adam steps at lr 0.01 and 5 binary
search steps, Square with ``queries`` queries. C&W is a minimal-distortion attack: its
adversarial examples are not bounded by ε.

PGD, APGD-CE and APGD-T run their whole budget on every example (``early_stop=False``) and
return their highest-loss point, as the loss-maximising attacks of the paper do; with early
exit they would stop at the first misclassified iterate, next to the decision boundary, where
the logits are least confident and E(x) is *higher* than the natural energy (on the objective
table's standard model, early exit gave lower E(x) for 1.7% of PGD's points). FAB-T and C&W
look for the boundary by design, and Square stops querying an example once it is broken (as
in the original); their rows say where minimal or first-found adversarial examples lie.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import torch

from ..analysis.energy import energy, joint_energy
from ..analysis.energy_landscape import (
    attack_energy_summary,
    detect_phases,
    trades_kl_decomposition,
)
from ..errors import UserError
from ..io import atomic_write_bytes
from ..runs import Run
from ..threat import LpThreat
from .common import resolve_device

FAMILIES = {"pgd": "untargeted", "apgd-ce": "untargeted", "apgd-t": "targeted",
            "fab-t": "targeted", "cw-l2": "targeted", "square": "black-box"}
DEFAULT_ATTACKS = tuple(FAMILIES)


# Run their whole budget and keep their highest-loss point (module docstring).
LOSS_MAXIMISING = ("pgd", "apgd-ce", "apgd-dlr", "apgd-t")


def attack_settings(name: str, steps: int, targets: int, queries: int) -> dict:
    settings = _budget(name, steps, targets, queries)
    if name in LOSS_MAXIMISING:
        settings["early_stop"] = False
    return settings


def _budget(name: str, steps: int, targets: int, queries: int) -> dict:
    if name in ("pgd", "apgd-ce", "apgd-dlr", "fab", "trades-kl"):
        return {"steps": steps}
    if name in ("apgd-t", "fab-t"):
        return {"steps": steps, "n_target_classes": targets}
    if name == "cw-l2":
        return {"steps": max(100, steps), "lr": 0.01, "binary_search_steps": 5,
                "targeted": True}
    if name == "square":
        return {"n_queries": queries}
    return {}


@torch.no_grad()
def _logits(model, x: torch.Tensor, batch: int) -> torch.Tensor:
    return torch.cat([model(x[i:i + batch]).float().cpu() for i in range(0, len(x), batch)])


def _attack_all(model, attack, x, y, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ok = [], []
    for b, lo in enumerate(range(0, len(x), batch)):
        torch.manual_seed(seed * 1_000_003 + b)
        r = attack(model, x[lo:lo + batch], y[lo:lo + batch])
        xs.append(r.x_adv)
        ok.append(r.success.cpu())
    return torch.cat(xs), torch.cat(ok)


def _label_of(path: str) -> tuple[str, str | None]:
    """(short label, objective) of a model path: a run folder's name and its objective."""
    p = Path(path)
    cfg = p / "config.toml"
    objective = None
    if p.is_dir() and cfg.is_file():
        from ..config import load_config

        try:
            objective = load_config(cfg, check_names=False).train.objective
        except UserError:
            objective = None
    return (p.name if p.is_dir() else p.stem), objective


def energy_experiment(model_paths: list[str], *, dataset: str = "", split: str = "test",
                      n: int = 1000, norm: str = "linf", eps: list[float] | None = None,
                      attacks: list[str] | None = None, steps: int = 20, targets: int = 3,
                      queries: int = 1000, batch_size: int = 0, seed: int = 0,
                      runs_dir: str = "runs", device: str = "auto", weights: str = "model",
                      data_dir: str = "", data_path: str = "",
                      quiet: bool | None = None) -> Run:
    from ..attacks.registry import make_attack
    from ..evaluation.evaluate import default_batch_size
    from .evaluate import EvalSpec, load_eval_data, load_eval_model

    if not model_paths:
        raise UserError("energy: give at least one run folder or checkpoint")
    eps = list(eps or [0.1])
    attacks = list(attacks or DEFAULT_ATTACKS)
    if n < 1:
        raise UserError(f"energy: n must be >= 1, got {n}")
    if steps < 1 or targets < 1 or queries < 1:
        raise UserError(f"energy: steps, targets and queries must be >= 1, got {steps}, "
                        f"{targets} and {queries}")
    threats = [LpThreat(norm, e) for e in eps]   # validates every ε first
    for a in attacks:                             # and every attack name
        make_attack(a, threats[0], **attack_settings(a, steps, targets, queries))
    from ..models.checkpoint import weights_file
    from .evaluate import eval_dataset_of

    for path in model_paths:  # every model and its dataset exist before a run folder is made
        weights_file(path, weights)
        eval_dataset_of(EvalSpec(model=path, dataset=dataset, split=split))
    dev = resolve_device(device)
    batch = batch_size or default_batch_size(dev)
    run = Run.create(runs_dir, "energy", "energy")
    t0 = time.time()
    models_out, arrays = [], {}
    for mi, path in enumerate(model_paths):
        spec = EvalSpec(model=path, weights=weights, dataset=dataset, data_dir=data_dir,
                        data_path=data_path, split=split, n=n)
        model = load_eval_model(spec, dev)
        dname, x, y, _ = load_eval_data(spec)
        x, y = x.to(dev), y.to(dev)
        label, objective = _label_of(path)
        key = f"m{mi}"
        ln = _logits(model, x, batch)
        yc = y.cpu()
        arrays[f"{key}/label"] = yc.numpy()
        arrays[f"{key}/natural/energy"] = energy(ln).numpy()
        arrays[f"{key}/natural/joint_energy"] = joint_energy(ln, yc).numpy()
        rows = []
        for ti, threat in enumerate(threats):
            for ai, a in enumerate(attacks):
                if not quiet:
                    print(f"energy: {label}: {a} at eps {threat.eps:g} ...", flush=True)
                atk = make_attack(a, threat, **attack_settings(a, steps, targets, queries))
                ta = time.time()
                x_adv, ok = _attack_all(model, atk, x, y, batch, seed + 97 * ti + 7919 * ai)
                la = _logits(model, x_adv, batch)
                row = {"attack": a, "family": FAMILIES.get(a, "other"), "eps": threat.eps,
                       "norm": threat.norm, "seconds": time.time() - ta,
                       "bounded": a != "cw-l2",
                       **attack_energy_summary(ln, la, yc, ok)}
                rows.append(row)
                ak = f"{key}/{a}@{threat.eps:g}"
                arrays[f"{ak}/energy"] = energy(la).numpy()
                arrays[f"{ak}/joint_energy"] = joint_energy(la, yc).numpy()
                run.add_result(model=path, dataset=dname, split=split, n_examples=len(y),
                               norm=threat.norm if a != "cw-l2" else "l2",
                               eps=threat.eps if a != "cw-l2" else None, attack=a,
                               clean_accuracy=float((ln.argmax(1) == yc).float().mean()),
                               robust_accuracy=row["robust_accuracy"],
                               share_lower_energy=row["share_lower_energy"],
                               energy_adv_mean=row["energy_adv"]["mean"],
                               energy_nat_mean=row["energy_nat"]["mean"])
        trades_atk = make_attack("trades-kl", threats[0], steps=steps)
        xt, _ = _attack_all(model, trades_atk, x, y, batch, seed + 31337)
        dec = trades_kl_decomposition(ln, _logits(model, xt, batch))
        metrics_file = Path(path) / "metrics.jsonl"
        phases = detect_phases(Run.open(path, writer=False).metrics()) \
            if metrics_file.is_file() else {"available": False,
                                            "reason": "not a training run folder"}
        models_out.append({
            "model": path, "label": label, "objective": objective, "key": key,
            "dataset": dname, "split": split, "n_examples": int(len(y)),
            "clean_accuracy": float((ln.argmax(1) == yc).float().mean()),
            "natural": {"energy": attack_energy_summary(ln, ln, yc)["energy_nat"],
                        "joint_energy": attack_energy_summary(ln, ln, yc)["joint_energy_nat"]},
            "attacks": rows,
            "trades_kl": {k: v for k, v in dec.items() if not torch.is_tensor(v)}
            | {"eps": threats[0].eps, "steps": steps, "attack": "trades-kl"},
            "phases": phases,
        })
    wall = time.time() - t0
    results = {"models": models_out, "norm": norm, "eps": eps, "attacks": attacks,
               "settings": {a: attack_settings(a, steps, targets, queries) for a in attacks},
               "families": {a: FAMILIES.get(a, "other") for a in attacks},
               "energies_file": "energies.npz", "seed": seed, "wall_seconds": wall}
    run.write_results(results)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(run.file("energies.npz"), buf.getvalue())
    run.update_index(status="done", wall_seconds=wall, dataset=models_out[0]["dataset"],
                     summary={f"{m['label']}/{r['attack']}@{r['eps']:g}": r["share_lower_energy"]
                              for m in models_out for r in m["attacks"]})
    from ..report.energy import energy_report

    run.write_report(energy_report(run.run_id, results, arrays))
    return run

"""`robustlab spatial`: accuracy of a checkpoint under rotations and translations, with and
without majority-vote inference, in the layout of Engstrom, Tran, Tsipras, Schmidt and Madry
("Exploring the Landscape of Spatial Robustness", ICML 2019, Tables 1 and 3): natural, random
(k=1), worst-of-10 and exhaustive grid accuracy, for the bare model and for the vote.

Each attack runs on its own over all examples (the paper's numbers, not a cumulative ladder); an
example the target misclassifies naturally counts as broken by every attack, so no row exceeds
natural accuracy. Random and worst-of-10 draw their transforms from the same per-batch seed, so
worst-of-10's ten candidates start with random's one (on CPU; torch's generator then yields the
same first numbers) and worst-of-10 is never weaker than random on an example. The vote is
attacked as a whole: the attacks search for a transform of the input that makes the *vote*
wrong.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..runs import Run
from ..spatial import GridAttack, GridLinf, MajorityVote, RandomSpatial, SpatialThreat
from ..spatial.transform import affine_many
from .common import check_fits, resolve_device

ATTACK_ORDER = ("natural", "random", "worst-of-10", "grid")


@dataclass
class AttackRow:
    """One (target, attack) cell of the table, with the per-example outcome."""

    target: str                      # "model" or "vote"
    attack: str
    accuracy: float
    seconds: float
    correct: torch.Tensor            # bool per example
    broken: list = field(default_factory=list)  # {"index", "angle", "tx", "ty"} per broken one


def _seed_for(seed: int, attack: str, batch: int) -> int:
    # Random and worst-of-10 share their seeds on purpose (see the module docstring).
    salt = {"random": 1, "worst-of-10": 1, "grid": 2, "grid+linf": 3}[attack]
    return (seed * 1_000_003 + salt * 10_007 + batch) % (2**63 - 1)


@torch.no_grad()
def _predict(target: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([target(x[i:i + batch_size]).argmax(1).cpu()
                      for i in range(0, len(x), batch_size)])


def _make_attack(name: str, threat: SpatialThreat, grid: tuple[int, int]):
    if name == "random":
        return RandomSpatial(threat, k=1)
    if name == "worst-of-10":
        return RandomSpatial(threat, k=10)
    if name == "grid":
        return GridAttack(threat, n_trans=grid[0], n_rot=grid[1])
    return GridLinf(threat)


def run_attack(target: nn.Module, name: str, x: torch.Tensor, y: torch.Tensor,
               natural_ok: torch.Tensor, threat: SpatialThreat, *, seed: int,
               batch_size: int, target_name: str,
               grid: tuple[int, int] = (5, 31)) -> AttackRow:
    """Attack every naturally correct example with ``name``; the rest count as broken."""
    t0 = time.time()
    correct = natural_ok.clone()
    params = torch.zeros(len(x), 3)
    attack = _make_attack(name, threat, grid)
    rows = natural_ok.nonzero().flatten()
    for b, lo in enumerate(range(0, len(rows), batch_size)):
        r = rows[lo:lo + batch_size]
        torch.manual_seed(_seed_for(seed, name, b))
        res = attack(target, x[r], y[r])
        correct[r] = ~res.success.cpu()
        params[r] = res.extras["transform"].float().cpu()
    broken = [{"index": int(i), "angle": float(params[i, 0]), "tx": float(params[i, 1]),
               "ty": float(params[i, 2])} for i in (natural_ok & ~correct).nonzero().flatten()]
    return AttackRow(target_name, name, float(correct.float().mean()) if len(x) else 0.0,
                     time.time() - t0, correct, broken)


@torch.no_grad()
def grid_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: SpatialThreat,
                  n_trans: int = 5, n_rot: int = 31, forward_size: int = 2048) -> tuple:
    """Accuracy at every point of the paper's grid over all of ``x``: returns the grid (G, 3)
    and the accuracy per point (G,)."""
    grid = threat.grid(n_trans, n_rot, device=x.device, dtype=x.dtype)
    pad = threat.canvas_pad(x)
    hits = torch.zeros(len(grid))
    per = max(1, forward_size // max(1, len(x)))
    for lo in range(0, len(x), forward_size):
        xb, yb = x[lo:lo + forward_size], y[lo:lo + forward_size]
        for t in range(0, len(grid), per):
            chunk = grid[t:t + per]
            xs = affine_many(xb, chunk, threat.border, pad).clamp_(0.0, 1.0)
            ok = (model(xs).argmax(1) == yb.repeat(len(chunk))).view(len(chunk), -1)
            hits[t:t + len(chunk)] += ok.sum(1).float().cpu()
    return grid.cpu(), hits / max(1, len(x))


def spatial_experiment(model_path: str, dataset: str = "", split: str = "test", n: int = 1000,
                       threat: SpatialThreat | None = None, *, vote_k: int = 10,
                       runs_dir: str = "runs", seed: int = 0, quiet: bool | None = None,
                       data_dir: str = "", data_path: str = "", batch_size: int = 500,
                       device: str = "auto", weights: str = "model",
                       grid: tuple[int, int] = (5, 31), arch: str = "",
                       model_factory: str = "", num_classes: int = 0,
                       arch_norm: str = "bn") -> Run:
    """Evaluate ``model_path`` (a run folder or .safetensors file) under ``threat`` (default:
    the paper's ±30°, ±3 px) and write a run folder with results.json and report.html.
    ``grid`` is (translations per axis, rotations) of the grid attack and the heatmap; the
    default 5 × 5 × 31 = 775 points is the paper's."""
    from ..models.layout import adopt_channels_last
    from .evaluate import EvalSpec, load_eval_data, load_eval_model

    threat = threat or SpatialThreat()
    if n < 0:
        raise UserError(f"spatial: n must be >= 0, got {n}")
    if vote_k < 1:
        raise UserError(f"spatial: vote_k must be >= 1, got {vote_k}")
    dev = resolve_device(device)
    spec = EvalSpec(model=model_path, weights=weights, dataset=dataset, data_dir=data_dir,
                    data_path=data_path, split=split, n=n, arch=arch,
                    model_factory=model_factory, num_classes=num_classes,
                    arch_norm=arch_norm)
    # 775 forward passes per image: the faster convolution layout pays off.
    model = adopt_channels_last(load_eval_model(spec, dev), dev)
    name, x, y, dspec = load_eval_data(spec, model)
    check_fits(model, tuple(x.shape[1:]), dspec.num_classes, f"dataset {name}")
    threat.validate_images(x)
    x, y = x.to(dev), y.to(dev)
    vote = MajorityVote(model, threat, k=vote_k, seed=seed)
    vote_label = f"majority-vote(k={vote_k}) wrapper"
    run = Run.create(runs_dir, "spatial", "spatial", dataset=name,
                     arch=getattr(model, "config", {}).get("name"))
    with run.failing_marks_index():
        t0 = time.time()
        rows: list[AttackRow] = []
        attacks = ["random", "worst-of-10", "grid"]
        for target_name, target in (("model", model), ("vote", vote)):
            nat_t = time.time()
            natural_ok = _predict(target, x, batch_size) == y.cpu()
            rows.append(AttackRow(target_name, "natural", float(natural_ok.float().mean()),
                                  time.time() - nat_t, natural_ok))
            names = attacks + (["grid+linf"] if threat.combined and target_name == "model" else [])
            for a in names:
                if not quiet:
                    print(f"spatial: {a} on the {target_name} ...", flush=True)
                rows.append(run_attack(target, a, x, y, natural_ok, threat, seed=seed,
                                       batch_size=batch_size, target_name=target_name, grid=grid))
        heat_grid, heat_acc = grid_accuracy(model, x, y, threat, *grid)
        wall = time.time() - t0
        results = _results(model_path, name, split, len(x), threat, vote_label, rows, heat_grid,
                           heat_acc, wall)
        results["grid_points"] = {"n_trans": grid[0], "n_rot": grid[1],
                                  "total": grid[0] ** 2 * grid[1]}
        run.write_results(results)
        for r in rows:
            if r.attack == "natural":
                continue
            nat = next(q.accuracy for q in rows if q.target == r.target and q.attack == "natural")
            run.add_result(model=model_path, dataset=name, split=split, n_examples=len(x),
                           norm="spatial", eps=None,
                           attack=r.attack if r.target == "model" else f"{vote_label}: {r.attack}",
                           clean_accuracy=nat, robust_accuracy=r.accuracy, threat=threat.to_dict(),
                           target=r.target, seconds=r.seconds)
        run.update_index(status="done", wall_seconds=wall,
                         summary={f"{r.target}_{r.attack}": r.accuracy for r in rows})
        run.write_report(spatial_report(run.run_id, results, x.cpu(), y.cpu(), model, threat,
                                        rows, dspec.classes))
    return run


def _results(model_path, dataset, split, n, threat, vote_label, rows, heat_grid, heat_acc,
             wall) -> dict:
    table = {t: {r.attack: r.accuracy for r in rows if r.target == t} for t in ("model", "vote")}
    return {
        "model": model_path, "dataset": dataset, "split": split, "n_examples": n,
        "threat": threat.to_dict(),
        "accuracy": table,
        "attacked": {"model": "bare model", "vote": vote_label},
        "semantics": "each attack alone on all examples; naturally misclassified examples "
                     "count as broken; random and worst-of-10 share their random draws",
        "rows": [{"target": r.target, "attacked": "bare model" if r.target == "model"
                  else vote_label, "attack": r.attack, "accuracy": r.accuracy,
                  "seconds": r.seconds, "n_broken": len(r.broken)} for r in rows],
        "broken_transforms": {f"{r.target}/{r.attack}": r.broken for r in rows
                              if r.attack != "natural"},
        "grid_accuracy": {"points": heat_grid.tolist(), "accuracy": heat_acc.tolist(),
                          "target": "bare model", "columns": ["angle", "tx", "ty"]},
        "wall_seconds": wall,
    }


# ----------------------------------------------------------------------------- report

def _heatmap(grid: torch.Tensor, acc: torch.Tensor) -> bytes:
    """Accuracy over (rotation, tx) averaged over ty, and over (rotation, ty) averaged over tx."""
    from ..report.figures import fig_to_png, plt

    angles = torch.unique(grid[:, 0]).numpy()
    trans = torch.unique(grid[:, 1]).numpy()
    cube = np.full((len(angles), len(trans), len(trans)), np.nan)
    ia = np.searchsorted(angles, grid[:, 0].numpy())
    ix = np.searchsorted(trans, grid[:, 1].numpy())
    iy = np.searchsorted(trans, grid[:, 2].numpy())
    cube[ia, ix, iy] = acc.numpy()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), squeeze=False)
    for ax, mean_axis, label in ((axes[0, 0], 2, "tx (px)"), (axes[0, 1], 1, "ty (px)")):
        m = np.nanmean(cube, axis=mean_axis).T
        im = ax.imshow(m, aspect="auto", origin="lower", vmin=0, vmax=1, cmap="viridis",
                       extent=(angles[0] - 1, angles[-1] + 1, trans[0] - 0.75 * (len(trans) > 1),
                               trans[-1] + 0.75 * (len(trans) > 1)))
        ax.set_xlabel("rotation (degrees)")
        ax.set_ylabel(label)
        other = "ty" if mean_axis == 2 else "tx"
        ax.set_title(f"accuracy, averaged over {other}", fontsize=9)
    fig.colorbar(im, ax=axes.ravel().tolist(), label="accuracy")
    return fig_to_png(fig)


def _fooled_grid(x, x_adv, y, pred_adv, params, classes, n: int = 8) -> bytes:
    from ..report.figures import fig_to_png, plt

    n = min(n, len(x))
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.6), squeeze=False)

    def name(k):
        return classes[k] if classes and k < len(classes) else str(k)

    for j in range(n):
        for row, im in enumerate((x[j], x_adv[j])):
            a = np.transpose(im.numpy(), (1, 2, 0))
            axes[row, j].imshow(a.squeeze(-1) if a.shape[-1] == 1 else a, cmap="gray",
                                vmin=0, vmax=1)
            axes[row, j].axis("off")
        axes[0, j].set_title(f"label: {name(int(y[j]))}", fontsize=7)
        p = params[j]
        axes[1, j].set_title(f"θ={p[0]:+.1f}° tx={p[1]:+.1f} ty={p[2]:+.1f}\n→ "
                             f"{name(int(pred_adv[j]))}", fontsize=6, color="red")
    return fig_to_png(fig)


def spatial_report(run_id: str, results: dict, x, y, model, threat: SpatialThreat,
                   rows: list[AttackRow], classes) -> str:
    from ..report.html import esc, img, page, table

    acc = results["accuracy"]
    header = ["", *ATTACK_ORDER] + (["grid+linf"] if threat.combined else [])
    body = [["bare model", *[acc["model"].get(a) for a in header[1:]]],
            [results["attacked"]["vote"], *[acc["vote"].get(a) for a in header[1:]]]]
    sections = [("Accuracy (Engstrom et al., 2019, layout)",
                 f"<p>{esc(threat.describe())} on {results['n_examples']} {esc(results['dataset'])}"
                 f" ({esc(results['split'])}) examples. {esc(results['semantics'])}. The vote "
                 "row attacks the majority-vote wrapper as a whole.</p>" + table(header, body))]
    g = results["grid_accuracy"]
    sections.append(("Accuracy over the transform grid (bare model)", img(_heatmap(
        torch.tensor(g["points"]), torch.tensor(g["accuracy"])), "grid accuracy heatmap")
        + "<p>Each cell: accuracy of the bare model on all evaluated images at that rotation "
          "and translation, averaged over the other translation axis.</p>"))
    grid_row = next(r for r in rows if r.target == "model" and r.attack == "grid")
    broken = grid_row.broken[:10]
    if broken:
        idx = torch.tensor([b["index"] for b in broken])
        params = torch.tensor([[b["angle"], b["tx"], b["ty"]] for b in broken])
        dev = next(iter(model.parameters())).device
        with torch.no_grad():
            xa = threat.apply(x[idx], params).cpu()
            pa = model(xa.to(dev)).argmax(1).cpu()
        sections.append(("Examples the grid attack fooled (bare model)", img(_fooled_grid(
            x[idx], xa, y[idx], pa, params.tolist(), classes, n=len(broken)), "fooled")))
    sections.append(("Cost", table(["target", "attack", "seconds", "broken"],
                                   [(r.target, r.attack, r.seconds, len(r.broken))
                                    for r in rows])))
    return page(f"robustlab spatial {run_id}", sections, subtitle=threat.describe())

"""Spatial robustness end to end: worst-of-k training, `robustlab spatial` and its results.

The data are centred upright shapes (not helpers' blocks set, whose class, the quadrant of a
block, really changes under a 30° rotation or a 3 px shift, so no training can be robust on it):
the class survives every transform of the threat, yet a standard model sees only upright,
centred shapes and is easily fooled; worst-of-k training sees rotated and shifted ones.
"""

import json

import numpy as np
import pytest
import torch
from helpers import tiny_config
from torch import nn

from robustlab.cli.main import main
from robustlab.config import SpatialSection, load_config
from robustlab.experiments.train import train_experiment
from robustlab.training.objectives import get_objective

# A coarse grid (3 × 3 × 7 = 63 transforms) and a 3-vote keep the suite fast on 2 CPU cores.
QUICK = ["--n", "64", "--vote-k", "3", "--grid-trans", "3", "--grid-rot", "7", "--quiet"]


def make_shapes_npz(path, n: int, seed: int, size: int = 28):
    """4 classes of centred shapes plus noise: horizontal bar, vertical bar, plus, square."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=n)
    images = rng.uniform(0, 0.3, size=(n, size, size, 1))
    c = size // 2
    for i, k in enumerate(labels):
        im = images[i, :, :, 0]
        if k in (0, 2):
            im[c - 2:c + 2, c - 9:c + 9] += 0.7
        if k in (1, 2):
            im[c - 9:c + 9, c - 2:c + 2] += 0.7
        if k == 3:
            im[c - 5:c + 5, c - 5:c + 5] += 0.7
    images = (np.clip(images, 0, 1) * 255).round().astype(np.uint8)
    np.savez(path, image=images, label=labels.astype(np.int64))


def _spatial(model_dir, runs_dir, *extra):
    rc = main(["spatial", str(model_dir), "--runs-dir", str(runs_dir), *QUICK, *extra])
    assert rc == 0
    folders = sorted(p for p in runs_dir.iterdir() if p.is_dir())
    return folders[-1], json.loads((folders[-1] / "results.json").read_text())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A standard and a worst-of-k model trained on the same data with the same seed."""
    out = {}
    for objective in ("ce", "worst-of-k"):
        tmp = tmp_path_factory.mktemp(objective.replace("-", ""))
        cfg = load_config(tiny_config(tmp, run={"name": objective},
                                      train={"objective": objective, "epochs": 3,
                                             "val_n": 16}))
        make_shapes_npz(tmp / "train.npz", 384, seed=0)  # replaces the blocks set
        make_shapes_npz(tmp / "test.npz", 128, seed=1)
        run = train_experiment(cfg, quiet=True)
        out[objective] = (run.path, tmp)
    return out


@pytest.fixture(scope="module")
def spatial_results(trained):
    res = {}
    for objective, (path, tmp) in trained.items():
        res[objective] = _spatial(path, tmp / "spatial")
    return res


def test_results_have_every_row_in_order(spatial_results):
    folder, r = spatial_results["ce"]
    assert r["n_examples"] == 64
    assert r["threat"]["kind"] == "spatial" and r["threat"]["max_angle"] == 30.0
    assert "majority-vote(k=3)" in r["attacked"]["vote"]
    for target in ("model", "vote"):
        acc = r["accuracy"][target]
        assert set(acc) == {"natural", "random", "worst-of-10", "grid"}
        assert acc["grid"] <= acc["worst-of-10"] <= acc["random"] <= acc["natural"]
    # A standard model of upright shapes is fooled by rotations / shifts on many examples.
    assert r["accuracy"]["model"]["natural"] >= 0.9
    assert r["accuracy"]["model"]["grid"] < r["accuracy"]["model"]["natural"] - 0.2
    # Every broken example names a transform inside the threat, which really fools the model.
    broken = r["broken_transforms"]["model/grid"]
    assert len(broken) == round((r["accuracy"]["model"]["natural"]
                                 - r["accuracy"]["model"]["grid"]) * 64)
    for b in broken:
        assert abs(b["angle"]) <= 30 + 1e-4 and abs(b["tx"]) <= 3 + 1e-4
    g = r["grid_accuracy"]
    assert len(g["points"]) == len(g["accuracy"]) == 63
    # The grid attack fails on an example only if no grid point fools it.
    assert min(g["accuracy"]) >= r["accuracy"]["model"]["grid"] - 1e-9
    html = (folder / "report.html").read_text()
    assert "worst-of-10" in html and "data:image/png;base64" in html
    assert html.count("<img") >= 2  # heatmap and fooled examples


def test_index_has_one_row_per_attack(spatial_results, trained):
    from robustlab.runs import Index

    _, tmp = trained["ce"]
    rows = Index(tmp / "spatial").results()
    attacks = sorted(row["attack"] for row in rows)
    assert len(rows) == 6
    assert "grid" in attacks and any(a.startswith("majority-vote(k=3)") for a in attacks)


def test_worst_of_k_training_raises_grid_accuracy(spatial_results):
    standard = spatial_results["ce"][1]["accuracy"]["model"]
    robust = spatial_results["worst-of-k"][1]["accuracy"]["model"]
    assert robust["grid"] >= standard["grid"] + 0.15, (standard, robust)


@pytest.mark.parametrize("args, message", [
    (["--max-angle", "200"], "--max-angle"),
    (["--max-trans", "-1"], "--max-trans"),
    (["--max-trans", "40"], "max_trans"),
    (["--vote-k", "0"], "--vote-k"),
    (["--n", "-5"], "--n"),
])
def test_bad_settings_exit_2(trained, tmp_path, capsys, args, message):
    path, _ = trained["ce"]
    rc = main(["spatial", str(path), "--runs-dir", str(tmp_path), "--quiet", *args])
    assert rc == 2
    assert message in capsys.readouterr().err


def test_worst_of_k_attacks_in_eval_mode_and_picks_worst():
    seen = []

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(28 * 28, 4)

        def forward(self, x):
            seen.append(self.training)
            return self.lin(x.flatten(1))

    model = Probe().train()
    adv = get_objective("worst-of-k").make_adversary(None, None, None,
                                                     spatial=SpatialSection(k=4))
    adv.train_mode = True  # what the trainer does to every adversary; must not apply here
    x, y = torch.rand(6, 1, 28, 28), torch.randint(0, 4, (6,))
    torch.manual_seed(0)
    res = adv(model, x, y)
    assert seen and not any(seen) and model.training
    # The chosen transform is at least as harmful as each of the 4 candidates it drew.
    torch.manual_seed(0)
    cands = adv.threat.sample(4 * 6).view(4, 6, 3)
    with torch.no_grad():
        loss = torch.stack([nn.functional.cross_entropy(
            model(adv.threat.apply(x, c)), y, reduction="none") for c in cands])
        chosen = nn.functional.cross_entropy(model(res.x_adv), y, reduction="none")
        wrong = torch.stack([model(adv.threat.apply(x, c)).argmax(1) != y for c in cands])
    fooled_any = wrong.any(0)
    assert torch.all(chosen[~fooled_any] >= loss.max(0).values[~fooled_any] - 1e-5)

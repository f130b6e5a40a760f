"""`robustlab zoo` end to end on three tiny models of the blocks dataset: every metric for every
model, every ordered transfer pair, adversarial training raising minimal distortion, the
distortion/log-error fit, the report and the index; bad zoo files exit 2 with a clear message."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest
import torch
from helpers import tiny_config

from robustlab.cli.main import main
from robustlab.config import load_config
from robustlab.experiments.train import train_experiment

MODELS = {  # name: (arch, width, objective)
    "cnn-ce": ("cnn-small", 16, "ce"),
    "cnn-adv": ("cnn-small", 16, "fgsm-rs"),
    "resnet-ce": ("resnet-10", 8, "ce"),
}
TINY = """
[zoo]
dataset = "npz"
path = "{test}"
n = 64
attack_n = 16
batch_size = 64
metrics = ["clean", "cw-l2", "ead", "ifgsm", "fgsm", "clever", "transfer", "transfer-targeted"]
[zoo.cw]
steps = 30
binary_search_steps = 4
lr = 0.05
[zoo.ead]
steps = 30
binary_search_steps = 4
[zoo.ifgsm]
iterations = 5
tol = 0.01
[zoo.fgsm]
tol = 0.01
[zoo.clever]
n_images = 1
n_batches = 6
batch_size = 16
[zoo.transfer]
n = 32
eps = 0.2
cw_steps = 20
cw_binary_search_steps = 2
"""


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory) -> Path:
    """Three trained models in runs/zoo, referred to by their name without the timestamp (as
    scripts/train_zoo.sh does), and a zoo file next to them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster on a shared 2-core machine
    tmp = tmp_path_factory.mktemp("zoo")
    for name, (arch, width, objective) in MODELS.items():
        # Noisier blocks than the default, so the models differ in clean error and the
        # distortion-versus-log-error fit has something to fit.
        cfg = load_config(tiny_config(
            tmp, noise=0.5, run={"name": f"zoo-{name}", "runs_dir": str(tmp / "runs" / "zoo")},
            model={"arch": arch, "width": width, "norm": "none" if arch == "cnn-small" else "bn"},
            # fgsm-rs on 30 steps is stable at lr 0.02; the ResNet needs 0.05 to converge.
            train={"epochs": 3, "lr": 0.05 if arch != "cnn-small" else 0.02,
                   "objective": objective, "val_n": 16,
                   "val_attack_steps": 2,
                   "attack": {"eps": 0.15, "steps": 5}}))
        train_experiment(cfg)
    torch.set_num_threads(threads)
    models = "".join(f'[[models]]\nname = "{n}"\nrun = "runs/zoo/zoo-{n}"\n' for n in MODELS)
    (tmp / "zoo.toml").write_text(TINY.format(test=tmp / "test.npz") + models)
    return tmp


@pytest.fixture(scope="module")
def zoo_run(zoo_dir) -> Path:
    rc = main(["zoo", str(zoo_dir / "zoo.toml"), "--runs-dir", str(zoo_dir / "bench"),
               "--quiet", "--set", "zoo.seed=1"])
    assert rc == 0
    (run,) = [p for p in (zoo_dir / "bench").iterdir() if p.is_dir()]
    return run


def test_every_metric_for_every_model(zoo_run):
    r = json.loads((zoo_run / "results.json").read_text())
    assert [m["name"] for m in r["models"]] == list(MODELS)
    for m in r["models"]:
        assert 0.6 < m["clean_accuracy"] <= 1.0, m["name"]
        for key in ("cw-l2", "ead", "ifgsm", "fgsm"):
            s = m[key]
            assert s["n"] == m["n_attacked"] == 16
            assert 0 < s["success_rate"] <= 1 and s["mean"] > 0, (m["name"], key, s)
        for key in ("clever-l2", "clever-linf"):
            assert m[key]["n"] == 1 and m[key]["mean"] > 0
    # ℓ∞ distortions cannot exceed their ℓ2 or ℓ1 counterparts (‖δ‖∞ ≤ ‖δ‖2 ≤ ‖δ‖1)...
    for m in r["models"]:
        assert m["cw-l2"]["mean"] >= m["ifgsm"]["mean"] - 0.01
        # ...and one FGSM step is never a smaller ℓ∞ perturbation than iterating it, on average.
        assert m["fgsm"]["mean"] >= m["ifgsm"]["mean"] - 0.02
    fam = {m["name"]: m["family"] for m in r["models"]}
    assert fam == {"cnn-ce": "cnn", "cnn-adv": "cnn", "resnet-ce": "resnet"}
    assert r["families"] == {"cnn": ["cnn-ce", "cnn-adv"], "resnet": ["resnet-ce"]}


@pytest.mark.xfail(reason="open (issue 6): on the 384-image blocks set, 3 epochs of fgsm-rs do "
                   "not yet give a larger I-FGSM distortion than standard training; the claim "
                   "is to be shown on the Fashion-MNIST zoo", strict=False)
def test_adversarial_training_raises_minimal_distortion(zoo_run):
    r = {m["name"]: m for m in json.loads((zoo_run / "results.json").read_text())["models"]}
    # The blocks set caps every distortion near the block's contrast, so the margin is small;
    # the order is the claim (Su et al.; Madry et al.): adversarial training pushes it up.
    for key in ("ifgsm", "fgsm", "cw-l2", "ead"):
        assert r["cnn-adv"][key]["mean"] > r["cnn-ce"][key]["mean"], key


def test_transfer_covers_every_ordered_pair(zoo_run):
    r = json.loads((zoo_run / "results.json").read_text())
    for key in ("transfer", "transfer_targeted"):
        t = r[key]
        assert t["names"] == list(MODELS)
        k = len(MODELS)
        pairs = [(i, j) for i in range(k) for j in range(k) if i != j]
        assert len(pairs) == k * (k - 1)
        for i, j in pairs:
            assert 0 <= t["untargeted"][i][j] <= 1 and t["counts"][i][j] > 0
        if t["targeted"]:
            assert all(0 <= t["top1"][i][j] <= t["top5"][i][j] <= 1 for i, j in pairs)
    # White-box I-FGSM at ε = 0.2 breaks the standard resnet (minimal ℓ∞ far below 0.2).
    assert r["transfer"]["untargeted"][2][2] > 0.8
    con = sqlite3.connect(zoo_run.parent / "index.sqlite")
    rows = con.execute("SELECT model, extra FROM results WHERE attack='transfer'").fetchall()
    assert len(rows) == k * k
    assert {(json.loads(e)["source"], m) for m, e in rows} == {(a, b) for a in MODELS
                                                               for b in MODELS}


def test_fit_pareto_index_and_report(zoo_run):
    r = json.loads((zoo_run / "results.json").read_text())
    for key in ("cw-l2", "ead", "ifgsm", "fgsm"):
        f = r["fit"][key]
        assert f["n"] == 3 and 0 <= f["r2"] <= 1 and math.isfinite(f["slope"])
        front = r["pareto"][key]
        best_acc = max(r["models"], key=lambda m: (m["clean_accuracy"], m[key]["mean"]))
        most_robust = max(r["models"], key=lambda m: (m[key]["mean"], m["clean_accuracy"]))
        assert best_acc["name"] in front and most_robust["name"] in front
    con = sqlite3.connect(zoo_run.parent / "index.sqlite")
    got = {(m, a) for m, a in con.execute("SELECT model, attack FROM results "
                                          "WHERE attack NOT LIKE 'transfer%'")}
    want = {(m, a) for m in MODELS for a in ("clean", "cw-l2", "ead", "ifgsm", "fgsm",
                                             "clever-l2", "clever-linf")}
    assert got == want
    html = (zoo_run / "report.html").read_text()
    assert "transferability heatmap" in html and "Pareto plot" in html
    assert "distortion versus log error" in html and "R²" in html
    assert html.count("data:image/png;base64") >= 6  # 3 heatmaps, targeted incl., 2 plots


@pytest.mark.parametrize("edit, needle", [
    (lambda t: t.replace("n = 64", "n = 64\nbogus = 1"), "zoo.bogus: unknown key"),
    (lambda t: t.replace("steps = 30\nbinary", "stepz = 30\nbinary", 1), "zoo.cw.stepz"),
    (lambda t: t.replace('run = "runs/zoo/zoo-cnn-adv"', 'run = "runs/zoo/nope"'),
     "models[1] (cnn-adv).run: run folder 'runs/zoo/nope' not found"),
    (lambda t: t.replace('name = "resnet-ce"', 'name = "resnet-ce"\ncolour = "red"'),
     "models[2].colour: unknown key"),
    (lambda t: t.replace('"transfer-targeted"', '"transfer-magic"'), "transfer-magic"),
])
def test_bad_zoo_file_exits_2_naming_key_and_file(zoo_dir, capsys, edit, needle):
    bad = zoo_dir / "bad.toml"
    bad.write_text(edit((zoo_dir / "zoo.toml").read_text()))
    rc = main(["zoo", str(bad), "--runs-dir", str(zoo_dir / "bad-runs"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    assert needle in err and str(bad) in err, err
    assert "Traceback" not in err
    assert not (zoo_dir / "bad-runs").exists()  # nothing written before the file is checked

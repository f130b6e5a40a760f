"""Generation: seeds, SGLD and targeted PGD on a tiny robust model, and `robustlab generate` end
to end (samples in the npz format, metrics named by their feature network, one clear error for
bad input)."""

import json

import pytest
import torch
from helpers import tiny_config

from robustlab import data, load_model, models
from robustlab.analysis.energy import joint_energy
from robustlab.cli.main import main
from robustlab.config import load_config
from robustlab.errors import UserError
from robustlab.experiments.train import train_experiment
from robustlab.generation import SGLD, TargetedPGD, fit_seeds, make_sampler


@pytest.fixture(scope="module")
def robust(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gen")
    cfg = load_config(tiny_config(tmp, train={"epochs": 2, "objective": "pgd-at",
                                              "attack": {"eps": 0.15, "steps": 3}}))
    run = train_experiment(cfg)
    train = data.load("npz", "train", path=cfg.data.path)
    return run.path, train, tmp


def test_pca_seeds_keep_the_variance_and_stay_in_range(robust):
    _, train, _ = robust
    x = train.float_images()
    s = fit_seeds(x, train.labels, "pca", 4, variance=0.95)
    g = torch.Generator().manual_seed(0)
    z = s.sample(2, 16, generator=g)
    assert z.shape == (16, 1, 28, 28) and 0 <= float(z.min()) and float(z.max()) <= 1
    # k components keep >= 95% of class 2's variance, k − 1 do not.
    xc = x[train.labels == 2].flatten(1).double()
    var = torch.linalg.svdvals(xc - xc.mean(0)) ** 2
    share = var.cumsum(0) / var.sum()
    k = s.components[2]
    assert share[k - 1] >= 0.95 > share[k - 2]
    gs = fit_seeds(x, train.labels, "gaussian", 4)
    assert gs.sample(0, 4, generator=g).shape == (4, 1, 28, 28)
    with pytest.raises(UserError, match="unknown seed"):
        fit_seeds(x, train.labels, "uniform", 4)


def test_samplers_lower_the_joint_energy_of_their_class(robust):
    run_path, train, _ = robust
    model = load_model(run_path)
    seeds = fit_seeds(train.float_images(), train.labels, "pca", 4)
    g = torch.Generator().manual_seed(0)
    for c in range(4):
        x0 = seeds.sample(c, 12, generator=g)
        y = torch.full((12,), c)
        x = SGLD(steps=30, step_size=1.0, momentum=0.9)(model, x0, y, generator=g)
        with torch.no_grad():
            e0, e1 = joint_energy(model(x0), y), joint_energy(model(x), y)
        assert bool((e1 < e0).all()) and float((e0 - e1).mean()) > 0.1
        assert 0 <= float(x.min()) and float(x.max()) <= 1
    xp = TargetedPGD(steps=20)(model, x0, y)
    d = (xp - x0).flatten(1).norm(dim=1)
    assert float(d.max()) <= 40 * (784 / 150528) ** 0.5 + 1e-4
    with torch.no_grad():
        assert float((model(xp).argmax(1) == y).float().mean()) >= \
            float((model(x0).argmax(1) == y).float().mean())
    with pytest.raises(UserError, match="unknown sampler"):
        make_sampler("hmc")
    with pytest.raises(UserError, match="steps"):
        make_sampler("sgld", steps=0)


def test_generate_command_end_to_end(robust, capsys):
    run_path, _, tmp = robust
    args = ["generate", str(run_path), "--n-per-class", "10", "--steps", "15",
            "--cache-dir", str(tmp / "cache"), "--feature-epochs", "3", "--n-ref", "100",
            "--kid-subsets", "5", "--runs-dir", str(tmp / "g"), "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "FID[cnn-small npz]" in out
    folder = next((tmp / "g").glob("generate-*"))
    r = json.loads((folder / "results.json").read_text())
    assert r["n_samples"] == 40 and r["feature_net"]["name"] == "cnn-small npz"
    assert set(r["metrics"]) >= {"FID[cnn-small npz]", "KID[cnn-small npz]",
                                 "IS[cnn-small npz]"}
    assert all(p["joint_energy_sample"] < p["joint_energy_seed"] for p in r["per_class"])
    # The samples are an npz dataset robustlab reads back.
    d = data.load("npz", "train", path=folder / "samples.npz")
    assert len(d) == 40 and d.labels.tolist() == sorted(d.labels.tolist())
    assert (folder / "report.html").read_text().count("<img") == 2
    # The feature network is trained once and cached.
    (cached,) = (tmp / "cache" / "feature-nets").glob("cnn-small-npz-*.safetensors")
    assert main(args[:1] + [str(run_path), "--sampler", "pgd", "--seed-init", "gaussian",
                            *args[2:]]) == 0
    assert list((tmp / "cache" / "feature-nets").glob("*.safetensors")) == [cached]


def test_generate_bad_input_is_one_clear_error(robust, capsys):
    run_path, _, tmp = robust
    base = [str(run_path), "--runs-dir", str(tmp / "bad"), "--cache-dir", str(tmp / "cache"),
            "--quiet"]
    assert main(["generate", *base, "--sampler", "langevin"]) == 2
    err = capsys.readouterr().err
    assert "unknown sampler 'langevin'" in err and len(err.strip().splitlines()) == 1
    assert main(["generate", *base, "--steps", "0"]) == 2
    assert "steps must be >= 1" in capsys.readouterr().err
    assert main(["generate", *base, "--seed-init", "uniform"]) == 2
    assert "unknown seed initialisation" in capsys.readouterr().err
    other = models.create("cnn-small", num_classes=4, in_channels=3, norm="none",
                          image_size=32)
    models.save_model(other, tmp / "rgb32.safetensors")
    assert main(["generate", *base, "--feature-net", str(tmp / "rgb32.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "feature network" in err and len(err.strip().splitlines()) == 1
    assert not (tmp / "bad").exists() or not list((tmp / "bad").glob("generate-*"))

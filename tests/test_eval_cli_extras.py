"""`robustlab eval` prints what a reviewer checks besides the numbers: RobustBench's published
accuracies beside robustlab's own (issue 15) and the original AutoAttack's sanity warnings
(issue 12)."""

from __future__ import annotations

import json

import torch
from helpers import make_blocks_npz
from torch import nn

from robustlab import models
from robustlab.cli.main import main


def _setup(tmp_path):
    torch.manual_seed(0)
    m = models.create("cnn-small", num_classes=4, in_channels=1, norm="none", mean=(0.2,),
                      std=(0.2,), image_size=28)
    models.save_model(m, tmp_path / "m.safetensors")
    make_blocks_npz(tmp_path / "test.npz", 16, seed=1)
    return m


def _eval(tmp_path, weights, *extra):
    return main(["eval", str(weights), "--dataset", "npz", "--data-path",
                 str(tmp_path / "test.npz"), "--n", "8", "--version", "custom", "--attacks",
                 "fgsm", "--no-masking-checks", "--quiet", "--runs-dir", str(tmp_path / "runs"),
                 *extra])


def test_published_numbers_are_printed_beside_robustlabs(tmp_path, capsys):
    _setup(tmp_path)
    (tmp_path / "m.json").write_text(json.dumps(
        {"name": "Someone2024Robust", "clean_acc": "91.10", "autoattack_acc": "65.40"}))
    assert _eval(tmp_path, tmp_path / "m.safetensors") == 0
    out = capsys.readouterr().out
    assert "published (Someone2024Robust): clean_acc 91.10%, autoattack_acc 65.40%" in out
    res = json.loads(next((tmp_path / "runs").glob("*/results.json")).read_text())
    assert res["published"]["autoattack_acc"] == "65.40"
    assert res["warnings"] == []  # a plain deterministic logit model raises none


class Dropped(nn.Module):
    """Dropout (random only in train mode) and input noise (random in every mode), as
    randomised defences have."""

    def __init__(self, net, noise=0.0):
        super().__init__()
        self.net, self.drop, self.noise = net, nn.Dropout(0.5), noise

    def forward(self, x):
        return self.net(self.drop(x + self.noise * torch.randn_like(x)))


def test_a_random_model_is_warned_about_and_rand_keeps_it_random(tmp_path, capsys, monkeypatch):
    m = _setup(tmp_path)
    import sys
    import types

    mod = types.ModuleType("rl_test_factory")
    mod.make = lambda: Dropped(m)
    mod.noisy = lambda: Dropped(m, noise=0.3)
    monkeypatch.setitem(sys.modules, "rl_test_factory", mod)
    assert _eval(tmp_path, "", "--model-factory", "rl_test_factory:noisy",
                 "--num-classes", "4") == 0
    assert "WARNING randomized" in capsys.readouterr().out

    from robustlab.experiments.evaluate import EvalSpec, load_eval_model

    spec = EvalSpec(model="", model_factory="rl_test_factory:make", version="rand",
                    dataset="npz", data_path=str(tmp_path / "test.npz"), num_classes=4)
    loaded = load_eval_model(spec, torch.device("cpu"))
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert not torch.equal(loaded(x), loaded(x))  # dropout survives eval mode under rand

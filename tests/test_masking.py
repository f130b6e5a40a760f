"""Gradient-masking checks (evaluation/masking.py) on models built to mask gradients, around a
real trained network: random-sign gradients, input quantisation with zero or no gradient, and
logits scaled by 1e4; and the honest model that none of this should flag."""

import numpy as np
import pytest
import torch
from helpers import make_blocks_npz
from torch import nn

import robustlab
from robustlab.attacks.autoattack import build_suite
from robustlab.evaluation.evaluate import EvalResult
from robustlab.evaluation.masking import black_box_gain, masking_checks
from robustlab.threat import LpThreat

EPS = 0.1  # the trained net keeps about 60% robust accuracy here: neither trivial nor hopeless


def _load(path):
    d = np.load(path)
    return torch.from_numpy(d["image"]).permute(0, 3, 1, 2).float() / 255, \
        torch.from_numpy(d["label"])


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    """A small CNN trained on the blocks set (100% clean test accuracy in ~2 s on one thread)."""
    tmp = tmp_path_factory.mktemp("masking")
    x, y = _load(make_blocks_npz(tmp / "train.npz", 512, seed=0))
    xt, yt = _load(make_blocks_npz(tmp / "test.npz", 64, seed=1))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1),
                          nn.ReLU(), nn.Flatten(), nn.Linear(784, 4))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(150):
        i = torch.randint(0, len(x), (64,))
        loss = nn.functional.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    assert (model(xt).argmax(1) == yt).float().mean() > 0.95
    return model, xt, yt


class _RandomSigns(torch.autograd.Function):
    """Identity forward; the backward pass returns random ±1 instead of the true gradient."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return (torch.randint(0, 2, grad.shape) * 2 - 1).to(grad.dtype)


class RandomSignGradients(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(_RandomSigns.apply(x))


class Quantised(nn.Module):
    """Input rounded to 8 grey levels; ``detached`` computes it on a detached copy, so the output
    has no autograd path back to the input at all."""

    def __init__(self, model, detached: bool):
        super().__init__()
        self.model, self.detached = model, detached

    def forward(self, x):
        xq = torch.round((x.detach() if self.detached else x) * 7) / 7
        return self.model(xq)


class Scaled(nn.Module):
    def __init__(self, model, factor):
        super().__init__()
        self.model, self.factor = model, factor

    def forward(self, x):
        return self.model(x) * self.factor


def _suite(threat, queries=300):
    suite = build_suite("custom", threat, attacks=["apgd-ce", "apgd-t", "square"])
    suite[1].n_target_classes = 3
    suite[2].n_queries = queries
    return suite


def _flags(result):
    return {f["check"] for f in result.masking["flags"]}


def test_black_box_gain_counts_points_by_attack_name():
    # The bug: broken_by holds names, the old code compared them with stage indices (always 0).
    stages = [{"attack": a} for a in ("apgd-ce", "apgd-t", "square")]
    r = EvalResult(threat={}, n_examples=10, clean_accuracy=1, robust_accuracy=0.5, stages=stages,
                   broken_by=["square"] * 3 + ["apgd-ce"] + [None] * 5 + ["clean"])
    assert black_box_gain(r) == {"ran": True, "broken_by_black_box": 3, "fraction": 0.3}
    # Square first is no evidence about gradients.
    r.stages, r.broken_by = stages[2:], ["square"] * 3 + [None] * 7
    assert black_box_gain(r) == {"ran": False}


def test_random_sign_gradients_are_flagged_and_the_plain_model_is_not(net):
    model, x, y = net
    threat = LpThreat("linf", EPS)
    plain = robustlab.evaluate(model, x, y, threat, _suite(threat), n_probe=64)
    assert 0.3 < plain.robust_accuracy < 0.9
    assert _flags(plain) == set() and plain.masking["checks"]["black_box"]["ran"]
    masked = robustlab.evaluate(RandomSignGradients(model), x, y, threat, _suite(threat),
                                n_probe=64)
    acc = {s["attack"]: s["robust_accuracy"] for s in masked.stages}
    assert acc["apgd-t"] == masked.clean_accuracy  # white-box attacks are lost
    assert acc["square"] < acc["apgd-t"] - 0.1      # Square is not
    assert "black_box" in _flags(masked)
    assert masked.masking["checks"]["black_box"]["broken_by_black_box"] == \
        masked.broken_by.count("square") > 0


def test_input_quantisation_is_flagged_with_or_without_a_gradient_path(net):
    model, x, y = net
    threat = LpThreat("linf", EPS)
    zero = Quantised(model, detached=False)
    res = robustlab.evaluate(zero, x, y, threat, _suite(threat)[:1], n_probe=64)
    assert "gradients" in _flags(res)
    assert res.masking["checks"]["gradients"]["zero_fraction"] > 0.9
    # No gradient path: the checks say so instead of failing inside autograd, and the one-line
    # API refuses gradient attacks on it but still runs Square.
    none = Quantised(model, detached=True)
    m = masking_checks(none, x, y, threat, res, n_probe=32)
    assert m["checks"]["gradients"]["no_gradient_path"]
    assert "gradients" in {f["check"] for f in m["flags"]}
    with pytest.raises(ValueError, match="model: .*no gradient path"):
        robustlab.evaluate(none, x, y, eps=EPS, version="fast")
    sq = robustlab.evaluate(none, x, y, threat, _suite(threat)[2:], n_probe=32)
    assert "gradients" in _flags(sq)
    assert any(w["check"] == "no_gradient_path" for w in sq.warnings)


def test_logits_times_1e4_give_the_same_robust_accuracy(net):
    # Cross-entropy saturates (its float32 gradient is exactly 0 for confident points), so
    # APGD-CE fails on the scaled model; APGD-T's DLR loss is scale invariant and recovers.
    model, x, y = net
    threat = LpThreat("linf", EPS)
    plain = robustlab.evaluate(model, x, y, threat, _suite(threat)[:2], masking=False)
    scaled = robustlab.evaluate(Scaled(model, 1e4), x, y, threat, _suite(threat)[:2],
                                n_probe=32)
    assert _flags(scaled) == set()  # the checks use margins, which do not saturate
    ce_plain, ce_scaled = plain.stages[0]["broken"], scaled.stages[0]["broken"]
    assert ce_scaled < ce_plain  # the saturation is real
    assert abs(scaled.robust_accuracy - plain.robust_accuracy) <= 0.01

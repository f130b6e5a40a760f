"""Spatial robustness (Engstrom et al., ICML 2019): transforms, threat model, attacks, vote."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from robustlab.attacks.base import PassCounter
from robustlab.errors import ThreatViolation, UserError
from robustlab.evaluation.evaluate import evaluate
from robustlab.spatial import (
    FirstOrderSpatial,
    GridAttack,
    GridLinf,
    MajorityVote,
    RandomSpatial,
    SpatialThreat,
    affine,
    affine_many,
    default_for_size,
)


# -- transforms ------------------------------------------------------------------------------
@pytest.mark.parametrize("border", ["zero", "reflect"])
def test_zero_transform_is_identity(border):
    x = torch.rand(3, 2, 9, 7)
    assert torch.allclose(affine(x, 0.0, 0.0, 0.0, border=border), x, atol=1e-6)


def test_canvas_keeps_shape_and_keeps_rotated_content():
    x = torch.zeros(1, 1, 16, 16)
    x[..., 0, 0] = 1.0  # a corner pixel, cut off by a 45° rotation with zero border
    assert affine(x, 45.0, 0, 0, border="zero").sum() < 0.05
    y = affine(x, 45.0, 0, 0, border="canvas")
    assert y.shape == x.shape and y.sum() > 0.1


def test_rotation_by_90_degrees_is_rot90():
    x = torch.rand(2, 3, 8, 8)
    assert torch.allclose(affine(x, 90.0, 0, 0), torch.rot90(x, 1, (2, 3)), atol=1e-5)
    assert torch.allclose(affine(x, -90.0, 0, 0), torch.rot90(x, -1, (2, 3)), atol=1e-5)
    assert not torch.allclose(affine(x, 90.0, 0, 0), torch.rot90(x, -1, (2, 3)), atol=1e-2)


def test_whole_pixel_translation_is_a_shift_with_zero_fill():
    x = torch.rand(2, 1, 6, 7)
    shifted = torch.zeros_like(x)
    shifted[..., 0:5, 2:] = x[..., 1:6, 0:5]  # content 2 px right, 1 px up
    assert torch.allclose(affine(x, 0.0, 2.0, -1.0), shifted, atol=1e-6)


def test_per_example_parameters_and_affine_many_layout():
    x = torch.rand(3, 1, 10, 10)
    params = torch.tensor([[10.0, 1.0, 0.0], [-20.0, 0.5, -2.0]])
    out = affine_many(x, params).view(2, 3, 1, 10, 10)
    for t in range(2):
        for n in range(3):
            one = affine(x[n:n + 1], params[t, 0], params[t, 1], params[t, 2])
            assert torch.allclose(out[t, n], one[0], atol=1e-6)


# -- threat model ----------------------------------------------------------------------------
def test_default_grid_has_775_points():
    g = SpatialThreat().grid()
    assert g.shape == (775, 3)
    assert sorted(set(g[:, 1].tolist())) == [-3.0, -1.5, 0.0, 1.5, 3.0]
    angles = sorted(set(round(a, 4) for a in g[:, 0].tolist()))
    assert len(angles) == 31 and angles[0] == -30 and angles[-1] == 30
    assert max(b - a for a, b in zip(angles, angles[1:])) == pytest.approx(2.0)


def test_default_for_size():
    assert default_for_size(28).max_trans == 3.0
    assert default_for_size(224).max_trans == pytest.approx(24.0, abs=0.1)
    assert default_for_size(32).max_angle == 30.0


@pytest.mark.parametrize("kwargs, words", [
    ({"max_angle": -5.0}, "max_angle"),
    ({"max_trans": -1.0}, "max_trans"),
    ({"max_trans": 28.0, "image_size": 28}, "max_trans"),
    ({"border": "wrap"}, "border"),
    ({"linf_eps": 2.0}, "linf_eps"),
])
def test_out_of_range_settings_raise_user_error(kwargs, words):
    with pytest.raises(UserError, match=words):
        SpatialThreat(**kwargs)


def test_translation_larger_than_the_batch_raises_user_error():
    threat = SpatialThreat(max_trans=20.0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16 * 16, 3))
    with pytest.raises(UserError, match="max_trans"):
        GridAttack(threat)(model, torch.rand(2, 1, 16, 16), torch.zeros(2, dtype=torch.long))


def test_check_raises_threat_violation():
    threat = SpatialThreat()
    x = torch.rand(2, 1, 8, 8)
    threat.check(affine(x, 17.0, 1.3, -0.4), x)
    with pytest.raises(ThreatViolation, match="pixel range"):
        threat.check(x + 0.5, x)
    with pytest.raises(ThreatViolation, match="shape"):
        threat.check(x[:1], x)
    bad = x.clone()
    bad[1, 0, 0, 0] = float("nan")
    assert threat.contains(bad, x).tolist() == [True, False]
    assert threat.to_dict()["kind"] == "spatial" and "30" in threat.describe()


# -- attacks on a model trained to tell orientations apart -------------------------------------
def oriented_bars(n: int, seed: int, size: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """Class k is a bar at k·45° (±5°), randomly placed, on noise: rotations of ±30° move a bar
    most of the way to the neighbouring class, so a standard model is fragile to them."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    ang = torch.deg2rad(y * 45.0 + (torch.rand(n, generator=g) * 10 - 5))
    off = torch.rand(n, 2, generator=g) * 6 - 3
    c = (size - 1) / 2
    yy, xx = torch.meshgrid(torch.arange(size) - c, torch.arange(size) - c, indexing="ij")
    px = xx[None] - off[:, 0, None, None]
    py = yy[None] - off[:, 1, None, None]
    dx, dy = torch.cos(ang)[:, None, None], -torch.sin(ang)[:, None, None]
    along = px * dx + py * dy
    across = px * -dy + py * dx
    bar = torch.exp(-across ** 2 / 2.0) * (along.abs() < 8).float()
    x = 0.8 * bar + 0.15 * torch.rand(n, size, size, generator=g)
    return x.clamp(0, 1)[:, None], y


def tiny_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(1),
                         nn.Flatten(), nn.Linear(32, 4))


@pytest.fixture(scope="module")
def trained():
    return _train()


def _train():
    torch.manual_seed(0)
    x, y = oriented_bars(1024, seed=0)
    model = tiny_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(250):
        i = torch.randint(0, len(x), (64,))
        loss = nn.functional.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    xt, yt = oriented_bars(64, seed=1)
    with torch.no_grad():
        keep = model(xt).argmax(1) == yt
    assert keep.float().mean() > 0.9, "the test model did not learn the bars"
    return model, xt[keep], yt[keep]


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def test_grid_beats_worst_of_10_beats_random(trained):
    model, x, y = trained
    threat = SpatialThreat()
    acc = {}
    for name, attack in [("grid", GridAttack(threat)), ("wo10", RandomSpatial(threat, k=10)),
                         ("random", RandomSpatial(threat, k=1))]:
        torch.manual_seed(1)
        res = attack(model, x, y)
        acc[name] = accuracy(model, res.x_adv, y)
        assert float(res.success.float().mean()) == pytest.approx(1 - acc[name])
    assert acc["grid"] <= acc["wo10"] <= acc["random"] < 1.0
    assert acc["grid"] < acc["random"] - 0.1


def test_reported_transform_reproduces_the_misclassification(trained):
    model, x, y = trained
    threat = SpatialThreat()
    res = GridAttack(threat)(model, x, y)
    t = res.extras["transform"]
    assert t.shape == (len(x), 3) and bool(threat.params_inside(t).all())
    again = threat.apply(x, t)
    assert torch.allclose(again, res.x_adv, atol=1e-6)
    with torch.no_grad():
        wrong = model(again).argmax(1) != y
    assert res.success.any() and torch.equal(wrong, res.success)


def test_grid_stops_attacking_fooled_examples(trained):
    model, x, y = trained
    threat = SpatialThreat()
    constant = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 4))
    with torch.no_grad():
        constant[1].weight.zero_()
        constant[1].bias.copy_(torch.tensor([5.0, 0, 0, 0]))
    y0 = torch.zeros(len(x), dtype=torch.long)
    counter = PassCounter(constant)
    GridAttack(threat, forward_size=256)(counter, x, y0)
    assert counter.forward_examples == 775 * len(x) + len(x)  # never fooled: every transform
    counter = PassCounter(model)
    res = GridAttack(threat, forward_size=256)(counter, x, y)
    assert counter.forward_examples < 775 * len(x) * (1 - 0.5 * res.success.float().mean())


def test_first_order_attack_stays_in_range_and_reproduces(trained):
    model, x, y = trained
    threat = SpatialThreat()
    torch.manual_seed(0)
    res = FirstOrderSpatial(threat, steps=10, restarts=2)(model, x[:16], y[:16])
    t = res.extras["transform"]
    assert bool(threat.params_inside(t).all())
    assert torch.allclose(threat.apply(x[:16], t), res.x_adv, atol=1e-6)
    assert res.success.any()


def test_grid_linf_combined_threat(trained):
    model, x, y = trained
    x, y = x[:12], y[:12]
    threat = SpatialThreat(max_angle=10.0, max_trans=1.0, linf_eps=0.05)
    torch.manual_seed(0)
    res = GridLinf(threat, steps=5, n_trans=3, n_rot=3)(model, x, y)
    d = res.extras["delta"]
    assert d.abs().max() <= 0.05 + 1e-6 and ((x + d) >= -1e-6).all() and ((x + d) <= 1 + 1e-6).all()
    assert torch.allclose(threat.apply(x, res.extras["transform"], d), res.x_adv, atol=1e-6)
    spatial_only = GridAttack(threat, n_trans=3, n_rot=3)(model, x, y)
    assert accuracy(model, res.x_adv, y) <= accuracy(model, spatial_only.x_adv, y)
    with pytest.raises(UserError, match="linf_eps"):
        GridLinf(SpatialThreat())


def test_evaluate_runs_spatial_attacks(trained):
    model, x, y = trained
    threat = SpatialThreat()
    out = evaluate(model, x, y, threat, [RandomSpatial(threat, k=1), GridAttack(threat)])
    assert out.threat["kind"] == "spatial"
    direct = GridAttack(threat)(model, x, y)
    assert out.robust_accuracy == pytest.approx(1 - float(direct.success.float().mean()))


# -- majority vote ---------------------------------------------------------------------------
def test_vote_argmax_is_the_majority_of_k_predictions(trained):
    model, x, y = trained
    vote = MajorityVote(model, SpatialThreat(), k=9, seed=3)
    with torch.no_grad():
        counts = vote(x)
        preds = vote.predictions(x)
    assert counts.shape == (len(x), 4) and torch.all(counts.sum(1) == 9)
    for i in range(len(x)):
        tally = torch.bincount(preds[:, i], minlength=4)
        assert torch.equal(tally.to(counts), counts[i])
        assert int(counts[i].argmax()) == int(tally.argmax())
    assert (preds != preds[0]).any(), "the k transforms should not all agree on every image"
    assert math.isclose(float(counts.sum()), 9 * len(x))

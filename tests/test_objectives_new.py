"""MART, free AT, AWP and the state-of-the-art EMA: losses against hand computations, free's
step against FGSM, AWP's perturbation and its γ = 0 identity, exact resume of free and EMA runs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_config
from safetensors.torch import load_file
from torch import nn

from robustlab.config import load_config
from robustlab.experiments.train import train_experiment
from robustlab.threat import LpThreat
from robustlab.training import trainer as trainer_mod
from robustlab.training.awp import AWP
from robustlab.training.ema import ModelEMA
from robustlab.training.free import FreePerturbation
from robustlab.training.mart import mart_loss


def _softmax(z):
    e = [math.exp(v) for v in z]
    return [v / sum(e) for v in e]


class Fixed(nn.Module):
    def forward(self, x):
        return x.flatten(1)


LOGITS = [[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [0.0, 3.0, 1.0]]
LOGITS_ADV = [[0.5, 1.5, -0.5], [1.0, -1.0, 0.0], [0.2, 2.5, 0.1]]
Y = [0, 2, 1]


def test_mart_loss_matches_hand_computation():
    total = 0.0
    for zn, za, y in zip(LOGITS, LOGITS_ADV, Y):
        pn, pa = _softmax(zn), _softmax(za)
        wrong = max((k for k in range(3) if k != y), key=lambda k: pa[k])
        bce = -math.log(pa[y]) - math.log(1.0001 - pa[wrong] + 1e-12)
        kl = sum(p * (math.log(p + 1e-12) - math.log(q + 1e-12)) for p, q in zip(pn, pa))
        total += bce + 6.0 * kl * (1.0000001 - pn[y])
    x = torch.tensor(LOGITS, dtype=torch.float64, requires_grad=True)
    loss, _ = mart_loss(Fixed(), x, torch.tensor(LOGITS_ADV, dtype=torch.float64),
                        torch.tensor(Y), beta=6.0)
    assert loss.item() == pytest.approx(total / 3, rel=1e-9)
    # The weight 1 - p(x)_y is not detached: the natural logits get its gradient too.
    (g,) = torch.autograd.grad(loss, x)
    pn = torch.softmax(x.detach(), 1)
    pa = torch.softmax(torch.tensor(LOGITS_ADV, dtype=torch.float64), 1)
    kl = (pn * (pn.log() - pa.log())).sum(1)
    w = 1.0000001 - pn[torch.arange(3), torch.tensor(Y)]
    xd = x.detach().clone().requires_grad_(True)
    pnd = torch.softmax(xd, 1)
    detached = (((pnd * (pnd.log() - pa.log())).sum(1)) * w).mean() * 6.0
    (g_det,) = torch.autograd.grad(detached, xd)
    assert not torch.allclose(g, g_det)
    assert kl.min() > 0


def _tiny_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 4, 3))


def test_free_one_replay_from_zero_is_fgsm_without_random_start():
    from robustlab.attacks.fgsm import FGSM

    threat = LpThreat("linf", 0.1)
    net = _tiny_net()
    x = torch.rand(5, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 0, 1])
    fgsm_adv = FGSM(threat)(net, x, y).x_adv  # before the weights move
    ref = _tiny_net()
    free = FreePerturbation(threat, replays=1)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    loss, _, d = free.loss(net, x, y)
    opt.zero_grad()
    loss.backward()
    free.step(d)
    opt.step()
    # The perturbation after one replay from δ = 0 is FGSM's step (no random start) ...
    torch.testing.assert_close((x + free.delta).clamp(0, 1), fgsm_adv, atol=1e-7, rtol=0)
    # ... and the weight step is the clean-loss step (the first replay sees δ = 0).
    F.cross_entropy(ref(x), y).backward()
    with torch.no_grad():
        for p, q in zip(net.parameters(), ref.parameters()):
            torch.testing.assert_close(p, q - 0.5 * q.grad)
    # A second replay trains at the stored perturbation.
    loss2, logits2, _ = free.loss(net, x, y)
    torch.testing.assert_close(logits2, net((x + free.delta).clamp(0, 1)))


def test_awp_perturbation_and_update_by_hand():
    net = _tiny_net(2)
    x = torch.rand(6, 2, 4, 4, generator=torch.Generator().manual_seed(3))
    xa = (x + 0.05).clamp(0, 1)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    awp = AWP(net, "at", gamma=0.01)
    diff = awp.compute(net, x, xa, y)
    assert list(diff) == ["1.weight"]  # weights of >= 2 dims only, biases untouched
    w = net[1].weight.detach().clone()
    wg = w.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(F.linear(xa.flatten(1), wg, net[1].bias), y), wg)
    torch.testing.assert_close(diff["1.weight"], 0.01 * w.norm() * g / g.norm())
    # The update is the gradient at w + v applied to w (plain SGD, lr 0.1).
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    awp.add(net, diff, 1.0)
    opt.zero_grad()
    F.cross_entropy(net(xa), y).backward()
    g_at = net[1].weight.grad.clone()
    opt.step()
    awp.add(net, diff, -1.0)
    torch.testing.assert_close(net[1].weight.detach(), w - 0.1 * g_at, atol=1e-6, rtol=0)
    assert not torch.allclose(g_at, g)


def _train(tmp_path, name, **train):
    base = {"epochs": 2, "attack": {"steps": 2, "eps": 0.1, "step_size": 0.04}, **train}
    d = tmp_path / name
    d.mkdir()
    return train_experiment(load_config(tiny_config(d, train=base)))


def test_awp_gamma_zero_equals_plain_training(tmp_path):
    plain = _train(tmp_path, "plain", objective="pgd-at", epochs=1)
    zero = _train(tmp_path, "zero", objective="pgd-at-awp", awp_gamma=0.0, epochs=1)
    on = _train(tmp_path, "on", objective="pgd-at-awp", epochs=1)
    a, b, c = (load_file(str(r.path / "model.safetensors")) for r in (plain, zero, on))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


class _Stop(Exception):
    pass


def _interrupted_then_resumed(tmp_path, monkeypatch, **train):
    """Run until the first step of the second pass, then resume from the epoch-1 checkpoint."""
    from robustlab.cli.main import main

    full = _train(tmp_path, "full", **train)
    original = trainer_mod.Trainer.train_step

    def step(self, x, y):
        if self.state.epoch == 1:
            raise _Stop
        return original(self, x, y)

    monkeypatch.setattr(trainer_mod.Trainer, "train_step", step)
    with pytest.raises(_Stop):
        _train(tmp_path, "cut", **train)
    monkeypatch.setattr(trainer_mod.Trainer, "train_step", original)
    (cut,) = [p for p in (tmp_path / "cut" / "runs").iterdir() if p.is_dir()]
    assert main(["train", "--resume", str(cut), "--quiet"]) == 0
    return full.path, cut


@pytest.mark.parametrize("train", [
    {"objective": "free", "epochs": 4, "free_replays": 2, "lr": 0.02},
    {"objective": "fgsm-rs", "ema_decay": 0.99, "ema_dynamic": True, "ema_warmup": 0.2,
     "ema_bn": "copy"},
])
def test_resumed_free_and_ema_runs_equal_uninterrupted(tmp_path, monkeypatch, train):
    full, cut = _interrupted_then_resumed(tmp_path, monkeypatch, **train)
    for f in ("model.safetensors", *(("model_ema.safetensors",) if "ema_decay" in train
                                     else ())):
        a, b = load_file(str(full / f)), load_file(str(cut / f))
        assert all(torch.equal(a[k], b[k]) for k in a), f
    if train["objective"] == "free":
        state = torch.load(cut / "checkpoint" / "trainer_state.pt", weights_only=True)
        # 4 epochs / 2 replays = 2 passes of 10 batches, 2 optimiser steps per batch.
        assert state["epoch"] == 2 and state["step"] == 40
        assert state["free_delta"].abs().max() <= 0.1 + 1e-7
        assert state["free_delta"].abs().max() > 0


def test_ema_warmup_dynamic_decay_and_bn_modes():
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    ema = ModelEMA(net, 0.999, warmup_steps=3, dynamic=True, bn="copy")
    assert [ema.decay_at(t) for t in (0, 2)] == [0.0, 0.0]
    assert ema.decay_at(3) == pytest.approx(1 / 10)
    assert ema.decay_at(13) == pytest.approx(11 / 20)
    assert ema.decay_at(10**6) == 0.999
    net.train()
    net(torch.randn(4, 1, 3, 3))
    with torch.no_grad():
        net[0].weight.add_(1.0)
    e0 = ema.module[0].weight.clone()
    ema.update(net, 3)  # decay 0.1
    torch.testing.assert_close(ema.module[0].weight, 0.1 * e0 + 0.9 * net[0].weight)
    torch.testing.assert_close(ema.module[1].running_mean, net[1].running_mean)  # copied
    avg = ModelEMA(nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2)), 0.5)
    before = avg.module[1].running_mean.clone()
    avg.update(net)
    torch.testing.assert_close(avg.module[1].running_mean,
                               0.5 * before + 0.5 * net[1].running_mean)

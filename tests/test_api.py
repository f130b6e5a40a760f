"""The one-line Python API (robustlab.evaluate with eps/norm/version): what its result holds,
one clear ValueError per bad argument, the model sanity checks, single attacks built from
eps/norm, and the `rand` version's EOT (gradients averaged over random passes, dropout on)."""

import numpy as np
import pytest
import torch
from helpers import make_blocks_npz
from torch import nn

import robustlab
import robustlab.attacks
from robustlab.attacks.autoattack import EOT, EOTLoss, build_suite
from robustlab.attacks.base import model_mode
from robustlab.attacks.losses import cw
from robustlab.attacks.pgd import input_gradient
from robustlab.errors import UserError
from robustlab.evaluation.sanity import sanity_checks
from robustlab.threat import LpThreat


def _load(path):
    d = np.load(path)
    return torch.from_numpy(d["image"]).permute(0, 3, 1, 2).float() / 255, \
        torch.from_numpy(d["label"])


def _train(model, x, y, steps=150):
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    model.train()
    for _ in range(steps):
        i = torch.randint(0, len(x), (64,))
        loss = nn.functional.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _cnn(dropout: float = 0.0):
    return nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1),
                         nn.ReLU(), nn.Flatten(), nn.Dropout(dropout), nn.Linear(784, 4))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api")
    train = _load(make_blocks_npz(tmp / "train.npz", 512, seed=0))
    test = _load(make_blocks_npz(tmp / "test.npz", 32, seed=1))
    return train, test


@pytest.fixture(scope="module")
def net(data):
    torch.manual_seed(0)
    return _train(_cnn(), *data[0])


@pytest.fixture(scope="module")
def dropout_net(data):
    torch.manual_seed(1)
    return _train(_cnn(0.5), *data[0])


def test_one_line_evaluation_holds_everything(net, data):
    x, y = data[1]
    r = robustlab.evaluate(net, x, y.tolist(), eps=0.1, norm="linf", version="fast",
                           return_adv=True, n_probe=32)
    assert r.clean_accuracy == 1.0 and 0 < r.robust_accuracy < 1
    assert [s["attack"] for s in r.stages] == ["apgd-ce-50", "apgd-t3-50"]
    assert r.stages[-1]["robust_accuracy"] == r.robust_accuracy
    broken = [b is not None for b in r.broken_by]
    assert sum(broken) == round((1 - r.robust_accuracy) * len(x))
    assert r.passes["backward_examples"] > 0 and r.warnings == []
    assert r.masking["flags"] == [] and "unbounded" in r.masking["checks"]
    # Adversarial examples where broken, inside the threat model, the clean image elsewhere.
    moved = (r.x_adv - x).flatten(1).abs().amax(1)
    assert bool((moved[torch.tensor(broken)] > 0).all())
    assert bool((moved[~torch.tensor(broken)] == 0).all()) and float(moved.max()) <= 0.1 + 1e-6
    with torch.no_grad():
        assert bool((net(r.x_adv).argmax(1) != y)[torch.tensor(broken)].all())
    d = r.to_dict()
    assert d["masking"] == r.masking and "broken_by" in d
    # masking=False skips the checks; the threat/attacks form still works.
    threat = LpThreat("linf", 0.1)
    old = robustlab.evaluate(net, x, y, threat, build_suite("fast", threat, num_classes=4),
                             masking=False)
    assert old.masking is None and old.robust_accuracy == r.robust_accuracy


def test_single_attacks_take_eps_and_norm(net, data):
    x, y = data[1]
    attack = robustlab.attacks.APGD(eps=0.1, norm="linf", steps=20)
    assert attack.threat == LpThreat("linf", 0.1)
    res = attack(net, x, y)
    assert bool(res.success.any()) and float((res.x_adv - x).abs().max()) <= 0.1 + 1e-6
    assert robustlab.attacks.Square(eps=0.5, norm="l2").threat.norm == "l2"
    with pytest.raises(TypeError, match="not both"):
        robustlab.attacks.APGD(LpThreat("linf", 0.1), eps=0.1)


@pytest.mark.parametrize("change, argument, words", [
    ({"eps": -0.1}, "eps", ">= 0"),
    ({"eps": float("nan")}, "eps", "finite"),
    ({"norm": "l3"}, "norm", "unknown norm"),
    ({"version": "strong"}, "version", "unknown version"),
    ({"x": lambda x: x * 255}, "x", "looks like 0-255 images, divide by 255"),
    ({"x": lambda x: (x * 255).to(torch.uint8)}, "x", "float tensor"),
    ({"x": lambda x: x - 0.5}, "x", "in \\[0, 1\\]"),
    ({"x": lambda x: x.flatten(1)}, "x", "shape \\(N, C, H, W\\)"),
    ({"x": lambda x: x.masked_fill(x > 0.9, float("nan"))}, "x", "NaN"),
    ({"y": lambda y: y[:-1]}, "y", "31 labels for 32 images"),
    ({"y": lambda y: y + 4}, "y", "out of range for a model with 4 classes"),
    ({"y": lambda y: y - 1}, "y", "label -1 is out of range"),
    ({"y": lambda y: y.float() + 0.5}, "y", "integer"),
])
def test_bad_arguments_raise_one_value_error_naming_them(net, data, change, argument, words):
    x, y = data[1]
    args = {"x": x, "y": y, "eps": 0.1, "norm": "linf", "version": "fast"}
    for k, v in change.items():
        args[k] = v(args[k]) if callable(v) else v
    with pytest.raises(ValueError, match=f"^{argument}: .*{words}") as e:
        robustlab.evaluate(net, args.pop("x"), args.pop("y"), masking=False, **args)
    assert isinstance(e.value, UserError) and e.value.argument == argument


class Softmaxed(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).softmax(1)


class Noisy(nn.Module):
    """Gaussian input noise whatever the mode: a randomised defence."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model((x + 0.05 * torch.randn_like(x)).clamp(0, 1))


class Quantised(nn.Module):
    """Rounds its input to 4 grey levels: a gradient path of zeros."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model((x * 3).round() / 3)


class Purified(nn.Module):
    """One signed step down the entropy of its own prediction before classifying."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        with torch.enable_grad():
            xd = x.detach().clone().requires_grad_(True)
            p = self.model(xd).softmax(1)
            (g,) = torch.autograd.grad(-(p * p.clamp_min(1e-12).log()).sum(), xd)
        return self.model((x - 0.01 * g.sign()).clamp(0, 1))


def test_sanity_checks_warn_as_the_original_does(net, data):
    x, y = data[1]
    names = [a.name for a in build_suite("standard", LpThreat("linf", 0.1), num_classes=4)]

    def checks(model, labels=y, **kw):
        return {w["check"] for w in sanity_checks(model, x, labels, version="standard",
                                                  attack_names=names, n_targets=3, **kw)}

    assert checks(net) == set()
    assert checks(Softmaxed(net)) == {"probabilities"}
    assert checks(Noisy(net)) == {"randomized"}
    # Batch statistics at test time: an example's output depends on its batch.
    bn = nn.Sequential(nn.BatchNorm2d(1, track_running_stats=False), net).eval()
    assert checks(bn) == {"batch_dependent"}
    # Three classes: APGD-T's targeted DLR loss needs four.
    three = nn.Sequential(net, nn.Linear(4, 3)).eval()
    assert checks(three, labels=y.clamp(max=2)) == {"classes"}
    # Nine targets asked of a four-class model.
    assert {w["check"] for w in sanity_checks(net, x, y, version="standard", attack_names=names,
                                              n_targets=9)} == {"classes"}
    # A quantising input layer: the gradient is exactly zero everywhere.
    assert checks(Quantised(net)) == {"zero_gradients"}
    # A test-time optimisation defence: its forward pass calls autograd.
    assert checks(Purified(net)) == {"dynamic"}
    # Through the API the warnings land in the result.
    r = robustlab.evaluate(Noisy(net), x[:8], y[:8], eps=0.05, version="fast", masking=False)
    assert [w["check"] for w in r.warnings] == ["randomized"]
    assert "version='rand'" in r.warnings[0]["message"]


def test_eot_averages_the_gradients_of_random_passes(dropout_net, data):
    x, y = data[1][0][:4], data[1][1][:4]
    eot = EOT(dropout_net, samples=5)
    with model_mode(eot, False):
        assert eot.model[5].training  # dropout stays on in eval mode, the conv layers do not
        assert not eot.model[0].training
        _check_eot_gradient(eot, x, y)
    assert not dropout_net[5].training


def _check_eot_gradient(eot, x, y):
    torch.manual_seed(3)
    logits, loss, grad = input_gradient(eot, x, EOTLoss(cw, eot), y)
    torch.manual_seed(3)
    grads, first = [], None
    for _ in range(5):
        xg = x.clone().requires_grad_(True)
        z = eot.model(xg)
        first = z.detach() if first is None else first
        grads.append(torch.autograd.grad(cw(z, y).sum(), xg)[0])
    mean = torch.stack(grads).mean(0)
    assert torch.allclose(grad, mean, rtol=1e-4, atol=1e-6)
    # The samples really differ, so this is not one pass's gradient.
    assert (grads[0] - mean).norm() > 0.1 * mean.norm()
    # Loss value and prediction are one sample's: success is judged on a random prediction.
    assert torch.allclose(logits, first) and torch.allclose(loss, cw(first, y))


def test_rand_attacks_a_dropout_model_with_dropout_on(dropout_net, data):
    x, y = data[1][0][:8], data[1][1][:8]
    seen = []
    hook = dropout_net[5].register_forward_hook(lambda m, i, o: seen.append(m.training))
    try:
        r = robustlab.evaluate(dropout_net, x, y, eps=0.1, version="rand", masking=False)
    finally:
        hook.remove()
    assert not dropout_net[5].training  # the caller's mode is back
    assert seen and all(seen)           # every pass, final check included, had dropout on
    assert [s["attack"] for s in r.stages] == ["apgd-ce-eot20", "apgd-dlr-eot20"]
    assert r.warnings == []             # rand is the right version for a random model
    # Every gradient is taken through 20 random passes of each example still attacked.
    back = r.passes["backward_examples"]
    assert back % 20 == 0 and back >= 20 * 2 * len(x)
    # Dropout kept on in the standard version only when asked: `stochastic=True`.
    assert [w["check"] for w in robustlab.evaluate(
        dropout_net, x, y, eps=0.1, version="fast", masking=False,
        stochastic=True).warnings] == ["randomized"]

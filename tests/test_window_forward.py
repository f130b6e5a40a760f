"""Square's cropped queries (attacks/window_forward.py): the logits of a full pass, the same
attack with and without them, and a plain pass wherever the model is not one it can crop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import make_blocks_npz
from torch import nn

from robustlab import models
from robustlab.attacks.square import Square
from robustlab.attacks.window_forward import WindowForward
from robustlab.passes import count_passes
from robustlab.threat import LpThreat

pytestmark = pytest.mark.usefixtures("one_thread")


def padded_net() -> nn.Sequential:
    """Strides, zero padding, pooling and an in-place activation: every case of the crop."""
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(8, 8, 5, stride=2, padding=2), nn.BatchNorm2d(8),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3), nn.ReLU(),
                         nn.Flatten(), nn.Linear(16 * 5 * 5, 4))


@pytest.fixture(scope="module")
def blocks():
    """The padded net trained on the blocks images of tests/helpers.py."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        data = np.load(make_blocks_npz(Path(tmp) / "b.npz", 512, seed=0))
        x = torch.tensor(data["image"]).permute(0, 3, 1, 2).float() / 255
        y = torch.tensor(data["label"])
    torch.manual_seed(0)
    model = padded_net()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(150):
        i = torch.randint(0, 448, (64,))
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[i]), y[i]).backward()
        opt.step()
    return model.eval(), x[448:], y[448:]


def _random_bn(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("which,n_windows", [("cnn-small-bn", 1), ("padded", 1),
                                             ("cnn-small-bn", 2), ("padded", 2)])
def test_crop_queries_give_the_logits_of_full_passes(which, n_windows):
    torch.manual_seed(1)
    if which == "padded":
        model, size = _random_bn(padded_net()), 28
    else:
        model, size = _random_bn(models.create("cnn-small", 10, 1, norm="bn", image_size=28)), 28
    crops = WindowForward.build(model)
    assert crops is not None
    cur = torch.rand(12, 1, size, size)
    with torch.no_grad():
        assert torch.allclose(crops.start(cur), model(cur), atol=1e-5)
    worst, cropped, whole, apart = 0.0, 0, 0, 0
    for it in range(120):
        # Mostly small windows (cropped), every fifth a large one (run whole after a point).
        # Two windows (ℓ2 Square) fall apart, overlap or touch as the draw goes.
        s = int(torch.randint(14, size + 1, ())) if it % 5 == 0 else int(torch.randint(1, 6, ()))
        x_new = cur.clone()
        windows = []
        for _ in range(n_windows):
            r, c = (int(v) for v in torch.randint(0, size - s + 1, (2,)))
            x_new[:, :, r:r + s, c:c + s] = torch.rand(len(cur), 1, s, s)
            windows.append((r, c, s))
        if it % 7 == 3:  # a proposal that moved every pixel (ℓ1 Square on colour images)
            x_new, windows = torch.rand_like(cur), [None]
        logits = crops.query(x_new, windows[0] if n_windows == 1 or it % 7 == 3 else windows)
        kept = [(p, a) for p, a in zip(crops._last[1:], crops.acts[1:]) if a is not None]
        cropped += any(sum(t.shape[2] * t.shape[3] for _, t in p) < a.shape[2] * a.shape[3]
                       for p, a in kept)
        whole += kept[-1][0][0][1].shape[2:] == kept[-1][1].shape[2:]
        apart += n_windows == 2 and len(crops._last[0]) == 2
        with torch.no_grad():
            worst = max(worst, float((logits - model(x_new)).abs().max()))
        keep = torch.rand(len(cur)) < 0.5
        crops.accept(keep)
        cur = torch.where(keep.view(-1, 1, 1, 1), x_new, cur)
        if it == 60:  # examples leave, as broken ones do in Square
            stay = torch.ones(len(cur), dtype=torch.bool)
            stay[[2, 7]] = False
            crops.select(stay)
            cur = cur[stay]
    assert worst < 1e-4
    assert cropped > 60 and whole > 0  # both paths ran
    assert apart > 30 or n_windows == 1  # two rectangles kept apart, not one bounding box
    with torch.no_grad():  # what it keeps is still the current points' layers
        assert torch.allclose(crops.query(cur.clone(), (0, 0, 1)), model(cur), atol=1e-4)


def test_build_declines_models_it_cannot_crop():
    net = padded_net().eval()
    assert WindowForward.build(net) is not None
    assert WindowForward.build(padded_net().train()) is None           # batch statistics
    hooked = padded_net().eval()
    hooked[2].register_forward_hook(lambda *a: None)                    # a hook inside
    assert WindowForward.build(hooked) is None
    assert WindowForward.build(nn.Sequential(nn.Flatten(), nn.Linear(784, 4)).eval()) is None
    dilated = nn.Sequential(nn.Conv2d(1, 4, 3, dilation=2), nn.Flatten(),
                            nn.Linear(4 * 24 * 24, 4)).eval()
    assert WindowForward.build(dilated) is None                        # no croppable conv

    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = padded_net()

        def forward(self, x):
            return self.net(x)
    assert WindowForward.build(Custom().eval()) is None


@pytest.mark.parametrize("norm,eps", [("linf", 0.2), ("l2", 3.0), ("l1", 30.0)])
def test_square_with_crops_is_square_without(blocks, norm, eps, monkeypatch):
    """Same seed, same points, queries and counted passes; and the attack still breaks points
    of a trained model. Queries really were cropped (on one channel, ℓ1's too)."""
    model, x, y = blocks
    threat = LpThreat(norm, eps)
    windowed = []
    query = WindowForward.query

    def counting(self, x_new, windows):
        windowed.append(windows is not None)
        return query(self, x_new, windows)

    monkeypatch.setattr(WindowForward, "query", counting)
    results, passes = [], []
    for crop in (True, False):
        attack = Square(threat, n_queries=300)
        attack.crop_queries = crop
        torch.manual_seed(0)
        with count_passes(model) as count:
            results.append(attack(model, x, y))
        passes.append(count.forward)
    assert len(windowed) > 50 and all(windowed)
    cropped, plain = results
    assert 0 < int(plain.success.sum()) < len(x)
    assert torch.equal(cropped.success, plain.success)
    assert torch.equal(cropped.extras["queries"], plain.extras["queries"])
    torch.testing.assert_close(cropped.x_adv, plain.x_adv)
    assert passes[0] == passes[1]

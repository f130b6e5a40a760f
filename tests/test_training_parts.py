import math

import pytest
import torch
from torch import nn

from robustlab.analysis.energy import energy, energy_summary, joint_energy
from robustlab.passes import count_passes
from robustlab.training.schedule import lr_at


def test_energies_match_their_definitions():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    y = torch.tensor([2, 0])
    e = energy(logits)
    assert e[0].item() == pytest.approx(-math.log(math.e + math.e**2 + math.e**3), rel=1e-6)
    assert e[1].item() == pytest.approx(-math.log(3.0), rel=1e-6)
    assert joint_energy(logits, y).tolist() == [-3.0, 0.0]
    s = energy_summary(logits, logits + 1.0, y)
    # Adding 1 to every logit lowers E(x) and E(x, y) by exactly 1: ΔE = E(x) − E(x_adv) = 1.
    assert s["delta_energy"] == pytest.approx(1.0) and s["delta_joint_energy"] == pytest.approx(1)


def test_schedules():
    kw = dict(total_steps=100, base_lr=0.1)
    assert lr_at(0, schedule="constant", **kw) == 0.1
    assert lr_at(99, schedule="cosine", **kw) < 1e-3
    assert lr_at(50, schedule="cosine", **kw) == pytest.approx(0.05, rel=0.05)
    assert lr_at(39, schedule="onecycle", **kw) == pytest.approx(0.1)
    assert lr_at(99, schedule="onecycle", **kw) < 0.002
    assert lr_at(4, schedule="constant", warmup_steps=10, **kw) == pytest.approx(0.05)
    steps = [lr_at(s, schedule="step", milestones=[50, 75], **kw) for s in (49, 50, 75)]
    assert steps == pytest.approx([0.1, 0.01, 0.001])


def test_pass_counter_counts_forward_and_backward_examples():
    model = nn.Linear(4, 3)
    x = torch.randn(5, 4, requires_grad=True)
    with count_passes(model) as c:
        with torch.no_grad():
            model(x[:2])                     # forward only: 2
        out = model(x)                       # forward 5, then a backward through it
        torch.autograd.grad(out.sum(), x)
        model(x[:3]).sum().backward()        # forward 3, backward 3
    assert (c.forward, c.backward) == (10, 8)
    assert c.flops(7) == 7 * (10 + 2 * 8)
    model(x)  # the hook is gone after the context
    assert c.forward == 10

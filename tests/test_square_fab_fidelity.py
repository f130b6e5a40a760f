"""Square and FAB against the original AutoAttack (``pyautoattack`` 0.2.0): its p schedule and
query count, its ℓ∞ sign sharing, ℓ1 Square, ℓ1 FAB and FAB's exact acceptance, and the
settings of the ``standard`` and ``plus`` suites per norm. The expected values below were worked
out by hand from the original's formulas, not produced by running robustlab."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import accuracy, train_blob_mlp
from scipy.optimize import linprog
from torch import nn

from robustlab.attacks.autoattack import build_suite
from robustlab.attacks.fab import FAB, FABT, box_hyperplane_step
from robustlab.attacks.square import Square, p_selection, window_side
from robustlab.attacks.square_bumps import L1_TRIM_RTOL
from robustlab.threat import LpThreat, lp_norm

N_CLASSES = 4


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def blob_model():
    """An MLP trained here on Gaussian blobs (1×8×8 images in [0, 1]), clean accuracy 100%."""
    return train_blob_mlp(data_seed=0, n_test=48, n_classes=N_CLASSES)


def _accuracy(model, x, y) -> float:
    return accuracy(model, x, y)


# -- Square: the schedule ----------------------------------------------------------------------

# The original's p_selection with p_init = 0.8 and resc_schedule=False (AutoAttack's setting):
# p_init while it ≤ 10, then halved after 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000.
P_TABLE = {
    0: 0.8, 10: 0.8, 11: 0.4, 50: 0.4, 51: 0.2, 200: 0.2, 201: 0.1, 500: 0.1, 501: 0.05,
    1000: 0.05, 1001: 0.025, 2000: 0.025, 2001: 0.0125, 4000: 0.0125, 4001: 0.00625,
    5000: 0.00625, 6000: 0.00625, 6001: 0.003125, 8000: 0.003125, 8001: 0.0015625,
    9999: 0.0015625,
}


def test_square_schedule_matches_the_originals_table():
    attack = Square(LpThreat("linf", 0.1))  # AutoAttack's construction: no rescaling
    assert attack.n_queries == 5000 and attack.p_init == 0.8 and not attack.rescale_schedule
    for it, p in P_TABLE.items():
        assert attack.p_at(it) == pytest.approx(p, rel=1e-12), it
        assert p_selection(it, 0.8) == pytest.approx(p, rel=1e-12), it


def test_square_rescaled_schedule_is_the_original_class_default():
    """resc_schedule=True maps iteration i of n onto int(i / n · 10 000) first."""
    attack = Square(LpThreat("linf", 0.1), n_queries=1000, rescale_schedule=True)
    # 1 → 10: p_init; 2 → 20: /2; 5 → 50: /2; 6 → 60: /4; 801 → 8010: /512.
    assert [attack.p_at(i) for i in (1, 2, 5, 6, 801)] == pytest.approx(
        [0.8, 0.4, 0.4, 0.2, 0.8 / 512])


def test_square_window_side_matches_the_original():
    """round(sqrt(p·h·w)), at least 1 (ℓ∞) or at least 3 and odd (ℓ2, ℓ1), at most the side."""
    # 28×28: 0.8 → √627.2 = 25.04; 0.4 → √313.6 = 17.71; 0.1 → √78.4 = 8.85;
    # 0.8/512 → √1.225 = 1.107.
    assert [window_side(p, 28, 28, "linf") for p in (0.8, 0.4, 0.1, 0.8 / 512)] == [25, 18, 9, 1]
    assert [window_side(p, 28, 28, "l2") for p in (0.8, 0.4, 0.1, 0.8 / 512)] == [25, 19, 9, 3]
    assert window_side(1.0, 8, 8, "l1") == 8 and window_side(1.0, 7, 7, "l2") == 7


class ConstantModel(nn.Module):
    """Logits that ignore the input: class 0 always wins by a margin of 1, so no example with
    label 0 can ever be broken. Counts the examples it sees."""

    def __init__(self):
        super().__init__()
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += len(x)
        out = torch.zeros(len(x), N_CLASSES)
        out[:, 0] = 1.0
        return out


class RecordingSquare(Square):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.iterations: list[int] = []

    def p_at(self, iteration: int) -> float:
        self.iterations.append(iteration)
        return super().p_at(iteration)


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.0), ("l1", 4.0)])
def test_square_spends_the_originals_query_count(norm, eps):
    """The original's loop: one initial query, then n_queries iterations 0 … n_queries − 1,
    so 5001 model queries per example never broken at AutoAttack's n_queries = 5000."""
    model = ConstantModel()
    n = 3
    x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(n, dtype=torch.long)
    torch.manual_seed(0)
    attack = RecordingSquare(LpThreat(norm, eps))
    res = attack(model, x, y)
    assert not bool(res.success.any())
    assert res.extras["queries"].tolist() == [5001] * n
    assert attack.iterations == list(range(5000))
    # Plus the clean pass that picks the points to attack and the final check, as the original.
    assert model.seen == n * (5001 + 2)


# -- Square: the ℓ∞ proposal -------------------------------------------------------------------

def test_square_linf_signs_are_shared_and_every_query_changes_the_point():
    """The original draws one window and one sign per channel for the whole batch; robustlab
    flips the signs of an example whose window would not change, so no query is wasted."""
    eps = 0.1
    attack = Square(LpThreat("linf", eps))
    x = torch.full((6, 1, 8, 8), 0.5)
    torch.manual_seed(0)
    x_best = attack._init_linf(x)
    for i in range(40):
        same_start = x_best[:1].expand_as(x_best)
        x_new, _ = attack._propose_linf(x, same_start.clone(), attack.p_at(i + 2000))
        # Identical examples get identical proposals: window and signs are shared.
        assert torch.equal(x_new, x_new[:1].expand_as(x_new))
        x_new, (r, c, s) = attack._propose_linf(x, x_best, attack.p_at(i + 2000))
        changed = (x_new != x_best).flatten(1).any(1)
        assert bool(changed.all())
        # Nothing changes outside the window it reports (what the cropped queries rely on).
        outside = torch.ones(8, 8, dtype=torch.bool)
        outside[r:r + s, c:c + s] = False
        assert torch.equal(x_new[:, :, outside], x_best[:, :, outside])
        assert float((x_new - x).abs().max()) <= eps + 1e-7
        x_best = x_new


# -- Square: the ℓ2 and ℓ1 proposal -----------------------------------------------------------

def _masked_proposal(attack: Square, x: torch.Tensor, x_best: torch.Tensor, p: float):
    """The original's ℓ2/ℓ1 proposal as its code writes it, with two image-sized window masks,
    drawing the same random numbers in the same order as ``Square._propose_bumps``."""
    from robustlab.attacks.square_bumps import channel_norm, double_bump, random_sign

    n, c, h, w = x.shape
    eps, norm = attack.threat.eps, attack.threat.norm
    s = window_side(p, h, w, norm)
    vh, vw = attack._corner(h, w, s)
    vh2, vw2 = attack._corner(h, w, s)
    delta = x_best - x
    mask1, mask2 = torch.zeros_like(x), torch.zeros_like(x)
    mask1[:, :, vh:vh + s, vw:vw + s] = 1.0
    mask2[:, :, vh2:vh2 + s, vw2:vw2 + s] = 1.0
    norm_both = channel_norm(delta * torch.maximum(mask1, mask2), norm)
    old = delta[:, :, vh:vh + s, vw:vw + s]
    new = double_bump(s, norm, x.device, x.dtype) * random_sign((n, c, 1, 1), x)
    new = new + old / (channel_norm(old, norm) + 1e-12)
    norm_img = lp_norm(delta, norm).view(-1, 1, 1, 1)
    if norm == "l2":
        budget = ((eps**2 - norm_img**2).clamp_min(0) / c + norm_both**2).sqrt()
    else:
        budget = ((eps - norm_img).clamp_min(0) / c + norm_both) * c
    new = new / channel_norm(new, norm) * budget
    delta[:, :, vh2:vh2 + s, vw2:vw2 + s] = 0.0
    delta[:, :, vh:vh + s, vw:vw + s] = new
    if norm == "l2":
        return (x + eps * delta / lp_norm(delta, "l2").view(-1, 1, 1, 1)).clamp(0, 1)
    return attack.threat.project(x + delta, x)


def _l1_trimmed_excess(attack: Square, x: torch.Tensor) -> float:
    """The most ℓ1 mass robustlab's proposal trims inside its window where the original trims it
    from every pixel: the tolerance above ε plus the projection's slack below it."""
    eps = attack.threat.eps
    return eps * L1_TRIM_RTOL + eps - attack.threat.l1_inner_radius(x[0].numel(), x.dtype)


@pytest.mark.parametrize("norm,eps", [("l2", 1.0), ("l1", 6.0)])
def test_square_window_only_proposal_is_the_originals_masked_one(norm, eps):
    """robustlab computes the mass of the two windows from the windows and their overlap, never
    building image-sized masks (the cost that made its ℓ2 Square slow per query); the proposal
    must be the original's, overlapping windows or not, on three channels, at every window size
    of the schedule."""
    attack = Square(LpThreat(norm, eps))
    x = torch.rand(5, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    x_best = attack._init_bumps(x)
    for i, it in enumerate((0, 20, 100, 300, 700, 1500, 3000, 5000, 7000, 9000) * 3):
        torch.manual_seed(100 + i)
        ref = _masked_proposal(attack, x, x_best.clone(), attack.p_at(it))
        torch.manual_seed(100 + i)
        ours, _ = attack._propose_bumps(x, x_best.clone(), attack.p_at(it))
        if norm == "l2":
            torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
        else:
            # Where robustlab trims the projection's rounding-sized excess inside the new window
            # rather than from every pixel, the points differ by at most twice that excess.
            excess = _l1_trimmed_excess(attack, x)
            assert float((ours - ref).abs().flatten(1).sum(1).max()) <= 2 * excess
        assert bool(attack.threat.contains(ours, x).all())
        x_best = ours


def test_square_l1_proposal_on_one_channel_changes_only_its_windows():
    """On one channel the original's ℓ1 rule puts exactly ε in the proposal, so robustlab's
    proposal (projected inside its new window) leaves every other pixel bit for bit, which is
    what lets its queries be cropped; it is the original's to a few millionths of ε."""
    eps = 6.0
    attack = Square(LpThreat("l1", eps))
    x = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    x_best = attack._init_bumps(x)
    excess = _l1_trimmed_excess(attack, x)
    for i, it in enumerate((0, 20, 100, 300, 700, 1500, 3000, 5000) * 3):
        torch.manual_seed(200 + i)
        ref = _masked_proposal(attack, x, x_best.clone(), attack.p_at(it))
        torch.manual_seed(200 + i)
        ours, windows = attack._propose_bumps(x, x_best.clone(), attack.p_at(it))
        assert windows is not None
        same = torch.ones_like(x, dtype=torch.bool)
        for r, c, s in windows:
            same[:, :, r:r + s, c:c + s] = False
        assert torch.equal(ours[same], x_best[same])
        assert float((ours - ref).abs().flatten(1).sum(1).max()) <= 2 * excess
        assert bool(attack.threat.contains(ours, x).all())
        x_best = ours


def test_square_compact_loop_keeps_every_examples_best_point():
    """The loop keeps the examples still being queried in compact tensors and writes each back
    when it breaks: every example must come back with its own point (inside its own ball) and
    its own query count, whatever order they break in."""
    torch.manual_seed(0)
    w = torch.randn(4, 64)

    class Linear(nn.Module):
        def forward(self, z):
            return z.flatten(1) @ w.t()

    x = torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    y = Linear()(x).argmax(1)
    for norm, eps in (("linf", 0.08), ("l2", 0.6), ("l1", 3.0)):
        torch.manual_seed(1)
        res = Square(LpThreat(norm, eps), n_queries=200)(Linear(), x, y)
        assert bool(LpThreat(norm, eps).contains(res.x_adv, x).all())
        assert torch.equal(res.success, Linear()(res.x_adv).argmax(1) != y)
        q = res.extras["queries"]
        # Some broken early, some late, some never: the write-back handled all three.
        assert 0 < int(res.success.sum()) < len(x), norm
        assert bool((q[~res.success] == 201).all()) and bool((q[res.success] < 201).all())
        assert len(set(q[res.success].tolist())) > 1, norm
        # A point that did not break stays at the clean input, never someone else's point.
        assert torch.equal(res.x_adv[~res.success], x[~res.success])


# -- Square: breaks a small trained model in each norm -----------------------------------------

@pytest.mark.parametrize("norm,eps", [("linf", 0.25), ("l2", 2.5), ("l1", 6.0)])
def test_square_lowers_accuracy_of_a_trained_model(blob_model, norm, eps):
    model, x, y = blob_model
    torch.manual_seed(0)
    res = Square(LpThreat(norm, eps), n_queries=300)(model, x, y)
    assert _accuracy(model, res.x_adv, y) <= 0.25
    assert torch.equal(res.success, model(res.x_adv).argmax(1) != y)
    assert float(lp_norm(res.x_adv - x, norm).max()) <= eps * (1 + 1e-5) + 1e-6
    # And with a tenth of the budget it breaks fewer: the search, not the start, does the work.
    torch.manual_seed(0)
    short = Square(LpThreat(norm, eps), n_queries=5)(model, x, y)
    assert int(short.success.sum()) < int(res.success.sum())


# -- FAB: ℓ1 -----------------------------------------------------------------------------------

def test_l1_box_hyperplane_step_matches_linear_programming():
    """min ||d||_1 s.t. w·d = c and 0 ≤ x + d ≤ 1, as an LP with d = p − m."""
    gen = torch.Generator().manual_seed(5)
    dim, checked = 7, 0
    for _ in range(40):
        x = torch.rand(1, dim, generator=gen, dtype=torch.float64)
        w = torch.randn(1, dim, generator=gen, dtype=torch.float64)
        w[0, 0] = 0.0  # a coordinate the hyperplane ignores must not move
        c = 0.6 * torch.randn(1, generator=gen, dtype=torch.float64)
        xn, wn = x[0].numpy(), w[0].numpy()
        eye = np.eye(dim)
        lp = linprog(np.ones(2 * dim), A_ub=np.block([[eye, -eye], [-eye, eye]]),
                     b_ub=np.r_[1 - xn, xn], A_eq=np.r_[wn, -wn][None], b_eq=[float(c)],
                     bounds=[(0, None)] * (2 * dim))
        d = box_hyperplane_step(x, w, c, "l1")[0].numpy()
        assert (xn + d >= -1e-12).all() and (xn + d <= 1 + 1e-12).all()
        assert d[0] == 0.0
        if lp.status != 0:
            continue
        assert abs(wn @ d - float(c)) < 1e-9
        assert abs(np.abs(d).sum() - lp.fun) < 1e-8
        checked += 1
    assert checked >= 30


def test_fab_l1_minimal_distance_on_linear_model():
    """For a linear model away from the box the ℓ1 distance to class k is
    |z_y − z_k| / ||w_y − w_k||_∞ (all of it on one coordinate); FAB must find it within 5%."""
    gen = torch.Generator().manual_seed(6)
    weight = torch.randn(3, 16, generator=gen)
    lin = nn.Linear(16, 3)
    with torch.no_grad():
        lin.weight.copy_(weight)
        lin.bias.copy_(-0.5 * weight.sum(1))
    model = nn.Sequential(nn.Flatten(), lin).eval()
    x = (0.5 + 0.03 * torch.randn(40, 1, 4, 4, generator=gen)).clamp(0, 1)
    with torch.no_grad():
        logits = model(x)
    y = logits.argmax(1)
    exact = torch.full((40,), float("inf"))
    fits = torch.zeros(40, dtype=torch.bool)
    for k in range(3):
        wd = weight[k][None] - weight[y]
        gap = logits.gather(1, y[:, None])[:, 0] - logits[:, k]
        dist = gap / wd.abs().amax(1).clamp_min(1e-12)
        closer = (y != k) & (dist < exact)
        exact = torch.where(closer, dist, exact)
        fits = torch.where(closer, dist < 0.45, fits)  # the one coordinate stays in [0, 1]
    assert int(fits.sum()) >= 15
    res = FAB(LpThreat("l1", 2.0), steps=100)(model, x[fits], y[fits])
    assert bool(res.success.all())
    ratio = res.extras["distortion"] / exact[fits]
    assert float(ratio.min()) >= 1 - 1e-3 and float(ratio.max()) <= 1.05


def test_fab_t_l1_finds_adversarials_within_eps(blob_model):
    model, x, y = blob_model
    eps = 4.0  # the median ℓ1 distortion FAB finds here is about 2.9
    res = FABT(LpThreat("l1", eps), steps=30, n_target_classes=3)(model, x, y)
    assert float(res.success.float().mean()) >= 0.9
    norms = lp_norm(res.x_adv - x, "l1")
    assert float(norms.max()) <= eps
    torch.testing.assert_close(norms[res.success], res.extras["distortion"][res.success],
                               rtol=1e-4, atol=1e-5)
    assert bool((res.extras["target"][res.success] != y[res.success]).all())


def test_fab_accepts_exactly_up_to_eps(blob_model):
    """The original keeps a point iff its norm ≤ ε, with no tolerance. One restart starts at the
    clean point, so the distortion found does not depend on ε."""
    model, x, y = blob_model
    x, y = x[:8], y[:8]
    found = FAB(LpThreat("l2", 50.0), steps=20)(model, x, y).extras["distortion"]
    d0 = float(found[0])
    at = FAB(LpThreat("l2", d0), steps=20)(model, x, y)
    assert bool(at.success[0]) and float(at.extras["distortion"][0]) == d0
    below = float(np.nextafter(np.float32(d0), np.float32(0)))
    under = FAB(LpThreat("l2", below), steps=20)(model, x, y)
    assert not bool(under.success[0])
    assert torch.equal(under.x_adv[0], x[0])


# -- the suites --------------------------------------------------------------------------------

def _settings(attack) -> tuple:
    targets = getattr(attack, "n_target_classes", None) if attack.name.endswith("-t") else None
    return (attack.name, getattr(attack, "steps", None), getattr(attack, "restarts", None),
            targets, getattr(attack, "n_queries", None))


def test_standard_suite_per_norm_is_the_originals():
    for norm, eps in (("linf", 0.1), ("l2", 1.0)):
        suite = build_suite("standard", LpThreat(norm, eps))
        assert [_settings(a) for a in suite] == [
            ("apgd-ce", 100, 1, None, None), ("apgd-t", 100, 1, 9, None),
            ("fab-t", 100, 1, 9, None), ("square", None, 1, None, 5000)]
    suite = build_suite("standard", LpThreat("l1", 10.0))
    assert [_settings(a) for a in suite] == [
        ("apgd-ce", 100, 5, None, None), ("apgd-t", 100, 1, 5, None),
        ("fab-t", 100, 1, 9, None), ("square", None, 1, None, 5000)]
    square = suite[-1]
    assert square.p_init == 0.8 and not square.rescale_schedule and square.loss == "margin"
    fab_t = suite[2]
    assert (fab_t.alpha_max, fab_t.eta, fab_t.beta) == (0.1, 1.05, 0.9)
    # Fewer classes than targets: every other class, once.
    few = build_suite("standard", LpThreat("l1", 10.0), num_classes=4)
    assert [getattr(a, "n_target_classes", None) for a in few] == [None, 3, 3, None]


def test_plus_suite_is_the_originals():
    suite = build_suite("plus", LpThreat("l1", 10.0))
    assert [_settings(a) for a in suite] == [
        ("apgd-ce", 100, 5, None, None), ("apgd-dlr", 100, 5, None, None),
        ("fab", 100, 5, None, None), ("square", None, 1, None, 5000),
        ("apgd-t", 100, 1, 9, None), ("fab-t", 100, 1, 9, None)]



def test_fast_suite_per_norm():
    """``fast``: ℓ∞ as cheap as before; ℓ2 runs FAB-T, which breaks points there that no APGD
    variant does, before APGD-T; ℓ1 gives APGD-CE the restarts l1-APGD's random
    sparse start needs (attacks/autoattack.py says what each bought on the quickstart model)."""
    names = {norm: [(a.label, _settings(a)) for a in build_suite("fast", LpThreat(norm, eps))]
             for norm, eps in (("linf", 0.1), ("l2", 1.5), ("l1", 10.0))}
    assert names["linf"] == [("apgd-ce-50", ("apgd-ce", 50, 1, None, None)),
                             ("apgd-t3-50", ("apgd-t", 50, 1, 3, None))]
    assert names["l2"] == [("apgd-ce-50", ("apgd-ce", 50, 1, None, None)),
                           ("fab-t3-100r", ("fab-t", 100, 1, 3, None)),
                           ("apgd-t3-50", ("apgd-t", 50, 1, 3, None))]
    assert names["l1"] == [("apgd-ce-50x3", ("apgd-ce", 50, 3, None, None)),
                           ("apgd-t3-50", ("apgd-t", 50, 1, 3, None))]
    few = build_suite("fast", LpThreat("l2", 1.5), num_classes=3)
    assert [a.label for a in few] == ["apgd-ce-50", "fab-t2-100r", "apgd-t2-50"]
    fab = build_suite("fast", LpThreat("l2", 1.5))[1]
    assert fab.early_stop and fab.reuse_linearisation
    # standard keeps the original's FAB-T: a fresh linearisation after every backward step.
    std = build_suite("standard", LpThreat("l2", 1.5))[2]
    assert std.early_stop and not std.reuse_linearisation

class HalfFrozen(nn.Module):
    """A linear model, except that images whose first pixel is below 0.5 get constant logits
    (class 0), so FAB can never move them; the linear part ignores that pixel, so no image
    changes side. Counts the examples of its forward passes."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(7)
        self.lin = nn.Linear(64, N_CLASSES)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(N_CLASSES, 64, generator=gen))
            self.lin.weight[:, 0] = 0.0
            self.lin.bias.copy_(-0.5 * self.lin.weight.sum(1))
        self.forward_examples = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forward_examples += len(x)
        flat = x.flatten(1)
        frozen = torch.zeros(len(x), N_CLASSES)
        frozen[:, 0] = 1.0
        return torch.where(flat[:, :1] < 0.5, frozen + 0 * flat.sum(1, keepdim=True),
                           self.lin(flat))


def test_fab_t_reuses_its_check_pass_without_changing_the_result():
    """FAB-T's check of an iterate also linearises it, so the next step needs no pass of its
    own: while few iterates turn adversarial, fewer forward passes and the same points and
    distortions as the original's order of passes."""
    gen = torch.Generator().manual_seed(8)
    x = (0.5 + 0.1 * torch.randn(48, 1, 8, 8, generator=gen)).clamp(0, 1)
    x[:, 0, 0, 0] = 0.2
    x[:12, 0, 0, 0] = 0.8  # a quarter of the images are linear, and break
    with torch.no_grad():
        y = HalfFrozen()(x).argmax(1)
    results, passes = [], []
    for fuse in (True, False):
        model = HalfFrozen().eval()
        attack = FABT(LpThreat("l2", 1.0), steps=20, n_target_classes=2)
        attack.fuse_check = fuse
        results.append(attack(model, x, y))
        passes.append(model.forward_examples)
    fused, plain = results
    assert int(plain.success.sum()) == 12 and bool(plain.success[:12].all())
    assert torch.equal(fused.success, plain.success)
    torch.testing.assert_close(fused.extras["distortion"], plain.extras["distortion"],
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fused.x_adv, plain.x_adv, rtol=1e-5, atol=1e-6)
    assert passes[0] < 0.75 * passes[1]

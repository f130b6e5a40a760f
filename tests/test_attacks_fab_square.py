"""FAB and Square Attack on small models trained here: they break an undefended model, stay in
the threat model, FAB finds the exact minimal distance of a linear model, Square needs no
gradients and keeps to its query budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linprog
from torch import nn

import robustlab.attacks.fab as fab_module
from robustlab.attacks.fab import FAB, FABT, box_hyperplane_step
from robustlab.attacks.registry import make_attack
from robustlab.attacks.square import Square
from robustlab.errors import UserError
from robustlab.passes import count_passes
from robustlab.threat import LpThreat, lp_norm

N_CLASSES = 4


def _blobs(n: int, gen: torch.Generator, means: torch.Tensor):
    y = torch.randint(0, N_CLASSES, (n,), generator=gen)
    x = (means[y] + 0.08 * torch.randn(n, 1, 8, 8, generator=gen)).clamp(0, 1)
    return x, y


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def blob_model():
    """An MLP on Gaussian blobs (1×8×8 images in [0, 1]) with clean accuracy ~100%."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    means = 0.25 + 0.5 * torch.rand(N_CLASSES, 1, 8, 8, generator=gen)
    x, y = _blobs(2000, gen, means)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, N_CLASSES))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    x_test, y_test = _blobs(64, gen, means)
    with torch.no_grad():
        assert (model(x_test).argmax(1) == y_test).float().mean() == 1.0
    return model, x_test, y_test


def _accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _assert_inside(x_adv, x, norm, eps):
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert float(lp_norm(x_adv - x, norm).max()) <= eps * (1 + 1e-5) + 1e-6


# -- the box-constrained hyperplane projection ----------------------------------------------------

def test_box_hyperplane_step_matches_linear_programming():
    """The ℓ∞ step equals the optimum of the LP min t s.t. |d_i| ≤ t, w·d = c, box."""
    gen = torch.Generator().manual_seed(1)
    d_dim, checked = 6, 0
    for _ in range(40):
        x = torch.rand(1, d_dim, generator=gen, dtype=torch.float64)
        w = torch.randn(1, d_dim, generator=gen, dtype=torch.float64)
        c = 0.5 * torch.randn(1, generator=gen, dtype=torch.float64)
        xn, wn, cn = x[0].numpy(), w[0].numpy(), float(c)
        cost = np.r_[np.zeros(d_dim), 1.0]
        a_ub = np.block([[np.eye(d_dim), -np.ones((d_dim, 1))],
                         [-np.eye(d_dim), -np.ones((d_dim, 1))]])
        lp = linprog(cost, A_ub=a_ub, b_ub=np.zeros(2 * d_dim), A_eq=np.r_[wn, 0.0][None],
                     b_eq=[cn], bounds=list(zip(-xn, 1 - xn)) + [(0, None)])
        if lp.status != 0:  # the hyperplane misses the box
            continue
        d = box_hyperplane_step(x, w, c, "linf")[0].numpy()
        assert abs(wn @ d - cn) < 1e-8
        assert (xn + d >= -1e-12).all() and (xn + d <= 1 + 1e-12).all()
        assert abs(np.abs(d).max() - lp.fun) < 1e-7
        checked += 1
    assert checked >= 20


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_box_hyperplane_step_newton_and_sort_agree(norm, monkeypatch):
    """λ by Newton's method equals λ from the sorted breakpoints on wide rows with pixels at the
    box's walls (as Fashion-MNIST's background), and rows Newton leaves unsettled get the sorted
    one (one Newton step only: most rows are then solved by the sort)."""
    gen = torch.Generator().manual_seed(3)
    n, dim = 64, 784
    x = torch.rand(n, dim, generator=gen, dtype=torch.float64)
    x[torch.rand(n, dim, generator=gen) < 0.5] = 0.0
    w = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    reachable = (w.abs() * torch.where(w > 0, 1 - x, x)).sum(1)
    c = reachable * torch.rand(n, generator=gen, dtype=torch.float64) * 0.3
    c[::3] *= -1
    newton = box_hyperplane_step(x, w, c, norm)
    assert ((w * newton).sum(1) - c).abs().max() < 1e-9 * reachable.max()
    monkeypatch.setattr(fab_module, "_NEWTON_STEPS", 1)
    torch.testing.assert_close(box_hyperplane_step(x, w, c, norm), newton, rtol=0, atol=1e-12)
    monkeypatch.setattr(fab_module, "_NEWTON_STEPS", 0)
    torch.testing.assert_close(box_hyperplane_step(x, w, c, norm), newton, rtol=0, atol=1e-12)


def test_box_hyperplane_step_l1_matches_linear_programming_on_wide_rows():
    """The ℓ1 step is the LP optimum min ‖d‖₁ s.t. w·d = c, box, both where the largest 64
    |w_i| complete c (a top-k) and where they do not (a full sort); a hyperplane beyond the
    box gets the corner closest to it."""
    gen = torch.Generator().manual_seed(2)
    n, dim = 12, 300
    x = torch.rand(n, dim, generator=gen, dtype=torch.float64)
    w = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    reachable = (w.abs() * torch.where(w > 0, 1 - x, x)).sum(1)
    # Small offsets (a few coordinates), large ones (hundreds), and two beyond the box.
    c = reachable * torch.tensor([0.005, 0.02, 0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 0.6, 1.5,
                                  2.0], dtype=torch.float64)
    c[::2] *= -1
    d = box_hyperplane_step(x, w, c, "l1")
    prefix = (w.abs().topk(64, dim=1).values
              * torch.where(w > 0, 1 - x, x).gather(1, w.abs().topk(64, dim=1).indices)).sum(1)
    assert 0 < int((prefix >= c.abs()).sum()) < n  # both paths are taken
    for i in range(n):
        xn, wn, cn, dn = x[i].numpy(), w[i].numpy(), float(c[i]), d[i].numpy()
        assert (xn + dn >= -1e-12).all() and (xn + dn <= 1 + 1e-12).all()
        if abs(cn) > float(reachable[i]):  # beyond the box: every coordinate to its bound
            np.testing.assert_allclose(dn, np.where(wn * np.sign(cn) > 0, 1 - xn, -xn))
            continue
        lp = linprog(np.ones(2 * dim), A_eq=np.r_[wn, -wn][None], b_eq=[cn],
                     bounds=[(0, 1 - v) for v in xn] + [(0, v) for v in xn])
        assert lp.status == 0
        assert abs(wn @ dn - cn) < 1e-8 * max(1.0, abs(cn))
        assert np.abs(dn).sum() == pytest.approx(lp.fun, rel=1e-7)


def test_box_hyperplane_step_l2_is_the_plain_projection_inside_the_box():
    x = torch.full((1, 4), 0.5, dtype=torch.float64)
    w = torch.tensor([[1.0, -2.0, 0.5, 0.0]], dtype=torch.float64)
    c = torch.tensor([0.3], dtype=torch.float64)
    d = box_hyperplane_step(x, w, c, "l2")
    torch.testing.assert_close(d, c[:, None] * w / w.pow(2).sum())
    # With the box binding, coordinate 0 saturates at 1 and the rest takes up the slack.
    d = box_hyperplane_step(x, torch.tensor([[1.0, 0.1, 0.0, 0.0]], dtype=torch.float64),
                            torch.tensor([0.52], dtype=torch.float64), "l2")
    torch.testing.assert_close(d, torch.tensor([[0.5, 0.2, 0.0, 0.0]], dtype=torch.float64))


# -- breaking an undefended model --------------------------------------------------------------

@pytest.mark.parametrize("norm,eps", [("linf", 0.3), ("l2", 3.0)])
def test_fab_breaks_undefended_model(blob_model, norm, eps):
    model, x, y = blob_model
    threat = LpThreat(norm, eps)
    res = FAB(threat, steps=30)(model, x, y)
    _assert_inside(res.x_adv, x, norm, eps)
    assert _accuracy(model, res.x_adv, y) <= 0.05
    assert torch.equal(res.success, model(res.x_adv).argmax(1) != y)
    dist = res.extras["distortion"]
    assert bool(torch.isfinite(dist).all())
    # The reported distortion is the real distance of the returned point where it was within ε.
    torch.testing.assert_close(lp_norm(res.x_adv - x, norm)[res.success],
                               dist[res.success], rtol=1e-4, atol=1e-5)
    # Broken exactly where FAB's own adversarial example is within ε; elsewhere x is returned.
    assert torch.equal(res.success, dist <= eps * (1 + 1e-5) + 1e-6)
    assert torch.equal(res.x_adv[~res.success], x[~res.success])


def test_fab_counts_only_adversarials_within_eps(blob_model):
    """At an ε near the median distortion some points are broken and some are not; those FAB
    broke only beyond ε come back unchanged."""
    model, x, y = blob_model
    full = FAB(LpThreat("l2", 10.0), steps=30)(model, x, y).extras["distortion"]
    eps = float(full.median())
    torch.manual_seed(0)
    res = FAB(LpThreat("l2", eps), steps=30)(model, x, y)
    dist = res.extras["distortion"]
    assert 0 < int(res.success.sum()) < len(x)
    assert bool((dist[res.success] <= eps * (1 + 1e-5) + 1e-6).all())
    assert torch.equal(res.x_adv[~res.success], x[~res.success])


def test_fab_returns_clean_point_when_eps_too_small(blob_model):
    model, x, y = blob_model
    res = FAB(LpThreat("l2", 0.01), steps=20)(model, x, y)
    assert not bool(res.success.any())
    assert torch.equal(res.x_adv, x)
    assert bool((res.extras["distortion"] > 0.01).all())


@pytest.mark.parametrize("norm,eps", [("linf", 0.3), ("l2", 3.0)])
def test_square_breaks_undefended_model(blob_model, norm, eps):
    model, x, y = blob_model
    torch.manual_seed(0)
    res = Square(LpThreat(norm, eps), n_queries=300)(model, x, y)
    _assert_inside(res.x_adv, x, norm, eps)
    assert _accuracy(model, res.x_adv, y) <= 0.05
    assert res.extras["mean_queries"] >= 1


# -- FAB finds the exact minimal distance of a linear model ------------------------------------

def _linear_model(weight: torch.Tensor, bias: torch.Tensor) -> nn.Module:
    lin = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        lin.weight.copy_(weight)
        lin.bias.copy_(bias)
    return nn.Sequential(nn.Flatten(), lin).eval()


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_fab_minimal_distance_on_linear_model(norm):
    """For a linear classifier the distance to misclassification is, away from the box,
    min_k |z_y − z_k| / ||w_y − w_k||_dual; FAB must find it within 5%."""
    gen = torch.Generator().manual_seed(3)
    weight = torch.randn(3, 16, generator=gen)
    model = _linear_model(weight, -0.5 * weight.sum(1))  # the three classes tie at x = 0.5
    x = (0.5 + 0.05 * torch.randn(40, 1, 4, 4, generator=gen)).clamp(0, 1)
    with torch.no_grad():
        logits = model(x)
    y = logits.argmax(1)
    dual = 1 if norm == "linf" else 2
    exact = torch.full((40,), float("inf"))
    closest = x.flatten(1).clone()
    for k in range(3):
        wd = weight[k][None] - weight[y]
        gap = logits.gather(1, y[:, None])[:, 0] - logits[:, k]
        dist_k = gap / wd.norm(p=dual, dim=1).clamp_min(1e-12)
        step = wd / wd.norm(dim=1, keepdim=True).clamp_min(1e-12) if norm == "l2" else wd.sign()
        closer = (y != k) & (dist_k < exact)
        exact = torch.where(closer, dist_k, exact)
        closest = torch.where(closer[:, None], x.flatten(1) + dist_k[:, None] * step, closest)
    # Where the closest boundary point lies in the box, the closed form is the exact answer.
    keep = ((closest >= 0) & (closest <= 1)).all(1)
    assert int(keep.sum()) >= 30
    res = FAB(LpThreat(norm, 1.0 if norm == "l2" else 0.5), steps=100)(model, x[keep], y[keep])
    found = res.extras["distortion"]
    assert bool(res.success.all())
    ratio = found / exact[keep]
    assert float(ratio.min()) >= 1 - 1e-3  # nothing can be closer than the true boundary
    assert float(ratio.max()) <= 1.05


def test_fab_two_class_linear_with_box():
    """2-class linear model, closed form |w·x+b| / ||w||_2."""
    gen = torch.Generator().manual_seed(4)
    w = torch.randn(1, 25, generator=gen)
    model = _linear_model(torch.cat([torch.zeros_like(w), w]),
                          torch.tensor([0.0, -0.5 * float(w.sum())]))
    x = (0.5 + 0.1 * torch.randn(30, 1, 5, 5, generator=gen)).clamp(0, 1)
    with torch.no_grad():
        f = model(x)
    y = f.argmax(1)
    margin = f[:, 1] - f[:, 0]
    exact = margin.abs() / w.norm()
    foot = x.flatten(1) - margin[:, None] * w / w.pow(2).sum()  # closest boundary point
    keep = ((foot >= 0) & (foot <= 1)).all(1)
    assert int(keep.sum()) >= 20
    res = FAB(LpThreat("l2", 2.0), steps=100)(model, x[keep], y[keep])
    ratio = res.extras["distortion"] / exact[keep]
    assert bool(res.success.all())
    assert float(ratio.min()) >= 1 - 1e-3 and float(ratio.max()) <= 1.05


def test_fab_respects_the_box():
    """When the unconstrained closest boundary point leaves [0, 1], FAB's answer is the
    box-constrained minimum, which is larger than the closed form."""
    w = torch.tensor([[1.0, 0.2]])
    model = _linear_model(torch.cat([torch.zeros_like(w), w]), torch.tensor([0.0, -1.15]))
    x = torch.tensor([[0.99, 0.5]])  # w·x − 1.15 = −0.06: class 0
    # Unconstrained, the closest boundary point has z0 = 0.99 + 0.06/1.04 > 1. In the box z0 stops
    # at 1 and z1 takes the remaining 0.05 / 0.2 = 0.25: distance √(0.01² + 0.25²).
    res = FAB(LpThreat("l2", 1.0), steps=100)(model, x, torch.tensor([0]))
    assert bool(res.success.all())
    free = 0.06 / float(w.norm())
    boxed = (0.01**2 + 0.25**2) ** 0.5
    found = float(res.extras["distortion"][0])
    assert found > 3 * free
    assert boxed * (1 - 1e-4) <= found <= boxed * 1.05


# -- FAB-T ------------------------------------------------------------------------------------

def test_fab_t_reaches_its_targets(blob_model):
    model, x, y = blob_model
    attack = FABT(LpThreat("l2", 3.0), steps=30, n_target_classes=1)
    assert attack.name == "fab-t" and attack.fab_targeted
    res = attack(model, x, y)
    with torch.no_grad():
        second = model(x).argsort(1, descending=True)[:, 1]
        pred = model(res.x_adv).argmax(1)
    target = res.extras["target"]
    assert bool(res.success.all())
    assert torch.equal(target, second)
    assert float((pred == target).float().mean()) >= 0.9


def test_fab_t_tries_further_targets(blob_model):
    """With a budget only some boundaries fit in, further targets break more points."""
    model, x, y = blob_model
    threat = LpThreat("l2", 1.0)
    one = FABT(threat, steps=20, n_target_classes=1)(model, x, y)
    three = FABT(threat, steps=20, n_target_classes=3)(model, x, y)
    assert int(three.success.sum()) >= int(one.success.sum())
    assert set(three.extras["target"][three.success].tolist()) <= set(range(N_CLASSES))


@pytest.mark.parametrize("norm,eps", [("l2", 0.67), ("linf", 0.1), ("l1", 2.86)])
def test_fab_early_stop_breaks_the_same_points_with_fewer_passes(blob_model, norm, eps):
    """Per-example early exit (the suites' setting) drops an example once it has a point within
    ε: the same points break as in the full run, whose minimal norms only shrink after that, and
    the passes drop; examples never broken follow the same iterates either way."""
    model, x, y = blob_model
    threat = LpThreat(norm, eps)
    runs = {}
    for stop in (False, True):
        with count_passes(model) as count:
            res = FABT(threat, steps=30, n_target_classes=2, early_stop=stop)(model, x, y)
        runs[stop] = res, count.forward + count.backward
    (full, full_passes), (early, early_passes) = runs[False], runs[True]
    assert 0 < int(full.success.sum()) < len(x)
    assert torch.equal(full.success, early.success)
    _assert_inside(early.x_adv, x, norm, eps)
    with torch.no_grad():
        assert bool((model(early.x_adv).argmax(1) != y)[early.success].all())
    # The full run keeps minimising: its distortions are at most the early run's.
    broken = full.success
    assert bool((full.extras["distortion"][broken]
                 <= early.extras["distortion"][broken] + 1e-6).all())
    robust = ~broken
    assert torch.allclose(full.extras["distortion"][robust], early.extras["distortion"][robust])
    assert early_passes < 0.9 * full_passes


def test_fab_t_reusing_the_linearisation_costs_one_pass_pair_per_step(blob_model):
    """``reuse_linearisation`` (the ``fast`` suite's FAB-T): every step is one forward and one
    backward, however many iterates come out adversarial; it still breaks the points the exact
    FAB-T breaks here, within the threat model, and is a different algorithm (other
    distortions)."""
    model, x, y = blob_model
    threat = LpThreat("l2", 0.67)
    steps = 30
    runs = {}
    for reuse in (False, True):
        with count_passes(model) as count:
            res = FABT(threat, steps=steps, n_target_classes=1,
                       reuse_linearisation=reuse)(model, x, y)
        runs[reuse] = res, count
    (exact, c_exact), (reused, c_reused) = runs[False], runs[True]
    n = len(x)
    # Per example: the first linearisation, then each step's check linearises (the last step's
    # only checks): steps backward passes; forwards also for the clean pass and final check.
    assert c_reused.backward == steps * n and c_reused.forward == (steps + 3) * n
    assert c_exact.forward > c_reused.forward
    _assert_inside(reused.x_adv, x, "l2", 0.67)
    with torch.no_grad():
        assert bool((model(reused.x_adv).argmax(1) != y)[reused.success].all())
    assert int(reused.success.sum()) >= int(exact.success.sum()) - 2
    assert not torch.equal(reused.extras["distortion"], exact.extras["distortion"])


# -- Square: black-box, budget -----------------------------------------------------------------

class NoGradModel(nn.Module):
    """A model that refuses any use of autograd: its forward runs only with gradients off."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or x.requires_grad:
            raise AssertionError("the attack asked for gradients")
        out = self.model(x)
        assert not out.requires_grad
        return out


@pytest.mark.parametrize("norm,eps", [("linf", 0.3), ("l2", 3.0)])
def test_square_needs_no_gradients(blob_model, norm, eps):
    model, x, y = blob_model
    wrapped = NoGradModel(model)
    torch.manual_seed(0)
    res = Square(LpThreat(norm, eps), n_queries=300)(wrapped, x, y)
    assert float(res.success.float().mean()) >= 0.95
    with pytest.raises(AssertionError):  # the wrapper does catch a gradient-based attack
        FAB(LpThreat(norm, eps), steps=2)(wrapped, x, y)


@pytest.mark.parametrize("norm,eps", [("linf", 0.11), ("l2", 1.1)])
def test_square_query_budget(blob_model, norm, eps):
    model, x, y = blob_model
    torch.manual_seed(0)
    budget = 100
    res = Square(LpThreat(norm, eps), n_queries=budget)(model, x, y)
    q = res.extras["queries"]
    _assert_inside(res.x_adv, x, norm, eps)
    # The initial query plus ``budget`` iterations, as the original AutoAttack counts.
    assert int(q.max()) <= budget + 1
    # Points still robust used the whole budget; broken ones stopped on success.
    assert bool((q[~res.success] == budget + 1).all())
    assert 0 < int((~res.success).sum()) < len(x)


def test_square_counts_queries_with_a_counting_model(blob_model):
    model, x, y = blob_model

    class Counter(nn.Module):
        def __init__(self):
            super().__init__()
            self.seen = 0

        def forward(self, inp):
            self.seen += len(inp)
            return model(inp)

    counter = Counter()
    torch.manual_seed(0)
    res = Square(LpThreat("linf", 0.11), n_queries=60, rescale_schedule=True)(counter, x, y)
    assert 0 < int(res.success.sum()) < len(x)
    # One clean pass and one final pass over the batch, plus the counted queries.
    assert counter.seen == 2 * len(x) + int(res.extras["queries"].sum())


def test_square_schedule_halves_p():
    attack = Square(LpThreat("linf", 0.1), n_queries=10000, p_init=0.8)
    assert attack.p_at(1) == 0.8 and attack.p_at(11) == 0.4 and attack.p_at(9000) == 0.8 / 512
    short = Square(LpThreat("linf", 0.1), n_queries=1000, rescale_schedule=True)
    assert short.p_at(2) == 0.4  # rescaled: query 2 of 1000 is query 20 of 10 000


def test_square_ce_loss_and_steps_alias(blob_model):
    model, x, y = blob_model
    attack = Square(LpThreat("linf", 0.3), n_queries=5000, steps=200, loss="ce")
    assert attack.n_queries == 200
    torch.manual_seed(0)
    res = attack(model, x, y)
    assert float(res.success.float().mean()) >= 0.95
    assert int(res.extras["queries"].max()) <= 200


def test_registry_builds_fab_and_square():
    threat = LpThreat("l2", 1.0)
    assert isinstance(make_attack("fab", threat, steps=5, restarts=2), FAB)
    fab_t = make_attack("fab-t", threat, steps=5, n_target_classes=3)
    assert isinstance(fab_t, FABT) and fab_t.name == "fab-t" and fab_t.n_target_classes == 3
    square = make_attack("square", threat, steps=50, restarts=2)
    assert isinstance(square, Square) and square.n_queries == 50 and square.restarts == 2


def test_settings_are_checked():
    with pytest.raises(UserError):
        Square(LpThreat("l1", 1.0), p_init=0.0)
    with pytest.raises(UserError):
        Square(LpThreat("linf", 0.1), n_queries=0)
    with pytest.raises(UserError):
        FAB(LpThreat("linf", 0.1), beta=0.0)
    with pytest.raises(UserError, match="FAB-T"):
        FAB(LpThreat("l2", 1.0), reuse_linearisation=True)
    with pytest.raises(UserError):
        Square(LpThreat("linf", 0.1), loss="dlr")

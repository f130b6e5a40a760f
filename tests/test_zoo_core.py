"""Model-zoo core (Su et al., ECCV 2018): minimal-distortion attacks against closed forms on
linear models, CLEVER, transferability and the zoo metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import weibull_max
from torch import nn

from robustlab.analysis.clever import clever, clever_score, reverse_weibull_location
from robustlab.analysis.transfer import adapt_input, transfer_matrix
from robustlab.analysis.zoo import (
    distortion_summary,
    family_of,
    fit_distortion_vs_log_error,
    pareto_front,
)
from robustlab.attacks.base import Attack, AttackResult
from robustlab.attacks.cw import CarliniWagnerL2
from robustlab.attacks.ead import EAD
from robustlab.attacks.eps_search import FGSMSearch, IFGSMSearch, fgsm_at, minimal_linf
from robustlab.errors import UserError
from robustlab.threat import LpThreat, lp_norm

D = 64  # 1×8×8 images


pytestmark = pytest.mark.usefixtures("one_thread")


def linear_model(num_classes: int = 2, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    lin = nn.Linear(D, num_classes)
    with torch.no_grad():
        lin.weight.normal_(0, 0.5)
        # The boundary between classes 0 and 1 passes through the grey image x = 0.5.
        lin.bias.copy_(-(lin.weight @ torch.full((D,), 0.5)))
    return nn.Sequential(nn.Flatten(), lin)


def boundary_points(model: nn.Module, n: int = 8, seed: int = 1) -> tuple[torch.Tensor, ...]:
    """Points at signed distance ±[0.15, 0.4] from the 0-vs-1 boundary, near grey so the box
    never binds; returns x, the predicted labels y and the margin g = f_1 − f_0 at x."""
    lin = model[1]
    dw = (lin.weight[1] - lin.weight[0]).detach()
    u = dw / dw.norm()
    g = torch.Generator().manual_seed(seed)
    noise = (torch.rand((n, D), generator=g) - 0.5) * 0.1
    noise = noise - (noise @ u)[:, None] * u  # keep the distance exact: noise ⟂ Δw
    t = (torch.rand(n, generator=g) * 0.25 + 0.15) * torch.where(torch.arange(n) % 2 == 0, 1, -1)
    x = (0.5 + noise + t[:, None] * u).view(n, 1, 8, 8)
    assert float(x.min()) > 0.1 and float(x.max()) < 0.9
    with torch.no_grad():
        logits = model(x)
    y = logits.argmax(1)
    return x, y, (logits[:, 1] - logits[:, 0]), dw


def pgd_l2_minimal(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 20,
                   iters: int = 12) -> torch.Tensor:
    """A plain PGD-ℓ2 with a per-example bisection over ε: the reference minimal distortion."""
    def pgd(eps: torch.Tensor) -> torch.Tensor:
        threat_eps = eps.view(-1, 1, 1, 1)
        xa = x.clone()
        for _ in range(steps):
            xa.requires_grad_(True)
            (grad,) = torch.autograd.grad(F.cross_entropy(model(xa), y, reduction="sum"), xa)
            with torch.no_grad():
                gn = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
                xa = xa + 2.5 * threat_eps / steps * grad / gn
                d = xa - x
                dn = d.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
                xa = (x + d * (threat_eps / dn.clamp_min(1e-12)).clamp(max=1)).clamp(0, 1)
        with torch.no_grad():
            return model(xa).argmax(1) != y

    lo, hi = torch.zeros(len(x)), torch.full((len(x),), 2.0)
    for _ in range(iters):
        mid = (lo + hi) / 2
        ok = pgd(mid)
        hi, lo = torch.where(ok, mid, hi), torch.where(ok, lo, mid)
    return hi


@pytest.fixture(scope="module")
def linear_setup():
    model = linear_model()
    x, y, g, dw = boundary_points(model)
    return model, x, y, g, dw


def test_cw_l2_matches_closed_form_and_beats_pgd(linear_setup):
    model, x, y, g, dw = linear_setup
    exact = g.abs() / dw.norm()
    res = CarliniWagnerL2(steps=100, lr=0.01, binary_search_steps=7)(model, x, y)
    dist = res.extras["distortion"]
    assert res.success.all()
    # C&W's distortion is that of the example it returns, which crosses the boundary.
    assert torch.allclose(dist, lp_norm(res.x_adv - x, "l2"))
    with torch.no_grad():
        assert (model(res.x_adv).argmax(1) != y).all()
    assert ((dist - exact).abs() / exact).max() < 0.05
    assert (dist >= exact * (1 - 1e-4)).all()  # nothing closer than the boundary exists
    pgd = pgd_l2_minimal(model, x, y)
    assert dist.mean() <= pgd.mean() * 1.005


def test_cw_targeted_and_bad_settings(linear_setup):
    model, x, y, _, _ = linear_setup
    res = CarliniWagnerL2(steps=50, lr=0.02, binary_search_steps=4, targeted=True,
                          target_mode="second")(model, x, y)
    assert (res.extras["target"] == 1 - y).all()
    assert res.success.all()
    with pytest.raises(UserError, match="target_mode"):
        CarliniWagnerL2(target_mode="best")
    with pytest.raises(UserError, match="steps"):
        CarliniWagnerL2(steps=0)


def test_ead_l1_not_above_cw_l1(linear_setup):
    model, x, y, g, dw = linear_setup
    cw = CarliniWagnerL2(steps=100, lr=0.01, binary_search_steps=7)(model, x, y)
    ead = EAD(beta=1e-2, steps=100, lr=0.01, binary_search_steps=7)(model, x, y)
    assert ead.success.all()
    ead_l1 = ead.extras["distortion"]
    assert torch.allclose(ead_l1, lp_norm(ead.x_adv - x, "l1"))
    cw_l1 = lp_norm(cw.x_adv - x, "l1")
    assert (ead_l1 <= cw_l1 * 1.001).all()
    # The ℓ1 minimum of a linear model moves the single coordinate of largest |Δw|.
    assert (ead_l1 >= g.abs() / dw.abs().max() * (1 - 1e-4)).all()
    with torch.no_grad():
        assert (model(ead.x_adv).argmax(1) != y).all()


@pytest.mark.parametrize("method", ["ifgsm", "fgsm"])
def test_eps_search_is_minimal_to_tolerance(linear_setup, method):
    model, x, y, g, dw = linear_setup
    tol = 1e-3
    dist, x_adv = minimal_linf(model, x, y, method=method, iterations=10, tol=tol)
    exact = g.abs() / dw.abs().sum()
    assert ((dist - exact).abs() <= tol + 1e-5).all()
    assert (lp_norm(x_adv - x, "linf") <= dist + 1e-6).all()
    steps = 1 if method == "fgsm" else 10
    _, ok_at = fgsm_at(model, x, y, dist, steps)
    _, ok_below = fgsm_at(model, x, y, dist - tol, steps)
    assert ok_at.all() and not ok_below.any()


def test_eps_search_attacks_and_limits(linear_setup):
    model, x, y, g, dw = linear_setup
    exact = g.abs() / dw.abs().sum()
    mid = exact.sort().values
    cap = float(mid[3] + mid[4]) / 2  # between two examples' minimal ε, so no tie at the cap
    res = IFGSMSearch(iterations=5, eps_max=cap)(model, x, y)
    dist = res.extras["distortion"]
    assert torch.equal(res.success, torch.isfinite(dist))
    # Examples whose minimal ε exceeds eps_max are failures with infinite distortion.
    assert (~res.success == (exact > cap)).all()
    assert FGSMSearch(tol=1e-2)(model, x, y).success.all()
    summary = distortion_summary(dist)
    assert summary["success_rate"] == pytest.approx(float(res.success.float().mean()))
    assert summary["mean"] == pytest.approx(float(dist[res.success].mean()))
    with pytest.raises(UserError, match="eps0"):
        minimal_linf(model, x, y, eps0=2.0)


def test_clever_on_linear_models():
    model = linear_model(num_classes=3, seed=3)
    x = torch.full((1, 1, 8, 8), 0.5) + torch.rand((1, 1, 8, 8), generator=torch.Generator()
                                                   .manual_seed(0)) * 0.1
    w = model[1].weight.detach()
    with torch.no_grad():
        logits = model(x)[0]
    c = int(logits.argmax())
    exact = min(float((logits[c] - logits[j]) / (w[c] - w[j]).norm()) for j in range(3) if j != c)
    score = clever_score(model, x, norm="l2", n_batches=20, batch_size=64, radius=2.0)
    assert abs(score - exact) / exact < 0.10
    exact_inf = min(float((logits[c] - logits[j]) / (w[c] - w[j]).abs().sum())
                    for j in range(3) if j != c)
    res = clever(model, x, norm="linf", n_batches=10, batch_size=32, radius=0.5)
    assert abs(res.score - exact_inf) / exact_inf < 0.10
    assert set(res.lipschitz) == {j for j in range(3) if j != c}
    # The score is capped at the sampling radius.
    assert clever_score(model, x, n_batches=5, batch_size=16, radius=exact / 4) == exact / 4


def test_reverse_weibull_location_rejects_fits_that_run_off():
    # 20 right-skewed batch maxima, as a 20-batch CLEVER run gives: for two of these draws the
    # plain fit put the end point near 1e7 and 1e8, so the CLEVER score collapsed to ~1e-7.
    rng = np.random.default_rng(0)
    for _ in range(6):
        m = 3 + rng.gamma(2.0, 0.3, size=20)
        assert m.max() <= reverse_weibull_location(m) <= m.max() + 10 * (m.max() - m.min())


def test_reverse_weibull_location_recovers_end_point():
    rng = np.random.default_rng(0)
    maxima = weibull_max.rvs(4.0, loc=2.0, scale=0.3, size=400, random_state=rng)
    assert reverse_weibull_location(maxima) == pytest.approx(2.0, rel=0.05)
    assert reverse_weibull_location(np.full(50, 3.25)) == 3.25


class FixedFGSM(Attack):
    """A bounded ℓ∞ attack for the transfer test: 10 steps of iterative FGSM at ε."""

    name = "ifgsm-fixed"

    def __init__(self, eps: float):
        self.threat = LpThreat("linf", eps)

    def perturb(self, model, x, y):
        eps = torch.full((x.shape[0],), self.threat.eps)
        x_adv, _ = fgsm_at(model, x, y, eps, iterations=10)
        with torch.no_grad():
            success = model(x_adv).argmax(1) != y
        return AttackResult(x_adv, success)


def blob_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """3 classes: a bright band in the top, middle or bottom rows of an 8×8 grey image."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.rand((n, 1, 8, 8), generator=g) * 0.4
    for k in range(3):
        x[y == k, :, 1 + 2 * k:3 + 2 * k, :] += 0.5
    return x.clamp(0, 1), y


def train(model: nn.Module, shape: tuple[int, int, int], x, y, steps: int = 150) -> nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    xi = adapt_input(x, shape)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(xi), y).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def zoo():
    torch.manual_seed(0)
    x, y = blob_data(256, 0)
    models = {
        "linear": nn.Sequential(nn.Flatten(), nn.Linear(64, 3)),
        "mlp": nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 3)),
        "cnn-rgb": nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d((6, 1)), nn.Flatten(), nn.Linear(48, 3)),
    }
    shapes = {"cnn-rgb": (3, 12, 12)}
    for name, m in models.items():
        train(m, shapes.get(name, (1, 8, 8)), x, y)
    return models, shapes


def test_transfer_diagonal_is_white_box_success(zoo):
    models, shapes = zoo
    x, y = blob_data(64, 1)
    out = transfer_matrix(models, x, y, lambda m: FixedFGSM(0.2), input_shapes=shapes)
    assert out["names"] == list(models)
    for i, name in enumerate(out["names"]):
        xi = adapt_input(x, shapes.get(name, (1, 8, 8)))
        with torch.no_grad():
            correct = models[name](xi).argmax(1) == y
        assert correct.float().mean() > 0.8  # the tiny models did learn
        white = FixedFGSM(0.2)(models[name], xi, y).success
        assert out["counts"][i][i] == int(correct.sum())
        assert out["untargeted"][i][i] == pytest.approx(float(white[correct].float().mean()))
        for j in range(3):
            assert 0.0 <= out["untargeted"][i][j] <= 1.0
    # At this ε the rates are informative: some white-box rates strictly between 0 and 1, and
    # the source's own examples are not the only ones that break a model.
    assert any(0 < out["untargeted"][i][i] < 1 for i in range(3))
    assert any(out["untargeted"][i][j] > 0 for i in range(3) for j in range(3) if i != j)


def test_transfer_targeted_top1_diagonal(zoo):
    models, shapes = zoo
    x, y = blob_data(32, 2)
    two = {k: models[k] for k in ("linear", "mlp")}

    def make(_):
        return CarliniWagnerL2(steps=60, lr=0.05, binary_search_steps=4, targeted=True)
    out = transfer_matrix(two, x, y, make, targeted=True)
    for i, name in enumerate(out["names"]):
        res = make(None)(two[name], x, y)
        with torch.no_grad():
            correct = two[name](x).argmax(1) == y
        assert out["top1"][i][i] == pytest.approx(float(res.success[correct].float().mean()))
        assert out["top1"][i][i] <= out["top5"][i][i] == 1.0  # 3 classes: top-5 holds all
    with pytest.raises(UserError, match="not targeted"):
        transfer_matrix(two, x, y, lambda m: FixedFGSM(0.1), targeted=True)


def test_adapt_input_channels_and_size():
    x = torch.rand(2, 1, 8, 8)
    rgb = adapt_input(x, (3, 16, 16))
    assert rgb.shape == (2, 3, 16, 16) and torch.equal(rgb[:, 0], rgb[:, 2])
    back = adapt_input(adapt_input(x, (3, 8, 8)), (1, 8, 8))
    assert torch.allclose(back, x)
    assert adapt_input(x, (1, 8, 8)) is x


def test_pareto_front_and_log_error_fit():
    pts = [(0.9, 0.1), (0.8, 0.3), (0.85, 0.2), (0.7, 0.25), (0.8, 0.3), (0.6, 0.35)]
    assert pareto_front(pts) == [0, 1, 2, 4, 5]
    assert pareto_front([(0.5, 0.5)]) == [0]
    errors = [0.05, 0.1, 0.2, 0.4]
    d = [0.3 * math.log(e) + 2.0 for e in errors]
    fit = fit_distortion_vs_log_error(d, errors)
    assert fit["slope"] == pytest.approx(0.3) and fit["intercept"] == pytest.approx(2.0)
    assert fit["r2"] == pytest.approx(1.0)
    noisy = fit_distortion_vs_log_error([1.0, 0.2, 0.9, 0.1], errors)
    assert noisy["r2"] < 0.5
    with pytest.raises(UserError, match="errors > 0"):
        fit_distortion_vs_log_error([1, 2], [0.0, 0.1])


def test_distortion_summary_and_families():
    s = distortion_summary(torch.tensor([1.0, 3.0, math.inf, 2.0]))
    assert s == {"mean": 2.0, "median": 2.0, "success_rate": 0.75, "n": 4}
    assert math.isnan(distortion_summary([math.inf])["mean"])
    assert [family_of(n) for n in ("cnn-small", "resnet-20", "wrn-28-10", "preact-resnet-18")] \
        == ["cnn", "resnet", "wrn", "preact-resnet"]
    # The published architectures (RobustBench's checkpoints) belong to the same families.
    assert [family_of(n) for n in ("dm-wrn-28-10", "dm-wrn-70-16-swish", "trades-wrn-34-10",
                                   "dm-preact-resnet-18")] == ["wrn"] * 3 + ["preact-resnet"]
    with pytest.raises(UserError, match="family"):
        family_of("vit-b16")


def test_zoo_load_error_keeps_its_type_and_names_the_entry(monkeypatch):
    """A member whose loading fails with a DataError or ConfigError re-raises the same class
    (the CLI and API callers tell them apart), prefixed with the member's name."""
    from robustlab.errors import ConfigError, DataError
    from robustlab.experiments import zoo_load
    from robustlab.experiments.zoo_spec import ModelEntry

    for cls in (ConfigError, DataError):
        def fail(*args, cls=cls):
            raise cls("bad weights")

        monkeypatch.setattr(zoo_load, "_load_entry", fail)
        with pytest.raises(cls, match="zoo model mine: bad weights"):
            zoo_load.load_entry(ModelEntry(name="mine", arch="cnn-small"), None,
                                torch.device("cpu"))

import pytest
import torch

from robustlab.errors import ThreatViolation, UserError
from robustlab.threat import LpThreat, lp_norm, project_l1_ball


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 1.0), ("l1", 3.0)])
def test_project_lands_inside_and_is_idempotent(norm, eps):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 8, 8, generator=g)
    far = x + 2 * torch.randn(16, 1, 8, 8, generator=g)
    t = LpThreat(norm, eps)
    p = t.project(far, x)
    assert bool(t.contains(p, x).all())
    assert (lp_norm(p - x, norm) <= eps * (1 + 1e-5) + 1e-6).all()
    assert torch.allclose(t.project(p, x), p, atol=1e-6)
    t.check(p, x)


def test_l1_projection_matches_bruteforce_on_small_vectors():
    # Projection onto the l1 ball is soft-thresholding with the theta that lands on the sphere.
    v = torch.tensor([[3.0, -1.0, 0.5, 0.0]])
    p = project_l1_ball(v, 2.0)
    assert p.abs().sum().item() == pytest.approx(2.0, abs=1e-6)
    assert torch.allclose(p, torch.tensor([[2.0, 0.0, 0.0, 0.0]]))
    inside = torch.tensor([[0.5, -0.5, 0.0, 0.0]])
    assert torch.equal(project_l1_ball(inside, 2.0), inside)


def test_check_raises_on_violation_never_clips():
    x = torch.full((2, 1, 4, 4), 0.5)
    t = LpThreat("linf", 0.1)
    bad = x.clone()
    bad[1, 0, 0, 0] += 0.2
    with pytest.raises(ThreatViolation, match="example 1"):
        t.check(bad, x, source="buggy")
    out_of_box = x.clone()
    out_of_box[0, 0, 0, 0] = 1.05
    with pytest.raises(ThreatViolation):
        LpThreat("linf", 1.0).check(out_of_box, x)
    nan = x.clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ThreatViolation):
        t.check(nan, x)


def test_bad_threat_settings_are_clear_errors():
    with pytest.raises(UserError, match="eps must be >= 0"):
        LpThreat("linf", -0.1)
    with pytest.raises(UserError, match="unknown norm"):
        LpThreat("l3", 0.1)
    with pytest.raises(UserError, match="above 1"):
        LpThreat("linf", 8)
    assert LpThreat("Linf", 8 / 255).norm == "linf"

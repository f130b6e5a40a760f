"""The energy landscape: energies of adversarial inputs against natural ones, phase detection on
a synthetic ΔE curve with known boundaries, TRADES' KL in energies, and `robustlab energy` end
to end on a tiny trained model."""

import json

import numpy as np
import pytest
import torch
from helpers import tiny_config

from robustlab.analysis.energy_landscape import (
    attack_energy_summary,
    detect_phases,
    piecewise_linear_fit,
    trades_kl_decomposition,
)
from robustlab.attacks.trades import kl_per_example
from robustlab.cli.main import main
from robustlab.config import load_config
from robustlab.experiments.train import train_experiment


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("energy")
    cfg = load_config(tiny_config(tmp, train={"epochs": 3, "objective": "ce"}))
    return train_experiment(cfg).path, tmp


def _curve(seed=0):
    # Three regimes with known starts (epochs 1, 7, 14): ΔE rises, stays flat, then plunges.
    rng = np.random.default_rng(seed)
    ep = np.arange(1, 21)
    de = np.where(ep < 7, 0.3 * ep, np.where(ep < 14, 2.5 + 0.02 * ep, 6 - 0.5 * ep))
    return ep, de + rng.normal(0, 0.03, len(ep))


def test_phase_detection_recovers_known_boundaries():
    ep, de = _curve()
    err = np.concatenate([np.linspace(0.8, 0.5, 10), np.linspace(0.51, 0.62, 10)])
    metrics = [{"epoch": int(e), "train_delta_energy": float(d), "val_robust_accuracy": 1 - r}
               for e, d, r in zip(ep, de, err)]
    metrics.insert(3, {"step": 5, "train_loss": 1.0})  # non-epoch records are ignored
    metrics.append({"epoch": 21, "train_delta_energy": None, "val_robust_accuracy": 0.1})
    ph = detect_phases(metrics)
    assert ph["available"]
    assert ph["phase_starts"] == [1, 7, 14]
    assert ph["best_robust_epoch"] == 10 and ph["robust_overfitting_epoch"] == 11
    # Without a rise in robust error, no robust overfitting is reported.
    flat = [dict(m, val_robust_accuracy=0.5) for m in metrics if "epoch" in m]
    assert detect_phases(flat)["robust_overfitting_epoch"] is None
    short = detect_phases(metrics[:5])
    assert not short["available"] and "at least 6" in short["reason"]


def test_piecewise_fit_is_exact_on_noiseless_lines():
    t = np.arange(9.0)
    v = np.concatenate([t[:3], 10 - t[3:6], 2 * t[6:]])
    fit = piecewise_linear_fit(t, v)
    assert fit["breaks"] == [3, 6] and fit["sse"] < 1e-18


def test_trades_kl_decomposition_equals_the_kl():
    g = torch.Generator().manual_seed(0)
    ln = 4 * torch.randn(200, 10, generator=g)
    la = ln + torch.randn(200, 10, generator=g)
    d = trades_kl_decomposition(ln, la)
    direct = kl_per_example(ln.double(), la.double())
    assert torch.allclose(d["kl"], direct, atol=1e-10)
    assert torch.allclose(d["marginal_term"] + d["joint_term"], direct, atol=1e-10)
    assert d["max_abs_error"] < 1e-10 and d["kl_mean"] > 0.05
    # Equal logits: both terms vanish.
    same = trades_kl_decomposition(ln, ln.clone())
    assert same["kl_mean"] == 0 and abs(same["marginal_term_mean"]) < 1e-12


def test_summary_shares_follow_the_energies():
    ln = torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    la = ln + torch.tensor([[1.0], [-1.0], [1.0]])  # E(x) down, up, down
    s = attack_energy_summary(ln, la, torch.tensor([0, 0, 1]),
                              success=torch.tensor([True, False, False]))
    assert s["share_lower_energy"] == pytest.approx(2 / 3)
    assert s["share_lower_energy_success"] == 1.0 and s["n_success"] == 1
    assert s["delta_energy_mean"] == pytest.approx(1 / 3)


def test_energy_command_end_to_end(trained, capsys):
    run_path, tmp = trained
    rc = main(["energy", str(run_path), "--n", "32", "--eps", "0.3", "--steps", "5",
               "--targets", "1", "--queries", "60", "--attacks", "pgd,apgd-t,square",
               "--runs-dir", str(tmp / "e"), "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    folder = next((tmp / "e").glob("energy-*"))
    r = json.loads((folder / "results.json").read_text())
    (m,) = r["models"]
    rows = {a["attack"]: a for a in m["attacks"]}
    # A standard model: untargeted PGD lowers E(x) for most examples and breaks it.
    assert rows["pgd"]["robust_accuracy"] < 0.3
    assert rows["pgd"]["share_lower_energy"] > 0.5
    assert m["trades_kl"]["max_abs_error"] < 1e-6
    assert m["phases"]["available"] is False  # 3 epochs only
    assert (folder / "report.html").read_text().count("<img") == 2  # histograms, ΔE curve
    e = np.load(folder / "energies.npz")
    assert e["m0/pgd@0.3/energy"].shape == (32,)
    assert "TRADES KL" in out


def test_energy_bad_input_is_one_clear_error(trained, capsys):
    run_path, tmp = trained
    assert main(["energy", str(run_path), "--attacks", "nope", "--runs-dir",
                 str(tmp / "bad"), "--quiet"]) == 2
    assert "unknown attack 'nope'" in capsys.readouterr().err
    assert main(["energy", str(run_path), "--steps", "0", "--runs-dir", str(tmp / "bad")]) == 2
    assert "steps" in capsys.readouterr().err
    assert main(["energy", str(run_path), str(tmp / "missing"), "--runs-dir",
                 str(tmp / "bad")]) == 2
    assert "missing" in capsys.readouterr().err
    assert not (tmp / "bad").exists()  # nothing was written for a command that failed

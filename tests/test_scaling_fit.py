"""Scaling-law fits: recovery of a known law with FID shifts, the paper's compute-optimal
exponents, exact gradients, the envelope, and one clear error for bad CSVs."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from robustlab.analysis.scaling import analyse, derived, envelope
from robustlab.analysis.scaling_fit import LawData, objective, to_theta
from robustlab.analysis.scaling_table import RunTable
from robustlab.cli.main import main

TRUE = {"A": 300.0, "B": 500.0, "E": 0.5, "alpha": 0.35, "beta": 0.3, "c_B": 40.0, "c_E": 0.1}
FIDS = (1.0, 5.0, 20.0)


def _rows(seed=0, noise=0.005):
    rng = np.random.default_rng(seed)
    rows = []
    for n in np.geomspace(1e5, 1e8, 5):
        for d in np.geomspace(1e6, 1e9, 5):
            for fid in FIDS:
                q = math.log1p(fid) - math.log1p(FIDS[0])
                t = TRUE
                loss = t["A"] / n ** t["alpha"] + (t["B"] + t["c_B"] * q) / d ** t["beta"] \
                    + t["E"] + t["c_E"] * q
                loss *= 1 + noise * rng.standard_normal()
                rows.append({"params": n, "data": d, "loss": loss, "train_flops": 20 * n * d,
                             "fid": fid, "accuracy": 1 / (1 + math.exp(-(2 - 3 * math.log(loss)))),
                             "run": f"{n:.0f}-{d:.0f}-{fid}"})
    return rows


@pytest.fixture(scope="module")
def fit():
    return analyse(RunTable.from_rows(_rows()), resamples=300, quiet=True)


def test_recovers_known_law_with_fid_shifts(fit):
    p, ci = fit["parametric"], fit["parametric_ci"]
    assert fit["fit"]["converged"]
    for k in ("alpha", "beta", "E"):
        assert abs(p[k] - TRUE[k]) < 0.02, (k, p[k])
    for k in ("alpha", "beta"):
        assert ci[k][0] <= TRUE[k] <= ci[k][1], (k, ci[k])
        assert ci[k][1] - ci[k][0] < 0.05  # an interval, not the whole line
    a = TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"])
    co = fit["compute_optimal"]
    assert abs(co["n_exponent"] - a) < 0.02
    assert co["n_exponent_ci"][0] < co["n_exponent"] < co["n_exponent_ci"][1]
    assert abs(co["n_exponent"] + co["d_exponent"] - 1) < 1e-12
    assert fit["out_of_sample"]["loss_mean_abs_rel_error"] < 0.02
    # Accuracy rises with compute towards the plateau and never above it.
    accs = [b["accuracy"] for b in co["budgets"]]
    assert all(x < y for x, y in zip(accs, accs[1:])) and accs[-1] <= co["plateau_accuracy"]


def test_paper_constants_give_published_exponents():
    paper = {"A": 6.687, "B": 7.552, "E": 0.5604, "alpha": 0.2443, "beta": 0.2282}
    d = derived(to_theta(paper), k=6.0, q=0.0, budgets=[1e18, 1e20], reg=None)
    assert round(d["n_exponent"], 3) == 0.483
    assert round(d["d_exponent"], 3) == 0.517
    # N*·D*·k = C, and N* grows as C^a.
    assert np.allclose(d["n_opt"] * d["d_opt"] * 6.0, [1e18, 1e20])
    assert math.isclose(math.log(d["n_opt"][1] / d["n_opt"][0]) / math.log(100), 0.2282 / 0.4725,
                        rel_tol=1e-9)


def test_gradient_is_exact():
    t = RunTable.from_rows(_rows(noise=0.02))
    data = LawData.make(t.params, t.data, t.loss, t.fid, 1.0)
    theta = to_theta({**TRUE, "alpha": 0.33, "c_B": 30.0})
    _, g = objective(theta, data)
    for i in range(len(theta)):
        h = 1e-6 * max(1.0, abs(theta[i]))
        up, dn = theta.copy(), theta.copy()
        up[i] += h
        dn[i] -= h
        fd = (objective(up, data)[0] - objective(dn, data)[0]) / (2 * h)
        assert abs(fd - g[i]) <= 1e-5 * max(1e-3, abs(g[i])), (i, fd, g[i])


def test_envelope_is_pareto_front():
    c = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    loss = np.array([5.0, 6.0, 4.0, 4.5, 3.0])
    assert envelope(c, loss).tolist() == [0, 2, 4]


def _write(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_cli_fit_writes_results_and_report(tmp_path):
    rows = _rows()[::3]  # 25 runs, no FID variation needed for the keys
    p = _write(tmp_path / "runs.csv", ["params", "data", "loss", "train_flops", "accuracy"],
               [[r["params"], r["data"], r["loss"], r["train_flops"], r["accuracy"]]
                for r in rows])
    out = tmp_path / "fit"
    assert main(["scaling", "fit", str(p), "--out", str(out), "--resamples", "50",
                 "--quiet"]) == 0
    r = json.loads((out / "results.json").read_text())
    assert set(r["parametric"]) == {"A", "B", "E", "alpha", "beta"}
    assert all(len(r["parametric_ci"][k]) == 2 for k in r["parametric"])
    assert {"n_exponent", "d_exponent"} <= set(r["compute_optimal"])
    assert (out / "report.html").read_text().count("<img") >= 4


@pytest.mark.parametrize("case", ["missing", "nonpositive", "few"])
def test_bad_csv_is_one_error(tmp_path, capsys, case):
    head = ["params", "data", "loss", "train_flops"]
    rows = [[1e5 * (i + 1), 1e6 * (i + 2), 1.0 + 1 / (i + 1), 1e12 * (i + 1)] for i in range(8)]
    if case == "missing":
        head, rows = head[:3], [r[:3] for r in rows]
    elif case == "nonpositive":
        rows[3][0] = 0
    else:
        rows = rows[:4]
    p = _write(tmp_path / "bad.csv", head, rows)
    assert main(["scaling", "fit", str(p), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error" in err[0]
    assert {"missing": "train_flops", "nonpositive": "params", "few": "5 parameters"}[case] \
        in err[0]


def test_final_points_and_identification_warnings():
    """Curves of 3 points per run: "final" fits one point per run; a law whose N term is dead
    over the runs (alpha large, N barely varies) is reported as not identified."""
    rows = []
    for n in (1e5, 1.2e5, 1.4e5):
        for d_end in np.geomspace(1e6, 1e8, 6):
            for frac in (0.25, 0.5, 1.0):
                d = d_end * frac
                rows.append({"params": n, "data": d, "loss": 400 / d ** 0.3 + 0.4,
                             "train_flops": 20 * n * d, "run": f"{n:.0f}-{d_end:.0f}"})
    t = RunTable.from_rows(rows)
    r = analyse(t, resamples=20, quiet=True)
    assert r["n_points"] == 18 and r["points_fitted"] == "final"
    assert len(r["points"]) == 54 and sum(p["in_fit"] for p in r["points"]) == 18
    assert r["term_shares"]["N"] < 0.02 or r["parametric"]["alpha"] < 0.05
    assert any("not identified" in w or "pinned down" in w for w in r["warnings"])
    assert analyse(t, resamples=5, points="all", quiet=True)["n_points"] == 54
    with pytest.raises(Exception, match="points"):
        analyse(t, resamples=5, points="some", quiet=True)


def test_well_spanned_law_has_no_warnings(fit):
    assert fit["warnings"] == [], fit["warnings"]

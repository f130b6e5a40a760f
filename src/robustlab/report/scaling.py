"""The scaling-law report: the plots of Bartoldson et al. (ICML 2024) for one fit.

Loss against training FLOPs with the envelope (their Approach 1), N* and D* against C, predicted
against measured loss (in sample and held out), and predicted robust accuracy against compute out
to the plateau, each with the bootstrap's 95% band where the fit gives one.
"""

from __future__ import annotations

import numpy as np

from .figures import fig_to_png, plt
from .html import img, page, table


def _loss_vs_flops(r: dict, t) -> bytes:
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for run in t.runs():
        idx = t.rows_of([run])
        o = np.argsort(t.train_flops[idx])
        ax.plot(t.train_flops[idx][o], t.loss[idx][o], "-", color="0.7", lw=0.8)
    sc = ax.scatter(t.train_flops, t.loss, c=np.log10(t.params), s=12, cmap="viridis")
    fig.colorbar(sc, ax=ax, label="log10 N")
    env = r["approach1"]["envelope"]
    ax.plot([e["train_flops"] for e in env], [e["loss"] for e in env], "r-", lw=1.5,
            label="envelope")
    ax.set(xscale="log", yscale="log", xlabel="training FLOPs C", ylabel="adversarial test loss")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig_to_png(fig)


def _optimal(r: dict) -> bytes:
    co = r["compute_optimal"]["budgets"]
    c = np.array([b["train_flops"] for b in co])
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.4))
    env = r["approach1"]["envelope"]
    for ax, key, ci, label, ekey in ((axes[0], "params", "params_ci", "N*", "params"),
                                     (axes[1], "data", "data_ci", "D*", "data")):
        if co[0][key] is None:
            continue
        ax.plot(c, [b[key] for b in co], "b-", label=f"{label} (parametric)")
        if co[0][ci] is not None:
            ax.fill_between(c, [b[ci][0] for b in co], [b[ci][1] for b in co], color="b",
                            alpha=0.15, label="95% bootstrap")
        ax.scatter([e["train_flops"] for e in env], [e[ekey] for e in env], c="r", s=12,
                   label="envelope runs")
        ax.set(xscale="log", yscale="log", xlabel="training FLOPs C", ylabel=label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig_to_png(fig)


def _pred_vs_measured(r: dict) -> bytes:
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    pts = r["points"]
    fitted = [p for p in pts if p.get("in_fit", True)]
    other = [p for p in pts if not p.get("in_fit", True)]
    if other:  # earlier metric epochs: on the plot, not in the fit
        ax.scatter([p["loss"] for p in other], [p["predicted_loss"] for p in other], s=8,
                   facecolors="none", edgecolors="0.6", label="earlier epochs (not fitted)")
    ax.scatter([p["loss"] for p in fitted], [p["predicted_loss"] for p in fitted], s=10,
               label="fitted points")
    oos = r.get("out_of_sample")
    if oos:
        ax.scatter([p["loss"] for p in oos["points"]], [p["predicted_loss"] for p in
                                                       oos["points"]], s=14, c="r",
                   label="held out")
    lo = min(p["loss"] for p in pts)
    hi = max(p["loss"] for p in pts)
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set(xlabel="measured loss", ylabel="predicted loss")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig_to_png(fig)


def _accuracy(r: dict) -> bytes | None:
    co = r["compute_optimal"]
    b = co["budgets"]
    if b[0]["accuracy"] is None:
        return None
    c = np.array([x["train_flops"] for x in b])
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    ax.plot(c, [x["accuracy"] for x in b], "b-", label="compute-optimal prediction")
    if b[0]["accuracy_ci"] is not None:
        ax.fill_between(c, [x["accuracy_ci"][0] for x in b], [x["accuracy_ci"][1] for x in b],
                        color="b", alpha=0.15, label="95% bootstrap")
    if co.get("plateau_accuracy") is not None:
        ax.axhline(co["plateau_accuracy"], color="r", ls="--", label="plateau (C → ∞)")
    pts = [p for p in r["points"] if "accuracy" in p]
    ax.scatter([p["train_flops"] for p in pts], [p["accuracy"] for p in pts], s=8, c="0.4",
               label="runs")
    ax.set(xscale="log", xlabel="training FLOPs C", ylabel="robust accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig_to_png(fig)


def scaling_report(r: dict, t) -> str:
    p, ci = r["parametric"], r["parametric_ci"]
    co = r["compute_optimal"]
    sections = [("Parametric law L = A/N^α + (B + c_B·q)/D^β + E + c_E·q", table(
        ["parameter", "value", "95% low", "95% high"],
        [(k, v, ci[k][0], ci[k][1]) for k, v in p.items()])
        + f"<p>Huber δ = 10⁻³ on log L, sum reduction; converged: {r['fit']['converged']} "
          f"({r['fit']['converged_starts']}/{r['fit']['starts']} starts); "
          f"{r['bootstrap']['resamples']} bootstrap resamples over runs; points fitted: "
          f"{r.get('points_fitted', 'all')}.</p>"
        + "".join(f"<p><b>Warning:</b> {w}</p>" for w in r.get("warnings", [])))]
    sections.append(("Compute-optimal split", table(
        ["quantity", "value", "95% low", "95% high"],
        [("N* exponent a = β/(α+β)", co["n_exponent"], *co["n_exponent_ci"]),
         ("D* exponent b = α/(α+β)", co["d_exponent"], *co["d_exponent_ci"]),
         ("plateau loss", co["plateau_loss"], *co["plateau_loss_ci"]),
         ("plateau accuracy", co.get("plateau_accuracy"),
          *(co.get("plateau_accuracy_ci") or [None, None]))])
        + table(["budget C", "N*", "D*", "loss", "accuracy"],
                [(b["train_flops"], b["params"], b["data"], b["loss"], b["accuracy"])
                 for b in co["budgets"]])))
    sections.append(("Loss against FLOPs, with the envelope", img(_loss_vs_flops(r, t))))
    sections.append(("N* and D* against compute", img(_optimal(r))))
    oos = r.get("out_of_sample")
    note = (f"<p>Held out: {len(oos['held_out_runs'])} runs of the largest compute; mean "
            f"|relative error| of their predicted loss {oos['loss_mean_abs_rel_error']:.4f}.</p>"
            if oos else "<p>Too few runs for an out-of-sample check.</p>")
    sections.append(("Predicted against measured loss", img(_pred_vs_measured(r)) + note))
    acc = _accuracy(r)
    if acc:
        reg = r["accuracy_regression"]
        sections.append(("Robust accuracy against compute, to the plateau", img(acc)
                         + f"<p>Accuracy target: {reg['target']}; {reg['form']}, "
                           f"rmse {reg['rmse']:.4f}.</p>"))
    return page("robustlab scaling fit", sections, subtitle=str(r.get("source", "")))

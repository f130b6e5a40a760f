"""Report of `robustlab energy`: tables of energies and shares, a histogram per attack of
natural against adversarial energies, and the ΔE curve of a training run with its phases."""

from __future__ import annotations

import numpy as np

from .figures import fig_to_png, plt
from .html import esc, img, page, table


def energy_histograms(arrays: dict, key: str, rows: list[dict], title: str) -> bytes:
    """One column per attack: E(x) (top) and E(x, y) (bottom), natural against adversarial."""
    n = max(1, len(rows))
    fig, axes = plt.subplots(2, n, figsize=(2.9 * n, 4.8), squeeze=False)
    for j, r in enumerate(rows):
        ak = f"{key}/{r['attack']}@{r['eps']:g}"
        for i, (what, sym) in enumerate((("energy", "E(x)"), ("joint_energy", "E(x, y)"))):
            ax = axes[i, j]
            nat, adv = arrays[f"{key}/natural/{what}"], arrays[f"{ak}/{what}"]
            both = np.concatenate([nat, adv])
            bins = np.linspace(both.min(), both.max() + 1e-9, 30)
            ax.hist(nat, bins=bins, alpha=0.55, label="natural", color="#4477aa")
            ax.hist(adv, bins=bins, alpha=0.55, label="adversarial", color="#cc6677")
            ax.set_xlabel(sym, fontsize=8)
            ax.tick_params(labelsize=7)
            if i == 0:
                ax.set_title(f"{r['attack']} ({r['family']})\nlower E(x): "
                             f"{r['share_lower_energy']:.0%}", fontsize=8)
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return fig_to_png(fig)


def phase_curve(ph: dict, title: str) -> bytes:
    """ΔE on training data per epoch with the piecewise-linear fit and the phase boundaries;
    robust validation error on the right axis."""
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    ep = ph["epochs"]
    ax.plot(ep, ph["delta_energy"], marker="o", color="#4477aa", label="ΔE = E(x) − E(x_adv)")
    if ph.get("available"):
        ax.plot(ep, ph["fit"], color="#4477aa", alpha=0.5, ls="--", label="3-segment fit")
        for k, start in enumerate(ph["phase_starts"][1:]):
            ax.axvline(start - 0.5, color="gray", ls=":",
                       label="phase boundary" if k == 0 else None)
        if ph.get("robust_overfitting_epoch") is not None:
            ax.axvline(ph["robust_overfitting_epoch"], color="#cc6677", ls="-", alpha=0.6,
                       label="robust overfitting starts")
    ax.set_xlabel("epoch")
    ax.set_ylabel("ΔE (training data)")
    ax2 = ax.twinx()
    ax2.plot(ep, ph["robust_error"], marker="s", color="#228833", alpha=0.7,
             label="robust val error")
    ax2.set_ylabel("robust error")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="best")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    return fig_to_png(fig)


def energy_report(run_id: str, results: dict, arrays: dict) -> str:
    header = ["model", "objective", "attack", "family", "ε", "robust acc", "mean E(x) nat",
              "mean E(x) adv", "share lower E(x)", "share lower E(x) (successful)",
              "mean E(x,y) nat", "mean E(x,y) adv"]
    body = []
    for m in results["models"]:
        for r in m["attacks"]:
            body.append([m["label"], m["objective"], r["attack"], r["family"],
                         r["eps"] if r["bounded"] else "unbounded", r["robust_accuracy"],
                         r["energy_nat"]["mean"], r["energy_adv"]["mean"],
                         r["share_lower_energy"], r.get("share_lower_energy_success"),
                         r["joint_energy_nat"]["mean"], r["joint_energy_adv"]["mean"]])
    sections = [("Energies of natural and adversarial inputs (Mirza et al., ECCV 2024)",
                 "<p>E(x) = −logsumexp f(x), E(x, y) = −f(x)<sub>y</sub>. Untargeted attacks "
                 "are expected to move most adversarial inputs to lower E(x) than their natural "
                 "ones, targeted attacks to higher. The last share counts only examples the "
                 "attack succeeded on (failed FAB/C&W examples return the natural image).</p>"
                 + table(header, body))]
    for m in results["models"]:
        sections.append((f"Histograms: {m['label']}", img(energy_histograms(
            arrays, m["key"], m["attacks"], f"{m['label']} on {m['n_examples']} "
            f"{m['dataset']} {m['split']} examples"), "energy histograms")))
    dec_rows = [[m["label"], m["trades_kl"]["kl_mean"], m["trades_kl"]["marginal_term_mean"],
                 m["trades_kl"]["joint_term_mean"], m["trades_kl"]["max_abs_error"]]
                for m in results["models"]]
    sections.append(("TRADES' KL in energies",
                     "<p>KL(p(·|x) ‖ p(·|x')) = [E(x) − E(x')] + Σ<sub>y</sub> p(y|x) "
                     "[E(x', y) − E(x, y)], on the KL-maximising (TRADES) adversary. The last "
                     "column is the largest gap between the two sides over examples.</p>"
                     + table(["model", "mean KL", "mean marginal term", "mean joint term",
                              "max |identity error|"], dec_rows)))
    for m in results["models"]:
        ph = m["phases"]
        if not ph.get("epochs"):
            continue
        text = ""
        if ph.get("available"):
            text = table(["phase", "first epoch", "last epoch"],
                         [[p["phase"], p["first_epoch"], p["last_epoch"]] for p in ph["phases"]])
            text += (f"<p>Best robust validation error at epoch {ph['best_robust_epoch']}; "
                     f"robust overfitting starts: {ph['robust_overfitting_epoch'] or 'not seen'}"
                     ".</p>")
        else:
            text = f"<p>{esc(ph.get('reason', ''))}</p>"
        sections.append((f"Phases of training: {m['label']}",
                         img(phase_curve(ph, m["label"]), "ΔE curve") + text))
    return page(f"robustlab energy {run_id}", sections,
                subtitle=f"{results['norm']} ε = {', '.join(map(str, results['eps']))}")

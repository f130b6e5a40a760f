"""Figures for reports, drawn with matplotlib's Agg backend and returned as PNG bytes so that
reports embed them (self-contained HTML, no side files)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def fig_to_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def training_curves(metrics: list[dict]) -> bytes | None:
    """Loss, accuracies and energies per epoch from a run's metrics.jsonl records."""
    rows = [m for m in metrics if "epoch" in m]
    if not rows:
        return None
    ep = [m["epoch"] for m in rows]
    from matplotlib.ticker import MaxNLocator

    def series(key):
        return [m.get(key, np.nan) for m in rows]

    panels = [("loss", [("train loss", "train_loss"), ("val loss (clean)", "val_loss"),
                        ("val loss (PGD)", "val_robust_loss")]),
              ("accuracy", [("train", "train_accuracy"), ("val clean", "val_clean_accuracy"),
                            ("val robust", "val_robust_accuracy")])]
    if any("val_energy_nat_mean" in m for m in rows):
        # Mirza et al. (ECCV 2024): the energy a classifier gives an input.
        panels.append(("energy E(x) = -logsumexp f(x)", [("E(x) natural", "val_energy_nat_mean"),
                                  ("E(x) adversarial", "val_energy_adv_mean"),
                                  ("ΔE", "val_delta_energy")]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2))
    for ax, (title, lines) in zip(np.atleast_1d(axes), panels):
        for label, key in lines:
            if any(key in m for m in rows):
                ax.plot(ep, series(key), marker="o", label=label)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        if title == "accuracy":
            ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        elif title.startswith("energy"):
            ax.set_ylabel("mean E(x), validation")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig_to_png(fig)


def adversarial_grid(x: np.ndarray, x_adv: np.ndarray, y: np.ndarray, pred: np.ndarray,
                     pred_adv: np.ndarray, classes: list[str] | None = None,
                     n: int = 8, perturbation: bool = True) -> bytes:
    """Per column: the clean image with its prediction, the adversarial one with its
    prediction, and (``perturbation``) the difference amplified to fill the grey range, with
    its factor; red titles mark wrong predictions."""
    n = min(n, len(x))
    rows = 3 if perturbation else 2
    fig, axes = plt.subplots(rows, n, figsize=(1.5 * max(n, 2), 1.7 * rows), squeeze=False)

    def name(k):
        return classes[k] if classes and k < len(classes) else str(k)

    for j in range(n):
        for row, (img, p) in enumerate(((x[j], pred[j]), (x_adv[j], pred_adv[j]))):
            ax = axes[row, j]
            im = np.transpose(img, (1, 2, 0))
            ax.imshow(im.squeeze(-1) if im.shape[-1] == 1 else im, cmap="gray", vmin=0, vmax=1)
            ax.set_title(name(int(p)), fontsize=7, color="black" if p == y[j] else "red")
            ax.axis("off")
        axes[0, j].text(0.5, 1.35, f"label: {name(int(y[j]))}", fontsize=7, ha="center",
                        transform=axes[0, j].transAxes)
    axes[0, 0].text(-0.2, 0.5, "clean", rotation=90, va="center", ha="right", fontsize=8,
                    transform=axes[0, 0].transAxes)
    axes[1, 0].text(-0.2, 0.5, "adversarial", rotation=90, va="center", ha="right", fontsize=8,
                    transform=axes[1, 0].transAxes)
    if perturbation:
        for j in range(n):
            d = np.transpose(x_adv[j] - x[j], (1, 2, 0)).mean(-1)
            peak = float(np.abs(d).max())
            gain = 0.5 / peak if peak > 0 else 1.0
            ax = axes[2, j]
            ax.imshow(0.5 + gain * d, cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"x{gain:.0f}" if peak > 0 else "unchanged", fontsize=7)
            ax.axis("off")
        axes[2, 0].text(-0.2, 0.5, "perturbation", rotation=90, va="center", ha="right",
                        fontsize=8, transform=axes[2, 0].transAxes)
    return fig_to_png(fig)


def bar_chart(labels: list[str], values: list[float], title: str, ylabel: str) -> bytes:
    fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(labels) + 2), 3.2))
    ax.bar(range(len(values)), values, color="#4477aa")
    ax.set_xticks(range(len(values)), labels, rotation=20, ha="right", fontsize=8)
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return fig_to_png(fig)


def line_chart(x: list[float], ys: dict[str, list[float]], title: str, xlabel: str,
               ylabel: str) -> bytes:
    fig, ax = plt.subplots(figsize=(4.8, 3.2))
    for label, y in ys.items():
        ax.plot(x, y, marker="o", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig_to_png(fig)

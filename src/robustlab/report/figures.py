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

    def series(key):
        return [m.get(key, np.nan) for m in rows]

    panels = [("loss", [("train loss", "train_loss")]),
              ("accuracy", [("train", "train_accuracy"), ("val clean", "val_clean_accuracy"),
                            ("val robust", "val_robust_accuracy")])]
    if any("val_energy_nat_mean" in m for m in rows):
        panels.append(("energy", [("E(x) natural", "val_energy_nat_mean"),
                                  ("E(x) adversarial", "val_energy_adv_mean"),
                                  ("ΔE", "val_delta_energy")]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2))
    for ax, (title, lines) in zip(np.atleast_1d(axes), panels):
        for label, key in lines:
            ax.plot(ep, series(key), marker="o", label=label)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig_to_png(fig)


def adversarial_grid(x: np.ndarray, x_adv: np.ndarray, y: np.ndarray, pred: np.ndarray,
                     pred_adv: np.ndarray, classes: list[str] | None = None,
                     n: int = 8) -> bytes:
    """Two rows per column: the clean image with its prediction above the adversarial one with
    its prediction; red titles mark wrong predictions."""
    n = min(n, len(x))
    fig, axes = plt.subplots(2, n, figsize=(1.5 * n, 3.4), squeeze=False)

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

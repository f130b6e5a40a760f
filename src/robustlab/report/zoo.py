"""The `robustlab zoo` report: transferability heatmaps, accuracy-robustness Pareto plots, the
distortion-vs-ln(clean error) fits (Su et al., ECCV 2018) and the HTML page around them."""

from __future__ import annotations

import math

import numpy as np

from ..analysis.zoo import CLEVERS, DISTORTIONS

_MARKERS = {"cnn": "o", "resnet": "s", "wrn": "^", "preact-resnet": "D"}


def _family_style(families: list[str]) -> dict[str, tuple[str, str]]:
    """One (colour, marker) per family, the same in every plot."""
    import matplotlib.pyplot as plt

    colours = plt.get_cmap("tab10").colors
    style = {}
    for i, f in enumerate(sorted(set(families))):
        style[f] = (colours[i % len(colours)], _MARKERS.get(f, "PXv*<>"[i % 6]))
    return style


def _legend(ax, style) -> None:
    from matplotlib.lines import Line2D

    ax.legend(handles=[Line2D([], [], color=c, marker=m, ls="", label=f)
                       for f, (c, m) in style.items()], fontsize=8, title="family")


def heatmap(t: dict, families: dict[str, str], key: str, title: str) -> bytes:
    """Transfer rates, sources as rows and targets as columns, numbers in each cell; tick
    labels coloured by family."""
    import matplotlib.pyplot as plt

    from .figures import fig_to_png

    names = t["names"]
    m = np.array(t[key], dtype=float)
    k = len(names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * k, 0.8 + 0.65 * k))
    im = ax.imshow(m, vmin=0, vmax=1, cmap="viridis")
    for i in range(k):
        for j in range(k):
            v = m[i, j]
            ax.text(j, i, "-" if not np.isfinite(v) else f"{v:.2f}", ha="center", va="center",
                    color="white" if np.isfinite(v) and v < 0.6 else "black", fontsize=8)
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    style = _family_style(list(families.values()))
    for lab in [*ax.get_xticklabels(), *ax.get_yticklabels()]:
        lab.set_color(style[families[lab.get_text()]][0])
    ax.set_xlabel("target model")
    ax.set_ylabel("source model")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return fig_to_png(fig)


def pareto_plot(results: dict, metrics: list[tuple[str, str]]) -> bytes | None:
    import matplotlib.pyplot as plt

    from .figures import fig_to_png

    if not metrics:
        return None
    rows = results["models"]
    style = _family_style([r["family"] for r in rows])
    cols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.6 * nrows), squeeze=False)
    for ax, (key, label) in zip(axes.flat, metrics):
        for r in rows:
            c, mk = style[r["family"]]
            ax.scatter(r["clean_accuracy"], r[key]["mean"], color=c, marker=mk, s=40)
            ax.annotate(r["name"], (r["clean_accuracy"], r[key]["mean"]), fontsize=6,
                        xytext=(3, 3), textcoords="offset points")
        front = [r for r in rows if r["name"] in results["pareto"].get(key, [])]
        front.sort(key=lambda r: r["clean_accuracy"])
        ax.plot([r["clean_accuracy"] for r in front], [r[key]["mean"] for r in front], "k--",
                lw=1, label="Pareto front")
        ax.set_xlabel("clean accuracy")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    _legend(axes.flat[0], style)
    fig.suptitle("accuracy versus robustness (dashed: Pareto frontier)")
    return fig_to_png(fig)


def fit_plot(results: dict) -> bytes | None:
    import matplotlib.pyplot as plt

    from .figures import fig_to_png

    fits = [(k, lab) for k, _, lab in DISTORTIONS if "slope" in results["fit"].get(k, {})]
    if not fits:
        return None
    rows = {r["name"]: r for r in results["models"]}
    style = _family_style([r["family"] for r in rows.values()])
    cols = min(2, len(fits))
    nrows = math.ceil(len(fits) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 3.6 * nrows), squeeze=False)
    for ax, (key, label) in zip(axes.flat, fits):
        f = results["fit"][key]
        lx = np.log(np.array(f["errors"]))
        for name, le in zip(f["models"], lx):
            c, mk = style[rows[name]["family"]]
            ax.scatter(le, rows[name][key]["mean"], color=c, marker=mk, s=40)
        grid = np.linspace(lx.min(), lx.max(), 20) if np.ptp(lx) > 0 else lx
        ax.plot(grid, f["slope"] * grid + f["intercept"], "k-", lw=1)
        ax.set_title(f"{label}: {f['slope']:.3g}·ln(err) + {f['intercept']:.3g}, "
                     f"R²={f['r2']:.2f}", fontsize=9)
        ax.set_xlabel("ln(clean error)")
        ax.set_ylabel(f"mean minimal {label}")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(fits):]:
        ax.axis("off")
    _legend(axes.flat[0], style)
    return fig_to_png(fig)


def zoo_report(run_id: str, results: dict) -> str:
    from .html import img, page, table

    rows = results["models"]
    metrics = robustness_metrics_from(results)
    header = ["model", "family", "params", "clean acc", "clean err"]
    for key, label in metrics:
        header.append(label)
        if key in dict((k, 0) for k, _, _ in DISTORTIONS):
            header.append(f"{label} success")
    body = []
    for r in rows:
        line = [r["name"], r["family"], r["params"], r["clean_accuracy"], r["clean_error"]]
        for key, _ in metrics:
            line.append(r[key]["mean"])
            if "success_rate" in r[key]:
                line.append(r[key]["success_rate"])
        body.append(line)
    sections = [("Metrics per model",
                 "<p>Minimal distortions are means over the successful attacks on the correctly "
                 "classified images attacked; success is the share attacked that was broken. "
                 "CLEVER is the mean score over a few images.</p>" + table(header, body))]
    published = published_section(rows)
    if published:
        sections.append(published)
    fam = {r["name"]: r["family"] for r in rows}
    for key, title in (("transfer", "Transferability (untargeted)"),
                       ("transfer_targeted", "Transferability (targeted, least likely)")):
        t = results.get(key)
        if not t:
            continue
        figs = [img(heatmap(t, fam, "untargeted", f"untargeted success ({t['attack']})"),
                    "transferability heatmap")]
        if t.get("targeted"):
            figs += [img(heatmap(t, fam, "top1", "targeted top-1"), "targeted top-1 heatmap"),
                     img(heatmap(t, fam, "top5", "targeted top-5"), "targeted top-5 heatmap")]
        sections.append((title, "<p>Rows: source model; columns: target model; each cell the "
                         "share of the target's correctly classified images that the source's "
                         "adversarial examples break. The diagonal is white-box.</p>"
                         + "".join(figs)))
    if metrics:
        front = table(["metric", "models on the Pareto frontier"],
                      [(lab, ", ".join(results["pareto"].get(k, []))) for k, lab in metrics])
        sections.append(("Accuracy-robustness Pareto frontier",
                         img(pareto_plot(results, metrics), "Pareto plot") + front))
    fit_rows = []
    for key, _, label in DISTORTIONS:
        f = results["fit"].get(key)
        if f is None:
            continue
        if "slope" in f:
            fit_rows.append((label, f["slope"], f["intercept"], f["r2"], f["n"],
                             f.get("warning", "")))
        else:
            fit_rows.append((label, None, None, None, None, f["skipped"]))
    if fit_rows:
        sections.append(("Distortion versus ln(clean error)",
                         img(fit_plot(results), "distortion versus log error")
                         + table(["metric", "slope", "intercept", "R²", "models", "note"],
                                 fit_rows)))
    sections.append(("Families", table(["family", "models"],
                                       [(f, ", ".join(ns))
                                        for f, ns in results["families"].items()])))
    return page(f"Model zoo {run_id}", sections,
                subtitle=f"{results['dataset']} {results['split']}, {results['n_examples']} "
                         f"images, {len(rows)} models")


def percent(v) -> float | None:
    """A RobustBench accuracy ("57.20", 57.2) as a float percent; None if absent or not one."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def published_section(rows: list[dict]) -> tuple[str, str] | None:
    """RobustBench's published numbers (model-info JSON) beside robustlab's clean accuracy, for
    the models that have them; None when none has."""
    from .html import table

    have = [r for r in rows if r.get("published")]
    if not have:
        return None
    body = []
    for r in have:
        p = r["published"]
        body.append((r["name"], p.get("name"), p.get("dataset"), p.get("threat_model"),
                     p.get("eps"), percent(p.get("clean_acc")), 100.0 * r["clean_accuracy"],
                     percent(p.get("autoattack_acc"))))
    header = ["model", "published as", "dataset", "threat", "ε", "clean acc % (published)",
              "clean acc % (robustlab)", "AutoAttack acc % (published)"]
    return ("Published numbers (RobustBench model info)",
            "<p>From each model's RobustBench model-info JSON, on RobustBench's own test set and "
            "AutoAttack run; robustlab's clean accuracy is on this zoo's images.</p>"
            + table(header, body))


def robustness_metrics_from(results: dict) -> list[tuple[str, str]]:
    keys = [(k, lab) for k, _, lab in (*DISTORTIONS, *CLEVERS)]
    return [(k, lab) for k, lab in keys if results["models"] and k in results["models"][0]]

"""The report of an evaluation run: accuracy after each attack, accuracy against ε, masking
flags and a grid of adversarial images."""

from __future__ import annotations

import torch

from . import figures
from .html import esc, img, kv_rows, page, table


def masking_section(masking: dict | None, multi_eps: bool = False) -> str:
    if masking is None:
        return "<p>Masking checks were switched off.</p>"
    flags = masking.get("flags", [])
    parts = []
    if flags:
        parts += [f"<div class='flag'><b>{esc(f['check'])}</b>: {esc(f['message'])}</div>"
                  for f in flags]
    else:
        parts.append("<div class='ok'>No sign of gradient masking in these checks.</div>")
    c = masking.get("checks", {})
    rows = []
    if c.get("black_box", {}).get("ran"):
        rows.append(("points broken only by black-box attacks",
                     c["black_box"]["broken_by_black_box"]))
    # With several radii the curve is the evaluation's own (the whole suite); with one it is a
    # PGD-20 probe at multiples of eps (evaluation/masking.py).
    what = "suite robust accuracy" if multi_eps else "PGD-20 accuracy on the probe"
    for p in c.get("accuracy_vs_eps", []):
        rows.append((f"{what} at eps={p['eps']:g}", pct(p["accuracy"])))
    if "unbounded" in c:
        rows.append((f"accuracy under an unbounded attack (eps={c['unbounded']['eps']:g})",
                     pct(c["unbounded"]["accuracy"])))
    if "gradients" in c:
        g = c["gradients"]
        rows.append(("examples with zero input gradient", pct(g["zero_fraction"])))
        rows.append(("examples with non-finite input gradient", pct(g["non_finite_fraction"])))
    if rows:
        parts.append(f"<p>Checks on {c.get('n_probe', 0)} correctly classified examples:</p>")
        parts.append(table(["check", "value"], rows))
    return "".join(parts)


def pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def eval_report(run_id: str, results: dict, per_eps, x, y, model, dspec) -> str:
    t = results["threat"]
    radii = ", ".join(f"{th.eps:g}" for th, _ in per_eps)
    summary = [("model", results["model"]), ("dataset", f"{results['dataset']} "
                                                        f"({results['split']})"),
               ("examples", results["n_examples"]),
               ("threat model", f"{t['norm']} eps={radii}"),
               ("attacks", results["attack"]),
               ("clean accuracy", pct(results["clean_accuracy"])),
               ("wall seconds, all radii", f"{results['wall_seconds']:.1f}"),
               ("forward / backward examples",
                f"{results['forward_examples']:,} / {results['backward_examples']:,}")]
    sections = [("Summary", kv_rows(summary)
                 + table(["eps", "robust accuracy", "seconds"],
                         [(f"{th.eps:g}", pct(r.robust_accuracy), f"{r.wall_seconds:.1f}")
                          for th, r in per_eps]))]
    for th, r in per_eps:
        stages = r.stages
        labels = ["clean"] + [s["attack"] for s in stages]
        values = [r.clean_accuracy] + [s["robust_accuracy"] for s in stages]
        sections.append((f"Accuracy after each attack, eps={th.eps:g}",
                         img(figures.bar_chart(labels, values, "accuracy after each attack "
                                               "(cumulative)", "accuracy"), "stages")
                         + table(["attack", "robust accuracy after it", "points it broke",
                                  "seconds"],
                                 [(s["attack"], pct(s["robust_accuracy"]), s["broken"],
                                   f"{s['seconds']:.1f}") for s in stages])))
    if len(per_eps) > 1:
        eps = [th.eps for th, _ in per_eps]
        acc = [r.robust_accuracy for _, r in per_eps]
        sections.append(("Accuracy against eps", img(figures.line_chart(
            eps, {"robust accuracy": acc}, f"{t['norm']} robust accuracy", "eps", "accuracy"),
            "accuracy vs eps")))
    sections.append(("Gradient-masking checks",
                     masking_section(results.get("masking"), len(per_eps) > 1)))
    _, main = per_eps[0]
    if main.x_adv is not None:
        broken = [i for i, b in enumerate(main.broken_by) if b not in (None, "clean")][:10]
        if broken:
            idx = torch.tensor(broken)
            xa = main.x_adv[idx]
            dev = next(iter(model.parameters())).device if list(model.parameters()) else "cpu"
            with torch.no_grad():
                p = model(x[idx].to(dev)).argmax(1).cpu().numpy()
                pa = model(xa.to(dev)).argmax(1).cpu().numpy()
            png = figures.adversarial_grid(x[idx].numpy(), xa.numpy(), y[idx].numpy(), p, pa,
                                           dspec.classes, n=len(broken))
            sections.append(("Adversarial examples", img(png, "adversarial examples")))
    return page(f"robustlab evaluation {run_id}", sections,
                subtitle=f"{results['attack']} under {t['norm']} eps={radii}")

"""The report of an evaluation run: accuracy after each attack, accuracy against ε, masking
flags and a grid of adversarial images."""

from __future__ import annotations

import torch

from . import figures
from .html import esc, img, page, table


def masking_section(masking: dict | None) -> str:
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
    for p in c.get("accuracy_vs_eps", []):
        rows.append((f"PGD accuracy at eps={p['eps']:g}", p["accuracy"]))
    if "unbounded" in c:
        rows.append((f"accuracy under an unbounded attack (eps={c['unbounded']['eps']:g})",
                     c["unbounded"]["accuracy"]))
    if "gradients" in c:
        g = c["gradients"]
        rows.append(("examples with zero input gradient", g["zero_fraction"]))
        rows.append(("examples with non-finite input gradient", g["non_finite_fraction"]))
    if rows:
        parts.append(f"<p>Checks on {c.get('n_probe', 0)} correctly classified examples:</p>")
        parts.append(table(["check", "value"], rows))
    return "".join(parts)


def eval_report(run_id: str, results: dict, per_eps, x, y, model, dspec) -> str:
    t = results["threat"]
    summary = [("model", results["model"]), ("dataset", f"{results['dataset']} "
                                                        f"({results['split']})"),
               ("examples", results["n_examples"]),
               ("threat model", f"{t['norm']} eps={t['eps']:g}"),
               ("attacks", results["attack"]),
               ("clean accuracy", results["clean_accuracy"]),
               ("robust accuracy", results["robust_accuracy"]),
               ("wall seconds", results["wall_seconds"]),
               ("forward / backward examples",
                f"{results['forward_examples']} / {results['backward_examples']}")]
    sections = [("Summary", table(["", ""], summary))]
    stages = results["stages"]
    labels = ["clean"] + [s["attack"] for s in stages]
    values = [results["clean_accuracy"]] + [s["robust_accuracy"] for s in stages]
    sections.append(("Accuracy after each attack",
                     img(figures.bar_chart(labels, values, "accuracy after each attack "
                                           "(cumulative)", "accuracy"), "stages")
                     + table(["attack", "robust accuracy after it", "points it broke",
                              "seconds"],
                             [(s["attack"], s["robust_accuracy"], s["broken"], s["seconds"])
                              for s in stages])))
    if len(per_eps) > 1:
        eps = [th.eps for th, _ in per_eps]
        acc = [r.robust_accuracy for _, r in per_eps]
        sections.append(("Accuracy against eps", img(figures.line_chart(
            eps, {"robust accuracy": acc}, f"{t['norm']} robust accuracy", "eps", "accuracy"),
            "accuracy vs eps") + table(["eps", "robust accuracy"], list(zip(eps, acc)))))
    sections.append(("Gradient-masking checks", masking_section(results.get("masking"))))
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
                subtitle=f"{results['attack']} under {t['norm']} eps={t['eps']:g}")

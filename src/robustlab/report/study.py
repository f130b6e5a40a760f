"""report.html of a human-labelling study: the headline numbers with their intervals and the
perturbed images people most and least often labelled as the model did."""

from __future__ import annotations

import base64
from pathlib import Path

from .html import esc, kv_rows, page, table


def _fmt(m: dict) -> str:
    if m.get("estimate") is None:
        return "-"
    lo, hi = m["ci95"]
    ci = "" if lo is None else f" [{lo:.3f}, {hi:.3f}]"
    return f"{m['estimate']:.3f}{ci}"


def _img(path: Path, alt: str) -> str:
    b64 = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{esc(alt)}" width="112" src="data:image/png;base64,{b64}">'


def study_report(run_id: str, study: Path, manifest: dict, res: dict, k: int = 8) -> str:
    classes = manifest["classes"]
    head = kv_rows([
        ("evaluation", manifest["eval_run"]), ("threat", f"{manifest['norm']} eps "
                                                         f"{manifest['eps']}"),
        ("attack", manifest["attack"]), ("participants kept / all",
                                         f"{res['n_kept']} / {res['n_participants']}"),
        ("items", res["n_items"]), ("responses", res["n_responses"]),
        ("model robust accuracy", f"{res['robust_accuracy']:.3f}"),
        ("human-adjusted robust accuracy", _fmt(res["human_adjusted_robust_accuracy"])),
        ("human accuracy, clean", _fmt(res["clean_accuracy"])),
        ("human accuracy, perturbed", _fmt(res["adv_accuracy"])),
        ("perturbed: chose the model's label (invalid)", _fmt(res["share_model"])),
        ("perturbed: kept the true label", _fmt(res["share_true"])),
        ("perturbed: neither", _fmt(res["share_neither"])),
        ("Krippendorff's alpha", res["krippendorff_alpha"]),
        ("Fleiss' kappa", res["fleiss_kappa"]),
    ])
    by_id = {it["id"]: it for it in manifest["items"]}
    rated = [p for p in res["per_item"] if p["share_model"] is not None]
    rated.sort(key=lambda p: (-p["share_model"], p["id"]))

    def rows(sel):
        out = []
        for p in sel:
            out.append((p["id"], classes[p["true_label"]], classes[p["model_label"]],
                        f"{p['share_model']:.2f} of {p['n_adv']}"))
        pics = "".join(
            "<figure style='display:inline-block'>"
            f"{_img(study / by_id[p['id']]['clean']['file'], 'clean')}"
            f"{_img(study / by_id[p['id']]['adv']['file'], 'perturbed')}"
            f"<figcaption>{esc(p['id'])}</figcaption></figure>" for p in sel)
        return table(["item", "true", "model", "chose model"], out) + pics

    k = min(k, max(1, len(rated) // 2))  # the two lists never share an item
    sections = [("Results (95% bootstrap over participants and items)", head),
                ("Most invalid (people chose the model's label); clean | perturbed",
                 rows(rated[:k])),
                ("Least invalid; clean | perturbed", rows(rated[::-1][:k]))]
    return page(f"Human study {run_id}", sections,
                subtitle="human-adjusted robust accuracy = robust accuracy + share of fooling "
                         "images x share labelled as the model did")

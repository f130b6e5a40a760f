"""Statistics of a study (Bartoldson et al., ICML 2024, section 6).

On perturbed images a response is "model" (the person chose the model's label: the adversarial
example is *invalid*, the perturbation changed the class a person sees), "true" (kept the true
label) or "neither" (another class or can't tell). The human-adjusted robust accuracy counts
the fooling images a person labels as the model did as not errors::

    adjusted = robust_accuracy + (n_fooled / n_eval) * share_model

Intervals are percentile bootstraps crossed over participants and items (each replicate
reweights participants and items by independent multinomial draws), since both are samples
(Brennan, "Generalizability theory", 2001, on two-facet resampling). Agreement is Krippendorff's
alpha for nominal data (Krippendorff, "Content analysis", 2004; units with fewer than two
answers are dropped) and Fleiss' kappa with per-unit rater counts.
Participants who miss more than a third of the attention checks are excluded."""

from __future__ import annotations

import numpy as np

DEFAULT_BOOT = 2000
CHECK_PASS = 2 / 3  # share of attention checks a participant must pass to be kept


def _boot(p_idx, i_idx, v, n_p, n_i, rng, n_boot):
    """Percentile 95% interval of the weighted mean of v over crossed resamples."""
    if len(v) == 0:
        return [None, None]
    wp = rng.multinomial(n_p, np.full(n_p, 1 / n_p), size=n_boot).astype(np.float64)
    wi = rng.multinomial(n_i, np.full(n_i, 1 / n_i), size=n_boot).astype(np.float64)
    w = wp[:, p_idx] * wi[:, i_idx]
    tot = w.sum(1)
    ok = tot > 0
    stat = (w[ok] @ v) / tot[ok]
    return [float(np.quantile(stat, 0.025)), float(np.quantile(stat, 0.975))]


def krippendorff_alpha(units: list[list[int]]) -> float | None:
    """Nominal alpha from the coincidence matrix; ``units`` lists each unit's answers."""
    units = [u for u in units if len(u) >= 2]
    if not units:
        return None
    cats = sorted({a for u in units for a in u})
    ix = {c: k for k, c in enumerate(cats)}
    o = np.zeros((len(cats), len(cats)))
    for u in units:
        cnt = np.bincount([ix[a] for a in u], minlength=len(cats)).astype(float)
        o += (np.outer(cnt, cnt) - np.diag(cnt)) / (len(u) - 1)
    n_c = o.sum(1)
    n = n_c.sum()
    d_o = n - np.trace(o)
    d_e = (n * n - (n_c ** 2).sum()) / (n - 1)
    return None if d_e == 0 else float(1 - d_o / d_e)


def fleiss_kappa(units: list[list[int]]) -> float | None:
    units = [u for u in units if len(u) >= 2]
    if not units:
        return None
    cats = sorted({a for u in units for a in u})
    ix = {c: k for k, c in enumerate(cats)}
    counts = np.array([np.bincount([ix[a] for a in u], minlength=len(cats)) for u in units],
                      dtype=float)
    n_i = counts.sum(1)
    p_i = ((counts ** 2).sum(1) - n_i) / (n_i * (n_i - 1))
    p_j = counts.sum(0) / n_i.sum()
    pe = float((p_j ** 2).sum())
    return None if pe == 1 else float((p_i.mean() - pe) / (1 - pe))


def study_results(manifest: dict, responses: list[dict], n_boot: int = DEFAULT_BOOT,
                  seed: int = 0) -> dict:
    items = {it["id"]: it for it in manifest["items"]}
    checks = {c["id"]: c for c in manifest["checks"]}
    # Attention checks: who is kept.
    per_p: dict[str, list[bool]] = {}
    for r in responses:
        if r["version"] == "check":
            per_p.setdefault(r["token"], []).append(r["answer"] == checks[r["item_id"]]
                                                    ["true_label"])
    everyone = sorted({r["token"] for r in responses})
    kept = [t for t in everyone if not per_p.get(t) or np.mean(per_p[t]) >= CHECK_PASS]
    kept_set = set(kept)
    rs = [r for r in responses if r["token"] in kept_set and r["version"] != "check"]
    p_of = {t: k for k, t in enumerate(kept)}
    i_of = {iid: k for k, iid in enumerate(items)}
    rng = np.random.default_rng(seed)

    def arrays(version, value):
        sel = [r for r in rs if r["version"] == version]
        return (np.array([p_of[r["token"]] for r in sel], dtype=np.int64),
                np.array([i_of[r["item_id"]] for r in sel], dtype=np.int64),
                np.array([value(r, items[r["item_id"]]) for r in sel], dtype=np.float64))

    out = {"n_participants": len(everyone), "n_kept": len(kept),
           "n_excluded": len(everyone) - len(kept), "n_items": len(items),
           "n_responses": len(rs)}
    measures = {
        "clean_accuracy": ("clean", lambda r, it: r["answer"] == it["true_label"]),
        "adv_accuracy": ("adv", lambda r, it: r["answer"] == it["true_label"]),
        "share_model": ("adv", lambda r, it: r["answer"] == it["model_label"]),
        "share_true": ("adv", lambda r, it: r["answer"] == it["true_label"]),
        "share_neither": ("adv", lambda r, it: r["answer"] not in (it["true_label"],
                                                                   it["model_label"])),
        "share_cant_tell": ("adv", lambda r, it: r["answer"] == -1),
    }
    n_p, n_i = max(len(kept), 1), max(len(items), 1)
    frac_fooled = manifest["n_fooled"] / manifest["n_eval"]
    for name, (ver, f) in measures.items():
        p, i, v = arrays(ver, f)
        est = float(v.mean()) if len(v) else None
        # The same replicate draws for every measure would need one draw; separate seeds
        # per measure are simpler and each interval is valid on its own.
        ci = _boot(p, i, v, n_p, n_i, np.random.default_rng(rng.integers(2**32)), n_boot)
        out[name] = {"estimate": est, "ci95": ci, "n": int(len(v))}
    sm = out["share_model"]
    ra = manifest["robust_accuracy"]
    out["robust_accuracy"] = ra
    out["frac_fooled"] = frac_fooled
    out["human_adjusted_robust_accuracy"] = {
        "estimate": None if sm["estimate"] is None else ra + frac_fooled * sm["estimate"],
        "ci95": [None if c is None else ra + frac_fooled * c for c in sm["ci95"]]}
    units: dict[tuple, list[int]] = {}
    for r in rs:
        units.setdefault((r["item_id"], r["version"]), []).append(int(r["answer"]))
    out["krippendorff_alpha"] = krippendorff_alpha(list(units.values()))
    out["fleiss_kappa"] = fleiss_kappa(list(units.values()))
    per_item = []
    for iid, it in items.items():
        adv = [r["answer"] for r in rs if r["item_id"] == iid and r["version"] == "adv"]
        clean = [r["answer"] for r in rs if r["item_id"] == iid and r["version"] == "clean"]
        per_item.append({"id": iid, "source_index": it["source_index"],
                         "true_label": it["true_label"], "model_label": it["model_label"],
                         "n_adv": len(adv), "n_clean": len(clean),
                         "share_model": float(np.mean([a == it["model_label"] for a in adv]))
                         if adv else None,
                         "clean_accuracy": float(np.mean([a == it["true_label"]
                                                          for a in clean])) if clean else None})
    out["per_item"] = per_item
    return out

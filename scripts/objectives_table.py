"""Markdown table of the objective comparison (scripts/compare_objectives.sh): for the newest
finished run of each objective under a runs folder, clean accuracy, PGD-20 and final robust
accuracy from its evaluation stages, the robust accuracy under robustlab's `standard`
AutoAttack from the newest `robustlab eval` of that run (with its gradient-masking flags),
training FLOPs and wall time; then each objective against fgsm-rs image by image under
`standard`.

    python scripts/objectives_table.py runs/objectives [runs/OTHER ...]

Runs under a further folder are extra rows named "<objective> (<folder>)": variants of an
objective with other settings, compared with the same baseline.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# Single-step methods, then multi-step ones, each followed by its AWP variant (issue 15 added
# free, pgd-at-awp, trades-awp and mart; examples/fashion-mnist-<objective>.toml each).
ORDER = ["ce", "fgsm-rs", "n-fgsm", "free", "pgd-at", "pgd-at-awp", "trades", "trades-awp",
         "mart", "weat", "weat-nat"]
BASELINE = "fgsm-rs"  # issue 4: PGD-AT, TRADES and WEAT must each beat it


def newest_results(root: Path) -> dict[str, dict]:
    out: dict[str, tuple[str, dict]] = {}
    for f in sorted(root.glob("*/results.json")):
        r = json.loads(f.read_text())
        obj = r.get("objective")
        if obj and "eval_stages" in r and (obj not in out or f.parent.name > out[obj][0]):
            out[obj] = (f.parent.name, r)
    return {k: v[1] | {"run": v[0]} for k, v in out.items()}


def standard_evals(root: Path) -> dict[str, dict]:
    """The newest `robustlab eval --version standard` results per evaluated run folder name."""
    out: dict[str, tuple[str, dict]] = {}
    for f in sorted(root.glob("*/results.json")):
        r = json.loads(f.read_text())
        if r.get("attack") != "autoattack-standard" or "model" not in r:
            continue
        run = Path(r["model"]).name
        if run not in out or f.parent.name > out[run][0]:
            out[run] = (f.parent.name, r)
    return {k: v[1] for k, v in out.items()}


def ordered(rows: dict) -> list[str]:
    """Row names in the order of ORDER, extra "<objective> (<folder>)" rows after their own."""
    def key(name: str) -> tuple:
        obj = name.split(" (")[0]
        return (ORDER.index(obj) if obj in ORDER else len(ORDER), name)
    return sorted(rows, key=key)


def main() -> None:
    roots = [Path(a) for a in sys.argv[1:]] or [Path("runs/objectives")]
    rows = newest_results(roots[0])
    standard = standard_evals(roots[0])
    if not rows:
        sys.exit(f"error: no finished runs with results.json under {roots[0]}")
    for extra in roots[1:]:
        rows |= {f"{obj} ({extra.name})": r for obj, r in newest_results(extra).items()}
        standard |= standard_evals(extra)
    any_row = next(iter(rows.values()))
    stages = [s["attack"] for s in any_row["eval_stages"]]
    print(f"n = {any_row['n_examples']} {any_row['split']} images, "
          f"{any_row['threat']['norm']} eps = {any_row['threat']['eps']:g}; "
          f"attacks in turn: {' -> '.join(stages)}\n")
    n_std = {r["n_examples"] for r in standard.values()}
    std_head = f"AutoAttack standard (n = {', '.join(map(str, sorted(n_std)))})" if n_std \
        else "AutoAttack standard"
    print(f"| objective | clean | PGD-20 | AutoAttack (fast) | {std_head} | masking flags "
          "| train FLOPs | train wall time | run |")
    print("|---|---:|---:|---:|---:|---|---:|---:|---|")
    for obj in ordered(rows):
        r = rows[obj]
        pgd = r["eval_stages"][0]["robust_accuracy"]
        s = standard.get(r["run"])
        std = f"{100 * s['robust_accuracy']:.2f}" if s else "–"
        flags = (", ".join(s.get("masking_flags", [])) or "none") if s else "–"
        print(f"| {obj} | {100 * r['clean_accuracy']:.2f} | {100 * pgd:.2f} "
              f"| {100 * r['robust_accuracy']:.2f} | {std} | {flags} | {r['train_flops']:.3g} "
              f"| {r['train_wall_seconds'] / 60:.1f} min | {r['run']} |")
    paired = paired_against(rows, standard, BASELINE)
    if paired:
        print(f"\nUnder `standard`, on the same images, against {BASELINE} (exact two-sided "
              "McNemar test on the images one model keeps and the other loses):\n")
        print(f"| objective | robust here, broken in {BASELINE} | broken here, robust in "
              f"{BASELINE} | difference | p |")
        print("|---|---:|---:|---:|---:|")
        for obj, (win, loss, n, p) in paired.items():
            print(f"| {obj} | {win} | {loss} | {100 * (win - loss) / n:+.1f} points | {p:.2g} |")


def robust_mask(standard_result: dict) -> list[bool]:
    # ``broken_by`` names, per image, the stage that broke it ("clean" if it was misclassified
    # to begin with); None means it survived every stage.
    return [b is None for b in standard_result["broken_by"]]


def paired_against(rows: dict, standard: dict, baseline: str) -> dict[str, tuple]:
    """Per objective: images robust for it and not for ``baseline``, the reverse, the number of
    images, and the exact McNemar p-value. Paired, because every model is attacked on the same
    test images, which is far more sensitive than comparing two accuracies."""
    from scipy.stats import binomtest

    if baseline not in rows or rows[baseline]["run"] not in standard:
        return {}
    base = standard[rows[baseline]["run"]]
    b = robust_mask(base)
    out = {}
    for obj in ordered(rows):
        s = standard.get(rows[obj]["run"])
        if obj == baseline or s is None or s["n_examples"] != base["n_examples"] \
                or s["split"] != base["split"]:
            continue
        a = robust_mask(s)
        win = sum(x and not y for x, y in zip(a, b))
        loss = sum(y and not x for x, y in zip(a, b))
        p = binomtest(win, win + loss, 0.5).pvalue if win + loss else 1.0
        out[obj] = (win, loss, len(a), p)
    return out


if __name__ == "__main__":
    main()

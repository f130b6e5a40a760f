"""Markdown table of the objective comparison (scripts/compare_objectives.sh): for the newest
finished run of each objective under a runs folder, clean accuracy, PGD-20 and final robust
accuracy from its evaluation stages, training FLOPs and wall time.

    python scripts/objectives_table.py runs/objectives
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ORDER = ["ce", "fgsm-rs", "n-fgsm", "pgd-at", "trades", "weat", "weat-nat"]


def newest_results(root: Path) -> dict[str, dict]:
    out: dict[str, tuple[str, dict]] = {}
    for f in sorted(root.glob("*/results.json")):
        r = json.loads(f.read_text())
        obj = r.get("objective")
        if obj and "eval_stages" in r and (obj not in out or f.parent.name > out[obj][0]):
            out[obj] = (f.parent.name, r)
    return {k: v[1] | {"run": v[0]} for k, v in out.items()}


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/objectives")
    rows = newest_results(root)
    if not rows:
        sys.exit(f"error: no finished runs with results.json under {root}")
    any_row = next(iter(rows.values()))
    stages = [s["attack"] for s in any_row["eval_stages"]]
    print(f"n = {any_row['n_examples']} {any_row['split']} images, "
          f"{any_row['threat']['norm']} eps = {any_row['threat']['eps']:g}; "
          f"attacks in turn: {' -> '.join(stages)}\n")
    print("| objective | clean | PGD-20 | AutoAttack (fast) | train FLOPs | train wall time "
          "| run |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for obj in sorted(rows, key=lambda o: ORDER.index(o) if o in ORDER else len(ORDER)):
        r = rows[obj]
        pgd = r["eval_stages"][0]["robust_accuracy"]
        print(f"| {obj} | {100 * r['clean_accuracy']:.2f} | {100 * pgd:.2f} "
              f"| {100 * r['robust_accuracy']:.2f} | {r['train_flops']:.3g} "
              f"| {r['train_wall_seconds'] / 60:.1f} min | {r['run']} |")


if __name__ == "__main__":
    main()

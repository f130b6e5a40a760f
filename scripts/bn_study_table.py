"""Markdown tables of the batch-norm study (scripts/bn_study.sh): per setting (and, for mixture
BN, per BN set) clean accuracy, PGD-20 and AutoAttack `fast` from the run's own evaluation, and
robustlab's `standard` AutoAttack from `robustlab eval`; then paired comparisons image by image
under `standard` (exact two-sided McNemar test, as scripts/objectives_table.py), for the three
claims of Xie and Yuille (ICLR 2020): adversarial-only beats one-BN mixed batches, separate BNs
recover the mixture, and robustness rises with depth.

    python scripts/bn_study_table.py runs/bn-study
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# The depth series is depth-10, adv-only (resnet-18, the same config), depth-34, depth-50.
SETTINGS = ["half-clean", "adv-only", "mixbn", "depth-10", "depth-34", "depth-50"]
# (row, against): the paper's claims as paired comparisons.
PAIRS = [("adv-only", "half-clean"), ("mixbn (adv BN)", "half-clean"),
         ("mixbn (adv BN)", "adv-only"), ("mixbn (clean BN)", "half-clean"),
         ("adv-only", "depth-10"), ("depth-34", "adv-only"), ("depth-50", "depth-34")]


def newest(root: Path, prefix: str) -> tuple[str, dict] | None:
    found = sorted(p for p in root.glob(f"{prefix}-2*/results.json"))
    return (found[-1].parent.name, json.loads(found[-1].read_text())) if found else None


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/bn-study")
    rows: dict[str, dict] = {}
    for s in SETTINGS:
        got = newest(root, f"bn-{s}")
        if got is None:
            continue
        run, r = got
        if s == "mixbn":
            for bn in ("adv", "clean"):
                m = r.get("mixbn_eval", {}).get(bn, {})
                std = newest(root, f"standard-{s}-{bn}")
                rows[f"mixbn ({bn} BN)"] = {"run": run, "r": r, "mix": m,
                                            "std": std[1] if std else None, "bn": bn}
        else:
            std = newest(root, f"standard-{s}")
            rows[s] = {"run": run, "r": r, "std": std[1] if std else None}
    if not rows:
        sys.exit(f"error: no finished bn-study runs under {root}")
    print("| setting | arch | clean | PGD-20 | AutoAttack (fast) | AutoAttack standard "
          "| train wall time | run |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for name, row in rows.items():
        r = row["r"]
        if "mix" in row and row["bn"] != r.get("eval_bn"):
            clean = row["mix"].get("clean_accuracy")
            pgd = "–"  # the per-stage numbers are those of the first BN set only
            final = row["mix"].get("robust_accuracy")
        else:
            clean, final = r["clean_accuracy"], r["robust_accuracy"]
            pgd = f"{100 * r['eval_stages'][0]['robust_accuracy']:.2f}"
        std = f"{100 * row['std']['robust_accuracy']:.2f}" if row["std"] else "–"
        arch = r.get("arch", "")
        print(f"| {name} | {arch} | {_pct(clean)} | {pgd} | {_pct(final)} | {std} "
              f"| {r.get('train_wall_seconds', 0) / 60:.1f} min | {row['run']} |")
    print("\nUnder `standard`, on the same images (exact two-sided McNemar test on the images "
          "one model keeps and the other loses):\n")
    print("| setting | against | robust here only | robust there only | difference | p |")
    print("|---|---|---:|---:|---:|---:|")
    from scipy.stats import binomtest

    for a, b in PAIRS:
        sa, sb = (rows.get(a) or {}).get("std"), (rows.get(b) or {}).get("std")
        if not sa or not sb or sa["n_examples"] != sb["n_examples"]:
            continue
        ma = [x is None for x in sa["broken_by"]]
        mb = [x is None for x in sb["broken_by"]]
        win = sum(x and not y for x, y in zip(ma, mb))
        loss = sum(y and not x for x, y in zip(ma, mb))
        p = binomtest(win, win + loss, 0.5).pvalue if win + loss else 1.0
        print(f"| {a} | {b} | {win} | {loss} | {100 * (win - loss) / len(ma):+.1f} points "
              f"| {p:.2g} |")


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


if __name__ == "__main__":
    main()

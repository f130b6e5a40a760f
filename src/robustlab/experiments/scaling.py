"""`robustlab scaling fit`: the scaling-law fits of a sweep folder or a CSV of runs.

A sweep folder becomes a table with one row per (finished run, metric epoch): N = parameters,
D = images processed by that epoch, C = training FLOPs measured by that epoch, the adversarial
test loss and PGD accuracy of ``training/scaling_metrics.py``, and the point's FID if any.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..analysis.scaling import DEFAULT_RESAMPLES, analyse
from ..analysis.scaling_table import RunTable, read_csv
from ..errors import UserError
from ..io import atomic_write_json, atomic_write_text, read_jsonl


def sweep_table(sweep_dir: str | Path) -> RunTable:
    from ..sweeps import sweep_status

    rows = []
    for st in sweep_status(sweep_dir):
        if st["state"] != "done":
            continue
        run = Path(st["run"])
        res = json.loads((run / "results.json").read_text(encoding="utf-8"))
        sc = res.get("scaling", {})
        for m in read_jsonl(run / "metrics.jsonl"):
            if "adv_test_loss" not in m:
                continue
            rows.append({"params": sc.get("params") or res.get("params"),
                         "data": m.get("images_processed"), "loss": m["adv_test_loss"],
                         "train_flops": m.get("train_flops"), "fid": sc.get("fid"),
                         "accuracy": m.get("pgd_accuracy"), "run": run.name,
                         "source": sc.get("source")})
    if not rows:
        raise UserError(f"{sweep_dir}: no finished run logged scaling metrics (set "
                        "train.metric_epochs in the sweep's base config)")
    return RunTable.from_rows(rows, str(sweep_dir))


def load_table(source: str | Path) -> tuple[RunTable, str]:
    p = Path(source)
    if p.is_dir():
        return sweep_table(p), "pgd-40 (CW loss) accuracy on the metric subset"
    if p.suffix.lower() == ".csv" or p.is_file():
        return read_csv(p), "accuracy column of the CSV"
    raise UserError(f"{p}: neither a sweep folder nor a CSV file")


def scaling_fit(source: str | Path, out: str | Path, *, resamples: int = DEFAULT_RESAMPLES,
                fid: float | None = None, holdout: float = 0.2, seed: int = 0,
                points: str = "final", quiet: bool | None = None) -> dict:
    if resamples < 1:
        raise UserError("--resamples must be >= 1")
    table, target = load_table(source)
    results = analyse(table, resamples=resamples, fid=fid, holdout=holdout, seed=seed,
                      accuracy_target=target, points=points, quiet=quiet)
    results["source"] = str(source)
    out = Path(out)
    atomic_write_json(out / "results.json", results)
    from ..report.scaling import scaling_report

    atomic_write_text(out / "report.html", scaling_report(results, table))
    return results

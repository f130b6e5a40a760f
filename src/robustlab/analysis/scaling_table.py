"""The table of runs a scaling-law fit reads: one row per (run, metric epoch).

Columns follow the CSV that ``robustlab scaling fit`` takes, so published or external runs fit
the same way as a robustlab sweep: ``params`` (N), ``data`` (D, images processed), ``loss`` (the
adversarial test loss), ``train_flops`` (C), and optionally ``fid``, ``source``, ``accuracy`` and
``run`` (rows of one run share it; the bootstrap resamples runs, not rows).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError

REQUIRED = ("params", "data", "loss", "train_flops")
OPTIONAL = ("fid", "source", "accuracy", "run")


@dataclass
class RunTable:
    params: np.ndarray
    data: np.ndarray
    loss: np.ndarray
    train_flops: np.ndarray
    run: np.ndarray                  # run id per row (str)
    fid: np.ndarray | None = None
    accuracy: np.ndarray | None = None
    source: np.ndarray | None = None
    final: np.ndarray | None = None  # True on each run's last row

    def __len__(self) -> int:
        return len(self.loss)

    def take(self, idx) -> RunTable:
        idx = np.asarray(idx)
        pick = {k: (None if v is None else v[idx]) for k, v in self.__dict__.items()}
        return RunTable(**pick)

    def runs(self) -> list:
        return list(dict.fromkeys(self.run.tolist()))

    def rows_of(self, runs) -> np.ndarray:
        want = set(runs)
        return np.array([i for i, r in enumerate(self.run) if r in want], int)

    @classmethod
    def from_rows(cls, rows: list[dict], where: str = "runs") -> RunTable:
        if not rows:
            raise UserError(f"{where}: no runs to fit")
        for i, r in enumerate(rows):
            for k in REQUIRED:
                v = r.get(k)
                if v is None or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise UserError(f"{where}: row {i + 1}: {k} must be a finite number, "
                                    f"got {v!r}")
                if v <= 0:
                    raise UserError(f"{where}: row {i + 1}: {k} must be positive, got {v}")
        col = lambda k: np.array([float(r[k]) for r in rows])  # noqa: E731
        has = lambda k: all(r.get(k) not in (None, "") for r in rows)  # noqa: E731
        fid = col("fid") if has("fid") else None
        if fid is not None and np.any(fid < 0):
            raise UserError(f"{where}: fid must be >= 0")
        run = np.array([str(r.get("run")) if r.get("run") not in (None, "") else f"row{i}"
                        for i, r in enumerate(rows)])
        final = np.zeros(len(rows), bool)
        last: dict = {}
        for i, r in enumerate(run):
            if r not in last or rows[i]["data"] >= rows[last[r]]["data"]:
                last[r] = i
        final[list(last.values())] = True
        return cls(col("params"), col("data"), col("loss"), col("train_flops"), run, fid,
                   col("accuracy") if has("accuracy") else None,
                   np.array([str(r.get("source", "")) for r in rows]) if has("source")
                   else None, final)


def read_csv(path: str | Path) -> RunTable:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such file")
    with open(p, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [k for k in REQUIRED if k not in header]
        if missing:
            raise UserError(f"{p}: missing column(s) {', '.join(missing)} (needs "
                            f"{', '.join(REQUIRED)}; optional {', '.join(OPTIONAL)})")
        rows = []
        for i, raw in enumerate(reader):
            r = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
            row: dict = {}
            for k in REQUIRED + ("fid", "accuracy"):
                if k not in r or r[k] == "":
                    if k in REQUIRED:
                        raise UserError(f"{p}: line {i + 2}: empty {k}")
                    continue
                try:
                    row[k] = float(r[k])
                except ValueError:
                    raise UserError(f"{p}: line {i + 2}: {k} is not a number: {r[k]!r}") \
                        from None
            for k in ("source", "run"):
                if r.get(k):
                    row[k] = r[k]
            rows.append(row)
    return RunTable.from_rows(rows, str(p))

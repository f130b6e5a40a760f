"""`robustlab sweep`: run every point of a sweep as an ordinary run folder in the sweep folder.

The job of one point (:func:`run_point`) trains it, or resumes it from its checkpoint when an
earlier attempt was killed, records the numbers the scaling fits read (N, D, C, inference FLOPs,
FID) under ``results.json["scaling"]`` and the index summary, and never raises: an error is
written to the point's status file and reported, and the other points go on. With
``[slurm] nproc_per_node`` above 1 the job is :func:`torchrun_point`, which runs the same
:func:`run_point` in every process of a ``torchrun`` group (``python -m
robustlab.experiments.sweep SWEEP_DIR POINT`` is its entry point).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

from ..config import Config, build
from ..io import atomic_write_json
from ..runs import Run
from ..sweeps.spec import SweepSpec
from ..sweeps.state import point_state, run_folder, write_status

CURVE_KEYS = ("epoch", "images_processed", "train_flops", "adv_test_loss", "adv_test_ce",
              "pgd_accuracy", "clean_accuracy", "metric_n")


def sweep_dir_of(spec: SweepSpec, out: str | None) -> Path:
    return Path(out) if out else Path(spec.runs_dir) / spec.name


def prepare(spec: SweepSpec, sweep_dir: Path) -> list[dict]:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if spec.path.resolve() != (sweep_dir / "sweep.toml").resolve():
        shutil.copyfile(spec.path, sweep_dir / "sweep.toml")
    points = [{"index": p.index, "name": p.name, "label": p.label(), "overrides": p.overrides,
               "meta": p.meta, "sweep_dir": str(sweep_dir.resolve()), "evaluate": spec.evaluate,
               "config": spec.config_table(p)} for p in spec.points]
    atomic_write_json(sweep_dir / "points.json", points)
    return points


def run_point(point: dict) -> dict:
    """Train (or resume) one point; returns {name, index, state, run, error}."""
    from .train import train_experiment

    sweep_dir = Path(point["sweep_dir"])
    name = point["name"]
    writer = os.environ.get("RANK", "0") == "0"
    base = {"name": name, "index": point["index"]}
    try:
        st = point_state(sweep_dir, name)
        if st["state"] == "done":
            return {**base, **st}
        if writer:
            write_status(sweep_dir, name, "running",
                         slurm_job=os.environ.get("SLURM_JOB_ID"))
        cfg = build(Config, point["config"], f"sweep point {point['index']}:")
        cfg.run.runs_dir, cfg.run.name = str(sweep_dir), name
        folder = run_folder(sweep_dir, name)
        kind = "run" if point["evaluate"] else "train"
        if folder is not None and (folder / "results.json").is_file():
            run = Run.open(folder)  # trained and evaluated; killed before the scaling record
        elif folder is not None:
            run = train_experiment(cfg, kind=kind, evaluate_test=point["evaluate"],
                                   resume=folder)
        else:
            run = train_experiment(cfg, kind=kind, evaluate_test=point["evaluate"])
        if writer:
            record_scaling(run, cfg, point.get("meta", {}))
            write_status(sweep_dir, name, "done")
        return {**base, "state": "done", "run": str(run.path)}
    except Exception as e:  # a failed run is reported, never fatal to the sweep
        lines = [ln for ln in traceback.format_exception_only(type(e), e)[-1].splitlines() if ln]
        err = lines[-1] if lines else repr(e)
        if writer:
            write_status(sweep_dir, name, "failed", error=err,
                         traceback=traceback.format_exc()[-4000:])
        return {**base, "state": "failed", "error": err}


def torchrun_point(point: dict, nproc: int) -> dict:
    """Run one point data-parallel over ``nproc`` processes on this node, under ``torchrun``.

    ``--standalone`` gives each task its own rendezvous on a free port, so several tasks of an
    array can share a node. Rank 0 writes the status file; a group that dies before writing it
    (an out-of-memory kill, a lost rank) is recorded as failed with torchrun's exit code.
    """
    sweep_dir, name = Path(point["sweep_dir"]), point["name"]
    base = {"name": name, "index": point["index"]}
    st = point_state(sweep_dir, name)
    if st["state"] == "done":
        return {**base, **st}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={nproc}", "-m", "robustlab.experiments.sweep", str(sweep_dir), name]
    rc = subprocess.run(cmd, check=False).returncode
    st = point_state(sweep_dir, name)
    if st["state"] == "done":
        return {**base, **st}
    if st["state"] != "failed":
        write_status(sweep_dir, name, "failed", error=f"torchrun exited with code {rc}")
        st = point_state(sweep_dir, name)
    return {**base, **st, "state": "failed"}


def _npz_fid(path: str) -> float | None:
    """The quality of an extra-data file: a scalar ``fid`` array stored in it, if any."""
    if not path:
        return None
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            return float(z["fid"]) if "fid" in z.files else None
    except (OSError, ValueError):
        return None


def record_scaling(run: Run, cfg: Config, meta: dict) -> None:
    """N, D, C, inference FLOPs and FID in results.json and the index summary."""
    res = run.read_results()
    metrics = run.metrics()
    last = [m for m in metrics if "epoch" in m and "step" in m]
    images = last[-1]["step"] * cfg.train.batch_size if last else None
    fid = meta.get("fid")
    if fid is None and cfg.data.extra_fraction > 0:
        fid = _npz_fid(cfg.data.extra_npz)
    # The metric epochs' curve (training/scaling_metrics.py), and its last point beside N, D, C.
    curve = [{k: m.get(k) for k in CURVE_KEYS} for m in metrics if "adv_test_loss" in m]
    final = curve[-1] if curve else {}
    scaling = {"params": res.get("params"), "images_processed": images,
               "train_flops": res.get("train_flops"),
               "inference_flops_per_example": res.get("inference_flops_per_example"),
               "fid": fid, "source": meta.get("source", cfg.data.extra_npz or cfg.data.name),
               **{k: final.get(k) for k in ("adv_test_loss", "pgd_accuracy", "clean_accuracy")},
               "metric_n": final.get("metric_n")}
    res["scaling"] = scaling
    res["scaling_curve"] = curve
    run.write_results(res)
    run.update_index(summary={**{k: v for k, v in res.items() if not isinstance(v, (dict, list))},
                              **{f"scaling_{k}": v for k, v in scaling.items()}})


def run_sweep(spec: SweepSpec, out: str | None = None, workers: int | None = None,
              quiet: bool | None = None) -> tuple[Path, list[dict]]:
    sweep_dir = sweep_dir_of(spec, out)
    points = prepare(spec, sweep_dir)
    states = {p["name"]: point_state(sweep_dir, p["name"])["state"] for p in points}
    # A point another live process or a queued Slurm job holds is left to it, not run twice.
    busy = [p["name"] for p in points if states[p["name"]] == "running"]
    if busy:
        print(f"{len(busy)} point(s) held by a live process or Slurm job, skipped: "
              f"{', '.join(busy)}", file=sys.stderr)
    todo = [p for p in points if states[p["name"]] not in ("done", "running")]
    if spec.executor == "slurm":
        from ..sweeps.slurm import run_slurm

        nproc = int(spec.slurm.get("nproc_per_node", 1))
        job = functools.partial(torchrun_point, nproc=nproc) if nproc > 1 else run_point
        results = run_slurm(job, todo, sweep_dir, spec.slurm, quiet=quiet)
    else:
        from ..sweeps.local import run_local

        results = run_local(run_point, todo, workers or spec.workers, quiet=quiet)
    return sweep_dir, results


def load_points(sweep_dir: Path) -> list[dict]:
    return json.loads((Path(sweep_dir) / "points.json").read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    """``python -m robustlab.experiments.sweep SWEEP_DIR POINT``: one point, in each process
    of a torchrun group (see :func:`torchrun_point`)."""
    sweep_dir, name = argv if argv is not None else sys.argv[1:]
    point = next((p for p in load_points(Path(sweep_dir)) if p["name"] == name), None)
    if point is None:
        print(f"{sweep_dir}: no point named {name}", file=sys.stderr)
        return 2
    return 0 if run_point(point)["state"] == "done" else 1


if __name__ == "__main__":
    raise SystemExit(main())

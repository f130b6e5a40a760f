"""`robustlab sweep SWEEP.toml` and `robustlab sweep status SWEEP_DIR`."""

from __future__ import annotations

from ..errors import UserError
from .common import console


def register(sub) -> None:
    p = sub.add_parser(
        "sweep", help="run a sweep (base config + grid) or show its status",
        description="`robustlab sweep SWEEP.toml` runs every point of the sweep as a run folder "
                    "in the sweep folder; run it again after a kill and it skips finished runs "
                    "and resumes the others from their checkpoints. `robustlab sweep status "
                    "SWEEP_DIR` shows each point: done, running, interrupted, failed (with the "
                    "error's last line) or pending.")
    p.add_argument("args", nargs="+", metavar="SWEEP.toml | status SWEEP_DIR")
    p.add_argument("--out", default=None, help="the sweep folder (default: <runs_dir>/<name>)")
    p.add_argument("--workers", type=int, default=None, help="local executor: runs at once")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_cmd)


def run_cmd(args) -> int:
    if args.args[0] == "status":
        if len(args.args) != 2:
            raise UserError("usage: robustlab sweep status SWEEP_DIR")
        return _status(args.args[1])
    if len(args.args) != 1:
        raise UserError("usage: robustlab sweep SWEEP.toml")
    if args.workers is not None and args.workers < 1:
        raise UserError("--workers must be >= 1")
    from ..experiments.sweep import run_sweep
    from ..sweeps import load_sweep

    spec = load_sweep(args.args[0])
    sweep_dir, results = run_sweep(spec, args.out, args.workers,
                                   quiet=True if args.quiet else None)
    print(f"sweep folder: {sweep_dir}")
    rc = _status(str(sweep_dir))
    return rc


def _status(sweep_dir: str) -> int:
    from rich.table import Table

    from ..sweeps import sweep_status

    rows = sweep_status(sweep_dir)
    t = Table("point", "overrides", "state", "run / error")
    for r in rows:
        t.add_row(r["name"], r["label"], r["state"],
                  r.get("error") or (r.get("run") or "-"))
    console().print(t)
    counts: dict = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    print("  ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    return 1 if counts.get("failed") else 0

"""`robustlab runs list` and `robustlab runs show RUN`: read the SQLite index and run folders."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError
from ..runs import Index, Run, resolve_run
from .common import add_runs_dir, console, fmt


def register(sub) -> None:
    p = sub.add_parser("runs", help="list and show runs from the SQLite index",
                       description="List runs and show one run's config, results and index "
                                   "entries.")
    s = p.add_subparsers(dest="runs_command", metavar="SUBCOMMAND")
    lp = s.add_parser("list", help="one line per run in the runs root")
    add_runs_dir(lp)
    lp.add_argument("--kind", default=None, help="only runs of this kind (train, eval, ...)")
    lp.set_defaults(func=cmd_list)
    sp = s.add_parser("show", help="a run's results and index entries")
    sp.add_argument("run", help="a run folder or a run id (a unique prefix is enough)")
    add_runs_dir(sp)
    sp.add_argument("--json", action="store_true", help="print results.json as JSON")
    sp.set_defaults(func=cmd_show)
    p.set_defaults(func=lambda args: p.print_help())


def cmd_list(args) -> int:
    from rich.table import Table

    root = Path(args.runs_dir or "runs")
    rows = Index(root).runs()
    if args.kind:
        rows = [r for r in rows if r["kind"] == args.kind]
    if not rows:
        print(f"no runs in {root}")
        return 0
    results = {}
    for r in Index(root).results():
        results.setdefault(r["run_id"], []).append(r)
    t = Table(title=f"runs in {root}")
    t.add_column("run", no_wrap=True)
    for col in ("kind", "status", "dataset", "arch", "objective", "clean", "robust",
                "threat", "train FLOPs", "wall s"):
        t.add_column(col)
    for r in rows:
        clean, robust, threat = _headline(results.get(r["run_id"], []))
        t.add_row(r["run_id"], r["kind"], r["status"], r["dataset"] or "-", r["arch"] or "-",
                  r["objective"] or "-", clean, robust, threat, _flops(r["train_flops"]),
                  fmt(r["wall_seconds"]))
    console().print(t)
    return 0


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _flops(v) -> str:
    from ..report.html import human

    return "-" if v is None else human(float(v), "FLOP")


def _headline(res: list[dict]) -> tuple[str, str, str]:
    """(clean, robust, threat) of a run's results rows. Every radius is shown, in the order
    evaluated; a spatial run shows the bare model's worst case, its majority vote's apart."""
    if not res:
        return "-", "-", "-"
    bare = [r for r in res if r["extra"].get("target") in (None, "model")]
    vote = [r for r in res if r["extra"].get("target") not in (None, "model")]
    if bare and bare[0]["norm"] == "spatial":
        worst = min(bare, key=lambda r: r["robust_accuracy"])
        robust = f"{_pct(worst['robust_accuracy'])} (bare model, {worst['attack']})"
        if vote:
            v = min(vote, key=lambda r: r["robust_accuracy"])
            robust += f"; vote {_pct(v['robust_accuracy'])}"
        return _pct(worst["clean_accuracy"]), robust, "spatial"
    rows = bare or res
    by_eps = {}
    for r in rows:  # one row per radius; a later row for the same radius (a rerun) wins
        by_eps[(r["norm"], r["eps"])] = r
    rows = list(by_eps.values())
    threat = f"{rows[0]['norm']} " + ", ".join(fmt(r["eps"]) for r in rows)
    return (_pct(rows[0]["clean_accuracy"]), ", ".join(_pct(r["robust_accuracy"]) for r in rows),
            threat)


def cmd_show(args) -> int:
    from rich.table import Table

    path = resolve_run(args.run, args.runs_dir or "runs")
    run = Run.open(path)
    results = run.read_results()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    c = console()
    idx = run.index.run(run.run_id) if run.index else None
    c.print(f"[bold]{run.run_id}[/bold]  {path}")
    if idx:
        c.print(f"kind {idx['kind']}, status {idx['status']}, created {idx['created']}")
    if not results and not idx:
        raise UserError(f"{path}: no results.json and no index entry: not a robustlab run?")
    t = Table(title="results.json")
    t.add_column("key")
    t.add_column("value")
    for k, v in results.items():
        if isinstance(v, (dict, list)):
            v = json.dumps(v)[:120]
        t.add_row(k, fmt(v))
    c.print(t)
    rows = run.index.results(run.run_id) if run.index else []
    if rows:
        t = Table(title="evaluation results in the index")
        for col in ("model", "split", "n", "threat", "attack", "clean", "robust"):
            t.add_column(col)
        for r in rows:
            t.add_row(str(r["model"]), str(r["split"]), str(r["n_examples"]),
                      f"{r['norm']} {fmt(r['eps'])}", str(r["attack"]),
                      fmt(r["clean_accuracy"]), fmt(r["robust_accuracy"]))
        c.print(t)
    return 0

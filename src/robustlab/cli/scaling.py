"""`robustlab scaling fit SWEEP_DIR_OR_CSV --out DIR`."""

from __future__ import annotations

from .common import fmt


def register(sub) -> None:
    p = sub.add_parser("scaling", help="fit scaling laws to a sweep or a CSV of runs",
                       description="Scaling laws of adversarial training (Bartoldson et al., "
                                   "ICML 2024): envelope, parametric law with data quality, "
                                   "bootstrap intervals, compute-optimal split.")
    s = p.add_subparsers(dest="scaling_command", metavar="COMMAND")
    f = s.add_parser("fit", help="fit a sweep folder or a CSV (params,data,loss,train_flops"
                                 "[,fid,source,accuracy,run])")
    f.add_argument("source", metavar="SWEEP_DIR_OR_CSV")
    f.add_argument("--out", required=True, help="folder for results.json and report.html")
    f.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (>= 1000 "
                   "for the reported intervals)")
    f.add_argument("--fid", type=float, default=None,
                   help="data quality the compute-optimal split is computed at (default: the "
                        "best FID in the runs)")
    f.add_argument("--holdout", type=float, default=0.2,
                   help="share of runs (largest compute) held out for the out-of-sample check")
    f.add_argument("--points", choices=("final", "all"), default="final",
                   help="fit the parametric law to each run's final point (default, as "
                        "Hoffmann et al. fit final losses) or to every metric epoch")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--quiet", action="store_true")
    f.set_defaults(func=run_fit)
    p.set_defaults(func=lambda a: (p.print_help(), 0)[1])


def run_fit(args) -> int:
    from ..experiments.scaling import scaling_fit

    r = scaling_fit(args.source, args.out, resamples=args.resamples, fid=args.fid,
                    holdout=args.holdout, seed=args.seed, points=args.points,
                    quiet=True if args.quiet else None)
    ci = r["parametric_ci"]
    print(f"{r['n_runs']} runs, {r['n_points']} points fitted ({r['points_fitted']}); "
          f"converged: {r['fit']['converged']}")
    for k, v in r["parametric"].items():
        print(f"  {k} = {fmt(v)}  [{fmt(ci[k][0])}, {fmt(ci[k][1])}]")
    co = r["compute_optimal"]
    print(f"  N* ∝ C^{co['n_exponent']:.3f} [{co['n_exponent_ci'][0]:.3f}, "
          f"{co['n_exponent_ci'][1]:.3f}]   D* ∝ C^{co['d_exponent']:.3f} "
          f"[{co['d_exponent_ci'][0]:.3f}, {co['d_exponent_ci'][1]:.3f}]")
    if co.get("plateau_accuracy") is not None:
        print(f"  plateau accuracy {co['plateau_accuracy']:.4f}")
    oos = r.get("out_of_sample")
    if oos:
        print(f"  out of sample ({len(oos['held_out_runs'])} runs): mean |rel. error| of loss "
              f"{oos['loss_mean_abs_rel_error']:.4f}")
    sh = r["term_shares"]
    print(f"  largest share of the predicted loss: N term {sh['N']:.0%}, D term {sh['D']:.0%}, "
          f"E {sh['E']:.0%}")
    for w in r["warnings"]:
        print(f"  warning: {w}")
    print(f"results: {args.out}/results.json  report: {args.out}/report.html")
    return 0

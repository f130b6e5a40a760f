"""`robustlab zoo ZOO.toml`: benchmark a zoo of models (Su et al., ECCV 2018)."""

from __future__ import annotations

from .common import add_runs_dir


def register(sub) -> None:
    p = sub.add_parser(
        "zoo", help="benchmark the robustness of a zoo of models",
        description="Benchmark the models a zoo file lists, as Su et al. (ECCV 2018) do: clean "
                    "error, minimal adversarial distortion (C&W l2, EAD l1, I-FGSM and FGSM "
                    "linf), attack success rates, CLEVER scores, transferability over every "
                    "ordered pair of models, the accuracy-robustness Pareto frontier and the "
                    "fit of distortion against ln(clean error). Writes a run folder with "
                    "results.json and report.html, and one index row per model and metric. "
                    "See examples/zoo-fashion-mnist.toml.")
    p.add_argument("zoo", help="the zoo file (TOML: a [zoo] table and [[models]] entries)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a [zoo] key, e.g. --set zoo.n=100 or --set zoo.cw.steps=50 "
                        "(repeatable)")
    add_runs_dir(p)
    p.add_argument("--device", default=None,
                   help="auto, cpu, cuda or cuda:N (default: the zoo file's zoo.device)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_zoo)


def cmd_zoo(args) -> int:
    import math

    from ..experiments.zoo import zoo_experiment

    run = zoo_experiment(args.zoo, runs_dir=args.runs_dir, quiet=True if args.quiet else None,
                         overrides=args.overrides, device=args.device)
    r = run.read_results()
    print(f"run folder: {run.path}")
    for m in r["models"]:
        parts = [f"clean acc {m['clean_accuracy']:.4f}"]
        for key in ("cw-l2", "ead", "ifgsm", "fgsm", "clever-l2", "clever-linf"):
            if key in m and isinstance(m[key]["mean"], float) and not math.isnan(m[key]["mean"]):
                parts.append(f"{key} {m[key]['mean']:.4g}")
        print(f"  {m['name']:<24} [{m['family']}] " + ", ".join(parts))
        pub = m.get("published") or {}
        if pub:  # RobustBench's model info: its published accuracies beside ours
            pieces = []
            for key, label in (("clean_acc", "clean acc"), ("autoattack_acc", "AutoAttack")):
                try:
                    pieces.append(f"{label} {float(pub[key]):.2f}%")
                except (KeyError, TypeError, ValueError):
                    continue
            print(f"  {'':<24} published ({pub.get('name', 'model info')}): "
                  f"{', '.join(pieces) or 'no accuracies'}")
    def num(v, spec: str) -> str:  # NaN is stored as null (R² of equal distortions)
        return "nan" if v is None else format(v, spec)

    for key, f in r.get("fit", {}).items():
        if "r2" in f:
            print(f"  fit {key} = {num(f['slope'], '.4g')}·ln(err) + "
                  f"{num(f['intercept'], '.4g')}  (R² {num(f['r2'], '.3f')}, {f['n']} models)")
    print(f"  report: {run.path / 'report.html'}")
    return 0

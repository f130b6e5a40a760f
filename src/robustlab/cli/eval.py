"""`robustlab eval`: attack a checkpoint and report trustworthy robust accuracy."""

from __future__ import annotations

from ..errors import UserError
from .common import add_model_source, add_runs_dir, add_threads, check_data_dir

VERSIONS = ("standard", "fast", "plus", "rand", "custom")


def register(sub) -> None:
    p = sub.add_parser(
        "eval", help="robust accuracy of a checkpoint under an attack suite",
        description="Evaluate a checkpoint (a .safetensors file or a run folder) on a dataset "
                    "split under an lp threat model with an AutoAttack-grade suite. Each attack "
                    "runs on the points still robust; every adversarial example is re-checked. "
                    "Writes a run folder with results.json and report.html. Can be split over "
                    "processes with `torchrun --nproc-per-node N -m robustlab eval ...`.")
    p.add_argument("model", nargs="?", help="checkpoint file or run folder (or, with --arch / "
                   "--model-factory, your own weights)")
    add_model_source(p)
    p.add_argument("--weights", default="model", choices=("model", "best", "ema"),
                   help="which weights of a run folder (default: model, the final weights)")
    p.add_argument("--dataset", default="",
                   help="dataset name (default: the one the run folder was trained on)")
    p.add_argument("--data-path", default="", help="the file, for --dataset npz")
    p.add_argument("--split", default="test", choices=("train", "val", "test"),
                   help="dataset split (val: the 5000 examples carved from training with the "
                        "default seed; default test)")
    p.add_argument("--n", "--num-examples", dest="n", type=int, default=None,
                   help="evaluate the first N examples of the split (0: all; default 1000); "
                        "under torchrun write --num-examples, which torchrun cannot mistake for "
                        "one of its own options")
    p.add_argument("--norm", default="linf", help="threat model: linf, l2 or l1")
    p.add_argument("--eps", type=float, nargs="+", default=[0.1],
                   help="radius on the [0, 1] pixel scale; several give an accuracy-vs-eps "
                        "curve (default 0.1)")
    p.add_argument("--version", default="standard", choices=VERSIONS,
                   help="attack suite: standard (APGD-CE, APGD-T, FAB-T, Square, as AutoAttack),"
                        " fast (same robust accuracy at a fraction of the cost), plus, rand "
                        "(for randomised defences), custom (with --attacks)")
    p.add_argument("--attacks", default="",
                   help="comma-separated attack names for --version custom, run in turn")
    p.add_argument("--batch-size", type=int, default=0,
                   help="examples per attack call (default 0: 128 on CPU, where smaller batches "
                   "stay in cache, 500 on GPU)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the attacks' randomness; each (attack, batch) is seeded from it")
    p.add_argument("--bn", default="clean", choices=("clean", "adv"),
                   help="with a mixture-BN model, which batch-norm set to evaluate")
    p.add_argument("--save-adv", action="store_true",
                   help="save adversarial examples to adversarial.npz (float32 images, labels)")
    p.add_argument("--no-masking-checks", action="store_true",
                   help="skip the gradient-masking checks")
    p.add_argument("--n-probe", type=int, default=200,
                   help="examples used by the masking checks (default 200)")
    p.add_argument("--name", default="eval", help="run folder name prefix")
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted evaluation run")
    add_runs_dir(p)
    p.add_argument("--data-dir", default="", help="look for datasets here first")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_threads(p)
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    from ..experiments.evaluate import EvalSpec, eval_experiment, resume_spec
    from ..threat import LpThreat

    quiet = True if args.quiet else None
    if args.resume:
        spec, path = resume_spec(args.resume, args.runs_dir)
        run = eval_experiment(spec, resume=str(path), device=args.device, quiet=quiet)
    else:
        if not args.model and not args.model_factory:
            raise UserError("a checkpoint or run folder is required (or --resume RUN)")
        check_data_dir(args.data_dir)
        n_given = args.n is not None
        args.n = 1000 if args.n is None else args.n
        if args.n < 0:
            raise UserError(f"--n must be >= 0, got {args.n}")
        if args.batch_size < 0:
            raise UserError(f"--batch-size must be >= 0 (0: automatic), got {args.batch_size}")
        for e in args.eps:
            LpThreat(args.norm, e)
        attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
        if args.version == "custom" and not attacks:
            raise UserError("--version custom needs --attacks, e.g. --attacks apgd-ce,square")
        if attacks and args.version != "custom":
            raise UserError("--attacks is for --version custom")
        spec = EvalSpec(model=args.model, weights=args.weights, dataset=args.dataset,
                        data_dir=args.data_dir, data_path=args.data_path, split=args.split,
                        n=args.n, n_given=n_given, norm=args.norm,
                        eps=list(args.eps), version=args.version, attacks=attacks,
                        batch_size=args.batch_size, seed=args.seed, bn=args.bn,
                        save_adv=args.save_adv, masking=not args.no_masking_checks,
                        n_probe=args.n_probe, name=args.name, arch=args.arch,
                        model_factory=args.model_factory, num_classes=args.num_classes,
                        arch_norm=args.arch_norm)
        run = eval_experiment(spec, runs_dir=args.runs_dir or "runs", device=args.device,
                              quiet=quiet)
    if run is None:
        return 0  # a non-zero rank under torchrun
    r = run.read_results()
    print(f"run folder: {run.path}")
    print_radii(r)
    pub = r.get("published") or {}
    if pub:
        pieces = [f"{k} {float(pub[k]):.2f}%" for k in ("clean_acc", "autoattack_acc")
                  if pub.get(k) not in (None, "")]
        name = pub.get("name", "model info")
        print(f"  published ({name}): {', '.join(pieces) or 'no accuracies'}")
    for w in r.get("warnings", []):
        print(f"  WARNING {w['check']}: {w['message']}")
    for f in r.get("masking", {}).get("flags", []):
        print(f"  WARNING gradient masking? {f['check']}: {f['message']}")
    print(f"  report: {run.path / 'report.html'}")
    return 0


def print_radii(r: dict) -> None:
    """One block per radius, each with its own accuracies, stages and time; several radii end
    with a summary table over them."""
    per_eps = r.get("per_eps") or [{"eps": r["threat"]["eps"], **r}]
    norm = r["threat"]["norm"]
    for pe in per_eps:
        print(f"  {r['attack']} {norm} eps={pe['eps']:g} on {pe['n_examples']} examples: clean "
              f"{pe['clean_accuracy']:.2%}, robust {pe['robust_accuracy']:.2%} "
              f"({pe['wall_seconds']:.1f} s)")
        for s in pe["stages"]:
            print(f"    after {s['attack']:<14} {s['robust_accuracy']:.2%}  "
                  f"({s['seconds']:.1f} s)")
    if len(per_eps) > 1:
        print(f"  {'eps':>8}  {'robust':>8}  {'seconds':>8}")
        for pe in per_eps:
            print(f"  {pe['eps']:>8g}  {pe['robust_accuracy']:>8.2%}  "
                  f"{pe['wall_seconds']:>8.1f}")
        print(f"  total {r['wall_seconds']:.1f} s")

"""`robustlab spatial`: accuracy under rotations and translations, bare and with a majority
vote (Engstrom et al., "Exploring the Landscape of Spatial Robustness", ICML 2019)."""

from __future__ import annotations

from ..errors import UserError
from .common import (
    add_model_io_options,
    add_model_source,
    add_threads,
    add_weights_option,
    check_data_dir,
)


def register(sub) -> None:
    p = sub.add_parser(
        "spatial", help="accuracy under rotations + translations (natural, random, "
                        "worst-of-10, grid), with and without a majority vote",
        description="Evaluate a checkpoint (a .safetensors file or a run folder) under the "
                    "spatial threat model of Engstrom et al. (2019): rotations up to "
                    "--max-angle degrees and translations up to --max-trans pixels. Reports "
                    "natural accuracy and accuracy under a random transform, the worst of 10 "
                    "random transforms and the exhaustive 775-point grid, for the bare model "
                    "and for majority-vote inference over --vote-k random transforms (the "
                    "vote is attacked as a whole). Writes a run folder with results.json and "
                    "report.html.")
    p.add_argument("model", nargs="?", default="",
                   help="checkpoint file or run folder (or, with --arch / --model-factory, your "
                        "own weights)")
    add_model_source(p)
    p.add_argument("--dataset", default="",
                   help="dataset name (default: the one the run folder was trained on)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"),
                   help="dataset split (default test)")
    p.add_argument("--n", type=int, default=1000,
                   help="evaluate the first N examples of the split (0: all; default 1000)")
    p.add_argument("--max-angle", type=float, default=30.0,
                   help="largest rotation in degrees, either way, 0 to 180 (default 30, the "
                        "paper's)")
    p.add_argument("--max-trans", type=float, default=3.0,
                   help="largest translation in pixels in each of x and y, >= 0 and less than "
                        "the image side (default 3, the paper's for 28/32-pixel images)")
    p.add_argument("--border", default="zero", choices=("zero", "reflect", "canvas"),
                   help="what fills pixels coming from outside the image: zero (black, the "
                        "paper's), reflect (mirror), canvas (pad, transform, resize back)")
    p.add_argument("--vote-k", type=int, default=10,
                   help="random transforms the majority vote is taken over (default 10)")
    p.add_argument("--grid-trans", type=int, default=5,
                   help="grid attack: translations per axis, ends included (default 5, the "
                        "paper's: every 1.5 px over ±3 px)")
    p.add_argument("--grid-rot", type=int, default=31,
                   help="grid attack: rotations, ends included (default 31, the paper's: "
                        "every 2° over ±30°)")
    p.add_argument("--batch-size", type=int, default=500,
                   help="examples per attack call (default 500, fixed rather than sized to "
                        "the device: random and worst-of-10 draw one seed per call, so their "
                        "numbers depend on it)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the random transforms of the attacks and the vote")
    add_weights_option(p)
    add_model_io_options(p)
    add_threads(p)
    p.set_defaults(func=cmd_spatial)


def _check(args) -> None:
    check_data_dir(args.data_dir)
    if args.n < 0:
        raise UserError(f"--n must be >= 0, got {args.n}")
    if not 0 <= args.max_angle <= 180:
        raise UserError(f"--max-angle must be between 0 and 180 degrees, got {args.max_angle}")
    if not args.max_trans >= 0:
        raise UserError(f"--max-trans must be >= 0 pixels, got {args.max_trans}")
    if args.vote_k < 1:
        raise UserError(f"--vote-k must be >= 1, got {args.vote_k}")
    if args.grid_trans < 1 or args.grid_rot < 1:
        raise UserError(f"--grid-trans and --grid-rot must be >= 1, got {args.grid_trans} "
                        f"and {args.grid_rot}")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")


def cmd_spatial(args) -> int:
    from ..experiments.spatial import ATTACK_ORDER, spatial_experiment
    from ..spatial import SpatialThreat

    _check(args)
    threat = SpatialThreat(max_angle=args.max_angle, max_trans=args.max_trans,
                           border=args.border)
    run = spatial_experiment(args.model, args.dataset, args.split, args.n, threat,
                             vote_k=args.vote_k, runs_dir=args.runs_dir or "runs",
                             seed=args.seed, quiet=args.quiet, data_dir=args.data_dir,
                             data_path=args.data_path, batch_size=args.batch_size,
                             device=args.device, weights=args.weights,
                             grid=(args.grid_trans, args.grid_rot), arch=args.arch,
                             model_factory=args.model_factory, num_classes=args.num_classes,
                             arch_norm=args.arch_norm)
    r = run.read_results()
    print(f"run folder: {run.path}")
    print(f"  {threat.describe()} on {r['n_examples']} examples "
          f"({r['wall_seconds']:.1f} s)")
    print(f"  {'':<34}" + "".join(f"{a:>13}" for a in ATTACK_ORDER))
    for target in ("model", "vote"):
        acc = r["accuracy"][target]
        print(f"  {r['attacked'][target]:<34}"
              + "".join(f"{acc.get(a, float('nan')):>13.4f}" for a in ATTACK_ORDER))
    print(f"  report: {run.path / 'report.html'}")
    return 0

"""`robustlab energy`: energies of natural and adversarial inputs, the phases of adversarial
training and TRADES' KL in energies (Mirza et al., ECCV 2024)."""

from __future__ import annotations

from ..errors import UserError
from .common import add_model_io_options, add_weights_option


def register(sub) -> None:
    p = sub.add_parser(
        "energy", help="E(x) and E(x,y) of natural and adversarial inputs per attack family, "
                       "phases of training, TRADES' KL in energies",
        description="For each model (a run folder or .safetensors file), on the first --n "
                    "examples of a split: the distributions of E(x) = -logsumexp f(x) and "
                    "E(x,y) = -f(x)_y for natural inputs and for adversarial inputs of each "
                    "attack (untargeted PGD, APGD-CE; targeted APGD-T, FAB-T, C&W-L2; black-box "
                    "Square), the share of adversarial inputs with lower E(x) than their "
                    "natural one, TRADES' KL decomposed into energies, and for a training run "
                    "the three phases of training from its metrics.jsonl. Writes a run folder "
                    "with results.json, energies.npz and report.html.")
    p.add_argument("models", nargs="+", metavar="RUN_OR_CKPT",
                   help="run folders or checkpoint files")
    p.add_argument("--n", type=int, default=1000, help="examples of the split (default 1000)")
    p.add_argument("--norm", default="linf", help="threat norm: linf or l2 (default linf)")
    p.add_argument("--eps", type=float, nargs="+", default=[0.1],
                   help="radii on the [0, 1] pixel scale (default 0.1)")
    p.add_argument("--attacks", default=",".join(_default_attacks()),
                   help="comma-separated attack names (default: %(default)s)")
    p.add_argument("--steps", type=int, default=20,
                   help="steps of every iterative attack (default 20; C&W takes at least 100)")
    p.add_argument("--targets", type=int, default=3,
                   help="target classes of APGD-T and FAB-T (default 3; AutoAttack uses 9)")
    p.add_argument("--queries", type=int, default=1000, help="Square queries (default 1000)")
    p.add_argument("--dataset", default="",
                   help="dataset name (default: the one the run folder was trained on)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--batch-size", type=int, default=0,
                   help="examples per attack call (default: 128 on CPU, 500 on GPU)")
    p.add_argument("--seed", type=int, default=0, help="seed of the attacks' random draws")
    add_weights_option(p)
    add_model_io_options(p)
    p.set_defaults(func=cmd_energy)


def _default_attacks():
    from ..experiments.energy import DEFAULT_ATTACKS

    return DEFAULT_ATTACKS


def cmd_energy(args) -> int:
    from ..experiments.energy import energy_experiment

    attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
    if not attacks:
        raise UserError("--attacks: give at least one attack name")
    if args.batch_size < 0:
        raise UserError(f"--batch-size must be >= 0, got {args.batch_size}")
    run = energy_experiment(args.models, dataset=args.dataset, split=args.split, n=args.n,
                            norm=args.norm, eps=args.eps, attacks=attacks, steps=args.steps,
                            targets=args.targets, queries=args.queries,
                            batch_size=args.batch_size, seed=args.seed,
                            runs_dir=args.runs_dir or "runs", device=args.device,
                            weights=args.weights, data_dir=args.data_dir,
                            data_path=args.data_path, quiet=args.quiet)
    r = run.read_results()
    print(f"run folder: {run.path}")
    for m in r["models"]:
        print(f"  {m['label']} ({m['objective'] or '?'}): clean accuracy "
              f"{m['clean_accuracy']:.4f}, mean E(x) natural {m['natural']['energy']['mean']:.3f}")
        print(f"    {'attack':<10}{'eps':>8}{'robust acc':>12}{'mean E(x) adv':>15}"
              f"{'lower E(x)':>12}")
        for a in m["attacks"]:
            eps = f"{a['eps']:g}" if a["bounded"] else "-"
            print(f"    {a['attack']:<10}{eps:>8}{a['robust_accuracy']:>12.4f}"
                  f"{a['energy_adv']['mean']:>15.3f}{a['share_lower_energy']:>12.1%}")
        t = m["trades_kl"]
        print(f"    TRADES KL {t['kl_mean']:.4g} = marginal {t['marginal_term_mean']:.4g} + "
              f"joint {t['joint_term_mean']:.4g} (max identity error {t['max_abs_error']:.1e})")
        ph = m["phases"]
        if ph.get("available"):
            print(f"    phases start at epochs {ph['phase_starts']}; robust overfitting from "
                  f"epoch {ph['robust_overfitting_epoch']}")
    print(f"  report: {run.path / 'report.html'}")
    return 0

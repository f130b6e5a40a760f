"""`robustlab generate`: class-conditional images from a (robust) classifier, with FID, KID and
IS on an independent feature network."""

from __future__ import annotations

from .common import add_model_io_options, add_weights_option


def register(sub) -> None:
    p = sub.add_parser(
        "generate", help="sample images per class from a classifier (SGLD on E(x,y) or "
                         "targeted PGD) and score them with FID/KID/IS",
        description="Sample --n-per-class images of every class from a classifier read as an "
                    "energy-based model: seeds fitted per class on the training split (pca: "
                    "components keeping 95% of the variance; gaussian: full covariance), then "
                    "SGLD with momentum on E(x,y) = -f(x)_y (Mirza et al., ECCV 2024) or "
                    "targeted L2 PGD (Santurkar et al., NeurIPS 2019). Saves samples.npz (the "
                    "npz dataset format) and report.html with a per-class grid, and reports "
                    "FID, KID and IS against the test set on an independent feature network "
                    "(default: a standard cnn-small of the dataset, trained once and cached).")
    p.add_argument("model", metavar="RUN_OR_CKPT", help="run folder or checkpoint file")
    p.add_argument("--sampler", default="sgld", help="sgld or pgd (default sgld)")
    p.add_argument("--seed-init", default="pca", help="pca or gaussian (default pca)")
    p.add_argument("--n-per-class", type=int, default=100,
                   help="samples per class (default 100; use >= 100 per class of 10 for "
                        "the 1000 samples FID needs)")
    p.add_argument("--steps", type=int, default=None,
                   help="sampler steps (default: sgld 100, pgd 60)")
    p.add_argument("--step-size", type=float, default=None,
                   help="sampler step (default: sgld 1.0; pgd eps/40)")
    p.add_argument("--momentum", type=float, default=None, help="sgld momentum (default 0.9)")
    p.add_argument("--noise-std", type=float, default=None,
                   help="sgld noise standard deviation (default 0.001)")
    p.add_argument("--eps", type=float, default=None,
                   help="pgd L2 radius (default 40*sqrt(D/150528), Santurkar et al.'s ImageNet "
                        "radius scaled to D pixels)")
    p.add_argument("--variance", type=float, default=0.95,
                   help="share of variance the pca seeds keep (default 0.95)")
    p.add_argument("--feature-net", default="",
                   help="feature network file: a robustlab .safetensors checkpoint, a "
                        "TorchScript .pt returning (features, logits) or logits, or local "
                        "weights of pytorch-fid's InceptionV3 (pt_inception-2015-12-05-*.pth) "
                        "(default: the cached standard cnn-small)")
    p.add_argument("--cache-dir", default="",
                   help="where the default feature network is cached (default "
                        "$ROBUSTLAB_CACHE or ~/.cache/robustlab)")
    p.add_argument("--feature-epochs", type=int, default=2,
                   help="epochs of the default feature network (default 2; part of its hash)")
    p.add_argument("--n-ref", type=int, default=10000,
                   help="test images the samples are compared with (default 10000)")
    p.add_argument("--kid-subsets", type=int, default=100, help="KID subsets (default 100)")
    p.add_argument("--kid-subset-size", type=int, default=1000,
                   help="KID subset size, capped at the smaller set (default 1000)")
    p.add_argument("--batch-size", type=int, default=250, help="images per sampler call")
    p.add_argument("--seed", type=int, default=0, help="seed of the seeds and the noise")
    add_weights_option(p)
    p.add_argument("--dataset", default="",
                   help="dataset name (default: the one the run folder was trained on)")
    add_model_io_options(p)
    p.set_defaults(func=cmd_generate)


def cmd_generate(args) -> int:
    from ..experiments.generate import generate_experiment

    run = generate_experiment(
        args.model, sampler=args.sampler, seed_init=args.seed_init,
        n_per_class=args.n_per_class, steps=args.steps, step_size=args.step_size,
        momentum=args.momentum, noise_std=args.noise_std, eps=args.eps,
        variance=args.variance, feature_net=args.feature_net, cache_dir=args.cache_dir,
        feature_epochs=args.feature_epochs, n_ref=args.n_ref, kid_subsets=args.kid_subsets,
        kid_subset_size=args.kid_subset_size, batch_size=args.batch_size, seed=args.seed,
        runs_dir=args.runs_dir or "runs", device=args.device, weights=args.weights,
        dataset=args.dataset, data_dir=args.data_dir, data_path=args.data_path,
        quiet=args.quiet)
    r = run.read_results()
    print(f"run folder: {run.path}")
    print(f"  {r['n_samples']} samples ({r['sampler']} from {r['seed_init']} seeds) vs "
          f"{r['n_reference']} {r['reference']} images ({r['wall_seconds']:.1f} s)")
    for k, v in r["metrics"].items():
        if not k.endswith(" std"):
            print(f"  {k:<36} samples {v:10.4f}   seeds {r['seed_metrics'][k]:10.4f}")
    print(f"  samples: {run.path / 'samples.npz'}")
    print(f"  report: {run.path / 'report.html'}")
    return 0

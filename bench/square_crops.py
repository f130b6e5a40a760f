"""Square with cropped queries (attacks/window_forward.py; ℓ∞, ℓ2, and ℓ1 on one channel)
against plain full passes and against the original's Square (``pyautoattack`` 0.2.0,
AutoAttack's settings), in one process.

On the first N test images the model classifies correctly (most of which survive: the cost of
Square in AutoAttack is its 5000 queries on points nothing else broke), robustlab's Square with
AutoAttack's settings runs with ``crop_queries`` on and off from the same seed, then the
original's. Prints robust counts, whether the two robustlab runs agree point for point, wall
times and their ratios.

    make bench-deps
    OMP_NUM_THREADS=2 .venv/bin/python bench/square_crops.py RUN_FOLDER [--n 128]
        [--norm linf] [--eps 0.1] [--queries 5000] [--skip-original]
"""

from __future__ import annotations

import argparse
import time

import torch
from _original import ORIGINAL_NORM

import robustlab
from robustlab import data
from robustlab.attacks.square import Square
from robustlab.models.layout import channels_last, wants_channels_last
from robustlab.threat import LpThreat


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="run folder or .safetensors file (the quickstart model)")
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--norm", default="linf", choices=sorted(ORIGINAL_NORM))
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--queries", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-original", action="store_true")
    args = p.parse_args()
    model = robustlab.load_model(args.model).eval()
    test = data.load("fashion-mnist", "test")
    x, y = test.float_images()[: 4 * args.n], test.labels[: 4 * args.n]
    with torch.no_grad():
        right = (model(x).argmax(1) == y).nonzero().flatten()[: args.n]
    x, y = x[right], y[right]
    threat = LpThreat(args.norm, args.eps)
    cl = wants_channels_last(model, torch.device("cpu"))
    print(f"model {args.model}; {len(x)} correctly classified Fashion-MNIST test images; "
          f"{args.norm} eps {args.eps:g}; {args.queries} queries; "
          f"{torch.get_num_threads()} threads; "
          f"robustlab {'channels-last' if cl else 'NCHW'}, the original NCHW")
    runs = {}
    for crop in (True, False):
        attack = Square(threat, n_queries=args.queries)
        attack.crop_queries = crop
        torch.manual_seed(args.seed)
        t = time.perf_counter()
        with channels_last(model, cl):
            res = attack(model, x, y)
        runs[crop] = (res, time.perf_counter() - t)
        print(f"robustlab, crop_queries={crop}: {int((~res.success).sum())} robust, "
              f"{runs[crop][1]:.1f} s", flush=True)
    (cropped, t_crop), (plain, t_plain) = runs[True], runs[False]
    same = bool(torch.equal(cropped.success, plain.success)) and bool(
        torch.equal(cropped.extras["queries"], plain.extras["queries"]))
    print(f"same points broken and same queries: {same}; max |x_adv difference| "
          f"{float((cropped.x_adv - plain.x_adv).abs().max()):.2e}")
    print(f"cropped / plain time: {t_crop / t_plain:.3f}")
    if not args.skip_original:
        from pyautoattack.square import SquareAttack

        original = SquareAttack(model, p_init=0.8, n_queries=args.queries, eps=args.eps,
                                norm=ORIGINAL_NORM[args.norm], n_restarts=1, seed=args.seed,
                                resc_schedule=False, device="cpu")
        t = time.perf_counter()
        adv = original.perturb(x, y)
        t_orig = time.perf_counter() - t
        with torch.no_grad():
            robust = int((model(adv).argmax(1) == y).sum())
        print(f"original: {robust} robust, {t_orig:.1f} s; robustlab cropped / original "
              f"{t_crop / t_orig:.3f}, plain / original {t_plain / t_orig:.3f}")


if __name__ == "__main__":
    main()

"""Is a gap between robustlab's APGD-T and the original's algorithm or random draw? Both run on
the same points with the same seed, and robustlab again with other seeds for the spread.

The points are those robustlab's APGD-CE (100 iterations) leaves robust among the first N
Fashion-MNIST test images. On them, in batches, each library's 9-target APGD-T (100 iterations,
1 restart per target, as in the original's ``standard``) is reseeded before every batch, which
is what the original does inside ``perturb`` (``pyautoattack`` 0.2.0, ``APGDAttack_targeted``):
with the same seed the two draw the same random starts, so any difference left is the
algorithm's. Prints the robust counts and the points robust to one and not the other.

    make bench-deps
    OMP_NUM_THREADS=2 .venv/bin/python bench/apgdt_same_seed.py RUN_FOLDER [--n 1000]
        [--norm l2] [--eps 1.5] [--batch-size 128] [--seeds 0,1]
"""

from __future__ import annotations

import argparse
import time

import torch
from _original import ORIGINAL_NORM

import robustlab
from robustlab import data
from robustlab.attacks.apgd import APGD, APGDT
from robustlab.threat import LpThreat


def robust_to_apgd_ce(model, x, y, threat: LpThreat, batch: int) -> torch.Tensor:
    with torch.no_grad():
        robust = model(x).argmax(1) == y
    idx = robust.nonzero().flatten()
    for i in range(0, len(idx), batch):
        j = idx[i:i + batch]
        torch.manual_seed(0)
        robust[j] = ~APGD(threat, steps=100)(model, x[j], y[j]).success
    return robust.nonzero().flatten()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="run folder or .safetensors file (the quickstart model)")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--norm", default="l2", choices=sorted(ORIGINAL_NORM))
    p.add_argument("--eps", type=float, default=1.5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seeds", default="0,1", help="robustlab's seeds; the first is the original's")
    args = p.parse_args()
    from pyautoattack.autopgd_base import APGDAttack_targeted

    seeds = [int(s) for s in args.seeds.split(",")]
    model = robustlab.load_model(args.model).eval()
    for param in model.parameters():
        param.requires_grad_(False)
    test = data.load("fashion-mnist", "test")
    x, y = test.float_images()[: args.n], test.labels[: args.n]
    threat = LpThreat(args.norm, args.eps)
    t = time.perf_counter()
    points = robust_to_apgd_ce(model, x, y, threat, args.batch_size)
    print(f"{len(points)} of {len(x)} robust to robustlab's APGD-CE ({args.norm}, eps "
          f"{args.eps:g}; {time.perf_counter() - t:.0f} s)", flush=True)

    def original(xb, yb):
        attack = APGDAttack_targeted(model, n_restarts=1, n_iter=100, norm=ORIGINAL_NORM[args.norm],
                                     eps=args.eps, seed=seeds[0], device="cpu",
                                     n_target_classes=9)
        adv = attack.perturb(xb, yb)
        with torch.no_grad():
            return model(adv).argmax(1) == yb

    def ours(seed):
        def run(xb, yb):
            torch.manual_seed(seed)
            return ~APGDT(threat, steps=100)(model, xb, yb).success
        return run

    runs = [(f"original, seed {seeds[0]}", original)] + [(f"robustlab, seed {s}", ours(s))
                                                        for s in seeds]
    robust = {}
    for name, fn in runs:
        t = time.perf_counter()
        out = torch.zeros(len(points), dtype=torch.bool)
        for i in range(0, len(points), args.batch_size):
            j = points[i:i + args.batch_size]
            out[i:i + args.batch_size] = fn(x[j], y[j])
        robust[name] = out
        print(f"{name}: {int(out.sum())} robust after APGD-T ({time.perf_counter() - t:.0f} s)",
              flush=True)
    ref_name = runs[0][0]
    ref = robust[ref_name]
    for name, out in list(robust.items())[1:]:
        print(f"{name} against {ref_name}: robust only to robustlab {int((out & ~ref).sum())}, "
              f"only to the original {int((ref & ~out).sum())}")


if __name__ == "__main__":
    main()

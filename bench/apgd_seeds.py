"""Is the gap between robustlab's and the original's `standard` after their random-start stages
a property of the code or of the random draw? Each library's first stages (by default APGD-CE
then APGD-T, the two that start at random points) run on the same images with several seeds;
prints the robust count after each stage per seed, the mean and spread per library, and the
difference of the means against its standard error.

With one seed per library, 0.1 points on 1000 images is one image, below the spread of a
random start (`bench/apgdt_same_seed.py` shows that with the same seed the two APGD-T leave the
same points exactly); this measures the spread and tells whether a gap exceeds it. FAB-T is
deterministic and Square is checked separately (`bench/square_crops.py`), so the later stages
are not repeated here.

    make bench-deps
    OMP_NUM_THREADS=2 .venv/bin/python bench/apgd_seeds.py RUN_FOLDER [--n 1000] [--norm linf]
        [--eps 0.1] [--stages 2] [--seeds 1,2,3] [--batch-size 128] [--skip-original]

The original reseeds every batch of every attack with its ``seed`` (``AutoAttack.get_seed``);
robustlab seeds each (attack, batch) unit from its ``seed`` (``evaluation/evaluate.py``).
"""

from __future__ import annotations

import argparse
import math
import statistics

from _original import ORIGINAL_NORM
from autoattack_vs_original import run_original, run_robustlab

import robustlab
from robustlab import data
from robustlab.threat import LpThreat


def summary(name: str, counts: list[int]) -> tuple[float, float]:
    mean = statistics.fmean(counts)
    sd = statistics.stdev(counts) if len(counts) > 1 else float("nan")
    print(f"{name}: robust {counts}, mean {mean:.2f}, sd {sd:.2f}")
    return mean, sd


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="run folder or .safetensors file (the quickstart model)")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--norm", default="linf", choices=sorted(ORIGINAL_NORM))
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--stages", type=int, default=2, help="first K attacks of `standard`")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--skip-original", action="store_true")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    model = robustlab.load_model(args.model).eval()
    test = data.load("fashion-mnist", "test")
    x, y = test.float_images()[: args.n], test.labels[: args.n]
    threat = LpThreat(args.norm, args.eps)
    libs = {"robustlab": lambda s: run_robustlab(model, x, y, threat, "standard",
                                                 args.batch_size, s, args.stages)}
    if not args.skip_original:
        libs["original"] = lambda s: run_original(model, x, y, threat, args.batch_size, s,
                                                  args.stages)
    counts: dict[str, list[list[int]]] = {lib: [] for lib in libs}
    for seed in seeds:
        for lib, fn in libs.items():  # interleaved, so a slow spell of the machine hits both
            r = fn(seed)
            per_stage = [round(s["robust_accuracy"] * len(x)) for s in r["stages"]]
            counts[lib].append(per_stage)
            stages = ", ".join(f"{s['attack']} {c}" for s, c in zip(r["stages"], per_stage))
            print(f"seed {seed} {lib}: robust after {stages} ({r['seconds']:.0f} s)", flush=True)
    print(f"\n{args.norm} eps {args.eps:g}, first {len(x)} images, seeds {seeds}")
    for k in range(args.stages):
        print(f"after stage {k + 1}:")
        means = {lib: summary(f"  {lib}", [c[k] for c in got]) for lib, got in counts.items()}
        if len(means) == 2 and len(seeds) > 1:
            (m1, s1), (m2, s2) = means["robustlab"], means["original"]
            se = math.sqrt((s1 ** 2 + s2 ** 2) / len(seeds))
            print(f"  robustlab - original: {m1 - m2:+.2f} images ({(m1 - m2) / len(x):+.2%}), "
                  f"standard error {se:.2f}")


if __name__ == "__main__":
    main()

"""Cost of a PGD-k adversarial training step against a standard training step.

Target: time(PGD-k step) <= 1.1 × (k + 1) × time(standard step), for the same model and batch:
a PGD-k step does k forward-backward passes for the attack and one for the update, so anything
above (k + 1) is overhead of robustlab's attack and trainer code. Both steps are the trainer's own
``Trainer.train_step`` (objectives ``ce`` and ``pgd-at``), on real Fashion-MNIST batches, timed
in the same process, alternating, median of the repeats.

    .venv/bin/python bench/training_overhead.py [--arch cnn-small] [--k 10] [--batch 128]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from robustlab import data, models
from robustlab.config import Config
from robustlab.training.trainer import Trainer, TrainSettings


def make_trainer(args, objective: str, train_data) -> Trainer:
    cfg = Config()
    cfg.model.arch, cfg.model.norm = args.arch, args.norm
    cfg.train.objective, cfg.train.batch_size = objective, args.batch
    cfg.train.channels_last = args.channels_last
    cfg.train.attack.eps, cfg.train.attack.steps = args.eps, args.k
    spec = train_data.spec
    torch.manual_seed(0)
    model = models.create(args.arch, spec.num_classes, spec.in_channels, norm=args.norm,
                          image_size=spec.image_size)
    return Trainer(TrainSettings(cfg.train, seed=cfg.run.seed), None, model, train_data, None,
                   torch.device("cpu"), quiet=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="cnn-small")
    p.add_argument("--norm", default="none", help="the model's norm layers (cnn-small: none)")
    p.add_argument("--k", type=int, default=10, help="PGD steps of the adversarial step")
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--channels-last", action="store_true",
                   help="both trainers in channels-last layout (as the example configs)")
    args = p.parse_args()
    train = data.load("fashion-mnist", "train")
    std, adv = make_trainer(args, "ce", train), make_trainer(args, "pgd-at", train)
    gen = torch.Generator().manual_seed(0)
    batches = [std._batch(torch.randperm(len(train), generator=gen)[:args.batch], None)
               for _ in range(args.repeats + 3)]

    def timed(trainer, x, y) -> float:
        t = time.perf_counter()
        trainer.train_step(x, y)
        return time.perf_counter() - t

    t_std, t_adv = [], []
    for i, (x, y) in enumerate(batches):
        # Alternate, so a slow spell of the machine hits both; the first 3 of each warm up.
        a, b = timed(std, x, y), timed(adv, x, y)
        if i >= 3:
            t_std.append(a)
            t_adv.append(b)
    s, a = statistics.median(t_std), statistics.median(t_adv)
    ratio = a / ((args.k + 1) * s)
    print(f"model {args.arch} ({args.norm}), batch {args.batch}, "
          f"{'channels-last' if args.channels_last else 'NCHW'}, "
          f"{torch.get_num_threads()} threads, median of {len(t_std)} steps")
    print(f"standard step      {s * 1e3:8.2f} ms")
    print(f"PGD-{args.k} step        {a * 1e3:8.2f} ms")
    print(f"ratio PGD-{args.k} / ((k+1) x standard) = {ratio:.3f}  (target <= 1.1)")


if __name__ == "__main__":
    main()

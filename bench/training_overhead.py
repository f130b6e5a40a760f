"""Cost of a PGD-k adversarial training step against a standard training step.

Target: time(PGD-k step) <= 1.1 × (k + 1) × time(standard step), for the same model and batch:
a PGD-k step does k forward-backward passes for the attack and one for the update, so anything
above (k + 1) is overhead of robustlab's attack and trainer code.

    .venv/bin/python bench/training_overhead.py [--arch cnn-small] [--k 10] [--batch 128]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from robustlab import models
from robustlab.attacks.pgd import PGD
from robustlab.config import Config
from robustlab.threat import LpThreat
from robustlab.training.objectives import adversarial_ce_loss, ce_loss
from robustlab.training.trainer import make_optimizer


def time_steps(step, repeats: int) -> float:
    for _ in range(3):
        step()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="cnn-small")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--channels", type=int, default=1)
    args = p.parse_args()
    torch.manual_seed(0)
    model = models.create(args.arch, 10, args.channels, norm="none", image_size=args.size)
    opt = make_optimizer(model, Config().train)
    x = torch.rand(args.batch, args.channels, args.size, args.size)
    y = torch.randint(0, 10, (args.batch,))
    threat = LpThreat("linf", 0.1)
    pgd = PGD(threat, steps=args.k, step_size=2.5 * 0.1 / args.k, random_start=True,
              early_stop=False)
    pgd.train_mode = True

    def standard():
        model.train()
        loss, _ = ce_loss(model, x, None, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def adversarial():
        model.train()
        x_adv = pgd(model, x, y).x_adv
        loss, _ = adversarial_ce_loss(model, x, x_adv, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t_std = time_steps(standard, args.repeats)
    t_adv = time_steps(adversarial, max(3, args.repeats // 3))
    ratio = t_adv / ((args.k + 1) * t_std)
    print(f"model {args.arch}, batch {args.batch}, {torch.get_num_threads()} threads")
    print(f"standard step      {t_std * 1e3:8.2f} ms")
    print(f"PGD-{args.k} step        {t_adv * 1e3:8.2f} ms")
    print(f"ratio PGD-{args.k} / ((k+1) x standard) = {ratio:.3f}  (target <= 1.1)")


if __name__ == "__main__":
    main()

"""Cost of the spatial grid attack against plain forward passes.

The exhaustive grid of Engstrom et al. (ICML 2019) is 775 transforms per image, so its floor is
775 · N forward passes of the model. This compares ``GridAttack`` on N images of a cnn-small
with the time of exactly that many plain batched forward passes (same chunk sizes), in two cases:

* ``no early break``: a cnn-small whose last layer is dominated by its bias, so it predicts the
  label for every transform and every image is attacked with all 775 transforms.
  Target: ratio <= 1.2 (the transform, loss and bookkeeping cost at most 20% on top).
* ``trained``: a cnn-small trained for a few seconds to tell bar orientations apart, which most
  rotations fool: examples leave the attack as soon as a chunk of transforms fools them, so the
  ratio should be well below 1.

    .venv/bin/python bench/spatial_grid.py [--n 200] [--forward-size 2048] [--threads 2]
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from robustlab import models
from robustlab.spatial import GridAttack, SpatialThreat


def oriented_bars(n: int, seed: int, size: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """Class k is a bar at k·45° (±5°), randomly placed, on noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    ang = torch.deg2rad(y * 45.0 + (torch.rand(n, generator=g) * 10 - 5))
    off = torch.rand(n, 2, generator=g) * 6 - 3
    c = (size - 1) / 2
    yy, xx = torch.meshgrid(torch.arange(size) - c, torch.arange(size) - c, indexing="ij")
    px, py = xx[None] - off[:, 0, None, None], yy[None] - off[:, 1, None, None]
    dx, dy = torch.cos(ang)[:, None, None], -torch.sin(ang)[:, None, None]
    bar = torch.exp(-(px * -dy + py * dx) ** 2 / 2.0) * ((px * dx + py * dy).abs() < 8).float()
    x = 0.8 * bar + 0.15 * torch.rand(n, size, size, generator=g)
    return x.clamp(0, 1)[:, None], y


def bias_dominated(device) -> nn.Module:
    model = models.create("cnn-small", 4, 1, norm="none", image_size=28).to(device).eval()
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(1e-4)
        last.bias.copy_(torch.tensor([20.0, 0.0, 0.0, 0.0]))
    return model


def trained(device, steps: int = 150) -> nn.Module:
    torch.manual_seed(0)
    x, y = oriented_bars(2048, seed=0)
    x, y = x.to(device), y.to(device)
    model = models.create("cnn-small", 4, 1, norm="none", image_size=28).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        i = torch.randint(0, len(x), (64,), device=device)
        loss = F.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def plain_forward_seconds(model: nn.Module, x: torch.Tensor, n_transforms: int,
                          forward_size: int) -> float:
    """775 · N forward passes in the chunks the grid attack uses with no early break."""
    n = len(x)
    per = max(1, forward_size // n)
    buf = x.repeat(per, 1, 1, 1)
    sync(x.device)
    t0 = time.perf_counter()
    for t in range(0, n_transforms, per):
        model(buf[:min(per, n_transforms - t) * n]).argmax(1)
    sync(x.device)
    return time.perf_counter() - t0


def grid_seconds(model: nn.Module, attack: GridAttack, x: torch.Tensor,
                 y: torch.Tensor) -> tuple[float, float]:
    sync(x.device)
    t0 = time.perf_counter()
    res = attack(model, x, y)
    sync(x.device)
    return time.perf_counter() - t0, float(res.success.float().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200, help="images attacked")
    p.add_argument("--forward-size", type=int, default=2048, help="images per forward pass")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--repeats", type=int, default=2, help="timings per case (best kept)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.n > args.forward_size:
        raise SystemExit("--n must be at most --forward-size (one image block), so the two "
                         "timings use the same chunks")
    threat = SpatialThreat()
    attack = GridAttack(threat, forward_size=args.forward_size)
    n_t = len(attack.grid)
    x, y = oriented_bars(args.n, seed=1)
    x, y = x.to(device), y.to(device)
    print(f"grid {n_t} transforms x {args.n} images on {device}, "
          f"{args.forward_size} images per forward ({torch.get_num_threads()} threads)")
    cases = [("no early break", bias_dominated(device), torch.zeros_like(y)),
             ("trained", trained(device), y)]
    for name, model, labels in cases:
        attack(model, x[:8], labels[:8])  # warm-up
        plain = min(plain_forward_seconds(model, x, n_t, args.forward_size)
                    for _ in range(args.repeats))
        runs = [grid_seconds(model, attack, x, labels) for _ in range(args.repeats)]
        grid, fooled = min(r[0] for r in runs), runs[0][1]
        ratio = grid / plain
        target = " (target <= 1.2)" if name == "no early break" else ""
        print(f"{name:>15}: grid {grid:7.2f} s, {n_t}·N plain forwards {plain:7.2f} s, "
              f"ratio {ratio:.3f}{target}; fooled {fooled:.0%}")
        if not math.isfinite(ratio):
            raise SystemExit("timing failed")


if __name__ == "__main__":
    main()

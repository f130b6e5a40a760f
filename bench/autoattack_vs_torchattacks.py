"""robustlab's AutoAttack suites against torchattacks' AutoAttack, in one process.

Same model, same 1000 Fashion-MNIST test images, ε = 0.1 in ℓ∞, the same batch size for both
libraries. Prints robust accuracy and wall time of torchattacks' standard AutoAttack, robustlab
`standard` and robustlab `fast`, and the ratios; then, like for like, robustlab's attacks at the
budgets torchattacks 3.5.1 uses (10 iterations for APGD, APGD-T and FAB-T where the original has
100). torchattacks is a bench-only extra: `make bench-deps` installs it with --no-deps (it
imports without torchvision).

    .venv/bin/python bench/autoattack_vs_torchattacks.py [--model RUN_OR_FILE] [--n 1000]
        [--batch 128] [--skip-torchattacks] [--skip-same-budget]

Without --model it first trains the benchmark model: the quickstart recipe (3-epoch
FGSM-with-random-start cnn-small), into bench/runs/.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import robustlab
from robustlab import data
from robustlab.attacks.autoattack import build_suite
from robustlab.attacks.registry import make_attack
from robustlab.evaluation import evaluate
from robustlab.evaluation.evaluate import default_batch_size
from robustlab.threat import LpThreat

ROOT = Path(__file__).resolve().parents[1]


def benchmark_model(path: str | None):
    if path:
        return robustlab.load_model(path), path
    from robustlab.config import load_config
    from robustlab.experiments.train import train_experiment

    cfg = load_config(ROOT / "examples" / "quickstart.toml")
    cfg.run.runs_dir = str(ROOT / "bench" / "runs")
    cfg.run.name = "bench-model"
    run = train_experiment(cfg, evaluate_test=False)
    return robustlab.load_model(run.path), str(run.path)


def torchattacks_budgets(threat: LpThreat) -> list:
    """robustlab's attacks at the budgets torchattacks 3.5.1 gives its standard AutoAttack:
    10 iterations for APGD-CE, APGD-T (9 targets) and FAB-T (9 targets), Square with 5000
    queries. The time of this suite against torchattacks' compares implementations at equal
    work; `standard` runs the original's 100 iterations."""
    return [make_attack("apgd-ce", threat, steps=10),
            make_attack("apgd-t", threat, steps=10, n_target_classes=9),
            make_attack("fab-t", threat, steps=10, n_target_classes=9),
            make_attack("square", threat, n_queries=5000)]


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="run folder or .safetensors (default: train)")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--batch", type=int, default=0,
                   help="images per attack call, the same for both libraries (default: "
                   "robustlab's choice for the device, 128 on CPU)")
    p.add_argument("--skip-torchattacks", action="store_true")
    p.add_argument("--skip-same-budget", action="store_true",
                   help="skip robustlab's run at torchattacks' budgets (the like-for-like row)")
    args = p.parse_args()
    model, where = benchmark_model(args.model)
    model.eval()
    test = data.load("fashion-mnist", "test")
    x, y = test.float_images()[: args.n], test.labels[: args.n]
    threat = LpThreat("linf", args.eps)
    batch = args.batch or default_batch_size(torch.device("cpu"))
    print(f"model {where}; {args.n} Fashion-MNIST test images; linf eps={args.eps}; "
          f"{torch.get_num_threads()} threads; batches of {batch} for both libraries")
    print(f"clean accuracy {accuracy(model, x, y):.4f}")
    rows = []

    def record(name: str, acc: float, secs: float) -> None:
        rows.append((name, acc, secs))
        print(f"  {name}: robust accuracy {acc:.4f} in {secs:.1f} s", flush=True)

    def run_robustlab(version: str) -> None:
        suite = (torchattacks_budgets(threat) if version == "at torchattacks' budgets"
                 else build_suite(version, threat, num_classes=10))
        t = time.perf_counter()
        res = evaluate(model, x, y, threat, suite, batch_size=batch)
        secs = time.perf_counter() - t
        stages = ", ".join(f"{s['attack']} {s['robust_accuracy']:.4f} ({s['seconds']:.0f}s)"
                           for s in res.stages)
        print(f"  robustlab {version} stages: {stages}", flush=True)
        record(f"robustlab {version}", res.robust_accuracy, secs)

    # Cheapest first, so an interrupted run still reports something.
    run_robustlab("fast")
    if not args.skip_torchattacks:
        import torchattacks

        # torchattacks 3.5.1 builds its standard AutoAttack with its own defaults: 10 iterations
        # for APGD, APGD-T and FAB-T (the original uses 100), Square with 5000 queries.
        aa = torchattacks.AutoAttack(model, norm="Linf", eps=args.eps, version="standard",
                                     n_classes=10, seed=0)
        t = time.perf_counter()
        x_adv = torch.cat([aa(x[i:i + batch], y[i:i + batch])
                           for i in range(0, len(x), batch)])
        secs = time.perf_counter() - t
        ok = threat.contains(x_adv, x)
        with torch.no_grad():
            robust = ((ok & (model(x_adv).argmax(1) == y))
                      | (~ok & (model(x).argmax(1) == y)))
        record("torchattacks AutoAttack standard", float(robust.float().mean()), secs)
    run_robustlab("standard")
    if not args.skip_same_budget:
        run_robustlab("at torchattacks' budgets")
    print()
    print(f"{'suite':<36}{'robust acc':>12}{'seconds':>10}")
    for name, acc, secs in rows:
        print(f"{name:<36}{acc:>12.4f}{secs:>10.1f}")
    by = {name: (acc, secs) for name, acc, secs in rows}
    std, fast = by["robustlab standard"], by["robustlab fast"]
    ref = by.get("torchattacks AutoAttack standard")
    print()
    if ref:
        print(f"time ratio robustlab standard / torchattacks = {std[1] / ref[1]:.3f} "
              f"(target <= 1, aim 0.7)")
        print(f"time ratio robustlab fast / torchattacks     = {fast[1] / ref[1]:.3f} "
              f"(target <= 0.2)")
        print(f"robust acc robustlab standard - torchattacks = {100 * (std[0] - ref[0]):+.2f} "
              f"points (target <= +0.3)")
    print(f"robust acc robustlab fast - standard         = {100 * (fast[0] - std[0]):+.2f} "
          f"points (target within 0.5)")
    same = by.get("robustlab at torchattacks' budgets")
    if ref and same:
        print(f"time ratio at equal budgets robustlab / torchattacks = {same[1] / ref[1]:.3f}")


if __name__ == "__main__":
    main()

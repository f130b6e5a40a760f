"""Candidate `fast` suites on the quickstart model: robust accuracy and seconds of each, in one
process, with robustlab's `evaluate` (the issue 12 search for a cheaper ℓ2 `fast`; the chosen
suite and the reasons are in the docstring of robustlab/attacks/autoattack.py).

    .venv/bin/python bench/fast_variants.py RUN_FOLDER [--n 1000] [--norm l2] [--eps 1.5]
        [--suites "apgd-ce:steps=50 + fab-t:steps=50,n_target_classes=3 ; ..."]

A suite is attacks joined by "+", each a registry name with settings after ":" (key=value,
comma-separated; integers, floats, true/false); suites are separated by ";". The default list
is the one docs/benchmarks.md reports (2026-12-05).
"""

from __future__ import annotations

import argparse
import time

import robustlab
from robustlab import data
from robustlab.attacks.registry import make_attack
from robustlab.threat import LpThreat

CE = "apgd-ce:steps=50"
FAB = "fab-t:early_stop=true,n_target_classes="
DEFAULT = " ; ".join([
    f"{CE} + {FAB}3,steps=50",
    f"{CE} + {FAB}3,steps=100",
    f"{CE} + {FAB}3,steps=100,reuse_linearisation=true",
    f"{CE} + {FAB}3,steps=100,reuse_linearisation=true + apgd-t:steps=50,n_target_classes=3",
    f"{CE} + {FAB}2,steps=100",
    f"{CE} + {FAB}4,steps=50",
    f"{CE} + {FAB}4,steps=75",
    f"{CE} + {FAB}3,steps=50,restarts=2",
])


def _value(text: str):
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        return float(text)


def parse_attack(spec: str, threat: LpThreat):
    name, _, settings = spec.strip().partition(":")
    kwargs = {k.strip(): _value(v.strip()) for k, v in
              (item.split("=") for item in settings.split(",") if item.strip())}
    attack = make_attack(name.strip(), threat, **kwargs)
    attack.label = spec.strip()
    return attack


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="run folder or .safetensors file (the quickstart model)")
    p.add_argument("--n", type=int, default=1000, help="first N Fashion-MNIST test images")
    p.add_argument("--norm", default="l2")
    p.add_argument("--eps", type=float, default=1.5)
    p.add_argument("--suites", default=DEFAULT)
    args = p.parse_args()
    model = robustlab.load_model(args.model).eval()
    test = data.load("fashion-mnist", "test")
    x, y = test.float_images()[: args.n], test.labels[: args.n]
    threat = LpThreat(args.norm, args.eps)
    print(f"{args.n} images, {threat.describe()}\n")
    print("| suite | robust acc | seconds | stages (robust acc, seconds) |\n|---|---|---|---|")
    for suite_text in filter(None, (s.strip() for s in args.suites.split(";"))):
        suite = [parse_attack(a, threat) for a in suite_text.split("+")]
        t = time.perf_counter()
        res = robustlab.evaluate(model, x, y, threat, suite, masking=False, sanity=False,
                                 quiet=True)
        stages = "; ".join(f"{s['robust_accuracy']:.3f}, {s['seconds']:.1f}" for s in res.stages)
        print(f"| {suite_text} | {res.robust_accuracy:.4f} | {time.perf_counter() - t:.1f} | "
              f"{stages} |", flush=True)


if __name__ == "__main__":
    main()

"""robustlab's AutoAttack suites against the original AutoAttack (Croce and Hein, ICML 2020; PyPI
`pyautoattack` 0.2.0), in one process, on the same model, images and batch size.

For each norm: robust accuracy and wall time of the original `standard`, robustlab `standard`
and robustlab `fast`; the images each breaks that the original does not and the reverse; the time
ratios; and per stage, the stage's time against its floor, the time of the model passes it made
(forward-only and forward+backward examples counted by hooks, times the per-example cost of
each measured in the layout the library runs the model in, on a batch of the size the stage
starts with: the points still robust, at most the batch size). Prints markdown.

    make bench-deps    # pip install pyautoattack==0.2.0 (bench only; pure PyTorch)
    .venv/bin/python bench/autoattack_vs_original.py RUN_FOLDER [--n 1000]
        [--norms linf,l2,l1] [--batch-size 128] [--threads T] [--skip-original]

Radii (on the [0, 1] scale, 28x28x1 images): linf 0.1, the quickstart model's training radius
and the issue's; l2 1.5, about where linf 0.1 training leaves a Fashion-MNIST CNN between 20%
and 60% robust, so both libraries have points to break and points to fail on; l1 10, the MNIST
l1 radius of Croce and Hein ("Mind the box", ICCV 2021). `--radii linf=0.1,l2=1.5,l1=10`
changes them.

A stage's batches shrink as its points break, and smaller batches cost more per example, so the
floor (priced at the batch the stage starts with) is a lower bound and the ratio reads high.
Each pass cost is measured at the start and again after every suite, and a floor uses the
median of those measurements (one measurement at the start varied up to 2x between runs).
One exception: robustlab's Square (ℓ∞, ℓ2, and ℓ1 on one-channel images) recomputes only what
the windows of a query change (``attacks/window_forward.py``) while each query still counts as a
forward pass, so its floor is an upper bound and its ratio reads low.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import statistics
import time

import torch
import torch.nn.functional as F
from _original import ORIGINAL_NORM

import robustlab
from robustlab import data
from robustlab.attacks.autoattack import build_suite
from robustlab.evaluation import evaluate
from robustlab.evaluation.evaluate import default_batch_size, frozen_weights
from robustlab.models.layout import channels_last as channels_last_layout
from robustlab.models.layout import wants_channels_last
from robustlab.passes import PassCount, count_passes
from robustlab.threat import LpThreat

RADII = {"linf": 0.1, "l2": 1.5, "l1": 10.0}


class Counted:
    """An attack whose own model passes are counted (the evaluation's totals mix stages)."""

    def __init__(self, attack):
        self.attack, self.count = attack, PassCount()
        self.threat = attack.threat
        self.name = getattr(attack, "label", None) or attack.name

    @property
    def chunk_size(self) -> int:  # evaluate() packs batches for attacks that split their passes
        return self.attack.chunk_size

    @chunk_size.setter
    def chunk_size(self, value: int) -> None:
        self.attack.chunk_size = value

    def __call__(self, model, x, y):
        with count_passes(model, self.count):
            return self.attack(model, x, y)


# (batch, robustlab's way?) -> one (forward, forward+backward) seconds per example per measurement.
# The same pass measured minutes apart on this machine varied up to 2x (139-298 us), so each is
# measured again after every suite and a floor uses the median of all its measurements.
_SAMPLES: dict = {}


def measure_costs(model, x, batch: int, robustlab: bool, reps: int = 5) -> None:
    """One measurement of the seconds per example of a forward pass (no grad) and of
    forward+backward to the input, on a batch of ``batch`` images, median of ``reps``, run as
    the library runs the model: robustlab's ``evaluate`` in channels-last (convolutional models
    on CPU) with the weights frozen, the original as it is given."""
    channels_last = robustlab and wants_channels_last(model, torch.device("cpu"))
    xb = x[:batch]
    yb = torch.zeros(len(xb), dtype=torch.long)

    def fwd():
        with torch.no_grad():
            model(xb)

    def fwd_bwd():
        xg = xb.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(xg), yb), xg)

    out = []
    with channels_last_layout(model, channels_last), \
            (frozen_weights(model) if robustlab else contextlib.nullcontext()):
        for fn in (fwd, fwd_bwd):
            fn()
            times = []
            for _ in range(reps):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            out.append(sorted(times)[reps // 2] / len(xb))
    _SAMPLES.setdefault((batch, robustlab), []).append((out[0], out[1]))


def remeasure_costs(model, x) -> None:
    for batch, ours in list(_SAMPLES):
        measure_costs(model, x, batch, ours)


def pass_costs(model, x, batch: int, robustlab: bool) -> tuple[float, float]:
    """Median over its measurements so far (measured once now if it has none)."""
    if (batch, robustlab) not in _SAMPLES:
        measure_costs(model, x, batch, robustlab)
    got = _SAMPLES[batch, robustlab]
    return statistics.median(f for f, _ in got), statistics.median(fb for _, fb in got)


def floor_seconds(forward: int, backward: int, costs: tuple[float, float]) -> float:
    """Backward examples also made a forward pass: they cost a forward+backward each."""
    return (forward - backward) * costs[0] + backward * costs[1]


class _StageLog(logging.Handler):
    """Reads the original's per-attack log lines and snapshots the pass count at each."""

    LINE = re.compile(r"robust accuracy after ([\w-]+): ([\d.]+)% \(total time ([\d.]+) s\)")

    def __init__(self, count: PassCount):
        super().__init__(logging.DEBUG)
        self.count, self.stages = count, []

    def emit(self, record):
        m = self.LINE.search(record.getMessage())
        if m:
            self.stages.append({"attack": m.group(1).lower(), "robust_accuracy":
                                float(m.group(2)) / 100, "total": float(m.group(3)),
                                "forward": self.count.forward, "backward": self.count.backward})


def run_original(model, x, y, threat: LpThreat, batch: int, seed: int, stages: int = 0) -> dict:
    """The original's ``standard``; ``stages`` > 0 runs only its first ``stages`` attacks."""
    from pyautoattack import AutoAttack

    count = PassCount()
    log = _StageLog(count)
    logger = logging.getLogger("auto-attack")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(log)
    try:
        aa = AutoAttack(model, norm=ORIGINAL_NORM[threat.norm], eps=threat.eps,
                        version="standard", seed=seed)
        if stages:
            aa.attacks_to_run = aa.attacks_to_run[:stages]
        t = time.perf_counter()
        with count_passes(model, count):
            x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=batch)
        secs = time.perf_counter() - t
    finally:
        logger.removeHandler(log)
    inside = threat.contains(x_adv, x)
    with torch.no_grad():
        robust = torch.where(inside, model(x_adv).argmax(1) == y, model(x).argmax(1) == y)
    stages, prev = [], (0.0, 0, 0)
    with torch.no_grad():
        robust_before = float((model(x).argmax(1) == y).sum())
    for s in log.stages:
        stages.append({"attack": s["attack"], "robust_accuracy": s["robust_accuracy"],
                       "seconds": s["total"] - prev[0], "forward": s["forward"] - prev[1],
                       "backward": s["backward"] - prev[2], "points": round(robust_before)})
        prev = (s["total"], s["forward"], s["backward"])
        robust_before = s["robust_accuracy"] * len(x)
    return {"robust": robust, "seconds": secs, "stages": stages,
            "outside": int((~inside).sum()), "passes": (count.forward, count.backward)}


def run_robustlab(model, x, y, threat: LpThreat, version: str, batch: int, seed: int,
                  stages: int = 0) -> dict:
    suite = [Counted(a) for a in build_suite(version, threat, num_classes=10)]
    suite = suite[:stages] if stages else suite
    t = time.perf_counter()
    res = evaluate(model, x, y, threat, suite, batch_size=batch, seed=seed)
    secs = time.perf_counter() - t
    stages, robust_before = [], res.clean_accuracy * len(x)
    for s, a in zip(res.stages, suite):
        # evaluate() re-runs the model once on every point the stage attacked.
        stages.append({"attack": s["attack"], "robust_accuracy": s["robust_accuracy"],
                       "seconds": s["seconds"],
                       "forward": a.count.forward + round(robust_before),
                       "backward": a.count.backward, "points": round(robust_before)})
        robust_before = s["robust_accuracy"] * len(x)
    return {"robust": res.robust_mask, "seconds": secs, "stages": stages, "outside": 0,
            "passes": (res.passes["forward_examples"], res.passes["backward_examples"])}


def parse_radii(text: str) -> dict[str, float]:
    out = dict(RADII)
    for part in filter(None, (p.strip() for p in text.split(","))):
        norm, _, eps = part.partition("=")
        out[norm] = float(eps)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="run folder or .safetensors file (the quickstart model)")
    p.add_argument("--n", type=int, default=1000, help="first N Fashion-MNIST test images")
    p.add_argument("--norms", default="linf,l2,l1")
    p.add_argument("--radii", default="", help="e.g. linf=0.1,l2=1.5,l1=10")
    p.add_argument("--batch-size", type=int, default=0,
                   help="images per attack call, the same for both libraries (default: "
                   "robustlab's for the device, 128 on CPU)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-original", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    radii = parse_radii(args.radii)
    norms = [n.strip() for n in args.norms.split(",") if n.strip()]
    model = robustlab.load_model(args.model).eval()
    test = data.load("fashion-mnist", "test")
    x, y = test.float_images()[: args.n], test.labels[: args.n]
    batch = args.batch_size or default_batch_size(torch.device("cpu"))
    cl = wants_channels_last(model, torch.device("cpu"))
    layout = {"robustlab": True, "original": False}
    costs = {lib: pass_costs(model, x, batch, on) for lib, on in layout.items()}
    print(f"model {args.model}; {len(x)} Fashion-MNIST test images; batches of {batch} for both; "
          f"{torch.get_num_threads()} threads; pyautoattack "
          f"{'skipped' if args.skip_original else __import__('pyautoattack').__version__}")
    for lib, (f, fb) in costs.items():
        how = (", channels-last" if cl else "") + ", weights frozen" if lib == "robustlab" else ""
        print(f"pass cost ({lib} layout{how}):"
              f" forward {1e6 * f:.1f} us/example, forward+backward {1e6 * fb:.1f} us/example "
              f"in batches of {batch}")

    summary, stage_rows = [], []
    for norm in norms:
        threat = LpThreat(norm, radii[norm])
        runs = {}
        # Cheapest first, so an interrupted run still reports something.
        suites = (("robustlab fast", lambda t=threat: run_robustlab(
                      model, x, y, t, "fast", batch, args.seed)),
                  ("robustlab standard", lambda t=threat: run_robustlab(
                      model, x, y, t, "standard", batch, args.seed)),
                  ("original standard", lambda t=threat: run_original(
                      model, x, y, t, batch, args.seed)))
        for name, fn in suites:
            if name == "original standard" and args.skip_original:
                continue
            r = runs[name] = fn()
            lib = "original" if name.startswith("original") else "robustlab"
            print(f"  {norm} eps={threat.eps:g} {name}: robust {r['robust'].float().mean():.4f} "
                  f"in {r['seconds']:.1f} s", flush=True)
            for s in r["stages"]:
                m = max(1, min(batch, s["points"]))
                # Measure this batch size now if it is new, so later re-measurements include it;
                # the floor is priced at the end, on the median of them all.
                pass_costs(model, x, m, layout[lib])
                stage_rows.append((norm, name, lib, s["attack"], m, s["robust_accuracy"],
                                   s["seconds"], s["forward"], s["backward"]))
            remeasure_costs(model, x)
        ref = runs.get("original standard")
        for name, r in runs.items():
            broken = ~r["robust"]
            row = [norm, threat.eps, name, float(r["robust"].float().mean()), r["seconds"]]
            if ref is not None and r is not ref:
                ref_broken = ~ref["robust"]
                row += [r["seconds"] / ref["seconds"], int((broken & ~ref_broken).sum()),
                        int((ref_broken & ~broken).sum())]
            else:
                row += [None, None, None]
            summary.append(row + [r["outside"]])

    for lib, on in layout.items():
        got = _SAMPLES[batch, on]
        f, fb = pass_costs(model, x, batch, on)
        print(f"pass cost ({lib} layout), median of {len(got)} measurements spread over the run: "
              f"forward {1e6 * f:.1f} us/example (range {1e6 * min(g[0] for g in got):.1f}-"
              f"{1e6 * max(g[0] for g in got):.1f}), forward+backward {1e6 * fb:.1f} "
              f"({1e6 * min(g[1] for g in got):.1f}-{1e6 * max(g[1] for g in got):.1f}), "
              f"batches of {batch}")

    def fmt(v, spec):
        return "" if v is None else format(v, spec)

    print("\n| norm | eps | suite | robust acc | seconds | time / original | only it breaks "
          "| only original breaks | outside threat |")
    print("|---|---|---|---|---|---|---|---|---|")
    for norm, eps, name, acc, secs, ratio, mine, theirs, outside in summary:
        print(f"| {norm} | {eps:g} | {name} | {acc:.4f} | {secs:.1f} | {fmt(ratio, '.3f')} | "
              f"{fmt(mine, 'd')} | {fmt(theirs, 'd')} | {outside} |")
    print("\n| norm | suite | stage | first batch | robust acc | seconds | forward ex | "
          "backward ex | floor s | stage / floor |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for norm, name, lib, stage, m, acc, secs, fwd, bwd in stage_rows:
        fl = floor_seconds(fwd, bwd, pass_costs(model, x, m, layout[lib]))
        ratio = secs / fl if fl > 0 else float("nan")
        print(f"| {norm} | {name} | {stage} | {m} | {acc:.4f} | {secs:.1f} | {fwd} | {bwd} | "
              f"{fl:.2f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()

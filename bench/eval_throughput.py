"""Why evaluations on CPU run channels-last in batches of 128: images per second of cnn-small's
forward pass and its forward-backward to the input (an attack step), NCHW against channels-last
and over batch sizes, in one process.

    .venv/bin/python bench/eval_throughput.py [--arch cnn-small] [--reps 4096] [--compilers]
        [--frozen]

Prints each rate and two ratios: channels-last ÷ NCHW at the evaluation's default batch, and
batch 128 ÷ batch 512 in channels-last (the choices of models/layout.py and
evaluation.default_batch_size). ``--compilers`` also times, at the default batch in
channels-last, the model under ``torch.compile`` (inductor; forward and forward-backward) and
TorchScript's ``freeze`` + ``optimize_for_inference`` (forward only), each against eager: the
question being whether an evaluation should compile the model before its attacks.
``--frozen`` times, at the default batch in channels-last, the same passes with the weights set
not to require gradients (``evaluation.evaluate.frozen_weights``, as ``evaluate()`` runs its
attacks) against trainable weights, alternating over several rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from robustlab import data, models
from robustlab.evaluation.evaluate import default_batch_size, frozen_weights


def forward(model, x):
    """A forward pass without gradients, as attacks' checks and Square's queries make."""
    def run():
        with torch.no_grad():
            model(x)
    return run


def forward_backward(model, x):
    """A forward pass and a backward to the input, as a gradient attack's step makes."""
    def run():
        xg = x.clone().requires_grad_(True)
        torch.autograd.grad(model(xg).logsumexp(1).sum(), xg)
    return run


def rate(fn, batch: int, repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return batch / statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="cnn-small")
    p.add_argument("--reps", type=int, default=4096, help="images timed per setting")
    p.add_argument("--compilers", action="store_true",
                   help="also time torch.compile and TorchScript freeze against eager")
    p.add_argument("--frozen", action="store_true",
                   help="also time passes with frozen weights against trainable ones")
    args = p.parse_args()
    test = data.load("fashion-mnist", "test")
    spec = test.spec
    torch.manual_seed(0)
    model = models.create(args.arch, spec.num_classes, spec.in_channels, norm="none",
                          image_size=spec.image_size).eval()
    images = test.float_images()[:512]
    default = default_batch_size(torch.device("cpu"))
    print(f"{args.arch}, {torch.get_num_threads()} threads; images/s (median)")
    rates = {}
    for layout in ("nchw", "channels-last"):
        if layout == "channels-last":
            model.to(memory_format=torch.channels_last)
        for batch in (64, 128, 256, 512):
            x = images[:batch].clone()
            reps = max(8, args.reps // batch)
            rates[layout, batch] = (rate(forward(model, x), batch, reps),
                                    rate(forward_backward(model, x), batch, reps))
            f, fb = rates[layout, batch]
            print(f"  {layout:<14} batch {batch:4d}: forward {f:8.0f}   forward-backward {fb:8.0f}",
                  flush=True)
    for i, what in enumerate(("forward", "forward-backward")):
        print(f"{what}: channels-last / NCHW at batch {default} = "
              f"{rates['channels-last', default][i] / rates['nchw', default][i]:.2f}; "
              f"channels-last batch 128 / batch 512 = "
              f"{rates['channels-last', 128][i] / rates['channels-last', 512][i]:.2f}")
    if args.frozen:
        compare_frozen(model, images[:default].contiguous(memory_format=torch.channels_last),
                       max(8, args.reps // default))
    if args.compilers:
        compare_compilers(model, images[:default].contiguous(memory_format=torch.channels_last),
                          rates["channels-last", default], max(8, args.reps // default))


def compare_frozen(model, x, reps: int, rounds: int = 4) -> None:
    """Rates with frozen weights ÷ trainable weights, medians over alternating rounds."""
    got = {True: [], False: []}
    for _ in range(rounds):
        for frozen in (False, True):
            with frozen_weights(model) if frozen else contextlib.nullcontext():
                got[frozen].append((rate(forward(model, x), len(x), reps),
                                    rate(forward_backward(model, x), len(x), reps)))
    for i, what in enumerate(("forward", "forward-backward")):
        free = statistics.median(r[i] for r in got[False])
        fixed = statistics.median(r[i] for r in got[True])
        print(f"  frozen / trainable weights at batch {len(x)}: {what} {fixed / free:.2f} "
              f"({1e6 / fixed:.1f} against {1e6 / free:.1f} us per image)")


def compare_compilers(model, x, eager: tuple[float, float], reps: int) -> None:
    """Rates of the compiled model (after its compilation, which is timed apart) ÷ eager."""
    t = time.perf_counter()
    compiled = torch.compile(model)
    forward(compiled, x)()
    forward_backward(compiled, x)()
    print(f"torch.compile: {time.perf_counter() - t:.1f} s to compile both graphs")
    f = rate(forward(compiled, x), len(x), reps)
    fb = rate(forward_backward(compiled, x), len(x), reps)
    print(f"  torch.compile / eager at batch {len(x)}: forward {f / eager[0]:.2f} "
          f"({f:.0f}/s), forward-backward {fb / eager[1]:.2f} ({fb:.0f}/s)")
    with torch.no_grad():
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x)))
    f = rate(forward(frozen, x), len(x), reps)
    print(f"  TorchScript freeze / eager at batch {len(x)}: forward {f / eager[0]:.2f} ({f:.0f}/s)")


if __name__ == "__main__":
    main()

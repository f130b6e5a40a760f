"""Checks of the model itself, made before any attack runs, after the original AutoAttack's
``checks.py`` (Croce and Hein, ICML 2020; PyPI ``pyautoattack`` 0.2.0): each finds a kind of
model for which the standard suite's number would be wrong, and says so as a warning stored in
the result. None of them changes what is evaluated.

1. ``randomized``: two forward passes on the same batch differ (dropout or noise left on at
   test time): gradients and predictions are samples, and ``version="rand"`` is the suite to use.
2. ``probabilities``: every output row is in [0, 1] and sums to 1, so the model ends in a
   softmax; the attacks' losses (cross-entropy, DLR, margins) expect logits.
3. ``batch_dependent``: an example's output changes with the batch it is in (batch norm in train
   mode, batch-level statistics): every attack result then depends on batch size and order.
   The original does not check this; robustlab's per-example early exit makes it matter more.
4. ``classes``: too few classes for the suite's losses (DLR needs 3, targeted DLR 4), or fewer
   classes than targets asked for.
5. ``no_gradient_path``: the output does not depend on the input through autograd, so no
   gradient attack can run.
6. ``zero_gradients``: examples whose cross-entropy gradient at the clean input is exactly zero
   (saturated softmax, a rounding or quantising layer): gradient attacks start there without a
   direction (the original's ``check_zero_gradients``, which it makes on APGD's first gradient).
7. ``dynamic``: the forward pass itself calls autograd (``torch.autograd.grad``,
   ``Tensor.backward``): a test-time optimisation defence, whose adaptive evaluation AutoAttack
   alone does not give (the original's ``check_dynamic``, which traces the same calls).

Thresholds follow the original: outputs count as different when their unit-normalised rows
differ by more than 1e-4 in ℓ2 (``check_randomized``), and as probabilities within 1e-5.
"""

from __future__ import annotations

import torch
from torch import nn

from ..attacks.base import model_mode

RANDOM_TOL = 1e-4        # ℓ2 distance between unit-normalised outputs (original: alpha=1e-4)
PROB_TOL = 1e-5          # rows in [0, 1] summing to 1 within this (original: alpha=1e-5)
BATCH_TOL = 1e-3         # relative change of an example's logits with its batch
N_RANDOM_PASSES = 5      # forward passes compared by the randomness check (original: 5)
AUTOGRAD_CALLS = ("grad", "backward", "_make_grads")  # what the original's check_dynamic counts


def _warning(check: str, message: str) -> dict:
    return {"check": check, "message": message}


@torch.no_grad()
def _outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).float()


def has_gradient_path(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether the output of ``model`` depends on its input through autograd."""
    xg = x[:1].detach().clone().requires_grad_(True)
    with torch.enable_grad(), model_mode(model, False):
        z = model(xg)
        if not z.requires_grad:
            return False
        (g,) = torch.autograd.grad(z.sum(), xg, allow_unused=True)
    return g is not None


def is_randomized(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> bool:
    """Repeated forward passes on ``x`` differ: in correct count, or in their unit-normalised
    outputs by more than :data:`RANDOM_TOL`."""
    outs = [_outputs(model, x) for _ in range(N_RANDOM_PASSES)]
    correct = {int((o.argmax(1) == y).sum()) for o in outs}
    units = [o / (o.flatten(1).norm(dim=1, keepdim=True) + 1e-10) for o in outs]
    diff = max(float((a - b).flatten(1).norm(dim=1).max()) for a in units for b in units)
    return len(correct) > 1 or diff > RANDOM_TOL


def zero_gradient_count(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Examples whose cross-entropy gradient with respect to the input is exactly zero."""
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        z = model(xg)
        if not z.requires_grad:
            return 0  # reported as no_gradient_path instead
        loss = torch.nn.functional.cross_entropy(z.float(), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, xg, allow_unused=True)
    if g is None:
        return 0
    return int((g.flatten(1).abs().sum(1) == 0).sum())


def calls_autograd(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether one forward pass calls autograd's entry points (a profile hook sees every Python
    call, as the original's ``sys.settrace`` does, without tracing line by line)."""
    import sys

    seen = []

    def hook(frame, event, arg):
        if event == "call" and frame.f_code.co_name in AUTOGRAD_CALLS:
            seen.append(frame.f_code.co_name)

    previous = sys.getprofile()
    sys.setprofile(hook)
    try:
        with torch.enable_grad():
            model(x)
    finally:
        sys.setprofile(previous)
    return bool(seen)


def looks_like_probabilities(out: torch.Tensor) -> bool:
    return bool(out.max() < 1 + PROB_TOL and out.min() > -PROB_TOL
                and ((out.sum(-1) - 1).abs() < PROB_TOL).all())


def batch_dependence(model: nn.Module, x: torch.Tensor) -> float:
    """Largest change of an example's logits when its batch changes (the whole batch, its two
    halves, and the first example alone), relative to the largest logit magnitude."""
    whole = _outputs(model, x)
    half = len(x) // 2
    parts = torch.cat([_outputs(model, x[:half]), _outputs(model, x[half:])]) if half else whole
    alone = _outputs(model, x[:1])
    scale = float(whole.abs().max()) + 1e-12
    return max(float((whole - parts).abs().max()), float((whole[:1] - alone).abs().max())) / scale


def sanity_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, version: str,
                  attack_names: list[str] = (), n_targets: int = 9, n: int = 64) -> list[dict]:
    """The warnings for ``model`` on the first ``n`` examples of ``(x, y)``, run in the mode the
    evaluation runs it (eval mode, random layers kept on for ``version="rand"``)."""
    xs, ys = x[:n], y[:n]
    warnings: list[dict] = []
    with model_mode(model, False):
        out = _outputs(model, xs)
        random = is_randomized(model, xs, ys)
        if random and version != "rand":
            warnings.append(_warning(
                "randomized", "the model's outputs differ between forward passes on the same "
                "input: it looks like a randomised defence; evaluate it with version='rand'"))
        if looks_like_probabilities(out):
            warnings.append(_warning(
                "probabilities", "the model's outputs are probabilities (rows in [0, 1] summing "
                "to 1): give the attacks logits, e.g. drop the final softmax"))
        zeros = zero_gradient_count(model, xs, ys)
        if zeros:
            warnings.append(_warning(
                "zero_gradients", f"{zeros} of {len(xs)} examples have an exactly zero "
                "cross-entropy gradient at the clean input (saturated outputs or a rounding "
                "layer): gradient attacks may be unreliable there"))
        if calls_autograd(model, xs[:2]):
            warnings.append(_warning(
                "dynamic", "the model's forward pass calls autograd (a test-time optimisation "
                "defence?): AutoAttack alone may be insufficient; attack it adaptively"))
        if not random and len(xs) > 1:
            change = batch_dependence(model, xs)
            if change > BATCH_TOL:
                warnings.append(_warning(
                    "batch_dependent", f"an example's logits change by {change:.1%} (relative) "
                    "with the batch it is in (batch norm in train mode?): results will depend "
                    "on batch size and order"))
    n_cls = out.shape[1]
    names = list(attack_names)
    dlr = [a for a in names if "dlr" in a or a.startswith("apgd-t")]
    targeted = [a for a in names if a.startswith(("apgd-t", "fab-t"))]
    if dlr and n_cls <= 2:
        warnings.append(_warning("classes", f"with {n_cls} classes the DLR loss of "
                                 f"{', '.join(dlr)} cannot be used (it needs 3)"))
    elif targeted and n_cls <= 3:
        warnings.append(_warning("classes", f"with {n_cls} classes the targeted DLR loss of "
                                 f"{', '.join(targeted)} cannot be used (it needs 4)"))
    elif targeted and n_targets + 1 > n_cls:
        warnings.append(_warning("classes", f"{n_targets} target classes asked for, but the "
                                 f"model has only {n_cls - 1} other classes"))
    if not has_gradient_path(model, xs):
        warnings.append(_warning(
            "no_gradient_path", "the model's output does not depend on its input through "
            "autograd (a transform run under no_grad or on a detached copy): gradient attacks "
            "cannot run on it"))
    return warnings

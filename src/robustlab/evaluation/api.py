"""The one-line evaluation, as users of the original AutoAttack (Croce and Hein, ICML 2020) expect
it::

    result = robustlab.evaluate(model, x, y, eps=8/255, norm="linf", version="standard")

It checks its arguments (one :class:`ArgumentError` naming the argument, never an error deep in
an attack), checks the model (:mod:`.sanity`), runs the suite with :func:`.evaluate.evaluate`
and, unless ``masking=False``, the gradient-masking checks (:mod:`.masking`). The older form,
``robustlab.evaluate(model, x, y, threat, attacks)``, is still accepted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..threat import _ALIASES, NORMS, LpThreat
from .evaluate import EvalResult
from .evaluate import evaluate as run_attacks

# Gradient-free attacks: a model without a gradient path can still be evaluated with these.
_GRADIENT_FREE = ("square",)


class ArgumentError(UserError, ValueError):
    """A bad argument to the Python API; ``argument`` names it. Also a ``ValueError``, as Python
    callers expect, and a :class:`UserError`, so the CLI prints it as one line."""

    def __init__(self, argument: str, message: str):
        super().__init__(f"{argument}: {message}")
        self.argument = argument


def _check_number(name: str, value, *, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ArgumentError(name, f"must be a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ArgumentError(name, f"must be finite, got {v}")
    if minimum is not None and v < minimum:
        raise ArgumentError(name, f"must be >= {minimum:g}, got {v:g}")
    return v


def check_images(x) -> torch.Tensor:
    """``x`` as a float tensor of shape (N, C, H, W) in [0, 1], or an :class:`ArgumentError`."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise ArgumentError("x", f"must be a torch.Tensor of images, got {type(x).__name__}")
    if not x.is_floating_point():
        hint = "; use x.float() / 255" if x.dtype == torch.uint8 else ""
        raise ArgumentError("x", f"must be a float tensor of images in [0, 1], got {x.dtype}"
                                 f"{hint}")
    if x.dim() != 4:
        raise ArgumentError("x", f"must have shape (N, C, H, W), got {tuple(x.shape)}")
    if len(x) == 0:
        raise ArgumentError("x", "is empty")
    if not bool(torch.isfinite(x).all()):
        raise ArgumentError("x", f"has {int((~torch.isfinite(x)).sum())} NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if hi > 1:
        if hi > 2 and hi <= 255 and lo >= 0:
            raise ArgumentError("x", f"values reach {hi:g}: looks like 0-255 images, divide by "
                                     "255 (robustlab takes images in [0, 1])")
        raise ArgumentError("x", f"values must be in [0, 1], found [{lo:.4g}, {hi:.4g}]")
    if lo < 0:
        raise ArgumentError("x", f"values must be in [0, 1], found [{lo:.4g}, {hi:.4g}]; if x is "
                                 "normalised (mean/std), give the model unnormalised images and "
                                 "put the normalisation inside it")
    return x


def check_labels(y, n: int, num_classes: int) -> torch.Tensor:
    """``y`` as an int64 tensor of ``n`` labels in [0, num_classes), or an ArgumentError.
    Lists, tuples and NumPy arrays are converted."""
    if not isinstance(y, torch.Tensor):
        try:
            y = torch.as_tensor(np.asarray(y))
        except (TypeError, ValueError) as e:
            raise ArgumentError("y", f"must be a tensor or list of class labels ({e})") from None
    if y.is_floating_point():
        if not bool((y == y.round()).all()):
            raise ArgumentError("y", "must hold integer class labels, got non-integer values")
        y = y.long()
    if y.dtype == torch.bool or y.is_complex():
        raise ArgumentError("y", f"must hold integer class labels, got {y.dtype}")
    if y.dim() != 1:
        raise ArgumentError("y", f"must be one label per image, shape (N,), got {tuple(y.shape)}")
    if len(y) != n:
        raise ArgumentError("y", f"has {len(y)} labels for {n} images in x")
    y = y.long()
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
        raise ArgumentError("y", f"label {bad} is out of range for a model with {num_classes} "
                                 f"classes (0..{num_classes - 1})")
    return y


def _device_of(model: nn.Module, x: torch.Tensor) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else x.device


def _num_classes(model: nn.Module, x: torch.Tensor) -> int:
    from ..attacks.base import model_mode

    try:
        with torch.no_grad(), model_mode(model, False):
            out = model(x[:2])
    except Exception as e:  # the model's own error, told in the user's terms
        raise ArgumentError("x", f"the model cannot take images of shape "
                                 f"{tuple(x.shape[1:])}: {type(e).__name__}: {e}") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != len(x[:2]):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ArgumentError("model", f"must return logits of shape (N, classes), got {shape}")
    if out.shape[1] < 2:
        raise ArgumentError("model", f"returns {out.shape[1]} class score(s); it needs >= 2")
    return int(out.shape[1])


def _threat(threat, eps, norm) -> LpThreat:
    if threat is not None:
        if eps is not None:
            raise ArgumentError("eps", "give either a threat model or eps/norm, not both")
        if not isinstance(threat, LpThreat):
            raise ArgumentError("threat", f"must be an LpThreat, got {type(threat).__name__}")
        return threat
    if eps is None:
        raise ArgumentError("eps", "is required (the radius on the [0, 1] pixel scale, e.g. "
                                   "eps=8/255)")
    eps = _check_number("eps", eps, minimum=0)
    if not isinstance(norm, str) or _ALIASES.get(norm, norm) not in NORMS:
        raise ArgumentError("norm", f"unknown norm {norm!r}; expected one of {', '.join(NORMS)}")
    try:
        return LpThreat(norm, eps)
    except UserError as e:
        raise ArgumentError("eps", str(e)) from None


def _suite(version, attacks, threat, num_classes, seed):
    from ..attacks.autoattack import VERSIONS, build_suite

    if attacks is not None and len(attacks) and not all(isinstance(a, str) for a in attacks):
        if version not in (None, "custom"):
            raise ArgumentError("version", "a list of attack objects needs no version")
        return list(attacks), "custom"
    version = version or ("custom" if attacks else "standard")
    if attacks and version != "custom":
        raise ArgumentError("attacks", f"a list of attack names is for version='custom', not "
                                       f"{version!r}")
    if version not in VERSIONS:
        raise ArgumentError("version", f"unknown version {version!r}; expected one of "
                                       f"{', '.join(VERSIONS)}")
    try:
        return build_suite(version, threat, num_classes=num_classes,
                           attacks=list(attacks) if attacks else None, seed=seed), version
    except UserError as e:
        raise ArgumentError("attacks" if attacks else "version", str(e)) from None


def evaluate(model: nn.Module, x, y, threat: LpThreat | None = None,
             attacks: Sequence | None = None, *, eps: float | None = None, norm: str = "linf",
             version: str | None = None, masking: bool = True, sanity: bool = True,
             return_adv: bool = False, batch_size: int = 0, seed: int = 0,
             n_probe: int = 200, stochastic: bool | None = None, quiet: bool | None = None,
             channels_last: bool | None = None, keep_adv: bool = False, state=None,
             on_unit=None, freeze_weights: bool = True) -> EvalResult:
    """Robust accuracy of ``model`` on images ``x`` (float, (N, C, H, W), in [0, 1]) with labels
    ``y`` (a tensor or list), AutoAttack-style: the attacks of ``version`` (``standard``, ``plus``,
    ``rand``, ``fast``; see :mod:`robustlab.attacks.autoattack`) run in turn, each on the points
    still robust, under the ``norm`` ball of radius ``eps``.

    The result (:class:`EvalResult`) holds ``clean_accuracy``, ``robust_accuracy``, ``stages``
    (accuracy and time after each attack), ``broken_by`` (per example: None if robust, "clean"
    if misclassified unattacked, else the attack that broke it), ``passes`` (forward and backward
    examples), ``warnings`` (model sanity checks, unless ``sanity=False``), ``masking`` (the
    gradient-masking checks on up to ``n_probe`` examples, unless ``masking=False``) and, with
    ``return_adv=True``, ``x_adv`` (adversarial examples where an attack succeeded, the clean
    image elsewhere).

    ``threat`` and ``attacks`` (attack objects, or names for ``version="custom"``) are the older
    form and still accepted, as are :func:`.evaluate.evaluate`'s ``keep_adv`` (the same as
    ``return_adv``), ``state`` and ``on_unit`` (resume and save an interrupted evaluation).
    ``stochastic`` (default: on for ``rand``) keeps dropout layers
    active in eval mode, for attacks and the final check alike
    (:class:`~robustlab.attacks.autoattack.KeepStochastic`). The weights are frozen while the
    attacks run (an attack's ``.backward()`` leaves ``.grad`` alone); ``freeze_weights=False``
    leaves them alone, for a model that updates itself in its forward pass. Bad arguments raise
    :class:`ArgumentError` (a ``ValueError``) naming the argument.
    """
    from ..attacks.autoattack import KeepStochastic
    from .masking import masking_checks
    from .sanity import has_gradient_path, sanity_checks

    if not isinstance(model, nn.Module):
        raise ArgumentError("model", f"must be a torch.nn.Module, got {type(model).__name__}")
    threat = _threat(threat, eps, norm)
    batch_size = int(_check_number("batch_size", batch_size, minimum=0))
    n_probe = int(_check_number("n_probe", n_probe, minimum=0))
    if version is not None and not isinstance(version, str):
        raise ArgumentError("version", f"must be a string, got {type(version).__name__}")
    x = check_images(x)
    device = _device_of(model, x)
    x = x.to(device)
    if stochastic is None:
        stochastic = version == "rand"
    if stochastic:
        model = KeepStochastic(model)
    num_classes = _num_classes(model, x)
    y = check_labels(y, len(x), num_classes).to(device)
    suite, version = _suite(version, attacks, threat, num_classes, seed)
    names = [getattr(a, "label", None) or getattr(a, "name", type(a).__name__) for a in suite]
    if not has_gradient_path(model, x) and not all(n.startswith(_GRADIENT_FREE) for n in names):
        raise ArgumentError("model", "its output has no gradient path to its input (a transform "
                                     "run under no_grad or on a detached copy), so gradient "
                                     "attacks cannot run; make the forward pass differentiable "
                                     "(e.g. a straight-through estimator, BPDA) or use "
                                     "version='custom', attacks=['square']")

    warnings = []
    if sanity:
        n_targets = max((getattr(a, "n_target_classes", 0) for a in suite), default=0)
        warnings = sanity_checks(model, x, y, version=version, attack_names=names,
                                 n_targets=n_targets)
    result = run_attacks(model, x, y, threat, suite, batch_size=batch_size,
                         keep_adv=return_adv or keep_adv, seed=seed, state=state,
                         on_unit=on_unit, quiet=quiet, channels_last=channels_last,
                         freeze_weights=freeze_weights)
    result.warnings = warnings
    if masking:
        result.masking = masking_checks(model, x, y, threat, result, n_probe=n_probe)
    return result

"""Square Attack's ℓ2 and ℓ1 proposals (Andriushchenko et al., ECCV 2020, Alg. 3; the ℓ1
variant of AutoAttack's code, ``pyautoattack`` 0.2.0, read, not copied); ``square.py`` runs the
search.

- The initial point is a 5×5 grid of double bumps (rings weighted 1/(k+1)² for ℓ2, 1/(k+1)⁴
  for ℓ1), each with its own random transposition and one sign per example and channel; ℓ2 is
  rescaled to norm ε, ℓ1 projected exactly onto ℓ1 ball ∩ box, as in the original
  (``LpThreat.project``, ``threat.project_l1_box``).
- A proposal moves the mass of two windows into one new double bump with per-example signs,
  with the original's budget rule (for ℓ1 including its factor of the channel count), then
  renormalises (ℓ2) or projects (ℓ1).

Cost: a proposal touches whole images only three times (the perturbation, its norm, the copy of
the current point): the mass of the two windows comes from the windows and their overlap rather
than from two image-sized masks, and the double bump of each window size is built once (on 50
Fashion-MNIST images with cnn-small, one thread, its own work per query at a batch of 50 went
from 1.7 to 1.0 ms for ℓ2, 3.0 to 1.9 ms for ℓ1).

Two deliberate differences, each leaving every pixel outside the two windows as it is, which
lets the query be cropped (``window_forward.py``):

- ℓ2: per channel the new window receives the mass of both windows plus what the image lacks of
  ε, so the perturbation has norm ε *before* the original's rescale to ε, whose factor is then 1
  up to float rounding. robustlab applies the rescale (and the clip) inside the two windows only;
  the original moves the other pixels by ~1e-7 relative (``tests/test_square_fab_fidelity.py``
  checks the two proposals agree to 1e-6 on three channels).
- ℓ1, one channel: the rule likewise gives the proposal norm ε, and the original's projection
  onto ball ∩ box (radius ε·(1 − 1e-6)) then shrinks every coordinate by ~1e-8 to trim the
  excess. robustlab trims it inside the new window (the exact projection of that window with
  the radius the rest of the image leaves); the points differ from the original's by a few
  millionths of ε (tested against the original's proposal). With more channels the rule's
  factor of the channel count can leave real excess, and the whole image is projected as in the
  original (the query then runs whole).
"""

from __future__ import annotations

import torch

from ..threat import LpThreat, lp_norm, project_l1_box

Window = tuple[int, int, int]  # corner row, corner column, side
# ℓ1: a box-clipped proposal at most this far above ε (relative) has its excess trimmed inside
# the new window; one channel always qualifies (the rule puts exactly ε there, up to rounding).
L1_TRIM_RTOL = 1e-5


def random_sign(shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    return torch.randint(0, 2, shape, device=like.device).to(like.dtype) * 2 - 1


def _bump(a: int, b: int, power: int, device, dtype) -> torch.Tensor:
    """The paper's pseudo-Gaussian ``a × b`` bump: concentric rectangles around the centre, ring
    k weighted 1/(k+1)^power and summed inwards (unnormalised)."""
    if a == 0 or b == 0:
        return torch.zeros(a, b, device=device, dtype=dtype)
    rings = max(a // 2 + 1, b // 2 + 1)
    weights = 1.0 / torch.arange(1, rings + 1, device=device, dtype=dtype) ** power
    tail = weights.flip(0).cumsum(0).flip(0)  # tail[r] = Σ_{k≥r} 1/(k+1)^power
    ri = (torch.arange(a, device=device) - a // 2).abs()
    rj = (torch.arange(b, device=device) - b // 2).abs()
    return tail[torch.maximum(ri[:, None], rj[None, :])]


def double_bump(s: int, norm: str, device, dtype,
                 cache: dict | None = None) -> torch.Tensor:
    """Two bumps of opposite sign in the two halves of an ``s × s`` square, randomly transposed,
    of unit norm: the ℓ2 update of the paper (Alg. 3), and its ℓ1 variant with ring weights
    1/(k+1)⁴ and unit ℓ1 norm (AutoAttack's code). ``cache`` keeps the untransposed square per
    side, since building it is some twenty small tensor operations per query; the transposition
    is drawn every call, so the random stream is the same with or without it."""
    key = (s, norm, device, dtype)
    out = None if cache is None else cache.get(key)
    if out is None:
        power, p = (2, 2) if norm == "l2" else (4, 1)

        def unit(t: torch.Tensor) -> torch.Tensor:
            size = t.norm() if p == 2 else t.abs().sum()
            return t / size.clamp_min(1e-12)

        top = unit(_bump(s // 2, s, power, device, dtype))
        bottom = -unit(_bump(s - s // 2, s, power, device, dtype))
        out = unit(torch.cat([top, bottom], 0))
        if cache is not None:
            cache[key] = out
    if bool(torch.rand(()) > 0.5):
        out = out.t()
    return out


def channel_norm(t: torch.Tensor, norm: str) -> torch.Tensor:
    """Per example and channel, over the spatial dimensions, kept as (n, c, 1, 1)."""
    if norm == "l2":
        return t.pow(2).sum((2, 3), keepdim=True).sqrt()
    return t.abs().sum((2, 3), keepdim=True)


def union_norm(delta: torch.Tensor, a: tuple[int, int], b: tuple[int, int], s: int,
                norm: str) -> torch.Tensor:
    """:func:`channel_norm` of ``delta`` over the union of the two ``s × s`` windows with
    corners ``a`` and ``b``, from the windows and their overlap alone (inclusion-exclusion on
    squared ℓ2 or on ℓ1 mass): the original builds two image-sized masks per query for this."""
    def part(r0: int, c0: int, hh: int, ww: int) -> torch.Tensor:
        t = delta[:, :, r0:r0 + hh, c0:c0 + ww]
        return t.pow(2).sum((2, 3), keepdim=True) if norm == "l2" else \
            t.abs().sum((2, 3), keepdim=True)

    total = part(*a, s, s) + part(*b, s, s)
    oh = min(a[0], b[0]) + s - max(a[0], b[0])
    ow = min(a[1], b[1]) + s - max(a[1], b[1])
    if oh > 0 and ow > 0:
        total = total - part(max(a[0], b[0]), max(a[1], b[1]), oh, ow)
    total = total.clamp_min(0)  # the subtraction can round a hair below zero
    return total.sqrt() if norm == "l2" else total


def _l2_scale(threat: LpThreat, delta: torch.Tensor) -> torch.Tensor:
    """Per example, the factor that takes ``delta`` to norm ε, shaped to broadcast."""
    return (threat.eps / lp_norm(delta, "l2").clamp_min(1e-12)).view(-1, 1, 1, 1)


def _rescale(x: torch.Tensor, delta: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return torch.addcmul(x, delta, scale).clamp_(0, 1)


def _finish(threat: LpThreat, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """ℓ2: rescale to norm ε and clip (the original's step); ℓ1: project onto the threat
    model."""
    if threat.norm == "l2":
        return _rescale(x, delta, _l2_scale(threat, delta))
    return threat.project(x + delta, x)


def init_bumps(threat: LpThreat, x: torch.Tensor, cache: dict) -> torch.Tensor:
    """The initial point: the grid of double bumps, rescaled (ℓ2) or projected (ℓ1)."""
    n, c, h, w = x.shape
    s = max(h // 5, 1)
    start = (h - 5 * s) // 2
    delta = torch.zeros_like(x)
    for i in range(h // s):
        for j in range(w // s):
            vh, vw = start + i * s, start + j * s
            if vh < 0 or vw < 0 or vh + s > h or vw + s > w:
                continue
            bump = double_bump(s, threat.norm, x.device, x.dtype, cache)
            delta[:, :, vh:vh + s, vw:vw + s] += bump * random_sign((n, c, 1, 1), x)
    return _finish(threat, x, delta)


def propose_bumps(threat: LpThreat, x: torch.Tensor, x_best: torch.Tensor,
                  windows: list[Window], cache: dict) -> tuple[torch.Tensor, list | None]:
    """One proposal for every example of the batch: the mass of the windows ``windows[0]`` (the
    new bump's) and ``windows[1]`` (emptied) moved into a new double bump. Returns the points
    and the windows they differ in from ``x_best``, or None where the whole image moved."""
    n, c, _, _ = x.shape
    eps, norm = threat.eps, threat.norm
    (vh, vw, s), (vh2, vw2, _) = windows
    delta = x_best - x
    win = delta[:, :, vh:vh + s, vw:vw + s]
    # The mass of both windows, per channel, is what the new window may redistribute.
    norm_both = union_norm(delta, (vh, vw), (vh2, vw2), s, norm)
    norm_win = channel_norm(win, norm)
    norm_img = lp_norm(delta, norm).view(-1, 1, 1, 1)
    new = double_bump(s, norm, x.device, x.dtype, cache) * random_sign((n, c, 1, 1), x)
    new = new + win / (norm_win + 1e-12)
    if norm == "l2":
        budget = ((eps**2 - norm_img**2).clamp_min(0) / c + norm_both**2).sqrt()
    else:
        # The original's ℓ1 rule, factor c included; the projection trims any excess.
        budget = ((eps - norm_img).clamp_min(0) / c + norm_both) * c
    new = new * (budget / channel_norm(new, norm).clamp_min(1e-12))
    delta[:, :, vh2:vh2 + s, vw2:vw2 + s] = 0.0
    delta[:, :, vh:vh + s, vw:vw + s] = new
    if norm == "l1":
        outside = (norm_img.flatten() - norm_both.flatten(1).sum(1)).clamp_min(0)
        return _finish_l1(threat, x, x_best, delta, outside, windows)
    # ℓ2: the perturbation's norm is ε before the rescale, whose factor is 1 to float rounding;
    # the rescale and clip are applied to the two windows alone (see the module docstring).
    scale = _l2_scale(threat, delta)
    out = x_best.clone()
    for r, c0 in ((vh2, vw2), (vh, vw)):
        w = (slice(None), slice(None), slice(r, r + s), slice(c0, c0 + s))
        out[w] = _rescale(x[w], delta[w], scale)
    return out, windows


def _finish_l1(threat: LpThreat, x: torch.Tensor, x_best: torch.Tensor, delta: torch.Tensor,
               outside: torch.Tensor, windows: list[Window]) -> tuple[torch.Tensor, list | None]:
    """ℓ1: the proposal onto ball ∩ box. ``outside`` is the perturbation's mass outside the two
    windows, which the proposal left as it was. Where the box-clipped proposal is within
    ``L1_TRIM_RTOL``·ε of ε (always on one channel) the excess over the projection's radius is
    taken out of the new window alone: the exact projection of that window onto ball ∩ box with
    the radius the rest leaves. Otherwise the whole image is projected, as the original does."""
    (vh, vw, s), (vh2, vw2, _) = windows
    w1 = (slice(None), slice(None), slice(vh, vh + s), slice(vw, vw + s))
    w2 = (slice(None), slice(None), slice(vh2, vh2 + s), slice(vw2, vw2 + s))
    v, xw = delta[w1], x[w1]
    room = torch.where(v > 0, 1 - xw, xw).clamp_min(0)
    total = outside + torch.minimum(v.abs(), room).flatten(1).sum(1)
    if bool((total > threat.eps * (1 + L1_TRIM_RTOL)).any()):
        return _finish(threat, x, delta), None
    radius = threat.l1_inner_radius(x[0].numel(), x.dtype)
    out = x_best.clone()
    out[w2] = x[w2]  # the second window's mass moved into the first (overlap: next line)
    out[w1] = (xw + project_l1_box(v, xw, (radius - outside).clamp_min(0))).clamp_(0, 1)
    return out, windows

"""The spatial threat model of Engstrom et al. ("Exploring the Landscape of Spatial Robustness",
ICML 2019): any rotation within ±``max_angle`` degrees combined with any translation within
±``max_trans`` pixels in each direction, optionally preceded by an ℓ∞ perturbation.

The paper's ranges are ±30° and ±3 pixels for 28- and 32-pixel images (MNIST, CIFAR-10) and
±30° and ±24 pixels (about 10.7% of the width) for 224-pixel ImageNet images
(:func:`default_for_size`).

A transformed image cannot be checked pixelwise against its clean image (a 2-pixel shift moves
every pixel), so :meth:`SpatialThreat.check` checks shape, range and finiteness only; attacks
record the transform they chose (``AttackResult.extras["transform"]``) and tests re-apply it
(:meth:`SpatialThreat.apply`) to check the adversarial example is really that transform.

With ``linf_eps > 0`` the threat is combined: the ℓ∞ perturbation δ acts on the untransformed
input, ``x_adv = T(clip(x + δ, 0, 1))`` with ``‖δ‖∞ ≤ linf_eps``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..errors import UserError
from ..threat import check_batch, pixel_range
from .transform import BORDERS, apply_params, canvas_padding

# Bilinear sampling is a convex combination, but float32 may land a few ulps outside [0, 1].
RANGE_TOL = 1e-5
PAPER_TRANS_FRACTION = 24 / 224  # ImageNet: ±24 px of 224 (Engstrom et al., 2019)


@dataclass(frozen=True)
class SpatialThreat:
    """Rotations up to ``max_angle`` degrees and translations up to ``max_trans`` pixels (each of
    x and y), with ``border`` filling what comes from outside the image (see
    :mod:`robustlab.spatial.transform`), after an optional ℓ∞ perturbation of ``linf_eps``.
    ``image_size``, when given, is checked against ``max_trans`` at construction; otherwise the
    check happens on the first batch an attack sees (:meth:`validate_images`)."""

    max_angle: float = 30.0
    max_trans: float = 3.0
    border: str = "zero"
    linf_eps: float = 0.0
    image_size: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_angle", "max_trans", "linf_eps"):
            v = float(getattr(self, name))
            object.__setattr__(self, name, v)
            if not v >= 0:  # also rejects NaN
                unit = {"max_angle": "degrees", "max_trans": "pixels", "linf_eps": ""}[name]
                raise UserError(f"spatial threat: {name} must be >= 0 {unit}, got {v}".strip())
        if self.max_angle > 180:
            raise UserError(f"spatial threat: max_angle must be at most 180 degrees, got "
                            f"{self.max_angle}")
        if self.linf_eps > 1:
            raise UserError(f"spatial threat: linf_eps above 1 leaves the [0, 1] pixel range, "
                            f"got {self.linf_eps}")
        if self.border not in BORDERS:
            raise UserError(f"spatial threat: unknown border {self.border!r}; expected one of "
                            f"{', '.join(BORDERS)}")
        if self.image_size is not None:
            self._check_size(int(self.image_size), int(self.image_size))

    # -- validation -------------------------------------------------------------------------
    def _check_size(self, height: int, width: int) -> None:
        if self.max_trans >= min(height, width):
            raise UserError(f"spatial threat: max_trans={self.max_trans:g} pixels would move the "
                            f"whole image out of its {height}x{width} frame; use less than "
                            f"{min(height, width)}")

    def validate_images(self, x: torch.Tensor) -> None:
        """Raise :class:`UserError` if ``x`` is not an image batch this threat can transform."""
        if x.dim() != 4:
            raise UserError(f"spatial threat: expected an image batch (N, C, H, W), got shape "
                            f"{tuple(x.shape)}")
        self._check_size(x.shape[-2], x.shape[-1])

    @property
    def combined(self) -> bool:
        return self.linf_eps > 0

    # -- transforms -------------------------------------------------------------------------
    def canvas_pad(self, x: torch.Tensor) -> int | None:
        return canvas_padding(x.shape[-2], x.shape[-1], self.max_trans) \
            if self.border == "canvas" else None

    def apply(self, x: torch.Tensor, params: torch.Tensor,
              delta: torch.Tensor | None = None) -> torch.Tensor:
        """The adversarial example for per-example ``params`` (N, 3) of ``(angle, tx, ty)`` and,
        for the combined threat, the ℓ∞ perturbation ``delta`` of the untransformed input."""
        src = x if delta is None else (x + delta).clamp(0.0, 1.0)
        return apply_params(src, params, self.border, self.canvas_pad(x)).clamp(0.0, 1.0)

    def limits(self, device=None, dtype=torch.float32) -> torch.Tensor:
        return torch.tensor([self.max_angle, self.max_trans, self.max_trans], device=device,
                            dtype=dtype)

    def clip_params(self, params: torch.Tensor) -> torch.Tensor:
        """Projection of transform parameters onto the allowed box."""
        lim = self.limits(params.device, params.dtype)
        return torch.maximum(torch.minimum(params, lim), -lim)

    def params_inside(self, params: torch.Tensor) -> torch.Tensor:
        lim = self.limits(params.device, params.dtype) * (1 + 1e-6) + 1e-6
        return (params.abs() <= lim).all(-1)

    def sample(self, n: int, device=None, dtype=torch.float32,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` transforms drawn uniformly from the ranges, shape (n, 3)."""
        u = torch.rand(n, 3, generator=generator, device=device, dtype=dtype)
        return (2 * u - 1) * self.limits(device, dtype)

    def grid(self, n_trans: int = 5, n_rot: int = 31, device=None,
             dtype=torch.float32) -> torch.Tensor:
        """The paper's exhaustive grid: ``n_trans`` evenly spaced translations in each of x and y
        and ``n_rot`` evenly spaced angles, ends included, as (n_trans² · n_rot, 3). The defaults
        give 5 × 5 × 31 = 775 points: translations every 1.5 px over ±3 px and rotations every 2°
        over ±30° (Engstrom et al., 2019). A zero range collapses to the single value 0."""
        if n_trans < 1 or n_rot < 1:
            raise UserError(f"spatial grid needs at least one point per axis, got n_trans="
                            f"{n_trans}, n_rot={n_rot}")

        def axis(limit: float, k: int) -> torch.Tensor:
            if limit == 0 or k == 1:
                return torch.zeros(1, device=device, dtype=dtype)
            return torch.linspace(-limit, limit, k, device=device, dtype=dtype)

        a = axis(self.max_angle, n_rot)
        t = axis(self.max_trans, n_trans)
        ga, gx, gy = torch.meshgrid(a, t, t, indexing="ij")
        return torch.stack([ga.flatten(), gx.flatten(), gy.flatten()], 1)

    # -- the threat-model contract shared with LpThreat -------------------------------------
    def contains(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-example flag: inside [0, 1] (to float tolerance) and finite. The transform itself
        cannot be recovered from pixels; see the module docstring."""
        flat = x_adv.flatten(1)
        ok = torch.isfinite(flat).all(1)
        ok &= (flat >= -RANGE_TOL).all(1) & (flat <= 1 + RANGE_TOL).all(1)
        return ok

    def check(self, x_adv: torch.Tensor, x: torch.Tensor, source: str = "attack") -> None:
        """Raise :class:`ThreatViolation` if an adversarial example has the wrong shape, leaves
        [0, 1] or is not finite."""
        check_batch(self, x_adv, x, source, lambda i: pixel_range(x_adv[i]))

    def describe(self) -> str:
        s = f"spatial rot ±{self.max_angle:g}° trans ±{self.max_trans:g}px border={self.border}"
        return s + (f" + linf eps={self.linf_eps:g}" if self.combined else "")

    def to_dict(self) -> dict:
        return {"kind": "spatial", **asdict(self)}


def default_for_size(image_size: int, border: str = "zero", linf_eps: float = 0.0) -> \
        SpatialThreat:
    """The paper's threat for an image of side ``image_size``: ±30° and ±3 px up to 32 px
    (MNIST, CIFAR-10), else ±(24/224 ≈ 0.107) × width, i.e. ±24 px at 224 (ImageNet)."""
    if image_size < 1:
        raise UserError(f"image_size must be positive, got {image_size}")
    trans = 3.0 if image_size <= 32 else round(PAPER_TRANS_FRACTION * image_size, 2)
    return SpatialThreat(max_angle=30.0, max_trans=trans, border=border, linf_eps=linf_eps,
                         image_size=image_size)

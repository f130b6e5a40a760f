"""Rotations and translations of image batches, differentiable in the image and the parameters.

The spatial threat model of Engstrom, Tran, Tsipras, Schmidt and Madry ("Exploring the Landscape
of Spatial Robustness", ICML 2019): rotate each image about its centre, then translate it.
A transform is three numbers ``(angle, tx, ty)``: the angle in degrees, positive meaning
counter-clockwise as the image is displayed (the direction of ``torch.rot90(x, 1, (2, 3))``),
and the translation in pixels, positive ``tx`` moving the content right and positive ``ty``
moving it down.

Everything is one ``F.affine_grid`` + ``F.grid_sample`` (bilinear) per call, with
``align_corners=False``: pixel centres then sit at ``(2i + 1) / W - 1`` in normalised
coordinates, symmetric about 0, so a whole-pixel translation samples exactly at pixel centres
(an exact shift) and a 90° rotation of a square image maps centres onto centres (exactly
``torch.rot90``). The rotation is done in pixel units, so non-square images are not sheared.

Border modes (what fills the pixels that come from outside the image):

* ``zero``: black (the paper's default).
* ``reflect``: the image mirrored at its border (``padding_mode="reflection"``).
* ``canvas``: the image is first placed on a larger black canvas, enough that no rotation up
  to 45° in any direction (beyond that, a corner may leave) and no translation up to the
  call's largest (or ``canvas_pad``) cuts any content off; the transformed canvas is then
  **resized back to the input size** (bilinear, antialiased). The output therefore has the
  input's shape, so every model and the threat check work unchanged, at the price of the
  content appearing smaller (by ``H / (H + 2·pad)``). Pass the same ``canvas_pad`` to every
  call that must be comparable; :class:`~robustlab.spatial.threat.SpatialThreat` does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import UserError

BORDERS = ("zero", "reflect", "canvas")
_PADDING_MODE = {"zero": "zeros", "reflect": "reflection", "canvas": "zeros"}


def check_border(border: str) -> str:
    if border not in BORDERS:
        raise UserError(f"unknown spatial border mode {border!r}; expected one of "
                        f"{', '.join(BORDERS)}")
    return border


def canvas_padding(height: int, width: int, max_trans: float) -> int:
    """Pixels of black added on each side so that rotations up to 45° and translations up to
    ``max_trans`` pixels keep the whole image on the canvas."""
    diag = math.hypot(height, width)
    return int(math.ceil((diag - min(height, width)) / 2 + abs(max_trans)))


def _per_example(v, n: int, like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(v, dtype=like.dtype, device=like.device)
    if t.dim() == 0:
        t = t.expand(n)
    if t.shape != (n,):
        raise UserError(f"a transform parameter must be a scalar or have one value per example "
                        f"({n}), got shape {tuple(t.shape)}")
    return t


def _theta(angle_deg: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor,
           height: int, width: int) -> torch.Tensor:
    """The (N, 2, 3) matrices mapping output to input normalised coordinates.

    In pixel units (x right, y down) the forward map is p_out = R p_in + t, with R the
    counter-clockwise-on-screen rotation; the sampler needs p_in = R⁻¹ (p_out − t), converted to
    normalised coordinates by S = diag(W/2, H/2)."""
    a = torch.deg2rad(angle_deg)
    c, s = torch.cos(a), torch.sin(a)
    sx, sy = width / 2.0, height / 2.0
    # R⁻¹ = [[c, -s], [s, c]] in (x right, y down) pixels; S⁻¹ R⁻¹ S rescales the off-diagonal
    m00, m01 = c, -s * sy / sx
    m10, m11 = s * sx / sy, c
    # −S⁻¹ R⁻¹ t
    b0 = -(c * tx - s * ty) / sx
    b1 = -(s * tx + c * ty) / sy
    return torch.stack([torch.stack([m00, m01, b0], -1), torch.stack([m10, m11, b1], -1)], -2)


def affine(x: torch.Tensor, angle_deg, tx, ty, border: str = "zero",
           canvas_pad: int | None = None) -> torch.Tensor:
    """Rotate each image of ``x`` (N, C, H, W) by ``angle_deg`` degrees about its centre, then
    translate it by ``(tx, ty)`` pixels. Each parameter is a scalar (broadcast) or has one value
    per example. Differentiable in ``x`` and in the parameters."""
    check_border(border)
    if x.dim() != 4:
        raise UserError(f"affine expects an image batch (N, C, H, W), got shape {tuple(x.shape)}")
    n, _, h, w = x.shape
    angle = _per_example(angle_deg, n, x)
    tx, ty = _per_example(tx, n, x), _per_example(ty, n, x)
    if border == "canvas":
        if canvas_pad is None:
            biggest = float(torch.cat([tx.abs(), ty.abs()]).max()) if n else 0.0
            canvas_pad = canvas_padding(h, w, biggest)
        src = F.pad(x, (canvas_pad,) * 4)
    else:
        src = x
    hh, ww = src.shape[-2:]
    theta = _theta(angle, tx, ty, hh, ww)
    grid = F.affine_grid(theta, list(src.shape), align_corners=False)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode=_PADDING_MODE[border],
                        align_corners=False)
    if border == "canvas" and canvas_pad:
        out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False,
                            antialias=True)
    return out


def affine_many(x: torch.Tensor, params: torch.Tensor, border: str = "zero",
                canvas_pad: int | None = None) -> torch.Tensor:
    """Every transform of ``params`` (T, 3) applied to every image of ``x`` (N, C, H, W), in one
    call. Output (T·N, C, H, W) in transform-major layout: row ``t * N + n`` is transform ``t``
    of image ``n``, so ``out.view(T, N, ...)`` indexes [transform, image]."""
    if params.dim() != 2 or params.shape[1] != 3:
        raise UserError(f"transform parameters must have shape (T, 3), got {tuple(params.shape)}")
    t, n = params.shape[0], x.shape[0]
    xs = x.unsqueeze(0).expand(t, *x.shape).reshape(t * n, *x.shape[1:])
    p = params.to(x).repeat_interleave(n, dim=0)
    return affine(xs, p[:, 0], p[:, 1], p[:, 2], border=border, canvas_pad=canvas_pad)


def apply_params(x: torch.Tensor, params: torch.Tensor, border: str = "zero",
                 canvas_pad: int | None = None) -> torch.Tensor:
    """Per-example transforms: ``params`` (N, 3) of ``(angle, tx, ty)``, row ``i`` for image i."""
    if params.shape != (x.shape[0], 3):
        raise UserError(f"per-example transform parameters must have shape ({x.shape[0]}, 3), "
                        f"got {tuple(params.shape)}")
    p = params.to(x)
    return affine(x, p[:, 0], p[:, 1], p[:, 2], border=border, canvas_pad=canvas_pad)

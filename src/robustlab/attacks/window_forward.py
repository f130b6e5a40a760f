"""Forward passes of images that differ from known ones inside a few windows: the Square
Attack's queries, recomputed over the windows' receptive fields only.

An ℓ∞ Square proposal (Andriushchenko et al., ECCV 2020; AutoAttack's port) changes every image
of the batch inside the *same* ``s × s`` window and nowhere else (an ℓ2 one, and an ℓ1 one on
one channel, inside the same two windows), and late in the attack ``s`` is a few pixels. In a
convolutional network a pixel reaches only its receptive field, so each convolution and pooling
layer needs recomputing only over the windows grown by its kernel (rectangles that come to
overlap are merged into their bounding box), while the layers' outputs for the current best
points are kept. For the 4-convolution ``cnn-small`` on 28×28 images and a 4-pixel window that
is about 40% of a full forward's multiply-adds (the last convolution still sees the whole 8×8
map). The result is the same function computed on a smaller crop: equal to a full pass up to
float rounding (the crop may be convolved with another kernel algorithm), and the attack's final
check is a full pass anyway.

What it handles: a :class:`~robustlab.models.classifier.Classifier` or ``nn.Sequential``
(nested ones flattened) in eval mode, whose spatial part is made of 2-d convolutions (zero
padding, no dilation), 2-d max-pooling without padding, and per-pixel layers (activations,
eval-mode batch norm, the input normalisation, identity); the first other layer (``Flatten``,
a global pool, anything) starts the tail, which runs on the whole feature map. Any model
hook other than plain forward hooks on the model itself, or a module in training mode, and
:meth:`WindowForward.build` returns None: the caller then makes ordinary passes. The model's
own forward hooks (the evaluation's pass counter, its progress) are called on every query as if
the model had run, so passes are still counted (one forward per example per query, though it
costs less).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.classifier import Classifier, Normalize

# Layers that act on each pixel (and channel) alone: a window's change stays in the window.
_PER_PIXEL = (nn.ReLU, nn.LeakyReLU, nn.SiLU, nn.GELU, nn.ELU, nn.Tanh, nn.Sigmoid, nn.Identity,
              nn.BatchNorm2d, Normalize)
# Below this share of a layer's output rows × columns the crop is worth it; above, the layer
# and all after it run whole (early in Square's schedule the window spans the image).
_MAX_SHARE = 0.6
# A crop costs more per multiply-add than a whole layer (small convolutions, copies, one piece
# per window): above this share of the convolutions' multiply-adds a query runs whole. Measured
# on cnn-small, batches of 8-128, 2 threads: one or two windows of 3-5 pixels (shares 0.2-0.4)
# cost 0.45-0.7 of a pass at 32+ examples, two of 9 pixels (share ~0.6) 1.1-1.2.
_MAX_COST = 0.5


def _flatten(module: nn.Module) -> list[nn.Module]:
    if type(module) is nn.Sequential:
        return [m for child in module for m in _flatten(child)]
    return [module]


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _geometry(m: nn.Module) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None:
    """(kernel, stride, padding) of a convolution or pooling layer this can crop, else None."""
    if type(m) is nn.Conv2d:
        if m.padding_mode != "zeros" or _pair(m.dilation) != (1, 1) or isinstance(m.padding, str):
            return None
        return _pair(m.kernel_size), _pair(m.stride), _pair(m.padding)
    if type(m) is nn.MaxPool2d:
        if (_pair(m.padding) != (0, 0) or _pair(m.dilation) != (1, 1) or m.ceil_mode
                or m.return_indices):
            return None
        return _pair(m.kernel_size), _pair(m.stride or m.kernel_size), (0, 0)
    return None


def _out_range(lo: int, hi: int, k: int, st: int, pad: int, size_out: int) -> tuple[int, int]:
    """Output indices [a, b) that read any input index in [lo, hi)."""
    a = max(0, -(-(lo + pad - k + 1) // st))
    b = min(size_out, (hi - 1 + pad) // st + 1)
    return a, b


def _merge(rects: list) -> list:
    """Rectangles ``((r0, r1), (c0, c1))`` with every overlapping pair replaced by its bounding
    box, until none overlap: each output then has one value to keep."""
    rects = list(rects)
    merged = True
    while merged:
        merged = False
        for i in range(len(rects)):
            for j in range(i + 1, len(rects)):
                (a, b), (c, d) = rects[i], rects[j]
                if a[0] < c[1] and c[0] < a[1] and b[0] < d[1] and d[0] < b[1]:
                    rects[i] = ((min(a[0], c[0]), max(a[1], c[1])),
                                (min(b[0], d[0]), max(b[1], d[1])))
                    del rects[j]
                    merged = True
                    break
            if merged:
                break
    return rects


class WindowForward:
    """The layers' outputs for a batch of current points, and queries that change a few windows.

    ``start(x)`` runs the whole model on the current points and keeps what a crop needs;
    ``query(x_new, (r, c, s))`` returns the logits of ``x_new``, which must equal the current
    points outside the window with corner ``(r, c)`` and side ``s`` (or outside each window of a
    list of them: ℓ2 and ℓ1 Square change two; None: anywhere); ``accept(mask)`` makes the
    last query's images the current ones where ``mask``; ``select(idx)`` keeps those examples.
    """

    # Below this many examples a crop's fixed costs outweigh what it saves (cnn-small, 2
    # threads: 8 examples 1.5-1.8x a pass, 32 examples 0.45-1.05x): callers then pass whole.
    MIN_BATCH = 24

    def __init__(self, model: nn.Module, layers: list[nn.Module], spatial: int):
        self.model, self.layers, self.spatial = model, layers, spatial
        # Per spatial layer, once: (kernel, stride, padding), or None for a per-pixel layer.
        self.geometry = [_geometry(m) for m in layers[:spatial]]
        # acts[i]: the input of layer i for the current points (acts[spatial] feeds the tail);
        # kept only where something reads it, a crop or pooling layer or the tail, else None.
        self.acts: list[torch.Tensor | None] = []
        self.read = {i for i, geo in enumerate(self.geometry) if geo is not None} | {spatial}
        self.first = min(self.read)
        self._last: list | None = None

    @classmethod
    def build(cls, model: nn.Module) -> WindowForward | None:
        if isinstance(model, Classifier):
            layers = [model.normalize] + _flatten(model.net)
        elif type(model) is nn.Sequential:
            layers = _flatten(model)
        else:
            return None
        if any(m.training for m in model.modules()):
            return None
        if model._forward_pre_hooks or getattr(model, "_forward_hooks_with_kwargs", None):
            return None
        for m in model.modules():
            if m is not model and (m._forward_hooks or m._forward_pre_hooks
                                   or m._backward_hooks):
                return None
        spatial = 0
        for m in layers:
            if type(m) not in _PER_PIXEL and _geometry(m) is None:
                break
            spatial += 1
        if not any(_geometry(m) is not None and type(m) is nn.Conv2d for m in layers[:spatial]):
            return None
        return cls(model, layers, spatial)

    # -- running layers ---------------------------------------------------------------------

    @staticmethod
    def _apply(m: nn.Module, t: torch.Tensor) -> torch.Tensor:
        # In-place activations would overwrite a kept output; run them on a copy.
        return m(t.clone() if getattr(m, "inplace", False) else t)

    def _tail(self, t: torch.Tensor, start: int) -> torch.Tensor:
        for m in self.layers[start:]:
            t = self._apply(m, t)
        return t

    def _hooks(self, x: torch.Tensor, logits: torch.Tensor) -> None:
        for hook in list(self.model._forward_hooks.values()):
            hook(self.model, (x,), logits)

    def start(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            t = x
            self.acts = [x.clone() if 0 in self.read else None]  # never write the caller's
            self.sizes, self.macs = [tuple(x.shape[2:])], []
            for i, m in enumerate(self.layers[: self.spatial]):
                t = self._apply(m, t)
                self.acts.append(t if i + 1 in self.read else None)
                self.sizes.append(tuple(t.shape[2:]))
                # Multiply-adds per example of a convolution (pooling and per-pixel layers ~0).
                self.macs.append(t.shape[1:].numel() * m.weight[0].numel()
                                 if type(m) is nn.Conv2d else 0)
            self.macs_total = sum(self.macs)
            logits = self._tail(t, self.spatial)
        self._hooks(x, logits)
        self._last = None
        return logits

    def query(self, x_new: torch.Tensor, windows) -> torch.Tensor:
        """Logits of ``x_new``, which equals the current points outside ``windows``: one
        ``(r, c, s)`` (corner and side), a list of them, or None (the whole image may differ:
        a full pass that keeps the layers' outputs)."""
        if windows is None:
            windows = [(0, 0, max(x_new.shape[2:]))]
        elif isinstance(windows[0], int):
            windows = [windows]
        with torch.no_grad():
            logits, patches = self._crop_forward(x_new, windows)
        self._hooks(x_new, logits)
        self._last = patches
        return logits

    def _plan(self, windows) -> tuple[list, int]:
        """Per layer up to the one that runs whole, the rectangles of its input that change, and
        the index of that layer (``self.spatial`` if every spatial layer is cropped; the first
        convolution or pooling if cropping would not pay, judged by the share of the
        convolutions' multiply-adds it would leave)."""
        rects = _merge([((r, r + s), (c, c + s)) for r, c, s in windows])
        plan, cost = [rects], 0.0
        for i, geo in enumerate(self.geometry):
            if geo is not None:
                (kh, kw), (sh, sw), (ph, pw) = geo
                out_h, out_w = self.sizes[i + 1]
                rects = _merge([(_out_range(*rows, kh, sh, ph, out_h),
                                 _out_range(*cols, kw, sw, pw, out_w)) for rows, cols in rects])
                share = sum((r1 - r0) * (c1 - c0) for (r0, r1), (c0, c1) in rects) / (
                    out_h * out_w)
                if share > _MAX_SHARE:
                    cost += sum(self.macs[i:])
                    return plan, (i if cost <= _MAX_COST * self.macs_total else self.first)
                cost += share * self.macs[i]
            plan.append(rects)
        return plan, (self.spatial if cost <= _MAX_COST * self.macs_total else self.first)

    def _crop_forward(self, x_new, windows):
        """Layer by layer, the outputs over the rectangles the windows reach; from the layer
        :meth:`_plan` picks (where those are most of a layer, or where cropping would not pay),
        the rest runs whole on the current outputs patched with the crops."""
        plan, whole_at = self._plan(windows)
        rects = plan[0]
        crops = [x_new[:, :, r0:r1, c0:c1] for (r0, r1), (c0, c1) in rects]
        patches = [list(zip(rects, crops))]
        for i, (m, geo) in enumerate(zip(self.layers[:whole_at], self.geometry)):
            if geo is None:                      # per pixel: the rectangles do not grow
                crops = [self._apply(m, t) for t in crops]
                patches.append(list(zip(rects, crops)))
                continue
            inp = self.acts[i]
            (kh, kw), (sh, sw), (ph, pw) = geo
            h, w = inp.shape[2:]
            new_crops = []
            for orows, ocols in plan[i + 1]:
                # The input rows/columns those outputs read, padded with zeros beyond the map.
                r0, r1 = orows[0] * sh - ph, (orows[1] - 1) * sh - ph + kh
                c0, c1 = ocols[0] * sw - pw, (ocols[1] - 1) * sw - pw + kw
                top, left = max(r0, 0), max(c0, 0)
                piece = inp[:, :, top:min(r1, h), left:min(c1, w)].clone()
                # Overlay every changed rectangle where it meets what these outputs read.
                for (rows, cols), crop in zip(rects, crops):
                    a0, a1 = max(rows[0], top), min(rows[1], r1, h)
                    b0, b1 = max(cols[0], left), min(cols[1], c1, w)
                    if a0 < a1 and b0 < b1:
                        piece[:, :, a0 - top:a1 - top, b0 - left:b1 - left] = \
                            crop[:, :, a0 - rows[0]:a1 - rows[0], b0 - cols[0]:b1 - cols[0]]
                if r0 < 0 or c0 < 0 or r1 > h or c1 > w:
                    piece = F.pad(piece, (max(-c0, 0), max(c1 - w, 0), max(-r0, 0),
                                          max(r1 - h, 0)))
                if type(m) is nn.Conv2d:
                    new_crops.append(F.conv2d(piece, m.weight, m.bias, m.stride, 0, m.dilation,
                                              m.groups))
                else:
                    new_crops.append(F.max_pool2d(piece, m.kernel_size, m.stride))
            rects, crops = plan[i + 1], new_crops
            patches.append(list(zip(rects, crops)))
        return self._finish_whole(whole_at, rects, crops, patches)

    def _finish_whole(self, i: int, rects, crops, patches):
        """Layers ``i`` on, whole: the kept input of layer ``i`` with the crops pasted in; each
        remaining spatial layer's output is then one 'crop' covering its whole map."""
        t = self.acts[i].clone()
        for ((r0, r1), (c0, c1)), crop in zip(rects, crops):
            t[:, :, r0:r1, c0:c1] = crop
        if i < self.spatial:
            patches[-1] = [(((0, t.shape[2]), (0, t.shape[3])), t)]
        for m in self.layers[i: self.spatial]:
            # No copy before an in-place activation: t starts as a fresh copy and each layer
            # makes the next; the inputs kept (of convolutions and pools) are never written.
            t = m(t)
            patches.append([(((0, t.shape[2]), (0, t.shape[3])), t)])
        return self._tail(t, self.spatial), patches

    # -- keeping the current points ----------------------------------------------------------

    def accept(self, mask: torch.Tensor) -> None:
        """The last query's images become the current ones where ``mask``."""
        if self._last is None or not bool(mask.any()):
            return
        # Row by row: few proposals are kept, and a where() over whole maps would cost a pass.
        idx = mask.nonzero().flatten()
        for act, layer in zip(self.acts, self._last):
            if act is None:
                continue
            for ((r0, r1), (c0, c1)), crop in layer:
                act[idx, :, r0:r1, c0:c1] = crop[idx]

    def select(self, idx: torch.Tensor) -> None:
        self.acts = [None if a is None else a[idx] for a in self.acts]
        self._last = None

"""Square Attack (Andriushchenko, Croce, Flammarion and Hein, "Square Attack: a query-efficient
black-box adversarial attack via random search", ECCV 2020), for ℓ∞, ℓ2 and ℓ1.

A score-based random search: it sees only the model's outputs (every forward pass runs under
``torch.no_grad``; no gradient is ever taken), so it cannot be fooled by masked or obfuscated
gradients — which is why AutoAttack runs it last. Each query changes the perturbation inside one
random square window and keeps the change if the margin loss ``z_y − max_{j≠y} z_j`` decreases;
the window's area is a fraction ``p`` of the image that halves on a fixed schedule.

Fidelity to the original AutoAttack (``pyautoattack`` 0.2.0, read, not copied):

- Budget. ``n_queries`` counts random-search iterations as the original's does: one initial query,
  then up to ``n_queries`` proposals, so an example that is never broken costs ``n_queries + 1``
  model queries (5001 at AutoAttack's ``n_queries=5000``). ``extras["queries"]`` counts them all.
- Schedule. AutoAttack builds Square with ``resc_schedule=False``, so ``p`` halves after loop
  iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 whatever the budget (iteration ``i``
  is the proposal made with model query ``i + 1``); that is the default here.
  ``rescale_schedule=True`` maps the iteration onto a 10 000-query budget first (the original's
  class default, the Square paper's setting).
- Window side: ``round(sqrt(p·h·w))`` at least 1 (ℓ∞), or at least 3 and odd (ℓ2, ℓ1), at most
  the image side; one window position per query for the whole batch, as in the original.
- ℓ∞: the initial point is vertical stripes of ±ε, one sign per example, channel and column; a
  proposal sets the window to ``x ± ε`` with one sign per channel shared by the whole batch — both
  as in the original.
- ℓ2 / ℓ1: double bumps in two windows per proposal, as in the original (``square_bumps.py``
  says how, and which two deliberate differences leave the pixels outside them untouched).
- A proposal is kept if it lowers the loss or misclassifies.

Deliberate differences, each at least as strong as the original and costing no extra query:

- The window's corner is drawn uniformly over all ``h − s + 1`` positions; the original's
  ``floor(low + (high − low)·U)`` never draws the last one, so it can change the bottom row and
  right column only when the window spans the image. On small images this matters: on 8×8
  blobs (an MLP, ℓ2 ε = 1.2, 300 iterations, 4 seeds) the original leaves 81-90% robust,
  robustlab with the original's draw 75-85%, robustlab as it is 23-40%.
- ℓ∞: where the shared signs would leave an example's window exactly as it is (a query that can
  only return the current loss; late in the attack, with one-pixel windows, half of them), that
  example gets the opposite signs, which always change the window. The Square paper's own code
  redraws such signs too; AutoAttack's port spends the query.
- An example counts as broken once its margin is negative (the final ``argmax`` decides ties);
  the original stops attacking at margin ``≤ 0``.

Cost: a query should cost its forward pass. The examples still being queried are kept in compact
tensors, rebuilt only when one breaks (the original gathers them out of the full batch and
scatters them back on every query); on 50 Fashion-MNIST images with cnn-small, one thread, this
and the window-only ℓ2/ℓ1 proposals took ℓ2 Square from 1.21× to 1.15× the time of its forward
passes (ℓ∞ own work per query 0.64 to 0.47 ms); the points and query counts are the original
loop's to float rounding (``tests/test_square_fab_fidelity.py``).

Queries cost less than a pass on the models that allow it: a proposal changes one window (ℓ∞)
or two (ℓ2, ℓ1 on one channel) shared by the batch and nothing else, so on a sequential conv
net each convolution is recomputed only over the windows' receptive fields
(``window_forward.py``; late in the schedule a window is a few pixels). The logits are a full
pass's to float rounding; the model's forward hooks see every query, so pass counts are
unchanged (``tests/test_window_forward.py``). On the quickstart cnn-small, 128 images, 5000
queries, this took ℓ∞ Square from 82.2 to 42.7 s with the same points and queries (the
original's took 123.4 s; ``bench/square_crops.py``). Because the crop's logits differ from a
full pass's by float rounding, a proposal whose loss ties the current one to ~1e-6 can be kept
by one and not the other, so with and without crops the ℓ2 and ℓ1 runs may part after a while
(equally valid runs; ``crop_queries = False`` turns crops off).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import UserError
from ..threat import LpThreat
from .base import Attack, AttackResult
from .square_bumps import init_bumps, propose_bumps, random_sign
from .window_forward import WindowForward

_SQUARE_NORMS = ("linf", "l2", "l1")
# Loop iterations after which p halves (Andriushchenko et al., 2020, and their code; AutoAttack
# uses the same table without rescaling).
_P_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
_LOSSES = ("margin", "ce")


def p_selection(iteration: int, p_init: float, rescale_to: int | None = None) -> float:
    """The fraction of pixels a proposal changes at loop iteration ``iteration`` (0-based; the
    initial query comes before iteration 0). With ``rescale_to`` the iteration is first mapped
    onto a 10 000-query budget, ``int(iteration / rescale_to · 10 000)``."""
    it = int(iteration / rescale_to * 10000) if rescale_to else iteration
    return p_init / 2 ** sum(it > t for t in _P_HALVINGS)


def window_side(p: float, h: int, w: int, norm: str) -> int:
    """Side of the square window for fraction ``p`` of an ``h × w`` image."""
    s = int(round(math.sqrt(p * h * w)))
    if norm == "linf":
        s = max(s, 1)
    else:
        s = max(s, 3)
        s += 1 - s % 2  # odd, so the double bump has a centre row
    return min(s, h, w)


def _margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``z_y − max_{j≠y} z_j``: negative exactly when the example is misclassified."""
    z_y = logits.gather(1, y[:, None])[:, 0]
    others = logits.scatter(1, y[:, None], float("-inf"))
    return z_y - others.amax(1)


class Square(Attack):
    """Untargeted Square Attack, by default with the margin loss.

    Defaults are AutoAttack's standard settings (Croce and Hein, ICML 2020, and its code):
    ``n_queries=5000`` iterations after the initial query, ``p_init=0.8`` for every norm,
    ``restarts=1``, no rescaling of the p schedule. See the module docstring for what matches
    the original and what deliberately does not.

    An example stops being queried as soon as it is misclassified; the clean prediction that
    selects the points to attack and the final check are not counted. ``extras["queries"]`` holds
    the queries spent per example (summed over restarts), ``extras["mean_queries"]`` their mean
    over the successful examples that needed at least one query (NaN if none).

    ``loss`` decides which proposal is kept: ``"margin"`` (the paper's and AutoAttack's choice)
    or ``"ce"`` (minus the cross-entropy, the paper's alternative); either way a proposal that
    misclassifies is kept, and an example stops when its margin turns negative. ``steps``,
    accepted so every attack takes the same keywords, is an alias of ``n_queries`` and wins over
    it when given.
    """

    name = "square"
    # Queries recompute only the windows' receptive fields where the model allows it
    # (window_forward.py); off to test that it changes nothing but the cost and rounding.
    crop_queries = True

    def __init__(self, threat: LpThreat, n_queries: int = 5000, p_init: float = 0.8,
                 restarts: int = 1, loss: str = "margin", rescale_schedule: bool = False,
                 steps: int | None = None):
        if steps is not None:
            n_queries = steps
        if loss not in _LOSSES:
            raise UserError(f"Square Attack loss must be one of {', '.join(_LOSSES)}, "
                            f"got {loss!r}")
        self.loss = loss
        if threat.norm not in _SQUARE_NORMS:
            raise UserError(f"Square Attack is implemented for {', '.join(_SQUARE_NORMS)}, "
                            f"not {threat.norm}")
        for key, value in (("n_queries", n_queries), ("restarts", restarts)):
            if int(value) != value or value < 1:
                raise UserError(f"Square Attack {key} must be a positive integer, got {value!r}")
        if not 0 < p_init <= 1:
            raise UserError(f"Square Attack p_init must lie in (0, 1], got {p_init}")
        self.threat = threat
        self.n_queries, self.restarts = int(n_queries), int(restarts)
        self.p_init = float(p_init)
        self.rescale_schedule = bool(rescale_schedule)
        self._bumps: dict = {}

    def p_at(self, iteration: int) -> float:
        """The fraction of pixels changed at loop iteration ``iteration`` (0-based)."""
        return p_selection(iteration, self.p_init,
                           self.n_queries if self.rescale_schedule else None)

    @staticmethod
    def _corner(h: int, w: int, s: int) -> tuple[int, int]:
        return int(torch.randint(0, h - s + 1, ())), int(torch.randint(0, w - s + 1, ()))

    # -- ℓ∞ ------------------------------------------------------------------------------------

    def _init_linf(self, x: torch.Tensor) -> torch.Tensor:
        n, c, _, w = x.shape
        return (x + self.threat.eps * random_sign((n, c, 1, w), x)).clamp(0, 1)

    def _propose_linf(self, x: torch.Tensor, x_best: torch.Tensor, p: float
                      ) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """The proposal, and the window it changed (the same for the whole batch)."""
        _, c, h, w = x.shape
        s = window_side(p, h, w, "linf")
        vh, vw = self._corner(h, w, s)
        win = (slice(None), slice(None), slice(vh, vh + s), slice(vw, vw + s))
        step = self.threat.eps * random_sign((1, c, 1, 1), x)  # shared by the batch
        cand = (x[win] + step).clamp(0, 1)
        # Where the window would not change, the query could only repeat the current loss; the
        # opposite signs always change it (clamp(x + ε) > clamp(x − ε) for ε > 0).
        same = (cand == x_best[win]).flatten(1).all(1)
        if bool(same.any()):
            flipped = (x[win] - step).clamp(0, 1)
            cand = torch.where(same[:, None, None, None], flipped, cand)
        x_new = x_best.clone()
        x_new[win] = cand
        return x_new, (vh, vw, s)

    # -- ℓ2 and ℓ1 (square_bumps.py) ----------------------------------------------------------

    def _init_bumps(self, x: torch.Tensor) -> torch.Tensor:
        return init_bumps(self.threat, x, self._bumps)

    def _propose_bumps(self, x: torch.Tensor, x_best: torch.Tensor, p: float
                       ) -> tuple[torch.Tensor, list | None]:
        """The proposal, and the two windows it changed (None: the whole image moved)."""
        _, _, h, w = x.shape
        s = window_side(p, h, w, self.threat.norm)
        windows = [(*self._corner(h, w, s), s), (*self._corner(h, w, s), s)]
        return propose_bumps(self.threat, x, x_best, windows, self._bumps)

    # -- the attack ----------------------------------------------------------------------------

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The quantity the random search lowers, per example."""
        if self.loss == "margin":
            return _margin(logits, y)
        return -nn.functional.cross_entropy(logits, y, reduction="none")

    def _single_run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Random search on ``x``: the best point per example, its margin, queries spent.

        The examples still being queried live in their own compact tensors (``xa``, ``xb``, ...),
        rebuilt only when one of them breaks: most never do, so a query gathers and scatters
        nothing and costs its forward pass plus a handful of operations on the batch."""
        linf = self.threat.norm == "linf"
        margin_loss = self.loss == "margin"
        x_best = self._init_linf(x) if linf else self._init_bumps(x)
        propose = self._propose_linf if linf else self._propose_bumps
        # ℓ∞ proposals change one window, ℓ2 and ℓ1 ones two: the model's convolutions then
        # recompute only what they reach (window_forward.py); None where the model is not one
        # it can crop.
        crops = (WindowForward.build(model)
                 if self.crop_queries and len(x) >= WindowForward.MIN_BATCH else None)
        logits = crops.start(x_best) if crops is not None else model(x_best)
        margin = _margin(logits, y)
        loss = margin.clone() if margin_loss else self._loss(logits, y)
        queries = torch.ones(len(x), dtype=torch.long, device=x.device)
        act = (margin >= 0).nonzero().flatten()
        xa, xb, ya, la, ma = x[act], x_best[act], y[act], loss[act], margin[act]
        if crops is not None:
            crops.select(act)
        spent = 0  # loop iterations so far: each example in ``act`` took one query in each

        def write_back(keep: torch.Tensor | None) -> None:
            """Store the examples not in ``keep`` (all if None) into the full tensors."""
            leave = slice(None) if keep is None else ~keep
            idx = act[leave]
            x_best[idx], loss[idx], margin[idx] = xb[leave], la[leave], ma[leave]
            queries[idx] += spent

        for i in range(self.n_queries):
            if len(act) == 0:
                break
            x_new, window = propose(xa, xb, self.p_at(i))
            logits = crops.query(x_new, window) if crops is not None else model(x_new)
            spent += 1
            m_new = _margin(logits, ya)
            l_new = m_new if margin_loss else self._loss(logits, ya)
            better = (l_new < la) | (m_new < 0)
            xb = torch.where(better.view(-1, 1, 1, 1), x_new, xb)
            la, ma = torch.where(better, l_new, la), torch.where(better, m_new, ma)
            if crops is not None:
                crops.accept(better)
            broken = ma < 0
            if bool(broken.any()):
                keep = ~broken
                write_back(keep)
                act, xa, xb, ya, la, ma = act[keep], xa[keep], xb[keep], ya[keep], la[keep], \
                    ma[keep]
                if crops is not None:
                    crops.select(keep)
                    if len(act) < WindowForward.MIN_BATCH:  # a crop no longer pays
                        crops = None
        write_back(None)
        return x_best, margin, queries

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        if x.dim() != 4:
            raise UserError(f"Square Attack needs NCHW images, got a batch of shape "
                            f"{tuple(x.shape)}")
        with torch.no_grad():
            x_adv = x.clone()
            fooled = model(x).argmax(1) != y
            queries = torch.zeros(len(x), dtype=torch.long, device=x.device)
            for _ in range(self.restarts):
                todo = (~fooled).nonzero().flatten()
                if len(todo) == 0:
                    break
                xb, margin, q = self._single_run(model, x[todo], y[todo])
                queries[todo] += q
                won = margin < 0
                x_adv[todo[won]] = xb[won]
                fooled[todo[won]] = True
            # Success is decided by a fresh forward pass on exactly the points returned.
            success = model(x_adv).argmax(1) != y
        spent = success & (queries > 0)
        mean_q = float(queries[spent].double().mean()) if bool(spent.any()) else float("nan")
        return AttackResult(x_adv, success, {"queries": queries, "mean_queries": mean_q})


# The name the attack registry looks up.
SquareAttack = Square

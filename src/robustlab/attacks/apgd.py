"""Auto-PGD (Croce & Hein, ICML 2020): PGD with momentum and a step size that halves itself at
checkpoints when progress stalls, so it needs no step-size tuning; under ℓ1 the l1-APGD of Croce
& Hein, "Mind the box: l1-APGD for sparse adversarial attacks on image classifiers" (ICML 2021).
APGD-CE and APGD-DLR attack the label; APGD-T runs the targeted DLR loss once per likely target.

The reference is the authors' code, AutoAttack (PyPI ``pyautoattack`` 0.2.0,
``autopgd_base.py``). Deliberate differences, each at least as strong:

- Per-example early exit: an example stops at its first misclassifying iterate and keeps it (the
  original attacks every example for every iteration and keeps its last misclassifying one);
  an example never broken ends at its highest-loss point (the original returns the clean input).
- The first step-size window counts loss increases from the starting point's loss, as the paper
  writes it (Sec. 3.2); the original's code compares the first iterate's loss with a row of
  zeros it has not filled yet (a negative index wrapping round), i.e. with 0.
- In the large-ε stages of ℓ1 (3ε, then 2ε, below) an iterate that is misclassified *and* already
  inside the ε-ball counts as a success; the original counts only successes of the last stage.
- ℓ1 sparsity: at the start of each stage of the 3ε/2ε/ε schedule robustlab counts the
  start's non-zeros as the original does (:func:`original_start_sparsity`), float residues
  included; that count sets the stage's first k. The original moves a point onto a stage's ball
  by adding its projection's correction, and a coordinate the projection zeroes comes back as
  the clean pixel ± an ulp wherever that pixel is not 0; at the Gaussian random start that is
  tens to hundreds of coordinates (mean +51, at most +233 on 40 Fashion-MNIST images), so the
  first k is larger. robustlab used to count exact zeros; the evidence on strength is within
  the noise of the random start either way (quickstart model, ε = 10): on 82 images, same seed,
  5-restart APGD-CE, the exact count left 12 robust against the original's 10 and one restart
  over three more seeds 46 against 44, but on the first 1000 test images
  (``bench/autoattack_vs_original.py``, docs/benchmarks.md) the exact count's `standard` left
  10.4% (after APGD-CE 13.7%) and this count 10.5% (14.0%), the original 10.5% (13.6%). So
  robustlab follows the original. Along a run (no projection of a whole start) robustlab
  counts exact zeros; the original's residues there are a coordinate or two. Counting both
  sides with a 1e-6 tolerance, the trajectories agree to float precision
  (``tests/test_apgd_l1.py``). In ℓ2, same seed and early exit on, APGD-CE and 9-target APGD-T
  leave exactly the original's robust sets (38 and 29 of 82 at ε = 1.5); on the 463 of the
  first 1000 test images robust to APGD-CE, both APGD-Ts reseeded per batch of 128 left the
  same 382 points, and robustlab with seed 1 left 394 (25 robust only to it, 13 only to the
  original's seed-0 run): the random draw moves APGD-T by a dozen points here
  (``bench/apgdt_same_seed.py``). In ℓ∞ (ε = 0.1, first 300 images) the same check left the
  same 219 of 222 points for both, and 220 with seed 1.
- The ℓ1 projection aims a few float ulps inside the ball, so the stored point is within ε
  (the original's can exceed ε by ~1e-4 at ε = 15).

Everything else is the original's: checkpoints p_j and the halving test (≤ ρ·window, or no
halving and no gain), restart from the best point and gradient, momentum 0.75 from the second
step, the ℓ1 step rule and 3ε/2ε/ε schedule, the random starts, the DLR and targeted-DLR losses,
and APGD-T's targets (the k-th most likely class of the clean input). Restarts and targets run
only on points still robust, as in the original.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import nn

from ..errors import UserError
from ..threat import LpThreat, project_l1_box
from .base import Attack, AttackResult
from .losses import get_loss
from .pgd import input_gradient, is_success, steepest_step

# l1-APGD's sparsity k starts at 20% of the coordinates (Croce & Hein 2021; their code's
# ``topk = .2``) and then follows the sparsity of the best point (see ``_l1_checkpoint``).
L1_INITIAL_SPARSITY = 0.2
# The authors' code: at each ℓ1 checkpoint the step is divided by 1.5 unless the best point got
# sparser by more than 5%, in which case it is reset to ε; it never falls below ε/10; the next k
# is the best point's sparsity / 1.5. Checkpoints come every 4% of the iterations.
L1_STEP_DECAY, L1_MIN_STEP_FRACTION, L1_SPARSER, L1_K_SHRINK, L1_WINDOW = 1.5, 0.1, 0.95, 1.5, 0.04


def apgd_checkpoints(steps: int) -> list[int]:
    """Iteration counts after which APGD checks its step size: p_0 = 0, p_1 = 0.22,
    p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06) (Croce & Hein 2020, Sec. 3.2), in the integer
    form of the authors' code (each gap at least one iteration)."""
    first = max(int(0.22 * steps), 1)
    decrease, minimum = max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    points, gap, at = [], first, first
    while at <= steps:
        points.append(at)
        gap = max(gap - decrease, minimum)
        at += gap
    return points


def large_eps_schedule(steps: int) -> list[tuple[float, int]]:
    """AutoAttack's ℓ1 schedule (``use_largereps``, the original's ``decr_eps_pgd``): 30% of the
    iterations at radius 3ε, 30% at 2ε, the rest at ε, each stage starting from the previous
    stage's best point projected onto the smaller ball. Too few steps to split: one stage."""
    first = math.ceil(0.3 * steps)
    last = steps - 2 * first
    if last < 1:
        return [(1.0, steps)]
    return [(3.0, first), (2.0, first), (1.0, last)]


def autoattack_start(x: torch.Tensor, threat: LpThreat) -> torch.Tensor:
    """APGD's random start (the authors' code): a random point on the surface of the ℓ∞ or ℓ2
    ball, clipped to the box; for ℓ1 a Gaussian draw projected exactly onto ball ∩ box (which
    soft-thresholds it into a sparse point on the ball's surface)."""
    if threat.norm == "l1":
        return threat.project(x + torch.randn_like(x), x)
    t = torch.randn_like(x) if threat.norm == "l2" else 2 * torch.rand_like(x) - 1
    flat = t.flatten(1)
    size = flat.norm(dim=1) if threat.norm == "l2" else flat.abs().amax(dim=1)
    t = t / size.clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))
    return threat.project(x + threat.eps * t, x)


def l1_sparse_step(grad: torch.Tensor, topk: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """l1-APGD's step (Croce & Hein 2021): the gradient's sign on the coordinates whose
    |gradient| reaches the ``topk``-quantile (one fraction per example), scaled to ℓ1 norm
    ``step``. The threshold is the sorted |gradient| at index ⌊(1 − topk)·d⌋, as in their code."""
    flat = grad.flatten(1)
    d = flat.shape[1]
    at = ((1 - topk) * d).clamp(0, d - 1).long()
    # Index ``at`` of the ascending sort is the (d − at)-th largest: a top-k of the largest such
    # k over the batch finds it without sorting all d (k starts at 20% of d and follows the
    # best point's sparsity / 1.5).
    rank = d - 1 - at
    largest = flat.abs().topk(int(rank.max()) + 1, dim=1).values
    thresh = largest.gather(1, rank[:, None])
    direction = flat.sign() * (flat.abs() >= thresh).to(flat.dtype)
    direction = direction / (direction.abs().sum(1, keepdim=True) + 1e-10)
    return (step[:, None] * direction).view_as(grad)


def l0(delta: torch.Tensor) -> torch.Tensor:
    """Per-example number of non-zero coordinates."""
    return (delta.flatten(1) != 0).sum(1).to(delta.dtype)


def original_start_sparsity(start: torch.Tensor, x: torch.Tensor, eps: float,
                            corrections: int = 1) -> torch.Tensor:
    """The non-zero count the original AutoAttack gives an l1 stage's start ``start`` around
    clean ``x`` at radius ``eps``. The original moves a point onto a stage's ball by adding the
    projection's correction, ``x_init += P(v) − v`` with ``v = x_init − x`` (``decr_eps_pgd``:
    twice for the random draw, once per later stage), and counts ``x_init − x != 0``; a
    coordinate ``P`` zeroes comes back as ``x_i`` plus a rounding residue (about 1e-8) unless
    the subtraction happened to be exact. The same arithmetic with robustlab's exact
    projection gives the same count on average (within 5% of the original's excess over the
    exact count on 256 draws, ``tests/test_apgd_l1.py``; per example the two projections' float
    details differ); the start robustlab stores stays the exact projection."""
    point = start
    for _ in range(corrections):
        v = point - x
        point = point + (project_l1_box(v, x, eps) - v)
    return l0(point.clamp(0.0, 1.0) - x)


class APGD(Attack):
    """Untargeted APGD (Croce & Hein, ICML 2020, Algorithm 1; ℓ1: Croce & Hein, ICML 2021).

    ℓ∞ and ℓ2, defaults from the paper and AutoAttack: ``steps`` = 100, initial step 2ε,
    momentum ``alpha`` = 0.75 (none on the first step), ``rho`` = 0.75. At each checkpoint
    (:func:`apgd_checkpoints`) the step of an example halves if the loss increased on at most a
    ``rho`` fraction of the steps since the last checkpoint (the authors' code uses ≤, the paper
    <), or if its step was not halved at the last checkpoint and its best loss has not improved
    since; a halved example restarts from its best point (and best gradient).

    ℓ1 (l1-APGD): no momentum (``alpha`` and ``rho`` are unused); each step moves along the
    signs of the top ``k`` coordinates of |gradient| (:func:`l1_sparse_step`) and is projected
    exactly onto ball ∩ box (:func:`robustlab.threat.project_l1_box`). ``k`` starts at
    ``l1_sparsity`` = 20% and step at ε; every 4% of the iterations the best point's sparsity s
    sets k = s / 1.5, and the step is reset to ε (restarting from the best point) if s fell by
    more than 5% since the last checkpoint, else divided by 1.5, never below ε/10.
    ``large_eps`` (default: on for ℓ1, as AutoAttack's ``standard`` runs it; ignored for ℓ∞/ℓ2)
    runs :func:`large_eps_schedule`, whose later stages start from the earlier stage's best point
    with k set from that point's sparsity.

    ``loss`` is ``ce`` (APGD-CE) or ``dlr`` (APGD-DLR); ``cw`` also works. ``random_start``
    (default on, as in AutoAttack) starts each run from a random point on the surface of the
    ball; off, every run starts from the clean input, which is deterministic and on undefended
    models often a little stronger, but is not AutoAttack's setting. See the module docstring for
    what differs from the authors' code.
    """

    name = "apgd-ce"

    def __init__(self, threat: LpThreat, steps: int = 100, restarts: int = 1, loss: str = "ce",
                 rho: float = 0.75, alpha: float = 0.75,
                 l1_sparsity: float = L1_INITIAL_SPARSITY, random_start: bool = True,
                 large_eps: bool | None = None, early_stop: bool = True):
        if steps < 1 or restarts < 1:
            raise UserError(f"apgd: steps and restarts must be >= 1, got {steps} and {restarts}")
        if not 0 < l1_sparsity <= 1:
            raise UserError(f"apgd: l1_sparsity must be in (0, 1], got {l1_sparsity}")
        self.threat = threat
        self.random_start = random_start
        self.steps, self.restarts = int(steps), int(restarts)
        self.loss, self.rho, self.alpha = loss, rho, alpha
        self.l1_sparsity = l1_sparsity
        self.large_eps = (threat.norm == "l1") if large_eps is None else bool(large_eps)
        # Off: every example runs the whole budget and ends at its highest-loss iterate (a
        # loss-maximising adversary, e.g. for the energy landscape), not at the boundary.
        self.early_stop = bool(early_stop)
        # The most examples one model pass takes; 0: the whole batch given. robustlab.evaluate
        # sets it to its batch size and hands APGD several batches at once, so that restarts and
        # targets, which run only on the points still robust, run them in full batches.
        self.chunk_size = 0
        self.name = f"apgd-{loss}"
        self._loss_fn = get_loss(loss)

    def _stages(self) -> list[tuple[float, int]]:
        if self.threat.norm == "l1" and self.large_eps:
            return large_eps_schedule(self.steps)
        return [(1.0, self.steps)]

    def _gradient(self, model, x_adv, idx, loss_fn, args):
        """Logits, loss and input gradient of the examples ``idx``."""
        if self.train_mode:
            # Train-mode batch norm couples the examples and fails on a batch of one: the whole
            # batch goes through, finished examples standing still.
            logits, loss, grad = input_gradient(model, x_adv, loss_fn, *args)
            return logits[idx], loss[idx], grad[idx]
        return input_gradient(model, x_adv[idx], loss_fn, *(a[idx] for a in args))

    def _single_run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn,
                    target: torch.Tensor | None = None):
        """One APGD run (all stages of the ℓ1 schedule). Returns (points, best loss, success);
        a successful example's point is its first misclassifying iterate inside the threat
        model, another's its highest-loss iterate of the last stage."""
        args = (y,) if target is None else (y, target)
        stages = self._stages()
        out = x.clone()
        done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        # replace() keeps the threat's class, so a subclass's projection holds in every stage.
        first = replace(self.threat, eps=self.threat.eps * stages[0][0])
        carried = len(stages) > 1
        if not self.random_start:
            start = x.clone()
        elif carried:
            # The l1 Gaussian draw, projected by the first stage below (autoattack_start's draw).
            start = x + torch.randn_like(x)
        else:
            start = autoattack_start(x, first)
        for n_stage, (factor, iters) in enumerate(stages):
            stage = self.threat if factor == 1 else replace(self.threat,
                                                            eps=self.threat.eps * factor)
            projected = stage.project(start, x)
            # The original projects its random draw twice before the first stage.
            sparsity = (original_start_sparsity(start, x, stage.eps, 1 if n_stage else 2)
                        if carried else None)
            start, loss_best = self._stage(model, x, args, loss_fn, stage, projected, iters, out,
                                           done, start_sparsity=sparsity)
        out[~done] = start[~done]
        if not self.early_stop:
            with torch.no_grad():
                done = is_success(model(out), y) & self.threat.contains(out, x)
        return out, loss_best, done

    def _stage(self, model, x, args, loss_fn, stage: LpThreat, x_adv, iters, out, done,
               start_sparsity: torch.Tensor | None = None):
        """``iters`` APGD iterations within ``stage`` from ``x_adv``; successes go to ``out`` and
        ``done`` in place. ``start_sparsity`` (ℓ1 schedule stages) is the start's non-zero count
        as the original counts it, which sets the first k. Returns the stage's best points and
        best losses."""
        y, n, l1 = args[0], len(x), stage.norm == "l1"
        eps = stage.eps
        x_adv = x_adv.clone()
        grad = torch.zeros_like(x)
        loss_best = torch.full((n,), float("-inf"), device=x.device, dtype=x.dtype)
        idx = (~done).nonzero().flatten()
        if idx.numel() == 0:
            return x_adv, loss_best
        logits, lo, g = self._gradient(model, x_adv, idx, loss_fn, args)
        grad[idx], loss_best[idx] = g, lo
        self._record(logits, y[idx], x_adv[idx], x[idx], idx, out, done)
        x_best, grad_best, loss_prev, x_prev = x_adv.clone(), grad.clone(), loss_best.clone(), \
            x_adv.clone()
        step = torch.full((n,), (1.0 if l1 else 2.0) * eps, device=x.device, dtype=x.dtype)
        if l1:
            d = x[0].numel()
            topk = torch.full((n,), float(self.l1_sparsity), device=x.device, dtype=x.dtype)
            sp_old = torch.full_like(topk, float(d))
            if start_sparsity is not None:
                # A carried start sets k from its own sparsity (the original's x_init branch);
                # a start at the clean point (sparsity 0) keeps the fresh setting.
                sp = start_sparsity.to(x.dtype)
                has = sp > 0
                topk[has], sp_old[has] = sp[has] / d / L1_K_SHRINK, sp[has]
            window = max(int(L1_WINDOW * iters), 1)
            checkpoints = set(range(window, iters + 1, window))
        else:
            increases = torch.zeros(n, device=x.device)
            loss_at_check = loss_best.clone()
            halved_at_check = torch.ones(n, dtype=torch.bool, device=x.device)
            checkpoints = set(apgd_checkpoints(iters))
        last_check = 0

        for i in range(iters):
            idx = (~done).nonzero().flatten()
            if idx.numel() == 0:
                break
            xa, xo = x_adv[idx], x[idx]
            if l1:
                x_new = stage.project(xa + l1_sparse_step(grad[idx], topk[idx], step[idx]), xo)
            else:
                z = stage.project(xa + steepest_step(grad[idx], stage.norm, step[idx]), xo)
                a = 1.0 if i == 0 else self.alpha
                x_new = stage.project(xa + a * (z - xa) + (1 - a) * (xa - x_prev[idx]), xo)
            x_prev[idx], x_adv[idx] = xa, x_new
            logits, lo, g = self._gradient(model, x_adv, idx, loss_fn, args)
            grad[idx] = g
            self._record(logits, y[idx], x_new, xo, idx, out, done)
            if not l1:
                increases[idx] += (lo > loss_prev[idx]).float()
            loss_prev[idx] = lo
            up = lo > loss_best[idx]
            x_best[idx[up]], loss_best[idx[up]], grad_best[idx[up]] = x_new[up], lo[up], g[up]

            if i + 1 not in checkpoints:
                continue
            if l1:
                sp = l0(x_best[idx] - xo)
                sparser = sp / sp_old[idx] < L1_SPARSER
                topk[idx] = sp / x[0].numel() / L1_K_SHRINK
                new_step = torch.where(sparser, torch.full_like(sp, eps),
                                       step[idx] / L1_STEP_DECAY)
                step[idx] = new_step.clamp(eps * L1_MIN_STEP_FRACTION, eps)
                sp_old[idx] = sp
                back = idx[sparser]
            else:
                k = i + 1 - last_check
                stalled = increases[idx] <= self.rho * k
                no_gain = ~halved_at_check[idx] & (loss_at_check[idx] >= loss_best[idx])
                halve = stalled | no_gain
                halved_at_check[idx], loss_at_check[idx] = halve, loss_best[idx]
                increases.zero_()
                back = idx[halve]
                step[back] /= 2
            last_check = i + 1
            # Restart from the best point; the next step's loss is still compared with the
            # abandoned iterate's, as in the authors' code.
            x_adv[back], grad[back] = x_best[back], grad_best[back]
        return x_best, loss_best

    def _record(self, logits, y, x_new, xo, idx, out, done) -> None:
        """Mark as done the examples ``idx`` (with labels ``y``, points ``x_new`` and clean
        inputs ``xo``) that are misclassified and inside the attack's threat model (a large-ε
        stage's point may lie outside it), keeping that point."""
        if not self.early_stop:
            return
        ok = is_success(logits, y) & self.threat.contains(x_new, xo)
        out[idx[ok]], done[idx[ok]] = x_new[ok], True

    def _chunks(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``idx`` in pieces of at most ``chunk_size`` examples (one piece if it is 0)."""
        return idx.split(self.chunk_size) if self.chunk_size > 0 else (idx,)

    def _logits(self, model, x):
        with torch.no_grad():
            return torch.cat([model(x[part]) for part in
                              self._chunks(torch.arange(len(x), device=x.device))])

    def _restarts(self, model, x, y, success, best_x, best_loss, loss_fn, target=None):
        """Run ``restarts`` APGD runs on the still-robust examples, updating in place; with
        ``chunk_size`` each run takes them in full chunks, wherever they sit in ``x``."""
        for _ in range(self.restarts):
            if bool(success.all()):
                return
            todo = (torch.arange(len(x), device=x.device) if self.train_mode
                    else (~success).nonzero().flatten())
            for part in self._chunks(todo):
                xa, loss, ok = self._single_run(model, x[part], y[part], loss_fn,
                                                None if target is None else target[part])
                better = ~success[part] & (ok | (loss > best_loss[part]))
                sel = part[better]
                best_x[sel], best_loss[sel], success[sel] = xa[better], loss[better], ok[better]

    def _start(self, model, x, y):
        logits = self._logits(model, x)
        best_loss = torch.full((len(x),), float("-inf"), device=x.device)
        return logits, x.clone(), is_success(logits, y), best_loss

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        _, best_x, success, best_loss = self._start(model, x, y)
        if self.threat.eps > 0:
            self._restarts(model, x, y, success, best_x, best_loss, self._loss_fn)
        return AttackResult(best_x, self._final_success(model, best_x, y))

    def _final_success(self, model, x_adv, y):
        return is_success(self._logits(model, x_adv), y)


class APGDT(APGD):
    """APGD-T (Croce & Hein, ICML 2020): APGD on the targeted DLR loss, once for each of the
    ``n_target_classes`` most likely other classes of the clean input (9 in AutoAttack's
    standard version), each run only on the points still robust. Its goal is misclassification:
    ``success`` means pred ≠ y, and ``extras["target"]`` holds the target class that broke each
    example (−1 where none did)."""

    name = "apgd-t"

    def __init__(self, threat: LpThreat, steps: int = 100, n_target_classes: int = 9,
                 restarts: int = 1, loss: str = "dlr", rho: float = 0.75, alpha: float = 0.75,
                 l1_sparsity: float = L1_INITIAL_SPARSITY, random_start: bool = True,
                 large_eps: bool | None = None, early_stop: bool = True):
        super().__init__(threat, steps=steps, restarts=restarts, loss=loss, rho=rho,
                         alpha=alpha, l1_sparsity=l1_sparsity, random_start=random_start,
                         large_eps=large_eps, early_stop=early_stop)
        if n_target_classes < 1:
            raise UserError(f"apgd-t: n_target_classes must be >= 1, got {n_target_classes}")
        self.n_target_classes = int(n_target_classes)
        self.name = "apgd-t"
        self._loss_fn = get_loss(loss, targeted=True)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        logits, best_x, success, best_loss = self._start(model, x, y)
        used = torch.full_like(y, -1)
        if self.threat.eps > 0:
            ranked = logits.scatter(1, y[:, None], float("-inf")).argsort(1, descending=True)
            for r in range(min(self.n_target_classes, logits.shape[1] - 1)):
                target = ranked[:, r]
                before = success.clone()
                # Every target starts afresh: the best loss of another target is not comparable.
                best_loss[~success] = float("-inf")
                self._restarts(model, x, y, success, best_x, best_loss, self._loss_fn, target)
                used[success & ~before] = target[success & ~before]
        return AttackResult(best_x, self._final_success(model, best_x, y), {"target": used})


class APGDDLR(APGD):
    """APGD on the DLR loss (APGD-DLR in AutoAttack, Croce & Hein 2020)."""

    name = "apgd-dlr"

    def __init__(self, threat: LpThreat, steps: int = 100, restarts: int = 1, loss: str = "dlr",
                 rho: float = 0.75, alpha: float = 0.75,
                 l1_sparsity: float = L1_INITIAL_SPARSITY, random_start: bool = True,
                 large_eps: bool | None = None, early_stop: bool = True):
        super().__init__(threat, steps=steps, restarts=restarts, loss=loss, rho=rho,
                         alpha=alpha, l1_sparsity=l1_sparsity, random_start=random_start,
                         large_eps=large_eps, early_stop=early_stop)

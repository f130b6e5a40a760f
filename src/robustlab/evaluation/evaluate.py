"""Robust accuracy the AutoAttack way: attacks run in turn, each only on the points still robust,
and every adversarial example is re-checked (threat model, then a fresh forward pass) before it
counts.

The evaluation is a sequence of (attack, batch) units. Each unit seeds the RNG from its own
coordinates, so its outcome does not depend on what ran before it in this process; with the state
saved after every unit (:class:`EvalState`), an interrupted evaluation resumes to exactly the
result of an uninterrupted one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
from torch import nn

from ..attacks.base import Attack, model_mode
from ..models.layout import channels_last as channels_last_layout
from ..models.layout import wants_channels_last
from ..passes import PassCount, count_passes
from ..progress import progress_bar
from ..threat import LpThreat

ROBUST, CLEAN_WRONG = -2, -1  # codes in EvalState.broken_by besides an attack's index


@dataclass
class EvalState:
    """Where an evaluation stands; plain tensors and numbers, saved with ``torch.save`` and read
    back with ``weights_only=True``."""

    broken_by: torch.Tensor                 # int64 per example: ROBUST, CLEAN_WRONG or attack k
    stage: int = 0                          # attacks finished
    position: int = 0                       # robust points of the current attack finished
    stage_seconds: list = field(default_factory=list)
    forward: int = 0
    backward: int = 0
    seconds: float = 0.0
    x_adv: torch.Tensor | None = None       # kept when saving adversarial examples
    initialised: bool = False

    def to_dict(self) -> dict:
        d = {"broken_by": self.broken_by, "stage": self.stage, "position": self.position,
             "stage_seconds": torch.tensor(self.stage_seconds, dtype=torch.float64),
             "forward": self.forward, "backward": self.backward, "seconds": self.seconds,
             "initialised": self.initialised}
        if self.x_adv is not None:
            d["x_adv"] = self.x_adv
        return d

    @classmethod
    def from_dict(cls, d: dict) -> EvalState:
        return cls(broken_by=d["broken_by"].long(), stage=int(d["stage"]),
                   position=int(d["position"]),
                   stage_seconds=[float(s) for s in d["stage_seconds"].tolist()],
                   forward=int(d["forward"]), backward=int(d["backward"]),
                   seconds=float(d["seconds"]), x_adv=d.get("x_adv"),
                   initialised=bool(d["initialised"]))


@dataclass
class EvalResult:
    threat: dict
    n_examples: int
    clean_accuracy: float
    robust_accuracy: float
    # After each attack, in order: {"attack", "robust_accuracy", "broken", "seconds"}.
    stages: list[dict] = field(default_factory=list)
    # Per example: None robust, "clean" misclassified without attack, else the attack's name.
    broken_by: list = field(default_factory=list)
    wall_seconds: float = 0.0
    passes: dict = field(default_factory=dict)
    robust_mask: torch.Tensor | None = None
    x_adv: torch.Tensor | None = None
    # Model sanity warnings (evaluation/sanity.py), {"check", "message"} each.
    warnings: list = field(default_factory=list)
    # Gradient-masking checks (evaluation/masking.py): {"flags": [...], "checks": {...}}.
    masking: dict | None = None

    def to_dict(self, per_example: bool = True) -> dict:
        d = {"threat": self.threat, "n_examples": self.n_examples,
             "clean_accuracy": self.clean_accuracy, "robust_accuracy": self.robust_accuracy,
             "stages": self.stages, "wall_seconds": self.wall_seconds, **self.passes}
        if self.warnings:
            d["warnings"] = self.warnings
        if self.masking is not None:
            d["masking"] = self.masking
        if per_example:
            d["broken_by"] = self.broken_by
        return d


def attack_name(attack) -> str:
    return getattr(attack, "label", None) or getattr(attack, "name", type(attack).__name__)


def default_batch_size(device: torch.device) -> int:
    """Points attacked at once when the caller does not say. On CPU, 128: a batch's activations
    then stay in cache, and cnn-small runs forward and forward-backward passes about 1.9x faster
    per image than in batches of 512 (bench/eval_throughput.py, docs/benchmarks.md); a GPU wants
    large batches."""
    return 128 if device.type == "cpu" else 500


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    with model_mode(model, False):
        return torch.cat([model(x[i:i + batch_size]).argmax(1)
                          for i in range(0, len(x), batch_size)]) if len(x) else \
            torch.zeros(0, dtype=torch.long, device=x.device)


# An attack that splits its own passes (``chunk_size``: APGD and its variants) gets this many
# batches per call, so the restarts and targets it runs on the points still robust fill whole
# batches instead of a batch's few survivors each (ℓ1 APGD-CE's 5 restarts ran on ~13 of 128).
PACKED_BATCHES = 4


@contextmanager
def _chunked(attack, batch_size: int):
    """Let ``attack`` take several batches in one call, each of its passes at most
    ``batch_size`` examples (or the attack's own smaller ``chunk_size``); its setting comes back
    afterwards."""
    if not hasattr(attack, "chunk_size"):
        yield attack
        return
    saved = attack.chunk_size
    attack.chunk_size = min(saved, batch_size) if saved > 0 else batch_size
    try:
        yield attack
    finally:
        attack.chunk_size = saved


def _unit_seed(seed: int, stage: int, position: int) -> int:
    return (seed * 1_000_003 + stage * 10_007 + position) % (2**63 - 1)


def summarise(state: EvalState, attacks: Sequence, threat: LpThreat) -> EvalResult:
    names = [attack_name(a) for a in attacks]
    b = state.broken_by
    n = len(b)
    clean_ok = b != CLEAN_WRONG
    stages = []
    for k, name in enumerate(names[:state.stage]):
        robust_after = clean_ok & ((b == ROBUST) | (b > k))
        stages.append({"attack": name, "robust_accuracy": float(robust_after.float().mean())
                       if n else 0.0, "broken": int((b == k).sum()),
                       "seconds": state.stage_seconds[k] if k < len(state.stage_seconds)
                       else 0.0})
    robust = b == ROBUST
    return EvalResult(
        threat=threat.to_dict(), n_examples=n,
        clean_accuracy=float(clean_ok.float().mean()) if n else 0.0,
        robust_accuracy=float(robust.float().mean()) if n else 0.0, stages=stages,
        broken_by=[None if v == ROBUST else ("clean" if v == CLEAN_WRONG else names[v])
                   for v in b.tolist()],
        wall_seconds=state.seconds,
        passes={"forward_examples": state.forward, "backward_examples": state.backward},
        robust_mask=robust.cpu(), x_adv=state.x_adv)


def expected_passes(attack) -> float | None:
    """Forward passes per example an attack will make, from its settings, before any batch has
    run: iterations × restarts (+1 for the start), or its query budget. None when it does not
    say; the bar then learns the cost from the first batch."""
    for key in ("n_queries", "queries"):
        v = getattr(attack, key, None)
        if isinstance(v, int) and v > 0:
            return float(v)
    steps = getattr(attack, "steps", None) or getattr(attack, "n_iter", None)
    if isinstance(steps, int) and steps > 0:
        restarts = getattr(attack, "restarts", None) or getattr(attack, "n_restarts", 1) or 1
        targets = getattr(attack, "n_target_classes", None) or 1
        return float((steps + 1) * int(restarts) * int(targets))
    return None


class _WithinBatch:
    """Moves the bar while an attack works on a batch: a forward hook counts the examples the
    model has seen since the batch began (``passes``) against the passes expected for it —
    measured on this stage's finished batches once there are some, else from the attack's
    settings — and sets the bar to that fraction of the batch (at most 99% until it ends)."""

    def __init__(self, passes: PassCount, bar, attack):
        self.passes, self.bar = passes, bar
        self.per_example = expected_passes(attack)
        self.done_examples = 0
        self.done_forward = 0
        self.active = False
        self.last = 0.0

    def begin(self, position: int, size: int) -> None:
        self.position, self.size = position, size
        self.f0 = self.passes.forward
        self.active = True

    def end(self) -> None:
        self.active = False
        self.done_examples += self.size
        self.done_forward += self.passes.forward - self.f0

    def on_forward(self, *args) -> None:
        now = time.monotonic()
        if not self.active or now - self.last < 0.2:
            return
        self.last = now
        per = (self.done_forward / self.done_examples) if self.done_examples else \
            self.per_example
        if not per:
            return
        frac = min(0.99, (self.passes.forward - self.f0) / (per * self.size))
        self.bar.set_completed(self.position + frac * self.size)


@contextmanager
def _within_batch(model: nn.Module, passes: PassCount, bar, attack):
    inner = _WithinBatch(passes, bar, attack)
    handle = model.register_forward_hook(lambda *a: inner.on_forward())
    try:
        yield inner
    finally:
        handle.remove()


@contextmanager
def frozen_weights(model: nn.Module):
    """Run the block with every parameter of ``model`` set not to require gradients, then restore
    each flag, so that an attack that calls ``.backward()`` (a user's own) neither computes weight
    gradients nor leaves them in the model's ``.grad``. It buys no speed: robustlab's attacks
    take ``torch.autograd.grad`` of the input alone, which never computes weight gradients
    (``bench/eval_throughput.py --frozen``, alternating the two, measures frozen ÷ trainable
    0.96 forward and 1.00 forward+backward on cnn-small; docs/benchmarks.md)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: LpThreat,
             attacks: Sequence[Attack], *, batch_size: int = 0, keep_adv: bool = False,
             seed: int = 0, state: EvalState | None = None,
             on_unit: Callable[[EvalState], None] | None = None,
             quiet: bool | None = None, channels_last: bool | None = None,
             freeze_weights: bool = True) -> EvalResult:
    """Robust accuracy of ``model`` on ``(x, y)`` under ``threat`` against ``attacks`` in turn.

    Works for any ``nn.Module`` that takes images in [0, 1]. Each attack sees only the points no
    earlier attack broke; an example counts as broken only if its adversarial example is inside
    the threat model and a fresh forward pass misclassifies it. ``state`` continues an
    interrupted evaluation; ``on_unit`` is called after every (attack, batch) unit, to save it.
    ``batch_size`` is how many points an attack works on at once, and the most examples in one
    model pass (APGD and its variants get :data:`PACKED_BATCHES` batches per call and split
    their passes themselves); 0 picks :func:`default_batch_size` for the model's device. The
    weights are frozen while attacks run (:func:`frozen_weights`: an attack's ``.backward()``
    leaves the model's ``.grad`` alone); ``freeze_weights=False`` leaves them as they are, for a
    model that trains itself in its forward pass (test-time adaptation). ``channels_last``
    (default: on for convolutional models on CPU) runs the evaluation with the convolution
    weights in channels-last layout, the faster one for oneDNN; the model is put back as it was
    afterwards.
    """
    params = list(model.parameters())
    device = params[0].device if params else x.device
    if channels_last is None:
        channels_last = wants_channels_last(model, torch.device(device))
    batch_size = batch_size or default_batch_size(torch.device(device))
    with channels_last_layout(model, channels_last), \
            (frozen_weights(model) if freeze_weights else nullcontext()):
        return _evaluate(model, x, y, threat, attacks, device=device, batch_size=batch_size,
                         keep_adv=keep_adv, seed=seed, state=state, on_unit=on_unit,
                         quiet=quiet)


def _evaluate(model, x, y, threat, attacks, *, device, batch_size, keep_adv, seed, state,
              on_unit, quiet) -> EvalResult:
    x, y = x.to(device), y.to(device)
    n = len(x)
    if state is None:
        state = EvalState(broken_by=torch.full((n,), ROBUST, dtype=torch.long))
    if keep_adv and state.x_adv is None:
        state.x_adv = x.detach().cpu().clone()
    passes = PassCount(state.forward, state.backward)
    t_start, seconds0 = time.time(), state.seconds

    def sync():
        state.forward, state.backward = passes.forward, passes.backward
        state.seconds = seconds0 + time.time() - t_start

    with count_passes(model, passes):
        if not state.initialised:
            wrong = predict(model, x, batch_size).cpu() != y.cpu()
            state.broken_by[wrong] = CLEAN_WRONG
            state.initialised = True
            sync()
            if on_unit:
                on_unit(state)
        for k in range(state.stage, len(attacks)):
            attack = attacks[k]
            name = attack_name(attack)
            # The points robust when this attack started: those not broken, or broken by it.
            todo = ((state.broken_by == ROBUST) | (state.broken_by == k)).nonzero().flatten()
            while len(state.stage_seconds) <= k:
                state.stage_seconds.append(0.0)
            with progress_bar(name, total=len(todo), unit="img", quiet=quiet,
                              start=state.position) as bar, \
                    _within_batch(model, passes, bar, attack) as inner:
                unit = batch_size * (PACKED_BATCHES if hasattr(attack, "chunk_size") else 1)
                while state.position < len(todo):
                    t_unit = time.time()
                    b = todo[state.position:state.position + unit]
                    bd = b.to(device)
                    torch.manual_seed(_unit_seed(seed, k, state.position))
                    inner.begin(state.position, len(b))
                    with _chunked(attack, batch_size):
                        res = attack(model, x[bd], y[bd])
                    inner.end()
                    threat.check(res.x_adv, x[bd], source=name)
                    with torch.no_grad():
                        fooled = (predict(model, res.x_adv, batch_size) != y[bd]).cpu()
                    state.broken_by[b[fooled]] = k
                    if keep_adv:
                        state.x_adv[b[fooled]] = res.x_adv[fooled.to(device)].detach().cpu()
                    state.position += len(b)
                    state.stage_seconds[k] += time.time() - t_unit
                    robust_now = int((state.broken_by == ROBUST).sum())
                    bar.set_completed(state.position, info=f"robust {robust_now}/{n}")
                    sync()
                    if on_unit:
                        on_unit(state)
            state.stage += 1
            state.position = 0
            sync()
            if on_unit:
                on_unit(state)
    return summarise(state, attacks, threat)

"""The one training loop: adversarial or standard, any objective, exact resume.

Data stays on the training device as uint8 and is converted and augmented there per batch (the
airbench way: no data-loader bottleneck). Every step's randomness comes from the global torch RNG
and from a per-epoch generator for the data order, and both are saved in checkpoints, so a resumed
run on CPU ends with the same weights, bit for bit, as an uninterrupted one.

This module is the loop and the steps; the epoch's validation is in `validation.py`, the
checkpointed state (counters, optimiser, RNG) in `train_state.py`, the optimiser in `optim.py`
and the mixture-BN route pinning in `routing.py`.
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from ..data import ImageData
from ..data.augment import Augment
from ..data.loader import batches_per_epoch, iterate_batches, mix_batches
from ..distributed import all_reduce_sum, rank_world
from ..errors import UserError
from ..models.norm import is_mixbn
from ..passes import PassCount, count_passes
from ..progress import progress_bar
from ..runs import Run
from ..threat import LpThreat
from .ema import ModelEMA
from .objectives import adversarial_ce_loss, clean_count, get_objective
from .optim import make_optimizer, param_groups
from .routing import Routed
from .schedule import lr_at
from .settings import TrainSettings
from .train_state import TrainState, load_training, save_training
from .validation import catastrophic_overfitting, validate

__all__ = ["Trainer", "TrainSettings", "TrainState", "make_optimizer", "param_groups"]


class Trainer:
    def __init__(self, settings: TrainSettings, run: Run | None, model: nn.Module,
                 train_data: ImageData, val_data: ImageData | None, device: torch.device, *,
                 extra_data: ImageData | None = None, forward_flops: int = 0,
                 quiet: bool | None = None):
        self.settings, self.run, self.model = settings, run, model
        self.tc = settings.train
        self.device = device
        self.train_data = train_data.to(device)
        self.val_data = val_data.to(device) if val_data is not None else None
        self.extra_data = extra_data.to(device) if extra_data is not None else None
        self.forward_flops = forward_flops
        self.quiet = quiet
        self.objective = get_objective(self.tc.objective)
        self.threat = LpThreat(self.tc.attack.norm, self.tc.attack.eps)
        kw = {"spatial": settings.spatial} if self.objective.uses_spatial else {}
        self.adversary = (self.objective.make_adversary(self.threat, self.tc.attack, self.tc,
                                                        **kw)
                          if self.objective.make_adversary else None)
        if self.adversary is not None and not self.objective.uses_spatial:
            # Attack in train mode, BN running statistics frozen (Xie and Yuille keep BN in the
            # same mode while attacking and learning; Wong et al. attack in train mode too).
            # Worst-of-k spatial training attacks in eval mode instead (Engstrom et al.).
            self.adversary.train_mode = True
        self.mixbn = is_mixbn(model)
        if self.tc.clean_fraction > 0 and (self.objective.loss is not adversarial_ce_loss
                                           or self.objective.free):
            raise UserError(f"train.clean_fraction = {self.tc.clean_fraction}: a clean share "
                            f"is defined for the cross-entropy objectives on adversarial "
                            f"inputs (pgd-at, fgsm-rs, ...), not for {self.tc.objective}")
        self.augment = Augment(settings.crop_padding, settings.flip)
        if self.tc.channels_last:
            # NHWC: faster convolutions with oneDNN on CPU and tensor cores on GPU.
            model.to(memory_format=torch.channels_last)
        self.rank, self.world = rank_world()
        # Under torchrun the loss goes through DDP, which averages gradients over ranks; each
        # rank attacks its own share of every batch with the plain module (input gradients only).
        self.train_model = model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.train_model = DDP(model, device_ids=[device.index] if device.type == "cuda"
                                   else None)
        if self.tc.compile:
            # Compiles the loss path only; attacks call the eager module (their batches shrink
            # as examples break, which would trigger recompiles).
            self.train_model = torch.compile(self.train_model)
        self._seed_rank(0)
        self.optimizer = make_optimizer(model, self.tc)
        self.state = TrainState()
        self._last_val: dict = {}
        self._epoch_passes = PassCount()
        # Free AT replays every batch m times, one optimiser step each, over epochs / m passes.
        self.free = None
        self.replays, self.epochs = 1, self.tc.epochs
        if self.objective.free:
            from .free import FreePerturbation

            self.free = FreePerturbation(self.threat, self.tc.free_replays,
                                         self.tc.attack.step_size or None)
            self.replays = self.free.replays
            self.epochs = math.ceil(self.tc.epochs / self.replays)
        self.steps_per_epoch = self._steps_per_epoch()  # batches per pass over the data
        self.total_steps = self.steps_per_epoch * self.replays * self.epochs
        self.ema = None
        if self.tc.ema_decay > 0:
            self.ema = ModelEMA(model, self.tc.ema_decay, dynamic=self.tc.ema_dynamic,
                                warmup_steps=round(self.tc.ema_warmup * self.total_steps),
                                bn=self.tc.ema_bn)
        self.awp = None
        if self.objective.awp is not None:
            from .awp import AWP, GAMMA, WARMUP_SHARE

            kind = self.objective.awp
            gamma = GAMMA[kind] if self.tc.awp_gamma < 0 else self.tc.awp_gamma
            self.awp = AWP(model, kind, gamma, beta=self.tc.beta)
            self.awp_warmup = (WARMUP_SHARE[kind] * self.tc.epochs if self.tc.awp_warmup < 0
                               else self.tc.awp_warmup)

    def _seed_rank(self, step: int) -> None:
        """Under DDP every rank starts from rank 0's RNG state (the seed, or a checkpoint that
        rank 0 wrote), so without this each rank would draw the same attack noise for its own
        share of the batch. Rank 0 keeps the stream a one-process run draws."""
        if self.world > 1 and self.rank > 0:
            torch.manual_seed((self.settings.seed * 7919 + self.rank) * 1_000_003 + step)

    # ------------------------------------------------------------------ data order
    def _steps_per_epoch(self) -> int:
        n_extra = len(self.extra_data) if self.extra_data is not None else 0
        fraction = self.settings.extra_fraction if n_extra else 0.0
        return batches_per_epoch(len(self.train_data), n_extra, self.tc.batch_size, fraction)

    def _epoch_batches(self, epoch: int):
        g = torch.Generator().manual_seed(self.settings.seed * 1_000_003 + epoch)
        if self.extra_data is not None and self.settings.extra_fraction > 0:
            yield from mix_batches(len(self.train_data), len(self.extra_data),
                                   self.tc.batch_size, self.settings.extra_fraction, g)
        else:
            for idx in iterate_batches(len(self.train_data), self.tc.batch_size, shuffle=True,
                                       generator=g):
                yield idx, None

    def _batch(self, real_idx, extra_idx):
        if self.world > 1:  # every rank takes its share of the same global batch
            real_idx = real_idx[self.rank::self.world]
            extra_idx = extra_idx[self.rank::self.world] if extra_idx is not None else None
        d = self.train_data
        x, y = d.images[real_idx.to(d.images.device)], d.labels[real_idx.to(d.labels.device)]
        if extra_idx is not None and len(extra_idx):
            e = self.extra_data
            x = torch.cat([x, e.images[extra_idx.to(e.images.device)]])
            y = torch.cat([y, e.labels[extra_idx.to(e.labels.device)]])
        x = x.to(self.device, torch.float32).div_(255)
        x = self.augment(x)
        if self.tc.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(self.device)

    # ------------------------------------------------------------------ steps
    def _lr(self, step: int) -> float:
        spe = self.steps_per_epoch * self.replays  # optimiser steps per pass over the data
        return lr_at(step, total_steps=self.total_steps, base_lr=self.tc.lr,
                     schedule=self.tc.schedule, warmup_steps=round(self.tc.warmup_epochs * spe),
                     milestones=[round(m * spe) for m in self.tc.milestones], gamma=self.tc.gamma)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        if self.free is not None:
            return self._free_step(x, y)
        lr = self._lr(self.state.step)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        self.model.train()
        counter = self.state.passes if self.world == 1 else self._epoch_passes
        with count_passes(self.model, counter):
            x_adv = None
            if self.adversary is not None:
                # With mixture BN the adversary attacks through the adversarial BN set.
                target = Routed(self.model, "adv") if self.mixbn else self.model
                # Only the adversarial share is attacked: the clean rows are not perturbed, so
                # attacking them would only cost passes.
                n_clean = clean_count(self.tc.clean_fraction, x.shape[0])
                if n_clean == 0:
                    x_adv = self.adversary(target, x, y).x_adv
                elif n_clean < x.shape[0]:
                    x_adv = torch.cat([x[:n_clean],
                                       self.adversary(target, x[n_clean:], y[n_clean:]).x_adv])
                else:
                    x_adv = x
            awp_diff = None
            if self.awp is not None and self.state.epoch >= self.awp_warmup:
                # Wu et al.: the loss and its gradient at w + v, the update applied to w.
                with count_passes(self.awp.proxy, counter):  # its passes cost FLOPs too
                    awp_diff = self.awp.compute(self.model, x, x_adv, y)
                self.awp.add(self.model, awp_diff, 1.0)
            with self._autocast():
                loss, logits = self.objective.loss(
                    self.train_model, x, x_adv, y, label_smoothing=self.tc.label_smoothing,
                    clean_fraction=self.tc.clean_fraction, beta=self.tc.beta)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        if self.tc.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.tc.grad_clip)
        self.optimizer.step()
        if awp_diff is not None:
            self.awp.add(self.model, awp_diff, -1.0)
        if self.ema is not None:
            self.ema.update(self.model, self.state.step)
        self.state.step += 1
        acc = (logits.argmax(1) == y).float().mean()
        return float(loss.detach()), float(acc)

    def _free_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """Free AT (Shafahi et al., 2019): m replays of one batch, each one forward and one
        backward pass updating the weights (an optimiser step) and the persistent δ."""
        self.model.train()
        counter = self.state.passes if self.world == 1 else self._epoch_passes
        for _ in range(self.replays):
            lr = self._lr(self.state.step)
            for g in self.optimizer.param_groups:
                g["lr"] = lr
            with count_passes(self.model, counter):
                with self._autocast():
                    loss, logits, d = self.free.loss(self.train_model, x, y,
                                                     self.tc.label_smoothing)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
            self.free.step(d)
            if self.tc.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.tc.grad_clip)
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.model, self.state.step)
            self.state.step += 1
        acc = (logits.argmax(1) == y).float().mean()
        return float(loss.detach()), float(acc)

    def _autocast(self):
        """bf16 mixed precision on GPU for the update; attacks and validation stay in fp32 so
        that no robustness number depends on reduced precision."""
        import contextlib

        if self.tc.precision == "bf16" and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ validation
    def validate(self, model: nn.Module | None = None, energies_on_train: bool = True) -> dict:
        """Clean, FGSM and PGD accuracy on the validation split; natural and adversarial
        energies on validation and on a fixed training subset of the same size
        (training/validation.py)."""
        model = model or self.model
        route = self.settings.test_bn if is_mixbn(model) else None
        return validate(model, self.val_data, self.train_data, self.threat, self.tc,
                        self.device, route, energies_on_train)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self) -> None:
        save_training(self.run, self.model, self.optimizer, self.state, self.free, self.ema)

    def resume(self) -> None:
        self.state = load_training(self.run, self.device, self.model, self.optimizer,
                                   self.free, self.ema)
        self._seed_rank(self.state.step)

    def _save_weights(self, name: str, model: nn.Module) -> None:
        from ..models import save_model

        if self.run.writer:
            save_model(model, self.run.file(name))

    # ------------------------------------------------------------------ the loop
    def fit(self) -> TrainState:
        tc, s = self.tc, self.state
        ckpt_every = tc.checkpoint_every
        while s.epoch < self.epochs:
            epoch = s.epoch
            t0 = time.time()
            loss_sum = acc_sum = 0.0
            seen = 0
            batches = list(self._epoch_batches(epoch))
            # start=: batches done before a resume count toward the total, not the rate.
            with progress_bar(f"epoch {epoch + 1}/{self.epochs}", total=len(batches), unit="batch",
                              quiet=self.quiet, start=s.batch) as bar:
                for real_idx, extra_idx in batches[s.batch:]:
                    x, y = self._batch(real_idx, extra_idx)
                    loss, acc = self.train_step(x, y)
                    loss_sum += loss * len(y)
                    acc_sum += acc * len(y)
                    seen += len(y)
                    s.batch += 1
                    bar.advance(1, info=f"loss {loss:.3f} acc {acc:.3f}")
                    if ckpt_every and s.step % ckpt_every == 0 and s.batch < len(batches):
                        s.wall_seconds += time.time() - t0
                        t0 = time.time()
                        self.checkpoint()
            train_time = time.time() - t0
            if self.world > 1:
                # Metrics and pass counts are summed over ranks; every rank keeps the totals.
                fwd, bwd, loss_sum, acc_sum, seen = all_reduce_sum(
                    [self._epoch_passes.forward, self._epoch_passes.backward, loss_sum,
                     acc_sum, seen])
                s.passes.forward += int(fwd)
                s.passes.backward += int(bwd)
                self._epoch_passes = PassCount()
            s.epoch += 1
            s.batch = 0
            record = {"epoch": s.epoch, "step": s.step, "lr": self._lr(max(0, s.step - 1)),
                      "train_loss": loss_sum / max(1, seen),
                      "train_accuracy": acc_sum / max(1, seen),
                      "throughput": seen / max(train_time, 1e-9),
                      "train_flops": s.passes.flops(self.forward_flops), **s.passes.as_dict()}
            if s.epoch % tc.val_every == 0 or s.epoch == self.epochs:
                record.update(self.validate())
                if catastrophic_overfitting(self.tc.objective, self._last_val, record):
                    record["catastrophic_overfitting"] = True
                self._last_val = {k: record[k] for k in ("val_robust_accuracy",
                                                         "val_fgsm_accuracy") if k in record}
                if self.ema is not None:
                    ema_val = self.validate(self.ema.module, energies_on_train=False)
                    record.update({f"ema_{k}": v for k, v in ema_val.items()
                                   if k.endswith("accuracy")})
                rob = record.get("val_robust_accuracy", -1.0)
                if rob > s.best_robust:
                    # Robust overfitting makes the last epoch worse than the best (Rice et al.).
                    s.best_robust, s.best_epoch = rob, s.epoch
                    self._save_weights("best.safetensors", self.model)
            if s.epoch in tc.metric_epochs and self.val_data is not None:
                record.update(self._scaling_metrics())
            s.wall_seconds += time.time() - t0
            record["wall_seconds"] = s.wall_seconds
            self.run.log(record)
            self._save_weights("model.safetensors", self.model)
            if self.ema is not None:
                self._save_weights("model_ema.safetensors", self.ema.module)
            self.checkpoint()
        return s

    def _scaling_metrics(self) -> dict:
        """The scaling-law fit's points (training/scaling_metrics.py) on the validation split,
        held out of training; D is the images processed so far."""
        from .scaling_metrics import scaling_metrics

        target = Routed(self.model, self.settings.test_bn) if self.mixbn else self.model
        out = scaling_metrics(target, self.val_data, self.threat, self.tc.metric_n, self.device)
        out["images_processed"] = self.state.step * self.tc.batch_size
        return out


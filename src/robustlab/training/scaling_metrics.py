"""The metrics a scaling-law fit reads, taken at the config's ``train.metric_epochs``.

Bartoldson et al. (ICML 2024) fit the *adversarial test loss*: clean cross-entropy plus 5 × the
TRADES KL term, ``kl_div(log p(x_adv), p(x))`` in PyTorch's argument order (the sum over classes
of p(x)·log(p(x)/p(x_adv)); β = 5 as in their code), with adversarial examples from PGD-40 on
the Carlini-Wagner margin loss, step 2.5·ε/40 (Madry et al.'s rule), on a fixed subset of
held-out images: the first ``train.metric_n`` examples of the validation split, so every epoch
and every run sees the same ones. The authors take a test subset; robustlab takes images held
out of training in the same way but keeps the test split for the final evaluation, so the
metrics a fit (and any choice made from it) reads never touch the images of the reported
accuracy. PGD accuracy and clean accuracy come from the same pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..attacks.base import model_mode
from ..attacks.pgd import PGD
from ..data.loader import iterate_batches

KL_WEIGHT = 5.0   # the authors' β for the adversarial test loss
PGD_STEPS = 40


@torch.no_grad()
def _logits(model, x):
    return model(x)


def scaling_metrics(model, data, threat, n: int, device, batch_size: int = 500) -> dict:
    """adv_test_loss, pgd_accuracy (PGD-40 on the CW loss) and clean_accuracy on the first
    ``n`` examples of ``data`` (an ImageData, uint8 images)."""
    n = len(data) if n <= 0 else min(n, len(data))
    pgd = PGD(threat, steps=PGD_STEPS, step_size=2.5 * threat.eps / PGD_STEPS, loss="cw",
              random_start=True, early_stop=False)
    ce_sum = kl_sum = clean_ok = adv_ok = 0.0
    with model_mode(model, False):
        for idx in iterate_batches(n, batch_size, shuffle=False):
            x = data.images[idx.to(data.images.device)].to(device, torch.float32) / 255
            y = data.labels[idx.to(data.labels.device)].to(device)
            nat = _logits(model, x)
            adv = _logits(model, pgd(model, x, y).x_adv)
            ce_sum += float(F.cross_entropy(nat, y, reduction="sum"))
            kl_sum += float(F.kl_div(F.log_softmax(adv, 1), F.softmax(nat, 1),
                                     reduction="sum"))
            clean_ok += float((nat.argmax(1) == y).sum())
            adv_ok += float((adv.argmax(1) == y).sum())
    return {"adv_test_loss": (ce_sum + KL_WEIGHT * kl_sum) / n, "adv_test_ce": ce_sum / n,
            "adv_test_kl": kl_sum / n, "pgd_accuracy": adv_ok / n,
            "clean_accuracy": clean_ok / n, "metric_n": n,
            "metric_attack": f"pgd-{PGD_STEPS}-cw"}

"""MART, Misclassification-Aware adveRsarial Training (Wang, Zou, Yi, Bailey, Ma and Gu,
ICLR 2020). Defaults from the authors' code (github.com/YisenWang/MART): β = 6, a 10-step PGD
with CE at step 2/255 for ε = 8/255 (here ε/4 for any ε), and their small constants inside the
logarithms (1e-12, 1.0001) and in the weight (1.0000001).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mart_loss(model, x, x_adv, y, *, beta: float = 6.0, **_):
    """BCE(p(x_adv), y) + β · mean over the batch of KL(p(x) ‖ p(x_adv)) · (1 − p(x)_y).

    The boosted CE is CE(f(x_adv), y) − log(1 − p(x_adv)_k), k the most likely wrong class; the
    weight 1 − p(x)_y is not detached, so the gradient also pushes the natural confidence up (as
    in the authors' code)."""
    from .objectives import forward  # objectives imports this module for its registry

    logits_nat = forward(model, x, "clean")
    logits_adv = forward(model, x_adv, "adv")
    p_adv = F.softmax(logits_adv, dim=1)
    p_nat = F.softmax(logits_nat, dim=1)
    # The most probable class other than y on the adversarial input.
    top2 = p_adv.topk(2, dim=1).indices
    wrong = torch.where(top2[:, 0] == y, top2[:, 1], top2[:, 0])
    bce = F.cross_entropy(logits_adv, y) \
        + F.nll_loss(torch.log(1.0001 - p_adv + 1e-12), wrong)
    kl = (p_nat * (torch.log(p_nat + 1e-12) - torch.log(p_adv + 1e-12))).sum(dim=1)
    p_true = p_nat.gather(1, y[:, None]).squeeze(1)
    loss = bce + beta * (kl * (1.0000001 - p_true)).mean()
    return loss, logits_adv


def make_adversary(threat, attack_cfg, train_cfg):
    from ..attacks.pgd import PGD

    # MART's code: PGD-10 on CE, step 2/255 at eps 8/255 (eps / 4); they start from
    # 0.001 N(0, 1), PGD here from a uniform point of the ball.
    step = attack_cfg.step_size or threat.eps / 4
    return PGD(threat, steps=attack_cfg.steps, step_size=step, restarts=attack_cfg.restarts,
               random_start=True, early_stop=False)

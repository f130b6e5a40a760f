"""Simulated annotators, so the statistics can be checked against a known truth.

Each item has a latent perceived class of its perturbed version: the model's label for a share
``invalid_share`` of the items (drawn once per seed), the true label otherwise; the clean version
is always seen as the true label. An annotator of accuracy a answers the perceived class with
probability a, "can't tell" with probability ``cant_tell``, and otherwise a uniformly random
other class. Attention checks are answered with ``check_accuracy``. Answers go through
:meth:`Store.submit`, the same path as the web form."""

from __future__ import annotations

import numpy as np

from .storage import CANT_TELL, Store


def perceived_adv(manifest: dict, invalid_share: float, seed: int) -> dict[str, bool]:
    """item id -> whether its perturbed version is truly seen as the model's label."""
    rng = np.random.default_rng(seed)
    return {it["id"]: bool(rng.random() < invalid_share) for it in manifest["items"]}


def expected(manifest: dict, invalid: dict[str, bool], accuracy: float,
             cant_tell: float) -> dict:
    """The shares the simulation produces in expectation over annotators, given the items."""
    k = len(manifest["classes"])
    other = (1 - accuracy - cant_tell) / (k - 1)
    f = float(np.mean(list(invalid.values())))
    share_model = f * accuracy + (1 - f) * other
    share_true = (1 - f) * accuracy + f * other
    frac = manifest["n_fooled"] / manifest["n_eval"]
    return {"clean_accuracy": accuracy, "share_model": share_model, "share_true": share_true,
            "share_neither": 1 - share_model - share_true,
            "human_adjusted_robust_accuracy": manifest["robust_accuracy"] + frac * share_model}


def simulate(store: Store, k: int, accuracy: float = 0.9, invalid_share: float = 0.3,
             cant_tell: float = 0.02, check_accuracy: float = 1.0, seed: int = 0) -> dict:
    m = store.manifest
    if not 0 <= cant_tell <= 1 - accuracy:
        raise ValueError("need 0 <= cant_tell <= 1 - accuracy")
    n_cls = len(m["classes"])
    items = {it["id"]: it for it in m["items"]}
    checks = {c["id"]: c for c in m["checks"]}
    invalid = perceived_adv(m, invalid_share, seed)
    rng = np.random.default_rng(seed + 1)

    def answer(seen: int, acc: float) -> int:
        u = rng.random()
        if u < acc:
            return seen
        if u < acc + cant_tell:
            return CANT_TELL
        return int(rng.choice([c for c in range(n_cls) if c != seen]))

    for _ in range(k):
        token = store.new_participant(simulated=True)
        for a in store.assignments(token):
            if a["version"] == "check":
                ans = answer(checks[a["item_id"]]["true_label"], check_accuracy)
            else:
                it = items[a["item_id"]]
                seen = it["model_label"] if a["version"] == "adv" and invalid[it["id"]] \
                    else it["true_label"]
                ans = answer(seen, accuracy)
            store.submit(token, a["handle"], a["nonce"], ans, rt_ms=int(rng.integers(300, 3000)))
    return {"invalid": invalid, "expected": expected(m, invalid, accuracy, cant_tell)}

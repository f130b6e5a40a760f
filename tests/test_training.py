"""The trainer: objectives against hand computations, FLOP accounting, exact resume after a
real kill, DDP against one process, and robust training beating standard training."""

import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import tiny_config
from safetensors.torch import load_file
from torch import nn

from robustlab.config import load_config
from robustlab.experiments.train import train_experiment
from robustlab.training.objectives import (
    adversarial_ce_loss,
    ce_loss,
    trades_loss,
    weat_loss,
    weat_nat_loss,
    weat_weights,
)

ROOT = Path(__file__).resolve().parents[1]


def _softmax(z):
    e = [math.exp(v) for v in z]
    s = sum(e)
    return [v / s for v in e]


def _ce(z, y):
    return -math.log(_softmax(z)[y])


def _kl(zp, zq):
    p, q = _softmax(zp), _softmax(zq)
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


class Fixed(nn.Module):
    """Logits are the input itself: losses can be checked against hand-written formulas."""

    def forward(self, x):
        return x.flatten(1)


LOGITS = [[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]]
LOGITS_ADV = [[0.5, 1.5, -0.5], [1.0, -1.0, 0.0]]
Y = [0, 2]


def test_objective_losses_match_hand_computation():
    m = Fixed()
    x, xa, y = torch.tensor(LOGITS), torch.tensor(LOGITS_ADV), torch.tensor(Y)
    ce = sum(_ce(z, t) for z, t in zip(LOGITS, Y)) / 2
    ce_adv = sum(_ce(z, t) for z, t in zip(LOGITS_ADV, Y)) / 2
    kl = [_kl(p, q) for p, q in zip(LOGITS, LOGITS_ADV)]
    assert ce_loss(m, x, xa, y)[0].item() == pytest.approx(ce, rel=1e-5)
    assert adversarial_ce_loss(m, x, xa, y)[0].item() == pytest.approx(ce_adv, rel=1e-5)
    half = adversarial_ce_loss(m, x, xa, y, clean_fraction=0.5)[0].item()
    assert half == pytest.approx((_ce(LOGITS[0], 0) + _ce(LOGITS_ADV[1], 2)) / 2, rel=1e-5)
    assert trades_loss(m, x, xa, y, beta=6.0)[0].item() == pytest.approx(
        ce + 6.0 * sum(kl) / 2, rel=1e-5)
    # WEAT: w = 1 / log(1 + exp(|E(x)|)), E(x) = -logsumexp of the natural logits.
    w = [1 / math.log(1 + math.exp(abs(-math.log(sum(math.exp(v) for v in z)))))
         for z in LOGITS]
    assert weat_weights(x).tolist() == pytest.approx(w, rel=1e-5)
    weat = (sum(wi * _ce(z, t) for wi, z, t in zip(w, LOGITS_ADV, Y)) / 2
            + 6.0 * sum(wi * k for wi, k in zip(w, kl)) / 2)
    assert weat_loss(m, x, xa, y, beta=6.0)[0].item() == pytest.approx(weat, rel=1e-5)
    weat_nat = (sum(wi * _ce(z, t) for wi, z, t in zip(w, LOGITS, Y)) / 2
                + 6.0 * sum(wi * k for wi, k in zip(w, kl)) / 2)
    assert weat_nat_loss(m, x, xa, y, beta=6.0)[0].item() == pytest.approx(weat_nat, rel=1e-5)


def _weights(run_path):
    return load_file(str(run_path / "model.safetensors"))


def test_flops_of_pgd_at_are_counted_from_passes(tmp_path):
    from robustlab import models

    cfg = load_config(tiny_config(tmp_path, train={"epochs": 1, "objective": "pgd-at",
                                                   "attack": {"steps": 3, "eps": 0.1}}))
    run = train_experiment(cfg, evaluate_test=False)
    r = run.read_results()
    # cnn-small on 1×28×28, 4 classes, by hand (2 × multiply-adds of conv and linear layers):
    convs = [(26 * 26, 1 * 9, 32), (24 * 24, 32 * 9, 32), (10 * 10, 32 * 9, 64),
             (8 * 8, 64 * 9, 64)]
    macs = sum(p * k * c for p, k, c in convs) + 1024 * 200 + 200 * 200 + 200 * 4
    assert r["inference_flops_per_example"] == 2 * macs
    n_train = 384 - 64
    # Every training example: 3 attack steps (forward + backward each) and one training step.
    assert r["train_backward_examples"] == (3 + 1) * n_train
    # Forwards without a backward: PGD's bookkeeping of the best restart and its final check.
    assert (3 + 1) * n_train <= r["train_forward_examples"] <= (3 + 4) * n_train
    assert r["train_flops"] == 2 * macs * (r["train_forward_examples"]
                                           + 2 * r["train_backward_examples"])
    assert models.count_flops(models.create("cnn-small", 4, 1, norm="none", image_size=28),
                              (1, 28, 28)) == 2 * macs


def test_clean_share_is_not_attacked_and_goes_through_one_bn_as_one_batch(tmp_path):
    """Xie and Yuille's one-BN mixture: with ``clean_fraction`` the clean rows are not attacked
    (so they cost no attack passes), and with a single batch norm clean and adversarial rows are
    normalised together, by the mixture's statistics, not by each part's own."""
    from robustlab import models
    from robustlab.errors import UserError

    cfg = load_config(tiny_config(tmp_path, train={"epochs": 1, "objective": "pgd-at",
                                                   "clean_fraction": 0.5,
                                                   "attack": {"steps": 3, "eps": 0.1}}))
    r = train_experiment(cfg, evaluate_test=False).read_results()
    n_train = 384 - 64
    assert r["train_backward_examples"] == 3 * n_train // 2 + n_train

    torch.manual_seed(0)
    net = models.create("resnet-10", 4, 1, norm="bn", image_size=28, width=4).train()
    x, xa = torch.rand(8, 1, 28, 28), torch.rand(8, 1, 28, 28)
    y = torch.randint(0, 4, (8,))
    joint = torch.nn.functional.cross_entropy(net(torch.cat([x[:4], xa[4:]])), y)
    apart = torch.nn.functional.cross_entropy(torch.cat([net(x[:4]), net(xa[4:])]), y)
    got = adversarial_ce_loss(net, x, xa, y, clean_fraction=0.5)[0]
    assert abs(joint - apart) > 1e-4  # the two normalisations do differ on this batch
    assert torch.allclose(got, joint, atol=1e-6)

    (tmp_path / "t").mkdir()
    bad = load_config(tiny_config(tmp_path / "t", train={"epochs": 1, "objective": "trades",
                                                         "clean_fraction": 0.5}))
    with pytest.raises(UserError, match="clean_fraction"):
        train_experiment(bad, evaluate_test=False)


KILLER = textwrap.dedent("""
    import os, signal, sys
    from robustlab.training import trainer
    original = trainer.Trainer.train_step
    def step(self, x, y):
        out = original(self, x, y)
        if self.state.step == int(os.environ["KILL_AT"]):
            os.kill(os.getpid(), signal.SIGKILL)  # a real kill: no cleanup, no finally
        return out
    trainer.Trainer.train_step = step
    from robustlab.cli.main import main
    sys.exit(main(sys.argv[1:]))
""")


def test_killed_run_resumes_to_identical_weights(tmp_path):
    cfg_path = tiny_config(tmp_path, train={"epochs": 2, "objective": "fgsm-rs",
                                            "checkpoint_every": 4, "ema_decay": 0.9},
                           data={"crop_padding": 2})
    full = train_experiment(load_config(cfg_path))
    # 320 training examples / 32 = 10 steps an epoch: step 13 is mid-way through epoch 2,
    # one step after the checkpoint at step 12.
    env = {**os.environ, "KILL_AT": "13", "ROBUSTLAB_QUIET": "1"}
    runs2 = tmp_path / "runs2"
    proc = subprocess.run([sys.executable, "-c", KILLER, "train", str(cfg_path), "--runs-dir",
                           str(runs2)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    (killed,) = [d for d in runs2.iterdir() if d.is_dir()]
    assert (killed / "checkpoint" / "trainer_state.pt").exists()
    assert not (killed / "results.json").exists()
    state = torch.load(killed / "checkpoint" / "trainer_state.pt", weights_only=True)
    assert state["step"] == 12 and state["epoch"] == 1 and state["batch"] == 2
    from robustlab.cli.main import main

    assert main(["train", "--resume", str(killed), "--quiet"]) == 0
    a, b = _weights(full.path), _weights(killed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ea = load_file(str(full.path / "model_ema.safetensors"))
    eb = load_file(str(killed / "model_ema.safetensors"))
    assert all(torch.equal(ea[k], eb[k]) for k in ea)
    assert full.read_results()["train_flops"] == \
        __import__("json").loads((killed / "results.json").read_text())["train_flops"]


def _torchrun(args, port, env=None, script=None):
    env = {**os.environ, "ROBUSTLAB_QUIET": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    head = [script] if script else ["-m", "robustlab"]
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-port", str(port), *head, *args], env=env, capture_output=True, text=True,
        timeout=300, cwd=ROOT)


def test_two_process_free_run_resumes_exactly(tmp_path):
    """Free AT under torchrun: each rank's δ (its own shard of the batch) is in the checkpoint,
    so a killed two-process run resumes to the uninterrupted run's weights bit for bit."""
    cfg_path = tiny_config(tmp_path, train={"epochs": 4, "objective": "free", "free_replays": 2,
                                            "lr": 0.02, "schedule": "constant"})
    full = _torchrun(["train", str(cfg_path), "--runs-dir", str(tmp_path / "full")], 29534)
    assert full.returncode == 0, full.stderr[-3000:]
    killer = tmp_path / "killer.py"
    killer.write_text(KILLER)
    # 320 examples / 32 = 10 batches a pass, 2 replays (steps) each: step 26 is in the second pass,
    # after the checkpoint that ends the first.
    cut = _torchrun(["train", str(cfg_path), "--runs-dir", str(tmp_path / "cut")], 29535,
                    env={"KILL_AT": "26"}, script=str(killer))
    assert cut.returncode != 0
    (run_full,) = [d for d in (tmp_path / "full").iterdir() if d.is_dir()]
    (killed,) = [d for d in (tmp_path / "cut").iterdir() if d.is_dir()]
    assert not (killed / "results.json").exists()
    state = torch.load(killed / "checkpoint" / "trainer_state.pt", weights_only=True)
    assert state["epoch"] == 1 and len(state["free_delta_per_rank"]) == 2
    d0, d1 = state["free_delta_per_rank"]
    assert not torch.equal(d0, d1)  # two ranks, two perturbations
    again = _torchrun(["train", "--resume", str(killed)], 29536)
    assert again.returncode == 0, again.stderr[-3000:]
    a, b = _weights(run_full), _weights(killed)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_two_process_ddp_matches_one_process(tmp_path):
    cfg_path = tiny_config(tmp_path, train={"epochs": 1, "objective": "ce", "lr": 0.02,
                                            "schedule": "constant"})
    one = train_experiment(load_config(cfg_path))
    runs2 = tmp_path / "runs-ddp"
    proc = _torchrun(["train", str(cfg_path), "--runs-dir", str(runs2)], 29533)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (ddp,) = [d for d in runs2.iterdir() if d.is_dir()]
    a, b = _weights(one.path), _weights(ddp)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
    r1, r2 = one.read_results(), __import__("json").loads((ddp / "results.json").read_text())
    assert r2["processes"] == 2
    # The same examples went through the same passes, split over two ranks.
    assert r1["train_forward_examples"] == r2["train_forward_examples"]
    assert r1["train_backward_examples"] == r2["train_backward_examples"]

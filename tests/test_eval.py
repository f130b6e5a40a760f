"""`robustlab eval` and `robustlab.evaluate`: suites on a real trained model, exact resume after
an interruption, gradient-masking flags, and clear errors for bad threat-model input."""

import json

import pytest
import torch
from helpers import tiny_config
from torch import nn

from robustlab import data, load_model
from robustlab.attacks.autoattack import build_suite
from robustlab.attacks.base import Attack, AttackResult
from robustlab.attacks.cw import CarliniWagnerL2
from robustlab.cli.main import build_parser, main
from robustlab.config import load_config
from robustlab.evaluation import evaluate
from robustlab.evaluation.masking import masking_checks
from robustlab.experiments import evaluate as eval_exp
from robustlab.experiments.train import train_experiment
from robustlab.threat import LpThreat


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    cfg = load_config(tiny_config(tmp, train={"epochs": 3, "objective": "ce"}))
    run = train_experiment(cfg)
    test = data.load("npz", "test", path=cfg.data.test_path)
    return run.path, test, tmp


def _eval_args(run_path, tmp, *extra):
    return ["eval", str(run_path), "--runs-dir", str(tmp / "eval-runs"), "--n", "96",
            "--eps", "0.25", "--quiet", *extra]


def test_suites_break_a_standard_model(trained):
    run_path, test, _ = trained
    model = load_model(run_path)
    x, y = test.float_images()[:96], test.labels[:96]
    threat = LpThreat("linf", 0.25)
    clean = evaluate(model, x, y, threat, []).clean_accuracy
    assert clean > 0.9
    res = evaluate(model, x, y, threat, build_suite("fast", threat, num_classes=4))
    assert res.robust_accuracy < 0.2 < clean
    assert [s["attack"] for s in res.stages] == ["apgd-ce-50", "apgd-t3-50"]
    # Cumulative: each stage can only lower robust accuracy.
    accs = [s["robust_accuracy"] for s in res.stages]
    assert accs == sorted(accs, reverse=True)
    assert res.passes["backward_examples"] > 0


class _BackwardFGSM(Attack):
    """One signed-gradient step taken with ``loss.backward()``, as a user's own attack might:
    with trainable weights that would also fill the model's ``.grad``."""

    name = "backward-fgsm"

    def __init__(self, eps: float):
        self.eps, self.threat = eps, LpThreat("linf", eps)

    def perturb(self, model, x, y):
        xg = x.clone().requires_grad_(True)
        nn.functional.cross_entropy(model(xg), y).backward()
        x_adv = (x + self.eps * xg.grad.sign()).clamp(0, 1).detach()
        with torch.no_grad():
            return AttackResult(x_adv, model(x_adv).argmax(1) != y)


def test_evaluation_freezes_the_weights_and_restores_their_flags(trained):
    """During evaluate() no parameter requires a gradient, so an attack that calls
    ``.backward()`` leaves the model's ``.grad`` untouched; afterwards every flag is as it was,
    a frozen parameter included; ``freeze_weights=False`` leaves them alone. C&W, which steps
    with Adam, fills no weight gradient even outside evaluate()."""
    run_path, test, _ = trained
    model = load_model(run_path)
    params = list(model.parameters())
    params[0].requires_grad_(False)
    before = [p.requires_grad for p in params]
    seen = []
    model.register_forward_hook(
        lambda *a: seen.append(any(p.requires_grad for p in model.parameters())))
    x, y = test.float_images()[:32], test.labels[:32]
    threat = LpThreat("linf", 0.25)
    res = evaluate(model, x, y, threat, [_BackwardFGSM(0.25)])
    assert res.robust_accuracy < res.clean_accuracy
    assert seen and not any(seen)
    assert all(p.grad is None for p in params)
    assert [p.requires_grad for p in params] == before and before.count(True) == len(params) - 1
    # A model that trains itself in its forward pass can keep its weights as they are; then
    # the same attack does fill .grad (so the check above can fail).
    seen.clear()
    evaluate(model, x, y, threat, [_BackwardFGSM(0.25)], freeze_weights=False)
    assert seen and all(seen)
    assert any(p.grad is not None for p in params)
    for p in params:
        p.grad = None
    CarliniWagnerL2(steps=5, binary_search_steps=1)(model, x[:8], y[:8])
    assert all(p.grad is None for p in params)


def test_apgd_gets_several_batches_and_passes_them_in_full_chunks(trained, monkeypatch):
    """evaluate() hands APGD PACKED_BATCHES batches per call; APGD passes at most a batch at a
    time, and its restarts take the survivors of all of them together, so it makes fewer, fuller
    passes than batch by batch; its setting is restored afterwards."""
    import sys

    ev = sys.modules["robustlab.evaluation.evaluate"]
    run_path, test, _ = trained
    model = load_model(run_path)
    sizes = []
    model.register_forward_hook(lambda m, inp, out: sizes.append(len(inp[0])))
    x, y = test.float_images()[:96], test.labels[:96]
    threat = LpThreat("linf", 0.3)
    attack = build_suite("custom", threat, attacks=["apgd-ce"])[0]
    attack.restarts, attack.steps = 3, 5
    calls = {}
    for pack in (1, 4):
        monkeypatch.setattr(ev, "PACKED_BATCHES", pack)
        sizes.clear()
        res = evaluate(model, x, y, threat, [attack], batch_size=16)
        calls[pack] = list(sizes)
        assert 0 < res.robust_accuracy < res.clean_accuracy
    assert max(calls[4]) <= 16 and max(calls[1]) <= 16
    assert len(calls[4]) < len(calls[1])
    assert attack.chunk_size == 0


def test_channels_last_evaluation_agrees_and_restores_the_layout(trained):
    run_path, test, _ = trained
    model = load_model(run_path)
    x, y = test.float_images()[:64], test.labels[:64]
    threat = LpThreat("linf", 0.15)
    suite = build_suite("custom", threat, attacks=["pgd"])
    nchw = evaluate(model, x, y, threat, suite, channels_last=False)
    nhwc = evaluate(model, x, y, threat, suite, channels_last=True)
    # The same convolution in another summation order: at most a borderline example may differ.
    assert abs(nchw.robust_accuracy - nhwc.robust_accuracy) <= 1 / 64
    assert 0 < nhwc.robust_accuracy < nhwc.clean_accuracy
    four_d = [p for p in model.parameters() if p.dim() == 4]
    assert four_d and all(p.is_contiguous() for p in four_d)


def test_eval_cli_writes_results_and_resumes_exactly(trained, monkeypatch, capsys):
    run_path, _, tmp = trained
    args = _eval_args(run_path, tmp, "--version", "custom", "--attacks", "pgd,apgd-ce",
                      "--batch-size", "16", "--save-adv")
    assert main(args) == 0
    first = sorted((tmp / "eval-runs").glob("eval-*"))[-1]
    assert str(first) in capsys.readouterr().out
    full = json.loads((first / "results.json").read_text())
    assert full["n_examples"] == 96 and full["robust_accuracy"] < full["clean_accuracy"]
    assert len(full["broken_by"]) == 96

    # Interrupt the same evaluation after a few (attack, batch) units.
    calls = {"n": 0}
    real = eval_exp.atomic_write

    def flaky(path, write):
        real(path, write)
        if str(path).endswith(".pt"):
            calls["n"] += 1
            if calls["n"] == 5:
                raise KeyboardInterrupt

    monkeypatch.setattr(eval_exp, "atomic_write", flaky)
    assert main(args) == 130
    monkeypatch.setattr(eval_exp, "atomic_write", real)
    interrupted = sorted((tmp / "eval-runs").glob("eval-*"))[-1]
    assert not (interrupted / "results.json").exists()
    assert list(interrupted.glob("eval_state-*.pt"))
    assert main(["eval", "--resume", str(interrupted), "--quiet"]) == 0
    resumed = json.loads((interrupted / "results.json").read_text())
    assert resumed["broken_by"] == full["broken_by"]
    assert resumed["robust_accuracy"] == full["robust_accuracy"]
    assert not list(interrupted.glob("eval_state-*.pt"))
    adv = __import__("numpy").load(interrupted / "adversarial.npz")
    assert adv["image"].dtype == "float32" and adv["image"].shape[0] == 96
    assert (interrupted / "report.html").read_text().count("data:image/png;base64") >= 1


class HiddenGradients(nn.Module):
    """Input quantisation: the classic masked-gradient defence (Athalye et al., 2018).
    round() has zero gradient almost everywhere, so gradient attacks see a flat landscape."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(torch.round(x * 4) / 4)


def test_a_model_that_hides_its_gradients_is_flagged(trained):
    run_path, test, _ = trained
    model = HiddenGradients(load_model(run_path)).eval()
    x, y = test.float_images()[:64], test.labels[:64]
    threat = LpThreat("linf", 0.25)
    suite = build_suite("custom", threat, attacks=["apgd-ce"])
    suite.append(build_suite("custom", threat, attacks=["square"])[0])
    suite[-1].n_queries = 300
    res = evaluate(model, x, y, threat, suite)
    m = masking_checks(model, x, y, threat, res, n_probe=32)
    flags = {f["check"] for f in m["flags"]}
    assert "gradients" in flags and m["checks"]["gradients"]["zero_fraction"] > 0.9
    assert "unbounded" in flags or "black_box" in flags
    # The honest model behind it raises no gradient flag.
    plain = masking_checks(load_model(run_path), x, y, threat,
                           evaluate(load_model(run_path), x, y, threat, suite[:1]), n_probe=32)
    assert not {f["check"] for f in plain["flags"]} & {"gradients", "unbounded"}


@pytest.mark.parametrize("extra, words", [
    (["--eps", "-0.1"], "eps must be >= 0"),
    (["--norm", "l3"], "unknown norm"),
    (["--version", "custom", "--attacks", "pgd,magic"], "unknown attack 'magic'"),
    (["--version", "custom"], "needs --attacks"),
])
def test_bad_threat_model_input_is_a_clear_error(trained, capsys, extra, words):
    run_path, _, tmp = trained
    assert main(_eval_args(run_path, tmp, *extra)) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_eval_help_documents_every_option():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["eval"]
    text = sub.format_help()
    for action in sub._actions:
        for opt in action.option_strings:
            assert opt in text
        if action.option_strings and action.dest != "help":
            assert action.help, f"{action.option_strings} has no help"


def test_torchrun_sharded_eval_matches_one_process(trained):
    """Two Gloo ranks each evaluate a shard and rank 0 merges: with a deterministic attack
    (FGSM without random start) the merged result equals one process's, example by example."""
    import os
    import subprocess
    import sys

    run_path, _, tmp = trained
    args = ["--num-examples", "64", "--eps", "0.25", "--version", "custom", "--attacks", "fgsm",
            "--no-masking-checks", "--quiet"]
    assert main(["eval", str(run_path), "--runs-dir", str(tmp / "one"), *args]) == 0
    env = {**os.environ, "ROBUSTLAB_QUIET": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-port", "29534", "-m", "robustlab", "eval", str(run_path), "--runs-dir",
         str(tmp / "two"), *args], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (one,) = [d for d in (tmp / "one").iterdir() if d.is_dir()]
    (two,) = [d for d in (tmp / "two").iterdir() if d.is_dir()]
    r1 = json.loads((one / "results.json").read_text())
    r2 = json.loads((two / "results.json").read_text())
    assert r2["processes"] == 2 and r2["n_examples"] == 64
    # FGSM without random start is deterministic: the shards must reproduce one process.
    assert r2["clean_accuracy"] == r1["clean_accuracy"]
    assert r2["broken_by"] == r1["broken_by"]

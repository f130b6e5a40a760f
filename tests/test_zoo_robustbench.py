"""`robustlab zoo` on RobustBench-style entries (issue 15 item 4): `.pt` state dicts in
RobustBench's layout (``state_dict`` wrapper, DataParallel's ``module.`` prefixes, the published
code's key names) for ``dm-wrn`` and ``trades-wrn``, with model-info JSONs beside them or named,
on a tiny budget. The published numbers must reach results.json, the index, the report and the
console; the checkpoints must be normalised as they were trained (DeepMind's CIFAR-10 mean/std,
none for TRADES), not with the zoo images' statistics."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from robustlab import models
from robustlab.cli.main import main
from robustlab.models.robustbench import build_published

ZOO = """
[zoo]
dataset = "npz"
path = "{images}"
n = 24
attack_n = 6
batch_size = 24
metrics = ["clean", "ifgsm", "fgsm", "transfer"]
[zoo.ifgsm]
iterations = 3
tol = 0.05
[zoo.fgsm]
tol = 0.05
[zoo.transfer]
n = 8
steps = 2
[[models]]
name = "dm"
arch = "dm-wrn-10-1"
weights = "ckpt/TinyDM.pt"
[[models]]
name = "trades"
arch = "trades-wrn-10-1"
weights = "ckpt/TinyTrades.pt"
dataset = "cifar10"
info = "model_info/TinyTrades.json"
"""
DM_INFO = {"name": "TinyDM2020", "architecture": "WideResNet-10-1", "dataset": "cifar10",
           "threat_model": "Linf", "eps": "8/255", "clean_acc": "85.29",
           "autoattack_acc": "57.20"}
TRADES_INFO = {"name": "TinyTrades2019", "architecture": "WideResNet-10-1",
               "clean_acc": 84.92, "autoattack_acc": 53.08}


def _calibrate(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Random batch-norm scales and running statistics measured on ``x`` (one pass in train
    mode, cumulative average), so that an untrained network's predictions vary over the
    images and a wrong normalisation changes some of them."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_parameters()
            m.momentum = None
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()


def _misnormalised(model, mean=(0.5, 0.5, 0.5), std=(0.29, 0.29, 0.29)):
    """The same network normalised with other statistics (about the zoo images' own)."""
    other = models.create(model.config["name"], num_classes=10, mean=mean, std=std)
    other.net.load_state_dict(model.net.state_dict())
    return other


def _predict(model, x) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x).argmax(1)


@pytest.fixture(scope="module")
def entries(tmp_path_factory) -> tuple[Path, torch.Tensor, torch.Tensor]:
    """Two RobustBench-layout checkpoints, their model info (one beside the weights, one in a
    model_info/ folder as RobustBench's tree keeps it), 3×32×32 images labelled by the DeepMind
    model's own predictions, and the zoo file."""
    tmp = tmp_path_factory.mktemp("zoo-rb")
    (tmp / "ckpt").mkdir()
    (tmp / "model_info").mkdir()
    rng = np.random.default_rng(0)
    # Images of one random colour each, plus noise: an untrained network tells them apart.
    colour = rng.uniform(0, 1, size=(24, 1, 1, 3))
    images = np.clip(colour + rng.normal(0, 0.1, size=(24, 32, 32, 3)), 0, 1)
    images = (images * 255).round().astype(np.uint8)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        dm = build_published("dm-wrn-10-1", "cifar10")
        trades = build_published("trades-wrn-10-1", "cifar10")
    _calibrate(dm, x)
    _calibrate(trades, x)
    labels, trades_pred = _predict(dm, x), _predict(trades, x)
    # The test can tell: normalised otherwise, the models score another clean accuracy.
    assert (_predict(_misnormalised(dm), x) != labels).any()
    assert (_predict(_misnormalised(trades), x) == labels).sum() != (trades_pred == labels).sum()
    # RobustBench's layout: the bare network's keys, under 'state_dict', with 'module.' prefixes.
    torch.save({"state_dict": {f"module.{k}": v for k, v in dm.net.state_dict().items()}},
               tmp / "ckpt" / "TinyDM.pt")
    torch.save(trades.net.state_dict(), tmp / "ckpt" / "TinyTrades.pt")
    (tmp / "ckpt" / "TinyDM.json").write_text(json.dumps(DM_INFO))
    (tmp / "model_info" / "TinyTrades.json").write_text(json.dumps(TRADES_INFO))
    np.savez(tmp / "images.npz", image=images, label=labels.numpy().astype(np.int64))
    (tmp / "zoo.toml").write_text(ZOO.format(images=tmp / "images.npz"))
    return tmp, labels, trades_pred


@pytest.fixture(scope="module")
def zoo_run(entries):
    tmp = entries[0]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a shared CPU
    try:
        rc = main(["zoo", str(tmp / "zoo.toml"), "--runs-dir", str(tmp / "runs"), "--quiet"])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    (run,) = [p for p in (tmp / "runs").iterdir() if p.is_dir()]
    return run


def test_published_checkpoints_load_as_trained(entries, zoo_run):
    _, labels, trades_pred = entries
    r = {m["name"]: m for m in json.loads((zoo_run / "results.json").read_text())["models"]}
    # Labels are the DeepMind model's own predictions: 100% only if its weights and its
    # training set's mean/std (not the zoo images') were taken.
    assert r["dm"]["clean_accuracy"] == 1.0
    # The TRADES WideResNet takes raw [0, 1] inputs.
    assert r["trades"]["clean_accuracy"] == pytest.approx(
        float((trades_pred == labels).float().mean()))
    for name, arch in (("dm", "dm-wrn-10-1"), ("trades", "trades-wrn-10-1")):
        assert r[name]["arch"] == arch and r[name]["family"] == "wrn"
    assert r["dm"]["ifgsm"]["n"] == 6 and r["dm"]["ifgsm"]["success_rate"] > 0


def test_published_numbers_beside_robustlabs(entries, zoo_run, capsys):
    tmp = entries[0]
    results = json.loads((zoo_run / "results.json").read_text())
    r = {m["name"]: m for m in results["models"]}
    assert r["dm"]["published"] == DM_INFO  # found beside the weights
    assert r["trades"]["published"] == TRADES_INFO  # named by the entry's info key
    assert len(results["transfer"]["names"]) == 2
    con = sqlite3.connect(zoo_run.parent / "index.sqlite")
    extra = {m: json.loads(e) for m, e in
             con.execute("SELECT model, extra FROM results WHERE attack='clean'")}
    assert extra["dm"]["published_autoattack_acc"] == "57.20"
    assert extra["trades"]["published_clean_acc"] == 84.92
    html = (zoo_run / "report.html").read_text()
    assert "Published numbers (RobustBench model info)" in html
    assert "TinyDM2020" in html and "57.2" in html and "53.08" in html
    cfg = (zoo_run / "config.toml").read_text()
    assert str(tmp / "ckpt" / "TinyDM.json") in cfg  # the info file read is recorded
    # The console prints them too (a second, cheaper run: clean error only).
    rc = main(["zoo", str(tmp / "zoo.toml"), "--runs-dir", str(tmp / "runs-clean"), "--quiet",
               "--set", 'zoo.metrics=["clean"]'])
    out = capsys.readouterr().out
    assert rc == 0
    assert "published (TinyDM2020): clean acc 85.29%, AutoAttack 57.20%" in out
    assert "published (TinyTrades2019): clean acc 84.92%, AutoAttack 53.08%" in out


@pytest.mark.parametrize("edit, needle", [
    # A DeepMind model with no training set: neither the entry nor the model info names one.
    (lambda t: t.replace('weights = "ckpt/TinyDM.pt"',
                         'weights = "ckpt/TinyDM.pt"\ninfo = "model_info/TinyTrades.json"'),
     'set dataset = "cifar10"'),
    (lambda t: t.replace('arch = "dm-wrn-10-1"\nweights = "ckpt/TinyDM.pt"',
                         'checkpoint = "ckpt/TinyDM.pt"'), "is a plain state dict"),
    (lambda t: t.replace('info = "model_info/TinyTrades.json"', 'info = "nope.json"'),
     "models[1] (trades).info: file 'nope.json' not found"),
    (lambda t: t.replace('dataset = "cifar10"\n', 'dataset = "imagenet"\n', 1),
     "models[1] (trades).dataset: unknown training set 'imagenet'"),
    (lambda t: t.replace('dataset = "cifar10"\n', 'width = 4\n', 1), "width is in its name"),
])
def test_bad_published_entry_exits_2(entries, capsys, edit, needle):
    tmp = entries[0]
    bad = tmp / "bad.toml"
    bad.write_text(edit((tmp / "zoo.toml").read_text()))
    rc = main(["zoo", str(bad), "--runs-dir", str(tmp / "bad-runs"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    assert needle in err, err
    assert "Traceback" not in err
    assert not (tmp / "bad-runs").exists()

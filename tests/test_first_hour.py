"""A new user's first hour (issue 13): one message and exit 2 instead of tracebacks, results
others can read, every radius reported, honest progress, bring-your-own-model."""

from __future__ import annotations

import json
import os
import sqlite3
import stat

import numpy as np
import pytest
import torch
from helpers import make_blocks_npz

from robustlab import models
from robustlab.cli.main import main
from robustlab.runs import Index


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    m = models.create("cnn-small", num_classes=4, in_channels=1, norm="none", mean=(0.2,),
                      std=(0.2,), image_size=28)
    models.save_model(m, d / "m.safetensors")
    make_blocks_npz(d / "test.npz", 24, seed=1)
    rng = np.random.default_rng(0)
    np.savez(d / "rgb.npz", image=rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8),
             label=rng.integers(0, 4, 8))
    torch.save(m.state_dict(), d / "plain.pt")
    return d


def _eval(ckpt, runs, *extra):
    return main(["eval", str(ckpt / "m.safetensors"), "--dataset", "npz", "--data-path",
                 str(ckpt / "test.npz"), "--n", "8", "--version", "custom", "--attacks", "fgsm",
                 "--no-masking-checks", "--quiet", "--runs-dir", str(runs), *extra])


def test_model_data_mismatch_is_one_message_before_any_run_folder(ckpt, tmp_path, capsys):
    rc = main(["eval", str(ckpt / "m.safetensors"), "--dataset", "npz", "--data-path",
               str(ckpt / "rgb.npz"), "--runs-dir", str(tmp_path / "runs"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "1-channel" in err and "3 channels" in err
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_mismatch_with_a_named_dataset_is_caught_before_download(ckpt, tmp_path, capsys):
    rc = main(["eval", str(ckpt / "m.safetensors"), "--dataset", "cifar10", "--data-dir",
               str(tmp_path), "--runs-dir", str(tmp_path / "runs"), "--quiet"])
    assert rc == 2 and "3 channels" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing downloaded, no run folder


def test_a_run_that_fails_is_marked_failed_in_the_index(ckpt, tmp_path, monkeypatch):
    import robustlab.experiments.evaluate as ev

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(ev, "evaluate", boom)
    with pytest.raises(RuntimeError):
        _eval(ckpt, tmp_path / "runs")
    (row,) = Index(tmp_path / "runs").runs()
    assert row["status"] == "failed" and "disk on fire" in row["summary"]


def test_corrupt_index_is_reported_and_kept(ckpt, tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    junk = b"not a database " * 100
    (runs / "index.sqlite").write_bytes(junk)
    assert main(["runs", "list", "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err
    assert "index" in err and "mv " in err and "Traceback" not in err
    assert _eval(ckpt, runs) == 2
    assert "cannot be read" in capsys.readouterr().err
    assert (runs / "index.sqlite").read_bytes() == junk
    assert [p.name for p in runs.iterdir()] == ["index.sqlite"]  # no run folder either


def test_runs_dir_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    assert main(["runs", "list", "--runs-dir", str(f)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_written_files_follow_the_umask(ckpt, tmp_path):
    old = os.umask(0o022)
    try:
        assert _eval(ckpt, tmp_path / "runs") == 0
    finally:
        os.umask(old)
    (run,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    for name in ("results.json", "report.html", "eval.json"):
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o644, name


def test_every_radius_reported_with_its_own_numbers(ckpt, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert _eval(ckpt, runs, "--eps", "0.01", "0.3") == 0
    out = capsys.readouterr().out
    assert "eps=0.01 on" in out and "eps=0.3 on" in out
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    r = json.loads((run / "results.json").read_text())
    assert [p["eps"] for p in r["per_eps"]] == [0.01, 0.3]
    assert r["wall_seconds"] == pytest.approx(sum(p["wall_seconds"] for p in r["per_eps"]))
    capsys.readouterr()
    main(["runs", "list", "--runs-dir", str(runs)])
    listed = capsys.readouterr().out
    assert "0.01, 0.3" in listed  # both radii, not only the last
    html = (run / "report.html").read_text()
    assert "eps=0.01" in html and "eps=0.3" in html and "<th></th>" not in html


def test_runs_list_says_which_numbers_are_the_bare_models(tmp_path, capsys):
    runs = tmp_path / "runs"
    idx = Index(runs)
    idx.upsert_run("sp-1", kind="spatial", path=str(runs / "sp-1"), created="now",
                   status="done")
    idx.add_result("sp-1", norm="spatial", attack="grid", clean_accuracy=0.9,
                   robust_accuracy=0.2, target="model")
    idx.add_result("sp-1", norm="spatial", attack="vote: grid", clean_accuracy=0.95,
                   robust_accuracy=0.6, target="vote")
    assert main(["runs", "list", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "20.0% (bare model, grid)" in out and "vote 60.0%" in out
    assert "90.0%" in out and "95.0%" not in out


def test_sqlite_errors_never_escape(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    con = sqlite3.connect(runs / "index.sqlite")
    con.execute("CREATE TABLE runs (x)")  # a foreign table of the same name
    con.commit()
    con.close()
    from robustlab.errors import UserError

    with pytest.raises(UserError):
        Index(runs).runs()


def test_training_prints_validation_per_epoch_and_human_units(tmp_path, capsys):
    from helpers import tiny_config

    cfg = tiny_config(tmp_path, train={"epochs": 1}, eval={"n": 16})
    assert main(["run", str(cfg), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "epoch 1" in out and "val clean" in out and "val loss" in out
    assert "FLOP" in out and "train_flops=" not in out
    (run,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    # Resume the finished 1-epoch run for a second epoch: it says where it starts.
    text = (run / "config.toml").read_text().replace("epochs = 1", "epochs = 2")
    (run / "config.toml").write_text(text)
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "resuming at epoch 2" in out and "epoch 2" in out


def test_set_errors_name_what_was_typed_and_one_name_is_a_list(tmp_path):
    from helpers import tiny_config

    from robustlab.config import load_config
    from robustlab.errors import ConfigError

    cfg = tiny_config(tmp_path)
    with pytest.raises(ConfigError, match=r"^--set train.epochs=abc: train.epochs"):
        load_config(cfg, ["train.epochs=abc"])
    assert load_config(cfg, ["eval.attacks=fgsm"]).eval.attacks == ["fgsm"]
    assert load_config(cfg, ["eval.attacks=fgsm,pgd"]).eval.attacks == ["fgsm", "pgd"]


def test_data_messages_name_what_the_user_typed(ckpt, tmp_path, capsys):
    m = str(ckpt / "m.safetensors")
    (tmp_path / "g.npz").write_bytes(b"garbage\n")
    for argv, want in (
            (["--dataset", "npz"], "--data-path"),
            (["--dataset", "npz", "--data-path", str(tmp_path / "g.npz")], "np.savez"),
            (["--dataset", "fashion-mnist", "--data-dir", str(tmp_path / "nope")],
             "no such folder"),
            (["--dataset", "npz", "--data-path", str(ckpt / "test.npz"), "--n", "500"],
             "has 24 examples")):
        rc = main(["eval", m, *argv, "--quiet", "--runs-dir", str(tmp_path / "runs")])
        err = capsys.readouterr().err
        assert rc == 2 and want in err, (argv, err)
        assert "allow_pickle" not in err
    assert not (tmp_path / "runs").exists()


def test_data_check_writes_nothing_into_the_current_folder(ckpt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ROBUSTLAB_DATA", str(tmp_path / "cache"))
    assert main(["data", "check", "npz", "--path", str(ckpt / "test.npz")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]
    assert (tmp_path / "cache" / "npz-samples.png").is_file()


FACTORY = '''
from torch import nn


def build():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 4))
'''


def test_bring_your_own_model(ckpt, tmp_path, capsys, monkeypatch):
    (tmp_path / "mynet.py").write_text(FACTORY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    e = ["--dataset", "npz", "--data-path", str(ckpt / "test.npz"), "--n", "8", "--version",
         "custom", "--attacks", "fgsm", "--no-masking-checks", "--quiet", "--runs-dir", "runs"]
    assert main(["eval", "--model-factory", "mynet:build", *e]) == 0
    # A plain .pt state dict with its registry architecture, numbers equal to the checkpoint's.
    assert main(["eval", str(ckpt / "plain.pt"), "--arch", "cnn-small", "--arch-norm", "none",
                 *e]) == 0
    assert main(["eval", str(ckpt / "m.safetensors"), *e]) == 0
    out = capsys.readouterr().out
    accs = [line.split("clean")[1] for line in out.splitlines() if "clean" in line]
    assert accs[1] == accs[2]
    assert main(["spatial", "--model-factory", "mynet.py:build", "--dataset", "npz",
                 "--data-path", str(ckpt / "test.npz"), "--n", "4", "--quiet", "--runs-dir",
                 "runs"]) == 0
    capsys.readouterr()
    for argv, want in ((["eval", str(ckpt / "plain.pt"), *e], "--arch"),
                       (["eval", "--model-factory", "nope:x", *e], "cannot import"),
                       (["eval", str(ckpt / "plain.pt"), "--arch", "cnn-small", *e],
                        "does not match cnn-small")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert want in err and "Traceback" not in err


def test_evaluation_progress_moves_within_a_batch(ckpt, capsys, monkeypatch):
    from robustlab.attacks.apgd import APGD
    from robustlab.evaluation import evaluate
    from robustlab.threat import LpThreat

    monkeypatch.setenv("ROBUSTLAB_PROGRESS_INTERVAL", "0.05")
    m = models.load_model(ckpt / "m.safetensors")
    x = torch.rand(16, 1, 28, 28)
    y = m(x).argmax(1)  # all clean-correct: every example is attacked
    threat = LpThreat("linf", 1e-4)  # too small to break anything: the batch runs every step
    evaluate(m, x, y, threat, [APGD(threat, steps=150)], batch_size=16, quiet=False)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("apgd")]
    done = [float(ln.split()[1].split("/")[0]) for ln in lines]
    assert any(0 < d < 16 for d in done), lines  # moved before the only batch ended
    assert all("img/s" in ln for ln, d in zip(lines, done) if d > 0)
    assert done[-1] == 16


def test_rate_after_resume_counts_only_this_sessions_work(capsys, monkeypatch):
    import time

    from robustlab.progress import progress_bar

    monkeypatch.setenv("ROBUSTLAB_PROGRESS_INTERVAL", "100")
    with progress_bar("apgd", total=100, unit="img", quiet=False, start=90) as bar:
        time.sleep(0.25)
        bar.set_completed(91)
    (line,) = capsys.readouterr().err.splitlines()
    rate = float(line.split()[2])
    assert 1 < rate < 8, line  # 1 image in 0.25 s, not 91
    assert "ETA 0:00:0" in line


def test_quickstart_report_reads_like_a_report(tmp_path):
    from helpers import tiny_config

    from robustlab.runs import Run

    cfg = tiny_config(tmp_path, train={"epochs": 2}, eval={"n": 32, "attack": {"eps": 0.3}})
    assert main(["run", str(cfg), "--quiet"]) == 0
    (path,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    html = (path / "report.html").read_text()
    r = Run.open(path).read_results()
    assert r["robust_accuracy"] < 1  # something broken to show
    assert "attack broke" in html and "perturbation" in html
    assert f"{100 * r['clean_accuracy']:.2f}%" in html
    assert "FLOP" in html and str(r["train_flops"]) not in html
    assert "logsumexp" in html and "val loss" in html
    import re

    heads = re.findall(r"<h2>(.*?)</h2>", html)
    assert len(heads) == len(set(heads))  # no section twice
    assert "All results" not in html and "<th></th>" not in html
    assert "val_loss" in Run.open(path).metrics()[-1]


def test_threads_flag_sets_torch_threads(ckpt, tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert _eval(ckpt, tmp_path / "runs", "--threads", "1") == 0
        assert torch.get_num_threads() == 1
        assert _eval(ckpt, tmp_path / "runs", "--threads", "-2") == 2
    finally:
        torch.set_num_threads(before)


def test_a_failed_spatial_run_is_marked_failed(ckpt, tmp_path, monkeypatch):
    import robustlab.experiments.spatial as sp

    def boom(*a, **k):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(sp, "run_attack", boom)
    with pytest.raises(RuntimeError):
        sp.spatial_experiment(str(ckpt / "m.safetensors"), "npz", n=4, quiet=True,
                              data_path=str(ckpt / "test.npz"), runs_dir=str(tmp_path / "r"))
    (row,) = Index(tmp_path / "r").runs()
    assert row["status"] == "failed" and "out of memory" in row["summary"]


def test_failed_download_leaves_no_empty_folder(tmp_path, monkeypatch):
    import urllib.error
    import urllib.request

    from robustlab import data
    from robustlab.errors import UserError

    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setenv("ROBUSTLAB_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(UserError, match="could not download"):
        data.load("svhn", "test", data_dir=str(tmp_path / "dd"))
    assert not (tmp_path / "dd" / "svhn").exists()

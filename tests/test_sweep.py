"""Sweeps: grid expansion, a killed sweep restarted equals an uninterrupted one, failures are
reported without stopping the others, and the per-run scaling numbers land in results.json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import tiny_config

from robustlab.cli.main import main
from robustlab.sweeps import load_sweep, sweep_status


def _sweep_file(tmp: Path, extra_points: str = "") -> Path:
    base = tiny_config(tmp, train={"epochs": 1, "metric_epochs": [1], "metric_n": 32,
                                   "objective": "pgd-at", "attack": {"eps": 0.1, "steps": 2}},
                       eval={"n": 32})
    p = tmp / "sweep.toml"
    p.write_text(f'[sweep]\nname = "s"\nbase = "{base.name}"\nevaluate = false\n\n'
                 '[grid]\n"data.train_size" = [64, 128]\n"model.width" = [4, 8]\n'
                 + extra_points)
    return p


def _results(d: Path) -> dict:
    out = {}
    for r in sweep_status(d):
        res = json.loads((Path(r["run"]) / "results.json").read_text())
        out[r["name"]] = (res["train_flops"], res["scaling"]["images_processed"],
                          res["best_val_robust_accuracy"])
    return out


def test_grid_expansion(tmp_path):
    spec = load_sweep(_sweep_file(tmp_path))
    assert len(spec.points) == 4
    assert {tuple(p.overrides.values()) for p in spec.points} == {(64, 4), (64, 8), (128, 4),
                                                                  (128, 8)}
    assert len({p.name for p in spec.points}) == 4


def test_killed_sweep_resumes_to_same_results(tmp_path):
    sweep = _sweep_file(tmp_path)
    ref = tmp_path / "ref"
    assert main(["sweep", str(sweep), "--out", str(ref), "--quiet"]) == 0
    expected = _results(ref)
    assert all(v[1] > 0 for v in expected.values())
    run_dir = next(Path(r["run"]) for r in sweep_status(ref))
    rec = [m for m in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
           if "adv_test_loss" in m]
    assert rec and rec[0]["adv_test_loss"] > 0 and 0 <= rec[0]["pgd_accuracy"] <= 1
    res = json.loads((run_dir / "results.json").read_text())
    assert [c["adv_test_loss"] for c in res["scaling_curve"]] == [m["adv_test_loss"] for m in rec]
    assert res["scaling"]["adv_test_loss"] == rec[-1]["adv_test_loss"]
    import sqlite3

    with sqlite3.connect(ref / "index.sqlite") as db:
        summaries = [json.loads(s) for (s,) in db.execute("SELECT summary FROM runs")]
    assert any(s.get("scaling_adv_test_loss") == rec[-1]["adv_test_loss"] for s in summaries)

    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ROBUSTLAB_QUIET": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "robustlab", "sweep", str(sweep), "--out",
                             str(killed), "--quiet"], env=env, cwd=tmp_path)
    deadline = time.time() + 60
    while time.time() < deadline:  # kill once the first run has finished
        if (killed / "points.json").exists() and any(
                r["state"] == "done" for r in sweep_status(killed)):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    states = [r["state"] for r in sweep_status(killed)]
    assert "done" in states and states.count("done") < 4
    assert main(["sweep", str(sweep), "--out", str(killed), "--quiet"]) == 0
    assert _results(killed) == expected


def test_failed_run_reported_and_others_continue(tmp_path, capsys):
    sweep = _sweep_file(tmp_path, '\n[[points]]\n"model.arch" = "cnn-small"\n'
                                  '[[points]]\n"model.arch" = "cnn-small"\n'
                                  '"data.path" = "missing.npz"\n')
    d = tmp_path / "out"
    assert main(["sweep", str(sweep), "--out", str(d), "--quiet"]) == 1
    rows = sweep_status(d)
    assert [r["state"] for r in rows].count("done") == 4
    failed = [r for r in rows if r["state"] == "failed"]
    assert len(failed) == 4 and all("missing.npz" in r["error"] for r in failed)
    capsys.readouterr()
    assert main(["sweep", "status", str(d)]) == 1
    assert "missing.npz" in capsys.readouterr().out


def test_bad_sweep_file_exit_2(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('[grid]\n"train.nope" = [1, 2]\n')
    assert main(["sweep", str(p)]) == 2


def test_slurm_executor_with_submitit_local(tmp_path):
    pytest.importorskip("submitit")
    sweep = _sweep_file(tmp_path)
    text = sweep.read_text().replace('evaluate = false', 'evaluate = false\nexecutor = "slurm"')
    sweep.write_text(text + '\n[slurm]\ncluster = "debug"\ntimeout_min = 5\n')
    d = tmp_path / "slurm"
    assert main(["sweep", str(sweep), "--out", str(d), "--quiet"]) == 0
    assert [r["state"] for r in sweep_status(d)] == ["done"] * 4


def test_slurm_point_under_torchrun(tmp_path):
    """nproc_per_node = 2: the task runs its point under torchrun, data-parallel over 2 ranks."""
    pytest.importorskip("submitit")
    sweep = _sweep_file(tmp_path)
    text = sweep.read_text().replace('evaluate = false', 'evaluate = false\nexecutor = "slurm"')
    text = text.replace('"data.train_size" = [64, 128]', '"data.train_size" = [64]')
    sweep.write_text(text.replace('"model.width" = [4, 8]', '"model.width" = [4]')
                     + '\n[slurm]\ncluster = "debug"\ntimeout_min = 5\nnproc_per_node = 2\n')
    d = tmp_path / "ddp"
    assert main(["sweep", str(sweep), "--out", str(d), "--quiet"]) == 0
    (row,) = sweep_status(d)
    assert row["state"] == "done"
    res = json.loads((Path(row["run"]) / "results.json").read_text())
    assert res["processes"] == 2 and res["scaling"]["images_processed"] > 0


@pytest.mark.parametrize("slurm, needle", [("nproc_per_node = 0", "nproc_per_node"),
                                           ("nproc_per_node = 4\ngpus_per_node = 2",
                                            "gpus_per_node")])
def test_bad_nproc_per_node_exit_2(tmp_path, capsys, slurm, needle):
    sweep = _sweep_file(tmp_path)
    sweep.write_text(sweep.read_text() + f"\n[slurm]\n{slurm}\n")
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "x")]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_point_held_by_live_process_is_not_run_twice(tmp_path, capsys):
    from robustlab.sweeps.state import write_status

    sweep = _sweep_file(tmp_path)
    d = tmp_path / "out"
    spec = load_sweep(sweep)
    held = spec.points[0].name
    write_status(d, held, "running")  # this very process: alive, same host
    assert main(["sweep", str(sweep), "--out", str(d), "--quiet"]) == 0
    states = {r["name"]: r["state"] for r in sweep_status(d)}
    assert states.pop(held) == "running" and set(states.values()) == {"done"}
    assert held in capsys.readouterr().err


def test_slurm_job_gone_from_queue_is_interrupted(tmp_path, monkeypatch):
    from robustlab.sweeps.state import point_state, write_status

    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "squeue"  # lists job 7 only
    fake.write_text('#!/bin/sh\n[ "$3" = "7" ] && echo RUNNING\nexit 0\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    write_status(tmp_path, "a", "running", slurm_job="7")
    write_status(tmp_path, "b", "running", slurm_job="8")
    assert point_state(tmp_path, "a")["state"] == "running"
    assert point_state(tmp_path, "b")["state"] == "interrupted"

import json
import os
import sqlite3

import pytest

from robustlab.cli.main import main
from robustlab.io import atomic_write_json, atomic_write_text, read_jsonl
from robustlab.runs import Index, Run, resolve_run


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path):
    p = tmp_path / "results.json"
    atomic_write_json(p, {"a": 1})

    class Boom(Exception):
        pass

    from robustlab.io import atomic_write

    def bad(tmp):
        with open(tmp, "w") as f:
            f.write('{"a": 2, "half')  # half written, then the process "dies"
        raise Boom

    with pytest.raises(Boom):
        atomic_write(p, bad)
    assert json.loads(p.read_text()) == {"a": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["results.json"]  # no temp left behind


def test_atomic_write_json_writes_nan_as_null(tmp_path):
    p = atomic_write_json(tmp_path / "r.json", {"x": float("nan"), "y": [1.5, float("inf")]})
    assert json.loads(p.read_text()) == {"x": None, "y": [1.5, None]}


def test_jsonl_reader_skips_torn_last_line(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"epoch": 1}\n{"epoch": 2}\n{"epo')
    assert read_jsonl(p) == [{"epoch": 1}, {"epoch": 2}]


def test_run_folder_and_index(tmp_path):
    root = tmp_path / "runs"
    run = Run.create(root, "demo", "train", dataset="fashion-mnist", arch="cnn-small")
    run.write_config("[run]\nname = \"demo\"\n")
    run.log({"epoch": 1, "loss": 0.5})
    run.write_results({"clean_accuracy": 0.9})
    run.add_result(model="cnn-small", dataset="fashion-mnist", split="test", n_examples=100,
                   norm="linf", eps=0.1, attack="pgd-20", clean_accuracy=0.9,
                   robust_accuracy=0.7, stages=[{"attack": "pgd", "robust_accuracy": 0.7}])
    run.update_index(status="done", train_flops=1e12)
    assert (run.path / "config.toml").exists()
    assert run.metrics()[0]["loss"] == 0.5

    idx = Index(root)
    rows = idx.runs()
    assert len(rows) == 1 and rows[0]["status"] == "done" and rows[0]["train_flops"] == 1e12
    res = idx.results(run.run_id)
    assert res[0]["robust_accuracy"] == 0.7 and res[0]["extra"]["stages"][0]["attack"] == "pgd"
    # Plain sqlite3 can read it: other tools need no robustlab.
    con = sqlite3.connect(root / "index.sqlite")
    assert con.execute("SELECT count(*) FROM results").fetchone()[0] == 1

    second = Run.create(root, "demo", "eval")
    assert second.path != run.path
    assert resolve_run(run.run_id, root) == run.path
    with pytest.raises(Exception, match="ambiguous"):
        resolve_run("demo", root)


def test_non_writer_rank_writes_nothing(tmp_path):
    run = Run.create(tmp_path, "x", "train", writer=False)
    run.log({"a": 1})
    run.write_results({"a": 1})
    assert not run.path.exists() and not (tmp_path / "index.sqlite").exists()


def test_runs_cli_list_and_show(tmp_path, capsys):
    root = tmp_path / "runs"
    run = Run.create(root, "demo", "train", dataset="fashion-mnist")
    run.write_results({"clean_accuracy": 0.875})
    atomic_write_text(run.path / "x.txt", "x")
    assert main(["runs", "list", "--runs-dir", str(root)]) == 0
    assert run.run_id in capsys.readouterr().out
    assert main(["runs", "show", run.run_id, "--runs-dir", str(root)]) == 0
    assert "0.875" in capsys.readouterr().out
    assert main(["runs", "show", "nope", "--runs-dir", str(root)]) == 2
    assert "not found" in capsys.readouterr().err
    assert os.path.exists(root / "index.sqlite")

"""The human study: design (counterbalancing, checks, manifest hashes), storage (rejections
change nothing, restart keeps everything), statistics against simulated annotators of known
accuracy, agreement measures, and the CLI writing results into the index."""

import json
import random

import numpy as np
import pytest
from study_helpers import make_study

from robustlab.cli.main import main
from robustlab.errors import UserError
from robustlab.runs import Index
from robustlab.study.design import load_manifest, sequence_for, sha256, verify_images
from robustlab.study.simulate import simulate
from robustlab.study.stats import fleiss_kappa, krippendorff_alpha, study_results
from robustlab.study.storage import Rejected, Store


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return make_study(tmp_path_factory.mktemp("study"))


def test_manifest_lists_fooling_images_with_hashes(study):
    m = load_manifest(study)
    ev = json.loads((study.parent / m["eval_run"].split("/")[-1] / "results.json").read_text())
    assert 10 <= len(m["items"]) <= 24 and len(m["checks"]) == 3
    for it in m["items"]:
        assert ev["broken_by"][it["source_index"]] not in (None, "clean")
        assert it["model_label"] != it["true_label"]  # it fooled the model
        assert sha256(study / it["adv"]["file"]) == it["adv"]["sha256"]
    for c in m["checks"]:
        assert ev["broken_by"][c["source_index"]] is None
    verify_images(study, m)
    (study / m["items"][0]["adv"]["file"]).write_bytes(b"changed")
    with pytest.raises(UserError, match="SHA-256"):
        verify_images(study, m)


def test_counterbalancing_each_source_once_versions_balanced(study):
    m = load_manifest(study)
    seqs = [sequence_for(m, g, random.Random(g)) for g in (0, 1)]
    for s in seqs:
        ids = [i for i, v in s if v != "check"]
        assert sorted(ids) == sorted(it["id"] for it in m["items"])  # each source once
        assert sum(v == "check" for _, v in s) == 3
    v0 = {i: v for i, v in seqs[0]}
    v1 = {i: v for i, v in seqs[1]}
    assert all(v0[it["id"]] != v1[it["id"]] for it in m["items"])  # groups swap versions


def test_rejections_change_nothing_and_restart_keeps_everything(study, tmp_path):
    m = load_manifest(study)
    store = Store(tmp_path / "s.sqlite", m)
    t1, t2 = store.new_participant(), store.new_participant()
    assert {store.participant(t1)["grp"], store.participant(t2)["grp"]} == {0, 1}
    a = store.current(t1)
    cases = [((None, a["handle"], a["nonce"], 0), 401), (("forged", a["handle"], a["nonce"], 0),
             403), ((t1, "nope", a["nonce"], 0), 404), ((t1, a["handle"], "bad", 0), 403),
             ((t1, a["handle"], a["nonce"], 99), 400), ((t1, a["handle"], a["nonce"], "x"), 400),
             ((t2, a["handle"], a["nonce"], 0), 404)]  # another participant's item
    nxt = store.assignments(t1)[1]
    cases.append(((t1, nxt["handle"], nxt["nonce"], 0), 409))  # out of order
    for args, status in cases:
        with pytest.raises(Rejected) as e:
            store.submit(*args)
        assert e.value.status == status
    assert store.responses() == []
    store.submit(t1, a["handle"], a["nonce"], 1)
    with pytest.raises(Rejected) as e:
        store.submit(t1, a["handle"], a["nonce"], 2)
    assert e.value.status == 409
    again = Store(tmp_path / "s.sqlite", m)  # a restarted server
    assert [r["answer"] for r in again.responses()] == [1]
    assert again.current(t1)["position"] == 1


def test_agreement_measures():
    assert krippendorff_alpha([[1, 1, 1], [2, 2], [0, 0, 0]]) == pytest.approx(1.0)
    # Krippendorff (2004) style hand computation: units (a,a),(a,b),(b,b): o_aa=2,o_bb=2,
    # o_ab=o_ba=1, n=6, D_o=2, D_e=(36-18)/5=3.6 -> 1-2/3.6.
    assert krippendorff_alpha([[0, 0], [0, 1], [1, 1]]) == pytest.approx(1 - 2 / 3.6)
    rng = np.random.default_rng(0)
    rand = [list(rng.integers(0, 4, 5)) for _ in range(400)]
    assert abs(krippendorff_alpha(rand)) < 0.05 and abs(fleiss_kappa(rand)) < 0.05
    # Fleiss (1971) with equal raters: two units of 2 raters, perfect agreement on different
    # classes -> kappa 1.
    assert fleiss_kappa([[0, 0], [1, 1]]) == pytest.approx(1.0)


@pytest.mark.parametrize("accuracy,invalid", [(0.85, 0.3), (0.7, 0.6)])
def test_simulated_annotators_recover_the_truth(study, tmp_path, accuracy, invalid):
    m = load_manifest(study)
    store = Store(tmp_path / "s.sqlite", m)
    sim = simulate(store, 30, accuracy=accuracy, invalid_share=invalid, cant_tell=0.05, seed=3)
    res = study_results(m, store.responses(), n_boot=1000, seed=1)
    exp = sim["expected"]
    assert res["n_kept"] == 30
    for key in ("clean_accuracy", "share_model", "share_true", "share_neither",
                "human_adjusted_robust_accuracy"):
        lo, hi = res[key]["ci95"]
        assert lo <= exp[key] <= hi, (key, lo, exp[key], hi)
        assert hi - lo < 0.4  # informative (24 items), not a trivial interval
    # ... and it tells the truth from the two extremes (no invalid image, all invalid).
    lo, hi = res["share_model"]["ci95"]
    assert not lo <= (1 - accuracy - 0.05) / 3 <= hi and not lo <= accuracy <= hi
    frac = m["n_fooled"] / m["n_eval"]
    assert res["human_adjusted_robust_accuracy"]["estimate"] == pytest.approx(
        m["robust_accuracy"] + frac * res["share_model"]["estimate"])
    assert res["krippendorff_alpha"] > 0.2


def test_inattentive_participants_are_excluded(study, tmp_path):
    m = load_manifest(study)
    store = Store(tmp_path / "s.sqlite", m)
    simulate(store, 4, accuracy=0.9, seed=0)
    simulate(store, 2, accuracy=0.9, check_accuracy=0.0, cant_tell=0.0, seed=1)
    res = study_results(m, store.responses(), n_boot=100)
    assert res["n_participants"] == 6 and res["n_kept"] == 4


def test_results_cli_simulates_writes_report_and_index(study, capsys):
    assert main(["study", "results", str(study), "--simulate", "8", "--n-boot", "200"]) == 0
    out = capsys.readouterr().out
    assert "human_adjusted_robust_accuracy" in out
    res = json.loads((study / "results.json").read_text())
    assert res["n_kept"] >= 8
    html = (study / "report.html").read_text()
    assert "Most invalid" in html and "data:image/png" in html
    rows = Index(study.parent).results(study.name)
    assert rows and rows[-1]["attack"].startswith("human-study")
    assert rows[-1]["robust_accuracy"] == pytest.approx(
        res["human_adjusted_robust_accuracy"]["estimate"])


def test_create_errors_are_one_line(study, tmp_path, capsys):
    assert main(["study", "results", str(study), "--simulate", "2", "--accuracy", "1.5"]) == 2
    assert "--accuracy" in capsys.readouterr().err
    assert main(["study", "create", str(tmp_path), "--n", "5", "--runs-dir",
                 str(tmp_path / "runs")]) == 2


def test_images_are_served_from_a_study_given_as_a_relative_path(tmp_path, monkeypatch):
    """`robustlab study serve runs/study-...` from the project folder: Flask resolves relative
    file paths against its package, so a relative study path once served no image at all."""
    pytest.importorskip("flask")
    from robustlab.study.server import create_app

    made = make_study(tmp_path, n=8)  # its own study: other tests here alter the shared one
    monkeypatch.chdir(made.parent)
    client = create_app(made.name).test_client()
    r = client.post("/start", data={"consent": "yes"})
    page = client.get(r.headers["Location"]).get_data(as_text=True)
    src = page.split('id="stimulus" src="')[1].split('"')[0]
    img = client.get(src)
    assert img.status_code == 200 and img.data[:8] == b"\x89PNG\r\n\x1a\n"

"""`robustlab study results`: optionally simulate annotators, compute the statistics, write
results.json and report.html into the study folder and the numbers into the SQLite index."""

from __future__ import annotations

from pathlib import Path

from ..runs import Run
from .design import load_manifest
from .stats import study_results
from .storage import Store


def study_results_experiment(study: str | Path, simulate: int = 0, accuracy: float = 0.9,
                             invalid_share: float = 0.3, seed: int = 0,
                             n_boot: int = 2000) -> dict:
    from ..errors import UserError
    from ..report.study import study_report

    study = Path(study)
    manifest = load_manifest(study)
    store = Store(study / "study.sqlite", manifest)
    sim = None
    if simulate < 0 or not 0 < accuracy <= 1 or not 0 <= invalid_share <= 1:
        raise UserError("--simulate must be >= 0, --accuracy in (0, 1], --invalid-share in "
                        "[0, 1]")
    if simulate:
        from .simulate import simulate as run_sim

        try:
            sim = run_sim(store, simulate, accuracy=accuracy, invalid_share=invalid_share,
                          seed=seed)
        except ValueError as e:
            raise UserError(str(e)) from None
    responses = store.responses()
    if not responses:
        raise UserError(f"{study}: no responses yet (serve it, or use --simulate K)")
    res = study_results(manifest, responses, n_boot=n_boot, seed=seed)
    if sim is not None:
        res["simulation"] = {"k": simulate, "accuracy": accuracy,
                             "invalid_share": invalid_share, "expected": sim["expected"]}
    run = Run.open(study)
    run.write_results(res)
    run.write_report(study_report(run.run_id, study, manifest, res))
    adj = res["human_adjusted_robust_accuracy"]
    run.add_result(model=manifest["model"], dataset=manifest["dataset"],
                   n_examples=manifest["n_eval"], norm=manifest["norm"], eps=manifest["eps"],
                   attack=f"human-study[{manifest['attack']}]",
                   clean_accuracy=res["clean_accuracy"]["estimate"],
                   robust_accuracy=adj["estimate"], model_robust_accuracy=res["robust_accuracy"],
                   human_adjusted_ci95=adj["ci95"], share_model=res["share_model"],
                   share_true=res["share_true"], share_neither=res["share_neither"],
                   krippendorff_alpha=res["krippendorff_alpha"], n_participants=res["n_kept"],
                   simulated=bool(sim))
    run.update_index(status="done", summary={
        "human_adjusted_robust_accuracy": adj["estimate"],
        "share_model": res["share_model"]["estimate"], "participants": res["n_kept"]})
    res["report"] = str(run.file("report.html"))
    return res

"""The Slurm executor, through submitit (``pip install robustlab[slurm]``), imported only here.

One job array, one task per point, resources from the sweep file's ``[slurm]`` table:
``partition``, ``gpus_per_node``, ``cpus_per_task``, ``mem_gb``, ``timeout_min``,
``array_parallelism``, ``account``, ``qos``, ``constraint``, ``max_requeue``, and
``nproc_per_node``: above 1, each task runs its point under ``torchrun --standalone`` with that
many processes (one per GPU; Gloo on CPU), data-parallel as ``torchrun -m robustlab train`` is
(:func:`robustlab.experiments.sweep.torchrun_point`).
On a time-out or pre-emption submitit calls :meth:`PointJob.checkpoint`, which requeues the same
call; the job then resumes the point from its last checkpoint like a restarted local sweep.
``cluster = "local"`` (submitit's local executor) runs the array as processes on this machine.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import UserError

try:
    import submitit
    from submitit.helpers import Checkpointable
except ImportError:  # pragma: no cover - the optional extra
    submitit = None
    Checkpointable = object


class PointJob(Checkpointable):
    """A picklable wrapper: calling it runs the point, checkpointing requeues it unchanged
    (the point's own training checkpoint holds the progress)."""

    def __init__(self, job: Callable[[dict], dict]):
        self.job = job

    def __call__(self, point: dict) -> dict:
        return self.job(point)

    def checkpoint(self, point: dict):
        return submitit.helpers.DelayedSubmission(PointJob(self.job), point)


def run_slurm(job: Callable[[dict], dict], points: list[dict], sweep_dir: Path,
              resources: dict, wait: bool = True, quiet: bool | None = None) -> list[dict]:
    if submitit is None:
        raise UserError("the slurm executor needs submitit: pip install 'robustlab[slurm]'")
    from ..progress import progress_bar

    r = dict(resources)
    r.pop("nproc_per_node", None)  # read by the job itself (experiments.sweep.torchrun_point)
    ex = submitit.AutoExecutor(folder=str(Path(sweep_dir) / "slurm" / "%j"),
                               cluster=r.pop("cluster", None))
    params = {"timeout_min": r.pop("timeout_min", 60)}
    for key, name in (("gpus_per_node", "gpus_per_node"), ("cpus_per_task", "cpus_per_task"),
                      ("mem_gb", "mem_gb")):
        if key in r:
            params[name] = r.pop(key)
    if ex.cluster == "slurm":
        for key in ("partition", "array_parallelism", "account", "qos", "constraint"):
            if key in r:
                params[f"slurm_{key}"] = r.pop(key)
    if "max_requeue" in r:
        params["max_num_timeout"] = r.pop("max_requeue")
    ex.update_parameters(**params)
    jobs = ex.map_array(PointJob(job), points)
    if not wait:
        return [{"name": p["name"], "state": "submitted", "job": j.job_id}
                for p, j in zip(points, jobs)]
    out = []
    with progress_bar("sweep", total=len(points), unit="run", quiet=quiet) as bar:
        for p, j in zip(points, jobs):
            try:
                res = j.result()
            except Exception as e:  # the job failed outside the point's own error handling
                res = {"name": p["name"], "index": p["index"], "state": "failed",
                       "error": str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)}
            out.append(res)
            bar.advance(1)
    return out

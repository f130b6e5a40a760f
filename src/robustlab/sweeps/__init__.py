"""Sweeps: a base config plus a grid or list over config keys, one ordinary run folder per point.

``spec`` reads the sweep file and expands its points, ``state`` says what each point's folder
holds (done, running, failed, pending), and the executors (``local``: a pool of worker processes;
``slurm``: one submitit job array) run a job callable on the points that are not done. The job
itself (train one point, or resume it from its checkpoint) lives in ``experiments/sweep.py``.
"""

from .spec import Point, SweepSpec, load_sweep
from .state import point_state, sweep_status

__all__ = ["Point", "SweepSpec", "load_sweep", "point_state", "sweep_status"]

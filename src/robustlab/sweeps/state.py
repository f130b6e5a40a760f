"""What each point of a sweep folder holds, read from the files alone (so a status check, a
restart and a Slurm requeue all agree without a live sweep object).

A point is ``done`` when its run folder has ``results.json``, ``failed`` when its status file
records an error, ``running`` while a live process (same host) or a Slurm job holds it,
``interrupted`` when it was running and its process is gone (a restart resumes it from its
checkpoint), and ``pending`` otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

from ..io import atomic_write_json

STATUS_DIR = "status"


def run_folder(sweep_dir: Path, name: str) -> Path | None:
    """The point's run folder: the one with results, else the newest with a checkpoint."""
    cands = sorted(p for p in Path(sweep_dir).glob(f"{name}-2*") if p.is_dir())
    for p in cands:
        if (p / "results.json").is_file():
            return p
    with_ckpt = [p for p in cands if (p / "checkpoint").is_dir()]
    return with_ckpt[-1] if with_ckpt else None


def write_status(sweep_dir: Path, name: str, status: str, **extra) -> None:
    rec = {"status": status, "host": socket.gethostname(), "pid": os.getpid(), **extra}
    atomic_write_json(Path(sweep_dir) / STATUS_DIR / f"{name}.json", rec)


def read_status(sweep_dir: Path, name: str) -> dict:
    p = Path(sweep_dir) / STATUS_DIR / f"{name}.json"
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _slurm_alive(job: str) -> bool:
    """Whether Slurm still lists the job (queued, running, requeued); without ``squeue`` on this
    host (status read off the cluster), assume it is."""
    squeue = shutil.which("squeue")
    if squeue is None:
        return True
    try:
        out = subprocess.run([squeue, "-h", "-j", job, "-o", "%T"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return True
    return out.returncode == 0 and bool(out.stdout.strip())


def _alive(rec: dict) -> bool:
    if rec.get("slurm_job"):
        return _slurm_alive(str(rec["slurm_job"]))
    if rec.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(rec.get("pid", -1)), 0)
    except (OSError, ValueError):
        return False
    return True


def point_state(sweep_dir: Path, name: str) -> dict:
    folder = run_folder(sweep_dir, name)
    if folder is not None and (folder / "results.json").is_file():
        # Done once the sweep has added its scaling record (the last write of a point).
        try:
            res = json.loads((folder / "results.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            res = {}
        if "scaling" in res:
            return {"state": "done", "run": str(folder)}
        return {"state": "interrupted", "run": str(folder)}
    rec = read_status(sweep_dir, name)
    out = {"run": str(folder) if folder else None}
    if rec.get("status") == "failed":
        return {**out, "state": "failed", "error": rec.get("error", "")}
    if rec.get("status") == "running":
        return {**out, "state": "running" if _alive(rec) else "interrupted"}
    return {**out, "state": "pending"}


def sweep_status(sweep_dir: str | Path) -> list[dict]:
    """One row per point: index, name, label, state, run folder, error."""
    from ..errors import UserError

    d = Path(sweep_dir)
    pf = d / "points.json"
    if not pf.is_file():
        raise UserError(f"{d}: not a sweep folder (no points.json)")
    points = json.loads(pf.read_text(encoding="utf-8"))
    return [{"index": p["index"], "name": p["name"], "label": p["label"],
             **point_state(d, p["name"])} for p in points]

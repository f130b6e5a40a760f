"""The local executor: K worker processes on this machine (default 1, in this process).

Each point runs ``job(point)``, which never raises (a failed run is recorded and reported); the
pool keeps going with the other points. A killed sweep leaves finished run folders and
checkpoints behind, and running it again skips the first and resumes the second.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed

from ..progress import progress_bar


def run_local(job: Callable[[dict], dict], points: list[dict], workers: int = 1,
              quiet: bool | None = None) -> list[dict]:
    out: list[dict] = []
    with progress_bar("sweep", total=len(points), unit="run", quiet=quiet) as bar:
        if workers <= 1:
            for p in points:
                out.append(job(p))
                bar.advance(1, info=f"{p['name']}: {out[-1]['state']}")
            return out
        # spawn, not fork: torch's thread pools and a forked parent do not mix.
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as ex:
            futures = {ex.submit(job, p): p for p in points}
            for f in as_completed(futures):
                p = futures[f]
                try:
                    r = f.result()
                except Exception as e:  # the worker process itself died
                    r = {"name": p["name"], "state": "failed", "error": f"worker died: {e}"}
                out.append(r)
                bar.advance(1, info=f"{p['name']}: {r['state']}")
    return sorted(out, key=lambda r: r.get("index", 0))

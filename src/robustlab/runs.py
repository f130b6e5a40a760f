"""Run folders and the SQLite index of every run and every evaluation result.

A run folder holds everything one experiment produced::

    runs/<name>-<YYYYmmdd-HHMMSS>/
        config.toml        the resolved config (defaults, file and --set overrides merged)
        metrics.jsonl      one JSON object per logged step or epoch
        model.safetensors  final weights (model_ema.safetensors, best.safetensors beside it)
        trainer_state.pt   optimiser, schedule, EMA, RNG and data-order state (weights_only=True)
        results.json       the run's headline numbers
        report.html        a self-contained report, figures embedded

Every file is written atomically. ``index.sqlite`` in the runs root indexes runs and results so
that later analyses (scaling laws, zoo benchmarks) query numbers instead of parsing folders.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sqlite3
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError
from .io import append_jsonl, atomic_write_json, atomic_write_text, read_jsonl, to_json

INDEX_NAME = "index.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT,
    path TEXT NOT NULL,
    created TEXT NOT NULL,
    status TEXT NOT NULL,
    dataset TEXT,
    arch TEXT,
    objective TEXT,
    train_flops REAL,
    inference_flops REAL,
    wall_seconds REAL,
    config TEXT,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    created TEXT NOT NULL,
    model TEXT,
    dataset TEXT,
    split TEXT,
    n_examples INTEGER,
    norm TEXT,
    eps REAL,
    attack TEXT,
    clean_accuracy REAL,
    robust_accuracy REAL,
    extra TEXT
);
CREATE INDEX IF NOT EXISTS results_run ON results(run_id);
"""

_RUN_COLUMNS = ("kind", "name", "path", "created", "status", "dataset", "arch", "objective",
                "train_flops", "inference_flops", "wall_seconds", "config", "summary")
_RESULT_COLUMNS = ("model", "dataset", "split", "n_examples", "norm", "eps", "attack",
                   "clean_accuracy", "robust_accuracy")


def check_runs_root(root: str | Path) -> Path:
    """UserError unless ``root`` is a folder or can become one."""
    p = Path(root)
    for q in (p, *p.parents):
        if q.exists():
            if not q.is_dir():
                raise UserError(f"--runs-dir {root}: {q} is a file, not a folder; give a folder "
                                "for run folders and their index")
            break
    return p


def _now() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


class Index:
    """The SQLite index in a runs root. Each call opens its own connection: cheap, and safe when
    several processes (a sweep, an evaluation beside a training run) write to the same root."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.path = self.root / INDEX_NAME

    def _connect(self) -> sqlite3.Connection:
        check_runs_root(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            con = sqlite3.connect(self.path, timeout=30)
            con.row_factory = sqlite3.Row
            con.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise self._corrupt(e) from None
        return con

    def _corrupt(self, e: Exception) -> UserError:
        # Never replaced silently: it may hold the only record of earlier results.
        return UserError(
            f"{self.path}: the run index cannot be read ({e}). The run folders beside it are "
            f"untouched; move the file aside (mv {self.path} {self.path}.bad) and robustlab "
            "starts a new index, or use another --runs-dir")

    def _query(self, sql: str, params: tuple = ()) -> list:
        with closing(self._connect()) as con:
            try:
                return con.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as e:
                raise self._corrupt(e) from None

    def upsert_run(self, run_id: str, **fields: Any) -> None:
        try:
            self._upsert_run(run_id, **fields)
        except sqlite3.DatabaseError as e:
            raise self._corrupt(e) from None

    def _upsert_run(self, run_id: str, **fields: Any) -> None:
        fields = {k: (to_json(v, indent=None) if isinstance(v, (dict, list)) else v)
                  for k, v in fields.items() if k in _RUN_COLUMNS}
        with closing(self._connect()) as con, con:
            exists = con.execute("SELECT 1 FROM runs WHERE run_id=?", (run_id,)).fetchone()
            if exists:
                if fields:
                    sets = ", ".join(f"{k}=?" for k in fields)
                    con.execute(f"UPDATE runs SET {sets} WHERE run_id=?",
                                (*fields.values(), run_id))
            else:
                cols = ["run_id", *fields]
                con.execute(f"INSERT INTO runs ({', '.join(cols)}) VALUES "
                            f"({', '.join('?' for _ in cols)})", (run_id, *fields.values()))

    def add_result(self, run_id: str, **fields: Any) -> int:
        try:
            return self._add_result(run_id, **fields)
        except sqlite3.DatabaseError as e:
            raise self._corrupt(e) from None

    def _add_result(self, run_id: str, **fields: Any) -> int:
        row = {k: fields.get(k) for k in _RESULT_COLUMNS}
        extra = {k: v for k, v in fields.items() if k not in _RESULT_COLUMNS}
        with closing(self._connect()) as con, con:
            cur = con.execute(
                f"INSERT INTO results (run_id, created, {', '.join(_RESULT_COLUMNS)}, extra) "
                f"VALUES (?, ?, {', '.join('?' for _ in _RESULT_COLUMNS)}, ?)",
                (run_id, _now(), *row.values(), to_json(extra, indent=None)))
            return int(cur.lastrowid)

    def runs(self) -> list[dict]:
        check_runs_root(self.root)
        if not self.path.exists():
            return []
        return [dict(r) for r in self._query("SELECT * FROM runs ORDER BY created, run_id")]

    def run(self, run_id: str) -> dict | None:
        if not self.path.exists():
            return None
        rows = self._query("SELECT * FROM runs WHERE run_id=?", (run_id,))
        return dict(rows[0]) if rows else None

    def results(self, run_id: str | None = None) -> list[dict]:
        if not self.path.exists():
            return []
        if run_id is None:
            rows = self._query("SELECT * FROM results ORDER BY id")
        else:
            rows = self._query("SELECT * FROM results WHERE run_id=? ORDER BY id", (run_id,))
        out = []
        for r in rows:
            d = dict(r)
            d["extra"] = json.loads(d["extra"]) if d.get("extra") else {}
            out.append(d)
        return out


@dataclass
class Run:
    """One run folder. Create with :meth:`Run.create`, reopen with :meth:`Run.open`."""

    path: Path
    index: Index | None = None
    writer: bool = True  # False on DDP ranks other than 0: they compute but never write

    @property
    def run_id(self) -> str:
        return self.path.name

    @classmethod
    def create(cls, runs_dir: str | Path, name: str, kind: str, writer: bool = True,
               **index_fields: Any) -> Run:
        root = check_runs_root(runs_dir)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name) or kind
        path = root / f"{safe}-{stamp}"
        k = 1
        while path.exists():
            k += 1
            path = root / f"{safe}-{stamp}-{k}"
        run = cls(path=path, index=Index(root), writer=writer)
        if writer:
            run.index._connect().close()  # a corrupt index stops us before the folder exists
            path.mkdir(parents=True)
            run.index.upsert_run(run.run_id, kind=kind, name=name, path=str(path.resolve()),
                                 created=_now(), status="running", **index_fields)
        return run

    @classmethod
    def open(cls, path: str | Path, writer: bool = True) -> Run:
        p = Path(path)
        if not p.is_dir():
            raise UserError(f"{p}: no such run folder")
        return cls(path=p, index=Index(p.parent), writer=writer)

    def file(self, name: str) -> Path:
        return self.path / name

    # -- writing; every method is a no-op for non-writers
    def write_config(self, toml_text: str) -> None:
        if self.writer:
            atomic_write_text(self.file("config.toml"), toml_text)

    def log(self, record: dict) -> None:
        if self.writer:
            append_jsonl(self.file("metrics.jsonl"), {"time": round(time.time(), 3), **record})

    def metrics(self) -> list[dict]:
        return read_jsonl(self.file("metrics.jsonl"))

    def write_results(self, results: dict) -> None:
        if self.writer:
            atomic_write_json(self.file("results.json"), results)

    def read_results(self) -> dict:
        p = self.file("results.json")
        if not p.exists():
            return {}
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise UserError(f"{p}: not valid JSON: {e}") from None

    def write_report(self, html: str) -> None:
        if self.writer:
            atomic_write_text(self.file("report.html"), html)

    def update_index(self, **fields: Any) -> None:
        if self.writer and self.index is not None:
            self.index.upsert_run(self.run_id, **fields)

    def add_result(self, **fields: Any) -> None:
        if self.writer and self.index is not None:
            self.index.add_result(self.run_id, **fields)

    @contextmanager
    def failing_marks_index(self):
        """``with run.failing_marks_index(): ...``: an exception inside marks the run failed."""
        try:
            yield self
        except BaseException as e:
            self.mark_failed(e)
            raise

    def mark_failed(self, error: BaseException) -> None:
        """Record in the index that this run stopped on ``error`` (never raises: it runs while
        another exception is on its way out)."""
        if not (self.writer and self.index is not None):
            return
        status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
        try:
            self.index.upsert_run(self.run_id, status=status,
                                  summary={"error": f"{type(error).__name__}: {error}"})
        except Exception:
            pass


def resolve_run(ref: str, runs_dir: str | Path = "runs") -> Path:
    """A run given as a folder path or as a run id in ``runs_dir`` (a unique prefix is enough)."""
    p = Path(ref)
    if p.is_dir():
        return p
    root = Path(runs_dir)
    if (root / ref).is_dir():
        return root / ref
    if root.is_dir():
        matches = sorted(d for d in root.iterdir() if d.is_dir() and d.name.startswith(ref))
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            names = ", ".join(m.name for m in matches[:5])
            raise UserError(f"run {ref!r} is ambiguous in {root}: {names}")
    raise UserError(f"run {ref!r} not found (neither a folder nor a run in {root})")


def runs_root_of(path: str | Path) -> Path:
    return Path(os.path.abspath(path)).parent

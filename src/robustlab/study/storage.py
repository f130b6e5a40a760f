"""Everything a study records, in one SQLite file in WAL mode (readers never block the writer),
one row per response; nothing lives only in memory, so a restarted server continues where it
stopped. Each connection is opened per call, so Flask's worker threads never share one.

Every state change checks its inputs first and raises :class:`Rejected` with an HTTP status, so
a forged, repeated or unknown submission changes nothing."""

from __future__ import annotations

import random
import secrets
import sqlite3
import time
from contextlib import closing
from pathlib import Path

from .design import N_GROUPS, sequence_for

_SCHEMA = """
CREATE TABLE IF NOT EXISTS participants (
    token TEXT PRIMARY KEY, grp INTEGER NOT NULL, created REAL NOT NULL,
    finished REAL, completion_code TEXT, simulated INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS assignments (
    token TEXT NOT NULL REFERENCES participants(token), position INTEGER NOT NULL,
    item_id TEXT NOT NULL, version TEXT NOT NULL, handle TEXT NOT NULL UNIQUE,
    nonce TEXT NOT NULL, PRIMARY KEY (token, position));
CREATE TABLE IF NOT EXISTS responses (
    id INTEGER PRIMARY KEY AUTOINCREMENT, token TEXT NOT NULL, position INTEGER NOT NULL,
    item_id TEXT NOT NULL, version TEXT NOT NULL, answer INTEGER NOT NULL,
    rt_ms INTEGER, created REAL NOT NULL, UNIQUE (token, position));
"""

CANT_TELL = -1  # the answer code of "can't tell"


class Rejected(Exception):
    """A request that must change nothing; ``status`` is its HTTP status code."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Store:
    def __init__(self, path: str | Path, manifest: dict):
        self.path = Path(path)
        self.manifest = manifest
        self.n_classes = len(manifest["classes"])
        # Kept open for the Store's life: closing the last connection of a WAL database
        # checkpoints and deletes the WAL (an fsync per request, 5 ms each here).
        self._keeper = self._connect()
        self._keeper.execute("PRAGMA journal_mode=WAL")
        self._keeper.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA busy_timeout=30000")
        # WAL + NORMAL: a committed response survives a killed server (only an OS crash could
        # lose the last commits), without an fsync per answer.
        con.execute("PRAGMA synchronous=NORMAL")
        return con

    def _tx(self, con):
        con.execute("BEGIN IMMEDIATE")  # one writer at a time: no two threads take one group

    # -- participants
    def new_participant(self, simulated: bool = False) -> str:
        """A participant with an unguessable token, in the group with fewest members."""
        token = secrets.token_urlsafe(24)
        with closing(self._connect()) as con:
            self._tx(con)
            try:
                counts = dict(con.execute("SELECT grp, COUNT(*) FROM participants GROUP BY grp")
                              .fetchall())
                group = min(range(N_GROUPS), key=lambda g: (counts.get(g, 0), g))
                con.execute("INSERT INTO participants (token, grp, created, simulated) "
                            "VALUES (?, ?, ?, ?)", (token, group, time.time(), int(simulated)))
                seq = sequence_for(self.manifest, group, random.Random(secrets.randbits(64)))
                con.executemany(
                    "INSERT INTO assignments VALUES (?, ?, ?, ?, ?, ?)",
                    [(token, k, iid, ver, secrets.token_hex(8), secrets.token_urlsafe(16))
                     for k, (iid, ver) in enumerate(seq)])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return token

    def participant(self, token: str | None) -> dict:
        if not token:
            raise Rejected(401, "no participant token")
        with closing(self._connect()) as con:
            row = con.execute("SELECT * FROM participants WHERE token=?", (token,)).fetchone()
        if row is None:
            raise Rejected(403, "unknown participant token")
        return dict(row)

    def progress(self, token: str) -> tuple[int, int]:
        with closing(self._connect()) as con:
            done = con.execute("SELECT COUNT(*) FROM responses WHERE token=?", (token,))
            total = con.execute("SELECT COUNT(*) FROM assignments WHERE token=?", (token,))
            return int(done.fetchone()[0]), int(total.fetchone()[0])

    def current(self, token: str) -> dict | None:
        """The participant's next unanswered assignment (None when finished)."""
        self.participant(token)
        with closing(self._connect()) as con:
            row = con.execute(
                "SELECT a.* FROM assignments a LEFT JOIN responses r ON r.token=a.token AND "
                "r.position=a.position WHERE a.token=? AND r.id IS NULL ORDER BY a.position "
                "LIMIT 1", (token,)).fetchone()
        return dict(row) if row else None

    def assignment_by_handle(self, token: str, handle: str) -> dict:
        self.participant(token)
        with closing(self._connect()) as con:
            row = con.execute("SELECT * FROM assignments WHERE token=? AND handle=?",
                              (token, handle)).fetchone()
        if row is None:
            raise Rejected(404, "unknown item")
        return dict(row)

    def submit(self, token: str | None, handle, nonce, answer, rt_ms=None) -> dict:
        """Record one answer; checks token (401/403), item (404), repeat (409), nonce (403) and
        answer (400) before anything is written."""
        self.participant(token)
        if not isinstance(handle, str) or not handle:
            raise Rejected(400, "no item")
        try:
            answer = int(answer)
        except (TypeError, ValueError):
            raise Rejected(400, "answer must be a class number or -1 (can't tell)") from None
        if not (answer == CANT_TELL or 0 <= answer < self.n_classes):
            raise Rejected(400, f"answer {answer} is not a class")
        try:
            rt_ms = None if rt_ms in (None, "") else max(0, int(float(rt_ms)))
        except (TypeError, ValueError):
            raise Rejected(400, "rt_ms must be a number") from None
        with closing(self._connect()) as con:
            self._tx(con)
            try:
                a = con.execute("SELECT * FROM assignments WHERE token=? AND handle=?",
                                (token, handle)).fetchone()
                if a is None:
                    raise Rejected(404, "unknown item")
                if con.execute("SELECT 1 FROM responses WHERE token=? AND position=?",
                               (token, a["position"])).fetchone():
                    raise Rejected(409, "this item was already answered")
                if not isinstance(nonce, str) or not secrets.compare_digest(nonce, a["nonce"]):
                    raise Rejected(403, "the form's nonce does not match this item")
                first_open = con.execute(
                    "SELECT MIN(a.position) FROM assignments a LEFT JOIN responses r ON "
                    "r.token=a.token AND r.position=a.position WHERE a.token=? AND r.id IS NULL",
                    (token,)).fetchone()[0]
                if a["position"] != first_open:
                    raise Rejected(409, "items are answered in order; this is not the current "
                                        "one")
                con.execute("INSERT INTO responses (token, position, item_id, version, answer,"
                            " rt_ms, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (token, a["position"], a["item_id"], a["version"], answer, rt_ms,
                             time.time()))
                left = con.execute(
                    "SELECT COUNT(*) FROM assignments a LEFT JOIN responses r ON "
                    "r.token=a.token AND r.position=a.position WHERE a.token=? AND r.id IS NULL",
                    (token,)).fetchone()[0]
                if left == 0:
                    con.execute("UPDATE participants SET finished=?, completion_code=? "
                                "WHERE token=?", (time.time(), secrets.token_hex(4).upper(),
                                                  token))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return {"ok": True, "left": int(left)}

    # -- reading everything (admin, statistics)
    def counts(self) -> dict:
        with closing(self._connect()) as con:
            q = lambda sql: con.execute(sql).fetchone()[0]  # noqa: E731
            per_group = dict(con.execute(
                "SELECT grp, COUNT(*) FROM participants GROUP BY grp").fetchall())
            return {"participants": q("SELECT COUNT(*) FROM participants"),
                    "finished": q("SELECT COUNT(*) FROM participants WHERE finished IS NOT "
                                  "NULL"),
                    "responses": q("SELECT COUNT(*) FROM responses"),
                    "per_group": {str(k): v for k, v in per_group.items()}}

    def responses(self) -> list[dict]:
        with closing(self._connect()) as con:
            return [dict(r) for r in con.execute(
                "SELECT r.*, p.grp, p.simulated FROM responses r JOIN participants p "
                "ON p.token=r.token ORDER BY r.id")]

    def assignments(self, token: str) -> list[dict]:
        with closing(self._connect()) as con:
            return [dict(r) for r in con.execute(
                "SELECT * FROM assignments WHERE token=? ORDER BY position", (token,))]

"""The study app in a real browser: Playwright driving Debian's Chromium against a server this
test starts on 127.0.0.1 (a subprocess, so a restart is a real one). Skipped, with the reason,
only when Flask, Playwright or /usr/bin/chromium is missing (`make test` installs them)."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from study_helpers import make_study

CHROMIUM = os.environ.get("ROBUSTLAB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
pytest.importorskip("flask", reason="Flask missing: pip install 'robustlab[study]'")
pw = pytest.importorskip("playwright.sync_api",
                         reason="Playwright missing: pip install 'robustlab[browser]'")
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium", allow_module_level=True)

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, study: Path):
        self.study, self.port = study, _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "robustlab", "study", "serve", str(self.study), "--port",
             str(self.port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(200):
            try:
                urllib.request.urlopen(self.base + "/", timeout=1)
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(self.proc.stderr.read().decode()) from None
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return make_study(tmp_path_factory.mktemp("bstudy"), n=6)


@pytest.fixture
def server(study):
    s = Server(study).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def chrome():
    with pw.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _store(study):
    from robustlab.study.design import load_manifest
    from robustlab.study.storage import Store

    return Store(study / "study.sqlite", load_manifest(study))


def _begin(page, server) -> str:
    page.goto(server.base + "/")
    page.check("#consent")
    page.click("#start")
    page.wait_for_selector("#stimulus")
    return page.url.rstrip("/").split("/p/")[1]


def _answered(study, token):
    return [r for r in _store(study).responses() if r["token"] == token]


def test_mouse_participant_completes_the_study(chrome, server, study):
    page = chrome.new_page()
    token = _begin(page, server)
    total = len(_store(study).assignments(token))
    for k in range(total):
        assert page.inner_text("#progress") == f"Image {k + 1} of {total}"
        page.click("button.cls >> nth=1")
        page.wait_for_load_state()
    code = page.inner_text("#completion-code")
    rs = _answered(study, token)
    assert len(rs) == total and all(r["answer"] == 1 for r in rs)
    assert all(r["rt_ms"] is not None for r in rs)
    assert code == _store(study).participant(token)["completion_code"]


def test_keyboard_participant_and_cant_tell(chrome, server, study):
    page = chrome.new_page()
    token = _begin(page, server)
    total = len(_store(study).assignments(token))
    keys = ["2", "c", "0"]
    for k in range(total):
        # A key pressed before the page's scripts have run is lost (no listener yet), which a
        # loaded CI machine hits: wait for the load event first.
        page.wait_for_load_state("load")
        with page.expect_navigation():
            page.keyboard.press(keys[k % 3])
    assert page.inner_text("#completion-code")
    assert [r["answer"] for r in _answered(study, token)] == \
        [[2, -1, 0][k % 3] for k in range(total)]


def test_two_participants_at_once_get_their_own_sequences(chrome, server, study):
    pages = [chrome.new_context().new_page() for _ in range(2)]
    tokens = [_begin(p, server) for p in pages]
    store = _store(study)
    groups = {store.participant(t)["grp"] for t in tokens}
    assert groups == {0, 1}
    seqs = [store.assignments(t) for t in tokens]
    n_items = len(store.manifest["items"])
    for s in seqs:
        assert len({a["item_id"] for a in s if a["version"] != "check"}) == n_items
    v = [{a["item_id"]: a["version"] for a in s} for s in seqs]
    assert all(v[0][it["id"]] != v[1][it["id"]] for it in store.manifest["items"])
    for _ in range(3):  # interleaved answers land with their own participant
        for k, p in enumerate(pages):
            p.click(f"button.cls >> nth={k}")
            p.wait_for_load_state()
    for k, t in enumerate(tokens):
        assert [r["answer"] for r in _answered(study, t)] == [k] * 3
        assert [r["item_id"] for r in _answered(study, t)] == [a["item_id"] for a in seqs[k][:3]]


def test_restart_mid_study_loses_nothing(chrome, server, study):
    page = chrome.new_page()
    token = _begin(page, server)
    total = len(_store(study).assignments(token))
    for _ in range(3):
        page.click("button.cls >> nth=0")
        page.wait_for_load_state()
    server.stop()
    server.start()
    page.goto(f"{server.base}/p/{token}")
    assert page.inner_text("#progress") == f"Image 4 of {total}"
    for _ in range(total - 3):
        page.click("button.cls >> nth=0")
        page.wait_for_load_state()
    assert page.inner_text("#completion-code")
    assert [r["position"] for r in _answered(study, token)] == list(range(total))


def _post(server, body, headers=None):
    req = urllib.request.Request(server.base + "/answer", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _get(server, path):
    try:
        with urllib.request.urlopen(server.base + path) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_forged_requests_are_rejected_and_change_nothing(server, study):
    store = _store(study)
    token = store.new_participant()
    status, nxt = _get(server, f"/api/next?token={token}")
    nxt = json.loads(nxt)
    assert status == 200 and set(nxt) == {"done", "total", "finished", "item", "nonce", "image"}
    good = {"token": token, "item": nxt["item"], "nonce": nxt["nonce"], "answer": 0}
    before = len(store.responses())
    for body, code in [({**good, "token": None}, 401), ({**good, "token": "x" * 32}, 403),
                       ({**good, "item": "deadbeef"}, 404), ({**good, "nonce": "forged"}, 403),
                       ({**good, "answer": 42}, 400), ({**good, "answer": "cat"}, 400)]:
        assert _post(server, body)[0] == code, body
    assert len(store.responses()) == before
    assert _post(server, good)[0] == 200
    assert _post(server, good)[0] == 409  # the same answer again
    assert len(store.responses()) == before + 1
    assert _get(server, f"/p/{'y' * 32}")[0] == 403
    assert _get(server, f"/p/{token}/image/deadbeef")[0] == 404
    # The labelling page names no label, version or file of the item it shows.
    html = _get(server, f"/p/{token}")[1].decode()
    assert "clean" not in html and "adv" not in html and "images/" not in html
    key = (study / "admin_token").read_text().strip()
    assert _get(server, "/admin")[0] == 401
    assert _get(server, "/admin?key=wrong")[0] == 403
    status, body = _get(server, f"/admin?key={key}&format=json")
    assert status == 200 and json.loads(body)["responses"] == before + 1

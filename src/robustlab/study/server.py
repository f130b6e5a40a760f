"""The study's web app (Flask; the optional ``study`` extra).

Flask rather than FastAPI: the app is a handful of server-rendered pages and one form post, every
request is a short SQLite transaction, and Flask's threaded server keeps it one process with no
event loop to reconcile with sqlite3's blocking calls.

Routes::

    GET  /                       consent and instructions
    POST /start                  a new participant (unguessable token) -> /p/<token>
    GET  /p/<token>              the current item, or the end page with the completion code
    GET  /p/<token>/image/<h>    the image of one of this participant's assignments
    POST /answer                 form or JSON {token, item, nonce, answer, rt_ms}
    GET  /api/next?token=        JSON: the current item's handle, nonce and progress
    GET  /admin?key=             live counts, behind the study's admin token

Status codes: 401 no token, 403 unknown token / wrong nonce / wrong admin key, 404 unknown item,
409 already answered or not the current item, 400 a malformed answer. A participant is never sent
a true label, a model label, an item's version or anyone else's answers.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from ..errors import UserError
from .design import load_manifest, verify_images
from .storage import Rejected, Store


def _flask():
    try:
        import flask
    except ModuleNotFoundError:
        raise UserError("the study server needs Flask: pip install 'robustlab[study]'") from None
    return flask


def create_app(study: str | Path):
    flask = _flask()
    # Absolute: Flask resolves a relative send_file path against the package, not the cwd.
    study = Path(study).resolve()
    manifest = load_manifest(study)
    verify_images(study, manifest)
    store = Store(study / "study.sqlite", manifest)
    admin_key = (study / "admin_token").read_text().strip()
    files = {it["id"]: {"clean": it["clean"]["file"], "adv": it["adv"]["file"]}
             for it in manifest["items"]}
    files.update({c["id"]: {"check": c["file"]} for c in manifest["checks"]})
    here = Path(__file__).parent
    app = flask.Flask(__name__, template_folder=str(here / "templates"),
                      static_folder=str(here / "static"))
    app.config["store"] = store
    n_total = len(manifest["items"]) + len(manifest["checks"])

    @app.errorhandler(Rejected)
    def rejected(e: Rejected):
        if flask.request.is_json or flask.request.path.startswith("/api"):
            return flask.jsonify({"error": str(e)}), e.status
        return flask.render_template("base.html", title=str(e)) + f"<p>{e}</p>", e.status

    @app.after_request
    def headers(resp):
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"  # the token is in the URL
        return resp

    @app.get("/")
    def consent():
        return flask.render_template("consent.html", title="Image labelling study", n=n_total)

    @app.post("/start")
    def start():
        if flask.request.form.get("consent") != "yes":
            raise Rejected(400, "consent is needed to take part")
        token = store.new_participant()
        return flask.redirect(flask.url_for("participant", token=token), code=303)

    @app.get("/p/<token>")
    def participant(token):
        p = store.participant(token)
        a = store.current(token)
        if a is None:
            return flask.render_template("end.html", title="Thank you",
                                         code=p["completion_code"])
        done, total = store.progress(token)
        return flask.render_template("label.html", title="Label the image", token=token, a=a,
                                     done=done, total=total, classes=manifest["classes"])

    @app.get("/p/<token>/image/<handle>")
    def image(token, handle):
        a = store.assignment_by_handle(token, handle)
        path = study / files[a["item_id"]][a["version"]]
        return flask.send_file(path, mimetype="image/png", max_age=0)

    @app.get("/api/next")
    def api_next():
        token = flask.request.args.get("token") or flask.request.headers.get("X-Token")
        store.participant(token)
        a = store.current(token)
        done, total = store.progress(token)
        if a is None:
            return flask.jsonify({"done": done, "total": total, "finished": True})
        return flask.jsonify({"done": done, "total": total, "finished": False,
                              "item": a["handle"], "nonce": a["nonce"],
                              "image": flask.url_for("image", token=token, handle=a["handle"])})

    @app.post("/answer")
    def answer():
        is_json = flask.request.is_json
        d = flask.request.get_json(silent=True) if is_json else flask.request.form
        if not isinstance(d, dict) and not hasattr(d, "get"):
            raise Rejected(400, "a JSON object is needed")
        token = d.get("token") or flask.request.headers.get("X-Token")
        out = store.submit(token, d.get("item"), d.get("nonce"), d.get("answer"),
                           d.get("rt_ms"))
        if is_json:
            return flask.jsonify(out)
        return flask.redirect(flask.url_for("participant", token=token), code=303)

    @app.get("/admin")
    def admin():
        key = flask.request.args.get("key")
        if not key:
            raise Rejected(401, "the admin page needs ?key=")
        if not secrets.compare_digest(key, admin_key):
            raise Rejected(403, "wrong admin key")
        c = store.counts()
        if flask.request.args.get("format") == "json":
            return flask.jsonify(c)
        return flask.render_template("admin.html", title="Study status", c=c)

    return app


def serve(study: str | Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the app until interrupted (Werkzeug's threaded server: one process, many users)."""
    from werkzeug.serving import make_server

    app = create_app(study)
    srv = make_server(host, port, app, threaded=True)
    srv.serve_forever()

"""`robustlab study`: build, serve and analyse a human-labelling study of adversarial images."""

from __future__ import annotations

from ..errors import UserError
from .common import add_runs_dir


def register(sub) -> None:
    p = sub.add_parser("study", help="human-labelling study of the images that fool a model",
                       description="Build a study from an evaluation run saved with --save-adv,"
                                   " serve it to participants, and analyse the answers.")
    s = p.add_subparsers(dest="study_command", metavar="STEP")
    c = s.add_parser("create", help="a study folder from an evaluation run")
    c.add_argument("eval_run", help="evaluation run folder (made with --save-adv)")
    c.add_argument("--n", type=int, default=100, help="fooling images to include (default 100)")
    c.add_argument("--checks", type=int, default=4, help="attention checks (default 4)")
    c.add_argument("--size", type=int, default=224, help="image size in pixels (default 224)")
    c.add_argument("--seed", type=int, default=0, help="seed of the item choice")
    add_runs_dir(c)
    c.set_defaults(func=cmd_create)
    v = s.add_parser("serve", help="run the web app")
    v.add_argument("study")
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=int, default=8000)
    v.set_defaults(func=cmd_serve)
    r = s.add_parser("results", help="statistics, report.html and the index")
    r.add_argument("study")
    r.add_argument("--simulate", type=int, default=0, metavar="K",
                   help="first add K simulated annotators to the answers (each call adds K more)")
    r.add_argument("--accuracy", type=float, default=0.9,
                   help="simulated annotators' accuracy (default 0.9)")
    r.add_argument("--invalid-share", type=float, default=0.3,
                   help="simulated share of perturbed images truly seen as the model's label")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--n-boot", type=int, default=2000, help="bootstrap replicates")
    r.set_defaults(func=cmd_results)
    p.set_defaults(func=lambda a: p.print_help() or 0)


def cmd_create(args) -> int:
    from ..runs import Run, resolve_run, runs_root_of
    from ..study.design import create_study

    path = resolve_run(args.eval_run, args.runs_dir or "runs")
    run = Run.create(args.runs_dir or runs_root_of(path), "study", kind="study")
    try:
        m = create_study(path, run.path, args.n, n_checks=args.checks, size=args.size,
                         seed=args.seed)
    except BaseException as e:
        run.mark_failed(e)
        raise
    run.update_index(status="created", dataset=m["dataset"],
                     summary={"items": len(m["items"]), "checks": len(m["checks"])})
    print(f"study {run.path}: {len(m['items'])} items, {len(m['checks'])} attention checks")
    print(f"serve it with: robustlab study serve {run.path}")
    return 0


def cmd_serve(args) -> int:
    from pathlib import Path

    from ..study.server import serve

    key = (Path(args.study) / "admin_token")
    if not key.is_file():
        raise UserError(f"{args.study}: not a study folder (no admin_token)")
    print(f"participants: http://{args.host}:{args.port}/", flush=True)
    print(f"admin: http://{args.host}:{args.port}/admin?key={key.read_text().strip()}",
          flush=True)
    serve(args.study, args.host, args.port)
    return 0


def cmd_results(args) -> int:
    from ..study.results import study_results_experiment

    res = study_results_experiment(args.study, simulate=args.simulate, accuracy=args.accuracy,
                                   invalid_share=args.invalid_share, seed=args.seed,
                                   n_boot=args.n_boot)

    def f(m):
        if m["estimate"] is None:
            return "-"
        return f"{m['estimate']:.3f} [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]"

    print(f"participants {res['n_kept']} kept of {res['n_participants']}; "
          f"{res['n_responses']} responses on {res['n_items']} items")
    for k in ("clean_accuracy", "adv_accuracy", "share_model", "share_true", "share_neither"):
        print(f"{k:32s} {f(res[k])}")
    print(f"{'robust_accuracy (model)':32s} {res['robust_accuracy']:.3f}")
    print(f"{'human_adjusted_robust_accuracy':32s} {f(res['human_adjusted_robust_accuracy'])}")
    print(f"{'krippendorff_alpha':32s} {res['krippendorff_alpha']}")
    print(f"report: {res['report']}")
    return 0

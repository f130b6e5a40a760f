"""`robustlab data list | check NAME | fetch NAME`: what datasets there are, whether their files
are present and intact, and what their images look like."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .common import console

BAD = ("missing", "mismatch")


def register(sub) -> None:
    p = sub.add_parser("data", help="list, check and download datasets",
                       description="Datasets by name: list them, check that their files are "
                                   "present and match their official SHA-256, or download them.")
    s = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    lp = s.add_parser("list", help="every dataset, and whether its files are found")
    lp.add_argument("--data-dir", default=None, help="look here first")
    lp.set_defaults(func=cmd_list)

    cp = s.add_parser("check", help="counts per split and class, checksums, a PNG of samples",
                      description="Check a dataset's files against their SHA-256, count "
                                  "examples per split and class, and write a grid of samples.")
    cp.add_argument("name", help="a dataset from `robustlab data list`")
    cp.add_argument("--data-dir", default=None, help="look here first")
    cp.add_argument("--path", default=None, help="the .npz file, for the dataset npz")
    cp.add_argument("--out", default=None,
                    help="where to write the sample grid (default: NAME-samples.png in "
                         "$ROBUSTLAB_DATA, else ~/.cache/robustlab, never the current folder)")
    cp.add_argument("--quiet", action="store_true",
                    help="print nothing; exit 0 if the files are present and intact, else 2")
    cp.set_defaults(func=cmd_check)

    fp = s.add_parser("fetch", help="download a dataset's files and check their SHA-256")
    fp.add_argument("name", help="a dataset from `robustlab data list`")
    fp.add_argument("--data-dir", default=None,
                    help="look here first, and download here (default: $ROBUSTLAB_DATA, else "
                         "~/.cache/robustlab)")
    fp.set_defaults(func=cmd_fetch)
    p.set_defaults(func=lambda args: p.print_help())


def cmd_list(args) -> int:
    from rich.table import Table

    from .. import data
    from ..data.files import locate, search_dirs

    t = Table(title="datasets")
    for col in ("name", "classes", "image size", "channels", "files"):
        t.add_column(col)
    for name in data.list_datasets():
        spec = data.get_spec(name)
        if spec.format == "npz":
            t.add_row(name, "from file", "from file", "from file", "give --path")
            continue
        dirs = search_dirs(spec, args.data_dir)
        needed = [f for f in spec.files if not f.optional]
        found = [f for f in needed if locate(f, dirs) is not None]
        state = ("found" if len(found) == len(needed)
                 else "missing" if not found else f"{len(found)}/{len(needed)} found")
        t.add_row(name, str(spec.num_classes), f"{spec.image_size}x{spec.image_size}",
                  str(spec.in_channels), state)
    console().print(t)
    return 0


def _problem(name: str, status: dict[str, str]) -> str | None:
    bad = {f: s for f, s in status.items() if s in BAD}
    if not bad:
        return None
    parts = [f"{f} {s}" for f, s in bad.items()]
    hint = (f"run `robustlab data fetch {name}`" if "mismatch" not in bad.values()
            else "delete the mismatching files and run `robustlab data fetch " + name + "`")
    return f"{name}: " + ", ".join(parts) + f"; {hint}"


def cmd_check(args) -> int:
    from .. import data

    spec = data.get_spec(args.name)
    if spec.format == "npz":
        if not args.path:
            raise UserError("data check npz: give the file with --path")
        status = {Path(args.path).name: "unchecked" if Path(args.path).is_file() else "missing"}
    else:
        status = data.verify(args.name, args.data_dir)
    problem = _problem(args.name, status)
    if args.quiet:
        if problem:
            raise UserError(problem)
        if spec.format == "npz":
            data.load("npz", "train", path=args.path)  # parse it: a corrupt file fails here
        return 0

    from rich.table import Table

    out = console()
    t = Table(title=f"{args.name}: files")
    t.add_column("file")
    t.add_column("SHA-256")
    for f, s in status.items():
        colour = {"ok": "green", "unchecked": "yellow"}.get(s, "red")
        t.add_row(f, f"[{colour}]{s}[/{colour}]")
    out.print(t)
    if problem:
        raise UserError(problem)

    splits = ["train"] if spec.format == "npz" else [s for s in spec.splits if s != "extra"]
    loaded = {s: data.load(args.name, s, data_dir=args.data_dir, download=False, path=args.path)
              for s in splits}
    spec = next(iter(loaded.values())).spec
    counts = {s: d.class_counts() for s, d in loaded.items()}
    t = Table(title=f"{args.name}: examples per class")
    t.add_column("class")
    for s in splits:
        t.add_column(s, justify="right")
    n_classes = max(len(c) for c in counts.values())
    for k in range(n_classes):
        label = spec.classes[k] if k < len(spec.classes) else str(k)
        t.add_row(f"{k} {label}", *[str(counts[s][k]) if k < len(counts[s]) else "0"
                                    for s in splits])
    t.add_row("[bold]total", *[f"[bold]{len(loaded[s])}" for s in splits])
    out.print(t)

    png = Path(args.out) if args.out else _cache_root() / f"{args.name}-samples.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    _write_samples(loaded[splits[-1]], png)
    out.print(f"samples of the {splits[-1]} split: {png}")
    return 0


def _write_samples(d, path: Path) -> None:
    """One row of up to 8 examples per class when there are few classes (class names on the
    left), else one captioned example of each of the first 100 classes."""
    import torch

    from ..report.images import save_png

    n_classes = max(1, d.spec.num_classes)
    per_class = 8 if n_classes <= 12 else 1
    shown = list(range(min(n_classes, 100)))
    picks = [torch.nonzero(d.labels == k).flatten()[:per_class] for k in shown]
    idx = torch.cat(picks)

    def name(k: int) -> str:
        return d.spec.classes[k] if k < len(d.spec.classes) else str(k)

    if per_class > 1:
        # keep rows aligned: a class with fewer examples is padded with blank images
        rows = [torch.cat([d.float_images(p), torch.ones(per_class - len(p),
                                                        *d.images.shape[1:])]) for p in picks]
        save_png(torch.cat(rows), path, nrow=per_class, scale=2,
                 row_labels=[f"{k} {name(k)}" for k in shown])
    else:
        save_png(d.float_images(idx), path, nrow=10, scale=2,
                 labels=[name(int(y)) for y in d.labels[idx]])


def cmd_fetch(args) -> int:
    from .. import data

    paths = data.fetch(args.name, args.data_dir)
    out = console()
    for p in paths:
        out.print(f"{args.name}: {p}")
    return 0


def _cache_root() -> Path:
    """Where unasked-for outputs go: the data cache, not the folder the user stands in."""
    import os

    env = os.environ.get("ROBUSTLAB_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "robustlab"

"""`robustlab models list` and `robustlab models info NAME ...`: architectures, parameter and
forward-FLOP counts. Models are built on the meta device, so even wrn-70-16 costs no memory."""

from __future__ import annotations

import argparse

from ..errors import UserError
from .common import console


def register(sub) -> None:
    p = sub.add_parser("models", help="list model architectures with parameter and FLOP counts",
                       description="Model architectures by name: families, norms, parameter "
                                   "counts and forward FLOPs (2 x conv/linear multiply-adds).")
    s = p.add_subparsers(dest="models_command", metavar="SUBCOMMAND")
    lp = s.add_parser("list", help="a table of representative models and the name patterns")
    _add_size_options(lp)
    lp.add_argument("--names", nargs="+", default=None, metavar="NAME",
                    help="models to show (default: a representative set)")
    lp.set_defaults(func=cmd_list)
    ip = s.add_parser("info", help="details of one or more models")
    ip.add_argument("names", nargs="+", metavar="NAME", help="e.g. resnet-50 wrn-28-10")
    _add_size_options(ip)
    ip.add_argument("--norm", default="bn", help="bn, mixbn, gn or none (default bn)")
    ip.add_argument("--width", type=int, default=None, help="override the base width")
    ip.set_defaults(func=cmd_info)
    cp = s.add_parser("convert", help="a RobustBench-layout .pt state dict to a robustlab "
                                      ".safetensors checkpoint",
                      description="Read IN (a PyTorch state dict, weights_only) into ARCH, "
                                  "check every key, and write OUT as a self-describing "
                                  ".safetensors; a model-info JSON beside IN is copied beside OUT.")
    cp.add_argument("input", metavar="IN.pt")
    cp.add_argument("output", metavar="OUT.safetensors")
    cp.add_argument("--arch", required=True,
                    help="e.g. dm-wrn-70-16-swish, dm-wrn-28-10, dm-preact-resnet-18, "
                         "trades-wrn-34-10")
    cp.add_argument("--dataset", default="cifar10",
                    help="cifar10 (default) or cifar100: classes and DeepMind mean/std")
    cp.add_argument("--num-classes", type=int, default=None)
    cp.set_defaults(func=cmd_convert)
    p.set_defaults(func=lambda args: p.print_help())


def _add_size_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input-size", default=None, metavar="C,H,W",
                   help="input shape for FLOPs (default 1,28,28 for cnn-small, else 3,32,32)")
    p.add_argument("--num-classes", type=int, default=10, help="classes (default 10)")


def parse_input_size(text: str | None) -> tuple[int, int, int] | None:
    if text is None:
        return None
    try:
        c, h, w = (int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise UserError(f"--input-size: expected C,H,W like 3,32,32, got {text!r}") from None
    if min(c, h, w) < 1:
        raise UserError(f"--input-size: sizes must be positive, got {text!r}")
    return c, h, w


def measure(name: str, num_classes: int, shape: tuple[int, int, int] | None, norm: str = "bn",
            width: int | None = None) -> dict:
    """Family, params and forward FLOPs of ``name`` at ``shape`` (its family's default if None)."""
    import torch

    from .. import models

    fam, _ = models.resolve(name)
    c, h, w = shape or fam.input_shape
    with torch.device("meta"):
        model = models.create(name, num_classes=num_classes, in_channels=c, norm=norm,
                              image_size=h, width=width)
    try:
        flops = models.count_flops(model, (c, h, w))
    except RuntimeError as e:
        raise UserError(f"{name} cannot run on input {c}x{h}x{w}: {str(e).splitlines()[0]}") \
            from None
    return {"name": name, "family": fam.family, "description": fam.description,
            "params": models.count_params(model), "flops": flops, "input": (c, h, w),
            "model": model}


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def cmd_list(args) -> int:
    from rich.table import Table

    from .. import models

    shape = parse_input_size(args.input_size)
    t = Table(title="models (forward FLOPs per example: 2 x conv/linear multiply-adds)",
              caption=f"every model takes norm = {', '.join(models.NORMS)}")
    for col in ("name", "family", "params", "forward FLOPs", "input"):
        t.add_column(col, justify="right" if col in ("params", "forward FLOPs") else "left",
                     no_wrap=True)
    for name in args.names or models.REPRESENTATIVE:
        r = measure(name, args.num_classes, shape)
        t.add_row(name, r["family"], _human(r["params"]), _human(r["flops"]),
                  "x".join(map(str, r["input"])))
    out = console()
    out.print(t)
    p = Table(title="name patterns")
    p.add_column("form")
    p.add_column("family")
    p.add_column("description")
    for fam in models.FAMILIES:
        p.add_row(fam.form, fam.family, fam.description)
    out.print(p)
    from ..models import dm_wideresnet, resnet, trades_wideresnet, wideresnet

    out.print(f"{resnet.DEPTH_RULE}\n{wideresnet.DEPTH_RULE}\n{dm_wideresnet.DEPTH_RULE}\n"
              f"{trades_wideresnet.DEPTH_RULE}")
    return 0


def cmd_convert(args) -> int:
    import shutil
    from pathlib import Path

    from .. import models
    from ..models.robustbench import load_published

    out_path = Path(args.output)
    if out_path.suffix != ".safetensors":
        raise UserError(f"output {out_path} must end in .safetensors")
    model = load_published(args.input, args.arch, args.dataset, args.num_classes)
    models.save_model(model, out_path)
    info = Path(args.input).with_suffix(".json")
    if info.is_file():
        shutil.copyfile(info, out_path.with_suffix(".json"))
    console().print(f"wrote {out_path} ({args.arch}, {models.count_params(model):,} params)")
    return 0


def cmd_info(args) -> int:
    from rich.table import Table

    shape = parse_input_size(args.input_size)
    out = console()
    for name in args.names:
        r = measure(name, args.num_classes, shape, norm=args.norm, width=args.width)
        t = Table(title=name, show_header=False)
        t.add_column("key")
        t.add_column("value")
        t.add_row("family", r["family"])
        t.add_row("description", r["description"])
        t.add_row("norm", args.norm)
        t.add_row("blocks", _layout(name))
        t.add_row("params", f"{r['params']:,}")
        t.add_row("forward FLOPs", f"{r['flops']:,} at {'x'.join(map(str, r['input']))}")
        t.add_row("training FLOPs / example", f"{3 * r['flops']:,} (forward + backward, 3x)")
        out.print(t)
    return 0


def _layout(name: str) -> str:
    from ..models import resnet, resolve

    fam, groups = resolve(name)
    if fam.family == "resnet":
        kind, layout = resnet.stage_blocks(groups[0])
        return f"{kind} blocks per stage {layout}"
    if fam.family == "wrn":
        blocks, widen = (groups[0] - 4) // 6, groups[1]
        return f"{blocks} pre-activation blocks per group, 3 groups, widen x{widen}"
    if fam.family in ("dm-wrn", "dm-wrn-swish", "trades-wrn"):
        blocks, widen = (groups[0] - 4) // 6, groups[1]
        return (f"{blocks} pre-activation blocks per group, 3 groups, widen x{widen} "
                "(published parameter names)")
    if fam.family in ("preact-resnet", "dm-preact-resnet"):
        return "pre-activation basic blocks per stage (2, 2, 2, 2)"
    return "conv32-conv32-pool-conv64-conv64-pool-fc200-fc200-fc"

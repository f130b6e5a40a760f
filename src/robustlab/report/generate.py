"""Report of `robustlab generate`: a per-class grid of samples (one row per class) next to the
grid of their seeds, the image-quality metrics on the named feature network, and per-class
energies before and after sampling."""

from __future__ import annotations

import torch

from .html import esc, img, page, table
from .images import grid_png_bytes


def class_grid(images: torch.Tensor, labels: torch.Tensor, num_classes: int,
               class_names: list[str], per_row: int = 10) -> bytes:
    """One row per class: its first ``per_row`` images."""
    rows, names = [], []
    for c in range(num_classes):
        xc = images[labels == c][:per_row]
        if len(xc) < per_row:  # pad a short class with blanks so rows stay aligned
            xc = torch.cat([xc, torch.full((per_row - len(xc), *images.shape[1:]), 255,
                                           dtype=images.dtype)])
        rows.append(xc)
        names.append(class_names[c])
    x = torch.cat(rows).float() / 255
    scale = max(1, 64 // images.shape[-1])
    return grid_png_bytes(x, nrow=per_row, scale=scale, row_labels=names)


def generate_report(run_id: str, results: dict, samples: torch.Tensor, seeds: torch.Tensor,
                    labels: torch.Tensor, num_classes: int) -> str:
    names = [p["name"] for p in results["per_class"]]
    m, s = results["metrics"], results["seed_metrics"]
    keys = [k for k in m if not k.endswith(" std")]
    metric_rows = [["samples", *[m[k] for k in keys]], ["seeds", *[s[k] for k in keys]]]
    ref_is = results["reference_IS"]
    fn = results["feature_net"]
    sections = [
        ("Image quality", f"<p>{results['n_samples']} samples ({results['n_per_class']} per "
         f"class) against {results['n_reference']} {esc(results['reference'])} images, on the "
         f"features of the independent network <b>{esc(fn['name'])}</b> (sha256 "
         f"<code>{esc(fn['sha256'][:16])}</code>), not the model that generated them. KID: "
         f"unbiased, cubic polynomial kernel, {results['kid']['subsets']} subsets of "
         f"{results['kid']['subset_size']}. IS of the test images themselves: "
         f"{next(iter(ref_is.values())):.3f}.</p>" + table(["images", *keys], metric_rows)),
        ("Samples, one row per class", img(class_grid(samples, labels, num_classes, names),
                                           "samples")),
        ("Their seeds", f"<p>{esc(results['seed_init'])} seeds fitted on the training split."
         "</p>" + img(class_grid(seeds, labels, num_classes, names), "seeds")),
        ("Per class", table(["class", "E(x,y) seeds", "E(x,y) samples",
                             "seeds classified as the class", "samples classified as the class",
                             "seed components"],
                            [[p["name"], p["joint_energy_seed"], p["joint_energy_sample"],
                              p["seed_hit_rate"], p["sample_hit_rate"], p["seed_components"]]
                             for p in results["per_class"]])),
        ("Sampler", table(["setting", "value"],
                          [(k, v) for k, v in {"sampler": results["sampler"],
                                               **results["sampler_settings"]}.items()])),
    ]
    return page(f"robustlab generate {run_id}", sections,
                subtitle=f"{results['sampler']} from {results['seed_init']} seeds, "
                         f"{results['dataset']}, model {results['model']}")

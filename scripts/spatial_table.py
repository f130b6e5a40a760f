"""Markdown table of spatial robustness (Engstrom et al., ICML 2019, Table 1 layout) from
`robustlab spatial` run folders: one row per model, accuracy natural / random / worst-of-10 /
grid for the bare model, and grid accuracy of the majority vote.

    python scripts/spatial_table.py LABEL=RUN_FOLDER [LABEL=RUN_FOLDER ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = [("model", "natural"), ("model", "random"), ("model", "worst-of-10"),
           ("model", "grid"), ("vote", "natural"), ("vote", "grid")]
HEADER = ["natural", "random", "worst-of-10", "grid", "vote: natural", "grid with vote"]


def main() -> None:
    pairs = [a.split("=", 1) for a in sys.argv[1:]]
    if not pairs or any(len(p) != 2 for p in pairs):
        sys.exit("usage: spatial_table.py LABEL=RUN_FOLDER [LABEL=RUN_FOLDER ...]")
    first = None
    lines = []
    for label, folder in pairs:
        f = Path(folder) / "results.json"
        if not f.is_file():
            sys.exit(f"error: {f} does not exist (a `robustlab spatial` run folder?)")
        r = json.loads(f.read_text())
        first = first or r
        acc = r["accuracy"]
        cells = [f"{100 * acc[t][a]:.1f}" if a in acc.get(t, {}) else "–" for t, a in COLUMNS]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {Path(folder).name} |")
    t = first["threat"]
    print(f"n = {first['n_examples']} {first['split']} images; rotations ±{t['max_angle']:g}°, "
          f"translations ±{t['max_trans']:g} px, border {t['border']}; "
          f"grid {first['grid_points']['total']} points\n")
    print("| training | " + " | ".join(HEADER) + " | run |")
    print("|---|" + "---:|" * len(HEADER) + "---|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

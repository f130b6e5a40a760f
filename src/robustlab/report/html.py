"""Self-contained HTML reports: one file, figures embedded as base64 PNG, no scripts."""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Sequence

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.flag{background:#fff3cd;border:1px solid #e0c36b;padding:.4em .7em;margin:.3em 0}
.ok{background:#e8f5e9;border:1px solid #9ccc9c;padding:.4em .7em;margin:.3em 0}
img{max-width:100%}code,pre{background:#f6f6f6;padding:.1em .3em}pre{padding:.6em;overflow:auto}
.meta{color:#666;font-size:.9em}
"""


def esc(x) -> str:
    return html.escape(str(x))


def img(png: bytes | None, alt: str = "") -> str:
    if not png:
        return ""
    b64 = base64.b64encode(png).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{b64}">'


def _cell(v) -> str:
    if isinstance(v, float):
        return esc(f"{v:.4g}")
    return esc("-" if v is None else v)


def table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def kv_rows(rows: Sequence[tuple]) -> str:
    """A two-column table of (name, value) rows with no header row (an empty one says nothing)."""
    body = "".join(f"<tr><th>{esc(k)}</th><td>{_cell(v)}</td></tr>" for k, v in rows)
    return f"<table><tbody>{body}</tbody></table>"


def human(v: float, unit: str = "") -> str:
    """1.23e13 -> '12.3 T' + unit: counts people read at a glance (FLOPs, examples)."""
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {prefix}{unit}"
    return f"{v:.3g} {unit}".rstrip()


def kv_table(d: dict) -> str:
    return table(["key", "value"], [(k, v) for k, v in d.items()])


def page(title: str, sections: Sequence[tuple[str, str]], subtitle: str = "") -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
             f"<style>{_STYLE}</style></head><body><h1>{esc(title)}</h1>"]
    if subtitle:
        parts.append(f"<p class='meta'>{esc(subtitle)}</p>")
    parts.append(f"<p class='meta'>generated {esc(time.strftime('%Y-%m-%d %H:%M:%S'))} "
                 "by robustlab</p>")
    for heading, body in sections:
        parts.append(f"<h2>{esc(heading)}</h2>{body}")
    parts.append("</body></html>")
    return "\n".join(parts)

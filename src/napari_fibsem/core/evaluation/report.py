"""One-page evaluation report (Markdown and HTML) comparing checkpoints.

The same tables go into both: the overall comparison (one row per checkpoint) and the
per-feature accuracy at the tightest threshold, plus the saved figures.
"""

from __future__ import annotations

import html
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from napari_fibsem.core.evaluation.config import EvalConfig, EvalResult, threshold_column
from napari_fibsem.core.io.atomic import atomic_write_text

_FIGURES = (("scatter", "Distance per feature"), ("histogram", "Distance histogram"),
            ("accuracy_plot", "Accuracy vs threshold"))  # fmt: skip


def _num(v: Any, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{100 * v:.1f}%" if pct else f"{v:.1f}"


def tables(result: EvalResult) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of the report's tables, shared by the Markdown and HTML writers."""
    ts = result.thresholds
    overall = [r for r in result.accuracy if r["feature"] == "ALL"]
    head = ["checkpoint", "points", "found", "miss rate", "mean px", "median px"] + [f"<= {t:g} px" for t in ts]
    body = [
        [r["checkpoint"], str(r["n"]), str(r["found"]), _num(r["miss_rate"], True), _num(r["mean_px"]),
         _num(r["median_px"])] + [_num(r[threshold_column(t)], True) for t in ts]
        for r in overall
    ]  # fmt: skip
    out = [("Checkpoints", head, body)]
    tight = min(ts)
    ckpts = [r["checkpoint"] for r in overall]
    features = list(dict.fromkeys(r["feature"] for r in result.accuracy if r["feature"] != "ALL"))
    cell = {(r["checkpoint"], r["feature"]): r for r in result.accuracy}
    per = []
    for f in features:
        line = [f]
        for c in ckpts:
            r = cell.get((c, f))
            line.append("-" if r is None else f"{_num(r[threshold_column(tight)], True)} ({_num(r['median_px'])} px)")
        per.append(line)
    out.append((f"Per feature: share within {tight:g} px (median distance)", ["feature", *ckpts], per))
    return out


def write_report(cfg: EvalConfig, result: EvalResult) -> dict[str, Path]:
    """Write ``report.md`` and ``report.html`` into ``cfg.save_path``."""
    save = cfg.save_path
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    images = len({r["filename"] for r in result.rows})
    intro = (
        f"Labelled points: {cfg.data_path} ({images} images, {len(result.rows) // max(len(cfg.checkpoints), 1)} "
        f"points per checkpoint); images: {cfg.images_path}; {when}."
    )
    figures = [(title, result.files[key].name) for key, title in _FIGURES if key in result.files]
    md = ["# Keypoint evaluation", "", intro, ""]
    for title, head, body in tables(result):
        md += [f"## {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        md += ["| " + " | ".join(row) + " |" for row in body] + [""]
    md += [f"![{t}]({f})" for t, f in figures]
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Keypoint evaluation</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;"
        "margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%}</style></head><body>",
        "<h1>Keypoint evaluation</h1>",
        f"<p>{e(intro)}</p>",
    ]
    for title, head, body in tables(result):
        parts.append(f"<h2>{e(title)}</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in body]
        parts.append("</table>")
    parts += [f"<h2>{e(t)}</h2><img src='{e(f)}' alt='{e(t)}'>" for t, f in figures]
    parts.append("</body></html>")
    atomic_write_text(save / "report.md", "\n".join(md) + "\n")
    atomic_write_text(save / "report.html", "\n".join(parts) + "\n")
    return {"report_md": save / "report.md", "report_html": save / "report.html"}

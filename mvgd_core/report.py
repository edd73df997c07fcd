"""Evaluation report: aggregate per-frame metrics, latency percentiles, write JSON + Markdown + HTML.

Pure Python/numpy (no ROS): `mvgd_ros/eval.py` collects predictions and fills `FrameResult`s.
Layout of a report folder:
    metrics.json      everything below, machine-readable (per-frame numbers included)
    README.md         tables: depth at the live camera, novel views, latency; notes
    index.html        the same tables with the pictures inline
    overview.png      one grid: a row per evaluated frame (input, GT, MVGD, baselines, errors)
    frames/*.png      one panel per evaluated frame
"""
from __future__ import annotations

import html
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

# metric key -> (label, format, higher is better)
METRIC_INFO = {
    "abs_rel": ("AbsRel", "{:.3f}", False),
    "sq_rel": ("SqRel", "{:.3f}", False),
    "rmse": ("RMSE (m)", "{:.3f}", False),
    "log_rmse": ("log RMSE", "{:.3f}", False),
    "delta1": ("δ<1.25", "{:.3f}", True),
    "psnr": ("PSNR (dB)", "{:.2f}", True),
    "ssim": ("SSIM", "{:.3f}", True),
    "coverage": ("coverage", "{:.2f}", True),
}
METHOD_LABELS = {
    "mvgd": "MVGD (node)",
    "plane_sweep": "plane-sweep stereo (RGB + poses, like MVGD)",
    "reprojection": "nearest-view reprojection (uses other views' GT depth)",
}
KIND_TITLES = {
    "depth_live": "Depth at the live camera (a conditioning view)",
    "novel": "Novel views (held-out frames, pose sent to the node)",
}


@dataclass
class FrameResult:
    """One evaluated target: kind 'depth_live' or 'novel'; metrics[method][metric] = value."""

    stamp: float
    kind: str
    metrics: dict = field(default_factory=dict)
    picture: str | None = None  # path relative to the report folder
    note: str = ""


def latency_stats(latencies_s) -> dict:
    """p50/p90/p99/mean/max in milliseconds and the sample count; empty dict-of-None if no samples."""
    a = np.asarray([x for x in latencies_s if x is not None and math.isfinite(x)], dtype=np.float64) * 1e3
    if a.size == 0:
        return {"n": 0, "p50_ms": None, "p90_ms": None, "p99_ms": None, "mean_ms": None, "max_ms": None}
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"n": int(a.size), "p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "mean_ms": float(a.mean()), "max_ms": float(a.max())}


def aggregate(results: list[FrameResult]) -> dict:
    """{kind: {method: {metric: mean over frames, 'n': frames}}}; NaN/None values are skipped."""
    out: dict = {}
    for r in results:
        for method, ms in r.metrics.items():
            slot = out.setdefault(r.kind, {}).setdefault(method, {})
            for k, v in ms.items():
                if v is None or not isinstance(v, (int, float)) or not math.isfinite(v):
                    continue
                slot.setdefault(k, []).append(float(v))
    for kind in out.values():
        for method, ms in kind.items():
            n = max((len(v) for v in ms.values()), default=0)
            kind[method] = {k: float(np.mean(v)) for k, v in ms.items()} | {"n": n}
    return out


def _fmt(metric: str, v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return METRIC_INFO.get(metric, (metric, "{:.3f}", True))[1].format(v)


def metric_table(agg_kind: dict, metrics: list[str]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) for one kind: a row per method (MVGD first), a column per metric present."""
    present = [m for m in metrics if any(m in v for v in agg_kind.values())]
    header = ["method", "frames"] + [METRIC_INFO[m][0] + (" ↑" if METRIC_INFO[m][2] else " ↓") for m in present]
    order = [m for m in METHOD_LABELS if m in agg_kind] + [m for m in agg_kind if m not in METHOD_LABELS]
    rows = [[METHOD_LABELS.get(m, m), str(agg_kind[m].get("n", 0))] + [_fmt(k, agg_kind[m].get(k)) for k in present] for m in order]
    return header, rows


def _md_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(header, rows) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{trs}</table>"


DEPTH_METRICS = ["abs_rel", "rmse", "delta1", "sq_rel", "log_rmse", "coverage"]
NOVEL_METRICS = ["psnr", "ssim", "abs_rel", "rmse", "delta1", "coverage"]


def headline(summary: dict) -> list[str]:
    """A few lines with the main numbers (printed at the end of `make demo`)."""
    lines = []
    agg = summary.get("aggregate", {})
    d = agg.get("depth_live", {})
    for m in ("mvgd", "plane_sweep", "reprojection"):
        if m in d:
            x = d[m]
            lines.append(f"depth@live {m:13s} AbsRel {_fmt('abs_rel', x.get('abs_rel'))}  RMSE {_fmt('rmse', x.get('rmse'))} m  δ1 {_fmt('delta1', x.get('delta1'))}  (n={x.get('n')})")
    nv = agg.get("novel", {})
    for m in ("mvgd", "plane_sweep", "reprojection"):
        if m in nv:
            x = nv[m]
            lines.append(f"novel view {m:13s} PSNR {_fmt('psnr', x.get('psnr'))} dB  SSIM {_fmt('ssim', x.get('ssim'))}  depth AbsRel {_fmt('abs_rel', x.get('abs_rel'))}  (n={x.get('n')})")
    lat = summary.get("latency", {})
    if lat.get("n"):
        lines.append(f"latency image->depth p50 {lat['p50_ms']:.0f} ms  p90 {lat['p90_ms']:.0f} ms  p99 {lat['p99_ms']:.0f} ms  (n={lat['n']})")
    return lines


def write_report(out_dir, summary: dict, results: list[FrameResult], overview: str | None = None) -> Path:
    """Write metrics.json, README.md and index.html into out_dir; returns the README path.

    summary: free-form run info (bag, model, topics, params, timings, notes list, latency);
    its "aggregate" is computed here from `results`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = dict(summary)
    summary["aggregate"] = aggregate(results)
    summary["frames"] = [asdict(r) for r in results]
    (out / "metrics.json").write_text(json.dumps(summary, indent=2, default=_json_default))

    md = [f"# MVGD evaluation: `{summary.get('bag', '?')}`", ""]
    info = [("model", summary.get("model")), ("node", summary.get("node_cmd")), ("topics", summary.get("topics")),
            ("frames", summary.get("frames_info")), ("baselines", summary.get("baselines_info")), ("wall time", summary.get("wall_time_s"))]
    md += [f"- **{k}**: {v if not isinstance(v, (dict, list)) else json.dumps(v)}" for k, v in info if v is not None]
    md.append("")
    tables_html = []
    for kind, metrics in (("depth_live", DEPTH_METRICS), ("novel", NOVEL_METRICS)):
        if kind not in summary["aggregate"]:
            continue
        header, rows = metric_table(summary["aggregate"][kind], metrics)
        md += [f"## {KIND_TITLES[kind]}", "", _md_table(header, rows), ""]
        tables_html.append(f"<h2>{html.escape(KIND_TITLES[kind])}</h2>" + _html_table(header, rows))
    lat = summary.get("latency") or {}
    if lat.get("n"):
        header = ["samples", "p50 (ms)", "p90 (ms)", "p99 (ms)", "mean (ms)", "max (ms)"]
        row = [str(lat["n"])] + [f"{lat[k]:.0f}" for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "max_ms")]
        md += ["## Latency: image published -> /mvgd/depth received (real DDS)", "", _md_table(header, [row]), ""]
        if summary.get("latency_note"):
            md += [summary["latency_note"], ""]
        tables_html.append("<h2>Latency (image in to depth out)</h2>" + _html_table(header, [row]))
    notes = summary.get("notes") or []
    if notes:
        md += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    md += ["## Pictures", ""]
    if overview:
        md += [f"![overview]({overview})", ""]
    md += [f"- {r.kind} @ {r.stamp:.3f}: [{r.picture}]({r.picture})" for r in results if r.picture]
    md.append("")
    readme = out / "README.md"
    readme.write_text("\n".join(md))

    pics = "".join(f"<h3>{html.escape(r.kind)} @ {r.stamp:.3f}</h3><img src='{html.escape(r.picture)}'>" for r in results if r.picture)
    notes_html = "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>" if notes else ""
    ov = f"<h2>Overview</h2><img src='{html.escape(overview)}'>" if overview else ""
    (out / "index.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>MVGD evaluation</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #aaa;padding:3px 8px}img{max-width:100%}</style>"
        f"<h1>MVGD evaluation: {html.escape(str(summary.get('bag', '?')))}</h1>" + "".join(tables_html) + notes_html + ov + pics
    )
    return readme


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)

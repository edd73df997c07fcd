"""Evaluation report: aggregate per-frame metrics, latency percentiles, write JSON + Markdown + HTML.

Pure Python/numpy (no ROS): `mvgd_ros/eval_node.py` collects the node's predictions and `mvgd_ros/eval_scoring.py` fills `FrameResult`s.
Layout of a report folder:
    metrics.json      everything below, machine-readable (per-frame numbers included)
    README.md         tables: depth at the live camera (headline: the observable regime, then
                      every regime), novel views, latency; notes
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

from mvgd_core.metrics import ALL, aggregate_by_regime
from mvgd_core.sparsification import PARTIAL_FRACTIONS, fraction_key

REGIMES = ("observable", "weak", "none")  # mvgd_core.observability.REGIMES (kept import-light: no torch here)

# metric key -> (label, format, higher is better)
METRIC_INFO = {
    "abs_rel": ("AbsRel", "{:.3f}", False),
    "abs_rel_px_median": ("pixel-median AbsRel", "{:.3f}", False),
    "sq_rel": ("SqRel", "{:.3f}", False),
    "rmse": ("RMSE (m)", "{:.3f}", False),
    "log_rmse": ("log RMSE", "{:.3f}", False),
    "delta1": ("δ<1.25", "{:.3f}", True),
    "psnr": ("PSNR (dB)", "{:.2f}", True),
    "ssim": ("SSIM", "{:.3f}", True),
    "coverage": ("coverage", "{:.2f}", True),
}
METHOD_LABELS = {  # table order: the model, classical baselines, know-nothing rows, the oracle
    "mvgd": "MVGD (node)",
    "mvs": "multi-view stereo (RGB + poses, like MVGD)",
    "mvs_confident": "multi-view stereo, confident pixels only (see coverage)",
    "mvgd_confident": "MVGD, its most confident pixels only, as many as mvs keeps (the row above's coverage)",
    "plane_sweep": "naive plane sweep (RGB + poses)",
    "const_gt_median": "constant at the true median (knows the scale only)",
    "const_train_median": "constant at the training median (knows nothing)",
    "reprojection": "nearest-view reprojection (oracle: other views' GT depth)",
}
REGIME_NOTE = ("Regimes: a frame is *observable* when >= 50 % of its valid ground-truth pixels move by >= 1 px "
               "(at model resolution) in some conditioning view when their depth changes by 25 %; *weak* 10-50 %; "
               "*none* below (turning in place, jitter). Only in the observable regime can depth come from geometry, "
               "so it is the headline. Statistics are over frames: the median (robust to a few bad frames) and the mean.")
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
    regime: str = ""  # mvgd_core.observability regime of the target ("" = not computed, e.g. no GT depth)
    observable_frac: float | None = None


def latency_stats(latencies_s) -> dict:
    """p50/p90/p99/mean/max in milliseconds and the sample count; empty dict-of-None if no samples."""
    a = np.asarray([x for x in latencies_s if x is not None and math.isfinite(x)], dtype=np.float64) * 1e3
    if a.size == 0:
        return {"n": 0, "p50_ms": None, "p90_ms": None, "p99_ms": None, "mean_ms": None, "max_ms": None}
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"n": int(a.size), "p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "mean_ms": float(a.mean()), "max_ms": float(a.max())}


def aggregate(results: list[FrameResult]) -> dict:
    """{kind: {method: {metric: mean over frames, metric_median: median over frames, 'n': frames}}};
    NaN/None values are skipped."""
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
            kind[method] = {k: float(np.mean(v)) for k, v in ms.items()} | {f"{k}_median": float(np.median(v)) for k, v in ms.items()} | {"n": n}
    return out


def regime_aggregate(results: list[FrameResult]) -> dict:
    """{kind: mvgd_core.metrics.aggregate_by_regime over its frames}: {"all" | regime: {method:
    {metric: {"mean", "median", "n"}, "n"}}}. Frames without a regime count as "none"."""
    out = {}
    for kind in dict.fromkeys(r.kind for r in results):
        rows = [{"regime": r.regime or "none", "metrics": r.metrics} for r in results if r.kind == kind]
        out[kind] = aggregate_by_regime(rows, REGIMES)
    return out


def _order(methods) -> list[str]:
    return [m for m in METHOD_LABELS if m in methods] + [m for m in methods if m not in METHOD_LABELS]


def _ms(st: dict, metric: str) -> str:
    """'median (mean)' of one {"mean", "median"} statistic."""
    if not st or not st.get("n"):
        return "–"
    return f"{_fmt(metric, st['median'])} ({_fmt(metric, st['mean'])})"


def regime_headline_table(agg: dict, regime: str = "observable", metrics=("abs_rel", "rmse", "delta1", "coverage"),
                          labels: dict = METHOD_LABELS, unit: str = "frames") -> tuple[list[str], list[list[str]]]:
    """(header, rows): one regime of `aggregate_by_regime`, each metric as 'median (mean)' over frames."""
    slot = agg.get(regime, {})
    present = [m for m in metrics if any(m in v for v in slot.values())]
    header = ["method", unit] + [METRIC_INFO[m][0] + (" ↑" if METRIC_INFO[m][2] else " ↓") + " median (mean)" for m in present]
    rows = [[labels.get(m, m), str(slot[m].get("n", 0))] + [_ms(slot[m].get(k), k) for k in present] for m in _order(slot)]
    return header, rows


def regime_split_table(agg: dict, metrics=("abs_rel", "delta1"), labels: dict = METHOD_LABELS, unit: str = "frames") -> tuple[list[str], list[list[str]]]:
    """(header, rows): per method, each regime's medians over frames (and frame counts)."""
    regs = [r for r in (*REGIMES, ALL) if r in agg]
    header = ["method"] + [f"{r}: {METRIC_INFO[m][0]} med" for r in regs for m in metrics] + [f"{unit} " + "/".join(regs)]
    rows = []
    for m in _order(agg.get(ALL, {})):
        cells = [labels.get(m, m)]
        for r in regs:
            st = agg[r].get(m, {})
            cells += [_fmt(k, st.get(k, {}).get("median")) if st.get("n") else "–" for k in metrics]
        cells.append("/".join(str(agg[r].get(m, {}).get("n", 0)) for r in regs))
        rows.append(cells)
    return header, rows


def _fmt(metric: str, v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return METRIC_INFO.get(metric, (metric, "{:.3f}", True))[1].format(v)


def metric_table(agg_kind: dict, metrics: list[str]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) for one kind: a row per method (MVGD first), a column per metric present."""
    present = [m for m in metrics if any(m in v for v in agg_kind.values())]
    header = ["method", "frames"] + [METRIC_INFO[m][0] + (" ↑" if METRIC_INFO[m][2] else " ↓") for m in present]
    order = _order(agg_kind)
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


DEPTH_METRICS = ["abs_rel", "abs_rel_px_median", "rmse", "delta1", "sq_rel", "log_rmse", "coverage"]
NOVEL_METRICS = ["psnr", "ssim", "abs_rel", "rmse", "delta1", "coverage"]


SHORT = {"mvgd": "mvgd", "mvgd_confident": "mvgd (confident px)", "mvs": "mvs", "mvs_confident": "mvs (confident px)", "plane_sweep": "plane_sweep", "const_gt_median": "const_gt_median",
         "const_train_median": "const_train_median", "reprojection": "reprojection (oracle)"}


def _med(st: dict, metric: str) -> str:
    """Median over frames of one metric of a method-in-regime slot, '–' when it has no frames."""
    x = st.get(metric, {}) if st.get("n") else {}
    return _fmt(metric, x.get("median")) if x else "–"


def _depth_headline(d: dict) -> list[str]:
    """Per method: observable AbsRel and δ1 as median (mean), then weak / none / all medians."""
    n = {r: max((v.get("n", 0) for v in d.get(r, {}).values()), default=0) for r in (*REGIMES, ALL)}
    lines = [f"depth@live: {n[ALL]} frames = {n['observable']} observable + {n['weak']} weak + {n['none']} none; median (mean) over frames",
             f"  {'method':22s} {'observable AbsRel':17s} {'δ1':13s} | {'weak AbsRel':11s} {'δ1':5s} | {'none AbsRel':11s} {'δ1':5s} | all AbsRel  δ1"]
    for m in _order(d.get(ALL, {})):
        o, w, z, a = (d.get(r, {}).get(m, {}) for r in ("observable", "weak", "none", ALL))
        obs = [_ms(o.get(k), k) if o.get("n") else "–" for k in ("abs_rel", "delta1")]
        lines.append(f"  {SHORT.get(m, m):22s} {obs[0]:17s} {obs[1]:13s} | {_med(w, 'abs_rel'):11s} {_med(w, 'delta1'):5s} | "
                     f"{_med(z, 'abs_rel'):11s} {_med(z, 'delta1'):5s} | {_med(a, 'abs_rel'):11s} {_med(a, 'delta1')}")
    ci = _observable_intervals(d.get("observable", {}))
    lines += [f"  95 % interval of the observable medians (bootstrap over frames): {ci}"] if ci else []
    return lines + _sparsification_line(d.get("observable", {}).get("mvgd", {}))


def _sparsification_line(st: dict) -> list[str]:
    """MVGD's per-frame sparsification, observable medians: AbsRel of its most confident 25 / 50 /
    75 / 100 % of pixels ([] when the node published no confidence)."""
    pts = [(round(100 * f), st.get(fraction_key(f), {})) for f in PARTIAL_FRACTIONS]
    if not st.get("n") or not all(p.get("n") for _, p in pts):
        return []
    cells = ", ".join(f"{k} % {_fmt('abs_rel', p['median'])}" for k, p in pts)
    return [f"  mvgd sparsification (observable medians): AbsRel of the most confident {cells}, all {_fmt('abs_rel', st['abs_rel']['median'])}"]


def _observable_intervals(slot: dict, methods=("mvgd", "mvs")) -> str:
    """'mvgd AbsRel [a, b] δ1 [c, d]; mvs ...' from the observable slot's median_ci95 (older
    metrics.json files without intervals give '')."""
    parts = []
    for m in methods:
        st = slot.get(m, {})
        if st.get("n", 0) < 2 or "median_ci95" not in st.get("abs_rel", {}):
            continue
        (a0, a1), (d0, d1) = st["abs_rel"]["median_ci95"], st["delta1"]["median_ci95"]
        parts.append(f"{SHORT.get(m, m)} AbsRel [{a0:.3f}, {a1:.3f}] δ1 [{d0:.3f}, {d1:.3f}]")
    return "; ".join(parts)


def _novel_headline(nv: dict) -> list[str]:
    """Per method: PSNR, SSIM and depth AbsRel at held-out views, median (mean) over frames."""
    lines = ["novel views: median (mean) over frames"] if nv else []
    for m in _order(nv):
        x = nv[m]
        if x.get("psnr") is None and x.get("abs_rel") is None:
            continue
        cell = {k: _ms({"median": x.get(f"{k}_median"), "mean": x.get(k), "n": x.get("n")}, k) if x.get(k) is not None else "–"
                for k in ("psnr", "ssim", "abs_rel")}
        lines.append(f"  {SHORT.get(m, m):22s} PSNR {cell['psnr']:15s} dB  SSIM {cell['ssim']:13s}  depth AbsRel {cell['abs_rel']}  (n={x.get('n')})")
    return lines


def headline(summary: dict) -> list[str]:
    """Compact lines with the main numbers (printed by mvgd-eval and at the end of `make demo`).

    Depth at the live camera: per method the observable regime (the headline) as median (mean)
    over frames for AbsRel and δ1, then the medians in the weak / none regimes and over all
    frames. Novel views: PSNR / SSIM / depth AbsRel medians (means). Then latency."""
    d = summary.get("regimes", {}).get("depth_live")
    lines = _depth_headline(d) if d else []
    lines += _novel_headline(summary.get("aggregate", {}).get("novel", {}))
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
    summary["regimes"] = regime_aggregate(results)
    summary["frames"] = [asdict(r) for r in results]
    (out / "metrics.json").write_text(json.dumps(summary, indent=2, default=_json_default))

    md = [f"# MVGD evaluation: `{summary.get('bag', '?')}`", ""]
    info = [("command", f"`{summary['command']}`" if summary.get("command") else None), ("model", summary.get("model")), ("node", summary.get("node_cmd")), ("topics", summary.get("topics")),
            ("frames", summary.get("frames_info")), ("baselines", summary.get("baselines_info")), ("wall time", summary.get("wall_time_s"))]
    md += [f"- **{k}**: {v if not isinstance(v, (dict, list)) else json.dumps(v)}" for k, v in info if v is not None]
    md.append("")
    tables_md, tables_html = _metric_sections(summary)
    lat_md, lat_html = _latency_section(summary)
    md += tables_md + lat_md
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
        f"<h1>MVGD evaluation: {html.escape(str(summary.get('bag', '?')))}</h1>" + "".join(tables_html + lat_html) + notes_html + ov + pics
    )
    return readme


def _metric_sections(summary: dict) -> tuple[list[str], list[str]]:
    """(markdown lines, html parts) of the live-depth and novel-view sections: the observable
    headline and the regime split where there is depth, then every frame's means."""
    md, parts = [], []
    for kind, metrics in (("depth_live", DEPTH_METRICS), ("novel", NOVEL_METRICS)):
        if kind not in summary["aggregate"]:
            continue
        md += [f"## {KIND_TITLES[kind]}", ""]
        parts.append(f"<h2>{html.escape(KIND_TITLES[kind])}</h2>")
        ra = summary["regimes"].get(kind, {})
        has_depth = any("abs_rel" in v for v in summary["aggregate"][kind].values())
        if has_depth and ra:
            sections = [("Observable regime (the headline): median (mean) over frames", regime_headline_table(ra)),
                        ("Every regime: medians over frames", regime_split_table(ra))]
            for title, (header, rows) in sections:
                md += [f"### {title}", "", _md_table(header, rows), ""]
                parts.append(f"<h3>{html.escape(title)}</h3>" + _html_table(header, rows))
            md += [REGIME_NOTE, ""]
            parts.append(f"<p>{html.escape(REGIME_NOTE)}</p>")
        header, rows = metric_table(summary["aggregate"][kind], metrics)
        title = "All frames: means over frames"
        md += [f"### {title}", "", _md_table(header, rows), ""]
        parts.append(f"<h3>{title}</h3>" + _html_table(header, rows))
    return md, parts


def _latency_section(summary: dict) -> tuple[list[str], list[str]]:
    """(markdown lines, html parts) of the latency table; empty when nothing was timed."""
    lat = summary.get("latency") or {}
    if not lat.get("n"):
        return [], []
    header = ["samples", "p50 (ms)", "p90 (ms)", "p99 (ms)", "mean (ms)", "max (ms)"]
    row = [str(lat["n"])] + [f"{lat[k]:.0f}" for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "max_ms")]
    md = ["## Latency: image published -> /mvgd/depth received (real DDS)", "", _md_table(header, [row]), ""]
    if summary.get("latency_note"):
        md += [summary["latency_note"], ""]
    return md, ["<h2>Latency (image in to depth out)</h2>" + _html_table(header, [row])]


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)

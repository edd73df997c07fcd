#!/usr/bin/env python3
"""Calibrate a matching model's per-pixel confidence and measure it on held-out data.

    python training/calibrate_confidence.py --model models/mvgd_default.pt \\
        --write models/candidates/mvgd_default_calibrated.pt --out runs/calib/default.json \\
        --figure models/figures/confidence_calibration.png

1. Fit (never an evaluation set): depth at a conditioning view ("cond" targets, the live
   camera; --views conditioning views, --steps DDIM steps, as training/evaluate_model.py) on
   --fit-num procedural targets at seed FIT_SEEDS[0] (evaluate_model uses 2_000_000 / 2_000_001
   procedural, 3_000_000.. TUM, 4_000_000 HoloLens, 5_000_000 tabletop; the trainer's validation
   1_000_000.., training data.seed 0.., the learning curve 3_000_000)
   and --fit-num targets from the HoloLens walk's TRAIN part (frames [0, 279),
   mvgd_core.data.splits) at sequence seed FIT_SEEDS[1]. The model's raw confidence (cost
   volume peak mass) is mapped to P(depth within 25 %) by isotonic regression
   (mvgd_core.calibration): one table where the matching distribution peaks inside the depth
   range, one where it peaks at the first / last hypothesis (a failed match; --no-edge-table
   fits a single table), one for the pixels the photometric refinement replaced, and (stop 37)
   one over the learned stage's own score where the checkpoint's stage has an uncertainty
   output (`train_refine_net.py train --uncertainty`; --no-stage-table leaves those pixels to
   the peak-mass tables). Stored under "confidence_calibration" in a copy of the checkpoint
   (--write; written atomically, so OUT may equal IN). MVGDPredictor.from_checkpoint applies it
   to every confidence it returns; a rerun always refits from the raw score.
2. Evaluate on the sets evaluate_model.py holds out (its section helpers and seeds: procedural
   2_000_000, HoloLens last quarter, tabletop), cond targets, --eval-num per set: ECE raw vs
   calibrated, the reliability table, and the sparsification curve (AbsRel of the most
   confident 25/50/75/100 % of pixels, with the oracle) per set, over all targets and over the
   targets in the observable regime (mvgd_core.observability, as model_eval splits them).
   Prints Markdown, writes --out JSON and the --figure PNG (PIL: no plotting package needed).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "training"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from evaluate_model import REAL_SAMPLING, _first_existing, hololens_section, procedural_section, tabletop_section  # noqa: E402
from mvgd_core import charts  # noqa: E402
from mvgd_core.calibration import ConfidenceCalibration, delta1_correct, expected_calibration_error, match_confidence, reliability  # noqa: E402
from mvgd_core.checkpoint import CALIBRATION_KEY, load_checkpoint, save_checkpoint  # noqa: E402
from mvgd_core.config import from_dict  # noqa: E402
from mvgd_core.data.sampler import DataConfig  # noqa: E402
from mvgd_core.data.types import collate_samples  # noqa: E402
from mvgd_core.inference import MVGDPredictor  # noqa: E402
from mvgd_core.model_eval import held_out_samples, sequence_samples  # noqa: E402
from mvgd_core.observability import observability  # noqa: E402
from mvgd_core.refine import RefineConfig  # noqa: E402
from mvgd_core.sparsification import sparsification_curve  # noqa: E402

FIT_SEEDS = (6_000_000, 6_000_001)  # procedural, HoloLens train part: used by no training, validation or evaluation
EVAL_SECTIONS = {"procedural": procedural_section, "hololens": hololens_section, "tabletop": tabletop_section}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- data


def fit_sets(args, data: DataConfig, hw) -> tuple[dict, list[str]]:
    """{name: cond samples} to fit on (the ones --fit-sets names), and notes on what was skipped."""
    names = [n.strip() for n in args.fit_sets.split(",") if n.strip()]
    if not names or set(names) - {"procedural", "hololens_train"}:
        raise SystemExit(f"calibrate_confidence: --fit-sets takes procedural and/or hololens_train, got {args.fit_sets!r}")
    sets, notes = {}, []
    if "procedural" in names:
        sets["procedural"] = held_out_samples(data, args.fit_num, FIT_SEEDS[0], args.views, "cond")
    if "hololens_train" not in names:
        return sets, notes
    path = _first_existing(args.hololens)
    if path is None:
        notes.append(f"hololens train part skipped: none of {args.hololens} exists")
        return sets, notes
    from mvgd_core.data.deepvideomvs import list_images, read_deepvideomvs
    from mvgd_core.data.splits import hololens_split

    train, _ = hololens_split(len(list_images(path)))
    frames = read_deepvideomvs(path, indices=train)
    sets["hololens_train"] = sequence_samples([frames], hw, args.fit_num, FIT_SEEDS[1], args.views, "cond", REAL_SAMPLING)
    return sets, notes


def eval_sets(args, data: DataConfig, hw) -> tuple[dict, dict, list[str]]:
    """({name: cond samples}, {name: info}, notes) from evaluate_model's held-out sections."""
    ns = argparse.Namespace(num=args.eval_num, hololens_num=args.eval_num, tabletop_num=args.eval_num, views=args.views,
                            hololens=args.hololens, tabletop=args.tabletop)
    sets, infos, notes = {}, {}, []
    for key, section in EVAL_SECTIONS.items():
        got = section(ns, data, hw)
        if isinstance(got, str):
            notes.append(f"{key} skipped: {got}")
            continue
        sets[key], infos[key] = got[0]["cond"], {"title": got[1], **got[2]}
    return sets, infos, notes


# --------------------------------------------------------------------------- prediction


class RawPredictor(MVGDPredictor):
    """MVGDPredictor that returns the raw peak mass and keeps the calibration's inputs of its
    last call in `last` = (raw, out_of_range, refined, stage), all (B, H, W); refined: the pixels
    the photometric refinement replaced (all False without it); stage: the learned stage's own
    confidence (NaN where it has none)."""

    def confidence(self, match, hw, refined=None, stage=None):
        raw, edge = match_confidence(match, hw)
        self.last = (raw, edge, torch.zeros_like(edge) if refined is None else refined.bool(),
                     torch.full_like(raw, float("nan")) if stage is None else stage.float())
        return raw


def predict_pixels(pred: RawPredictor, samples, steps: int, batch: int, what: str) -> list[dict]:
    """Per sample {"depth", "gt", "raw", "edge", "refined", "stage" (H, W) np, "regime"}: depth, GT,
    raw confidence, out-of-range flag, refined flag, the stage's score, observability regime (as model_eval)."""
    out = []
    for i in range(0, len(samples), batch):
        chunk = samples[i : i + batch]
        pred.last = None
        d, _ = pred.predict_batch(collate_samples(chunk), "depth", steps=steps, seed=i, return_confidence=True)
        if pred.last is None:
            raise SystemExit("calibrate_confidence: the model gives no confidence (ModelConfig.matching is off)")
        raw, edge, refined, stage = pred.last
        for j, s in enumerate(chunk):
            hw = tuple(s.tgt_depth.shape[-2:])
            reg = observability(s.tgt_depth, s.tgt_K, s.tgt_T_wc, s.cond_K, s.cond_T_wc, hw, cond_hw=hw).regime
            out.append({"depth": d[j].numpy(), "gt": s.tgt_depth.numpy(), "raw": raw[j].numpy(), "edge": edge[j].numpy(),
                        "refined": refined[j].numpy(), "stage": stage[j].numpy(), "regime": reg})
        log(f"  {what}: {min(i + batch, len(samples))}/{len(samples)} targets")
    return out


def pooled(recs, key: str = "raw") -> tuple[np.ndarray, ...]:
    """(recs' `key` scores, delta1 inlier, out-of-range flag, refined flag, stage score) over their valid pixels, 1-D."""
    cols = {k: [np.zeros(0, bool if k in ("ok", "edge", "refined") else np.float64)] for k in ("val", "ok", "edge", "refined", "stage")}
    for r in recs:
        ok, valid = delta1_correct(r["depth"], r["gt"])
        for k, v in (("val", r[key]), ("ok", ok), ("edge", r["edge"]), ("refined", r["refined"]), ("stage", r["stage"])):
            cols[k].append(v[valid])
    return tuple(np.concatenate(cols[k]) for k in ("val", "ok", "edge", "refined", "stage"))


# --------------------------------------------------------------------------- metrics


def curves(recs, conf_key: str) -> dict:
    """Sparsification pooled over pixels of all targets, and the mean of per-target curves."""
    if not recs:
        return {}
    cat = lambda k: np.concatenate([r[k].ravel() for r in recs])  # noqa: E731
    per = [sparsification_curve(r["depth"], r["gt"], r[conf_key]) for r in recs]
    mean = lambda k: np.nanmean([p[k] for p in per], axis=0).tolist()  # noqa: E731
    return {"pooled": sparsification_curve(cat("depth"), cat("gt"), cat(conf_key)),
            "per_target_mean": {"fractions": per[0]["fractions"], "abs_rel": mean("abs_rel"), "oracle": mean("oracle")}}


def set_metrics(recs, cal: ConfidenceCalibration, bins: int) -> dict:
    """ECE, reliability and sparsification, raw and calibrated, over all targets and the observable ones."""
    out = {}
    for regime, rs in (("all", recs), ("observable", [r for r in recs if r["regime"] == "observable"])):
        raw, ok, edge, refined, stage = pooled(rs)
        cal_p = cal.apply(raw, edge, refined, stage)
        staged = np.isfinite(stage)
        out[regime] = {"targets": len(rs), "pixels": int(raw.size), "delta1_rate": float(ok.mean()) if raw.size else float("nan"),
                       "out_of_range_share": float(edge.mean()) if raw.size else float("nan"),
                       "refined_share": float(refined.mean()) if raw.size else float("nan"),
                       "delta1_rate_refined": float(ok[refined].mean()) if refined.any() else float("nan"),
                       "delta1_rate_out_of_range": float(ok[edge].mean()) if edge.any() else float("nan"),
                       "stage_share": float(staged.mean()) if raw.size else float("nan"),
                       "ece_raw": expected_calibration_error(raw, ok, bins), "ece_calibrated": expected_calibration_error(cal_p, ok, bins),
                       "reliability_raw": reliability(raw, ok, bins), "reliability_calibrated": reliability(cal_p, ok, bins),
                       "sparsification_raw": curves(rs, "raw"), "sparsification_calibrated": curves(rs, "cal"),
                       "min_confidence": thresholds(cal_p, ok)}
    return out


def thresholds(prob: np.ndarray, ok: np.ndarray, levels=(0.3, 0.5, 0.7, 0.9)) -> list[dict]:
    """What the node's min_confidence keeps at each level: share of valid pixels and their δ1 rate."""
    return [{"min_confidence": t, "kept": float((prob >= t).mean()) if prob.size else float("nan"),
             "delta1_rate_kept": float(ok[prob >= t].mean()) if (prob >= t).any() else float("nan")} for t in levels]


# --------------------------------------------------------------------------- report


def fmt(v, nd=3) -> str:
    return "n/a" if v is None or v != v else f"{v:.{nd}f}"


def markdown(report: dict) -> str:
    rows = ["| set | regime | targets | pixels | δ1 rate | ECE raw | ECE calibrated | AbsRel 25/50/75/100 % (raw conf.) | calibrated conf. | oracle |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for name, sec in report["eval"].items():
        for regime, m in sec["metrics"].items():
            sp = lambda k, c: "/".join(fmt(v) for v in m[k]["pooled"][c]) if m[k] else "–"  # noqa: E731
            rows.append(f"| {name} | {regime} | {m['targets']} | {m['pixels']} | {fmt(m['delta1_rate'])} | {fmt(m['ece_raw'])} | "
                        f"{fmt(m['ece_calibrated'])} | {sp('sparsification_raw', 'abs_rel')} | {sp('sparsification_calibrated', 'abs_rel')} | "
                        f"{sp('sparsification_raw', 'oracle')} |")
    out = ["Held-out sets, cond targets (live camera). Sparsification pooled over the pixels of all targets.", "", *rows, "",
           *threshold_table(report["eval"]), ""]
    for name, sec in report["eval"].items():
        m = sec["metrics"]["all"]
        rr, rc = m["reliability_raw"], m["reliability_calibrated"]
        out += [f"Reliability, {name}, all targets (bin: mean predicted -> observed δ1 rate (pixels)):", "",
                "| bin | raw | calibrated |", "|---|---|---|"]
        for k in range(len(rr["count"])):
            cell = lambda r: f"{fmt(r['mean_pred'][k])} -> {fmt(r['observed'][k])} ({r['count'][k]})" if r["count"][k] else "–"  # noqa: E731
            out.append(f"| {rr['edges'][k]:.1f}-{rr['edges'][k + 1]:.1f} | {cell(rr)} | {cell(rc)} |")
        out.append("")
    return "\n".join(out)


def threshold_table(evals: dict) -> list[str]:
    """Markdown lines: per set, the share of valid pixels min_confidence keeps (and their δ1 rate)."""
    if not evals:
        return []
    levels = [t["min_confidence"] for t in next(iter(evals.values()))["metrics"]["all"]["min_confidence"]]
    out = ["min_confidence on the calibrated probability, all targets: share of valid pixels kept (δ1 rate of the kept ones):", "",
           "| set | " + " | ".join(f"≥ {t}" for t in levels) + " |", "|---|" + "---|" * len(levels)]
    for name, sec in evals.items():
        out.append(f"| {name} | " + " | ".join(f"{fmt(t['kept'], 2)} ({fmt(t['delta1_rate_kept'], 2)})" for t in sec["metrics"]["all"]["min_confidence"]) + " |")
    return out


RAW_C, CAL_C, ORA_C = (214, 39, 40), (31, 119, 180), (120, 120, 120)
QUARTERS = [0.0, 0.25, 0.5, 0.75, 1.0]


def figure(path: Path, report: dict) -> Path:
    """Per held-out set: reliability diagram (raw vs calibrated) above the sparsification curve."""
    from PIL import Image, ImageDraw, ImageFont

    sets = report["eval"]
    cw, ch = 380, 300
    img = Image.new("RGB", (cw * max(len(sets), 1), 2 * ch + 24), (255, 255, 255))
    draw, font = ImageDraw.Draw(img), ImageFont.load_default()
    draw.text((8, 4), "confidence: raw peak mass (red), calibrated (blue), oracle (grey); cond targets, all pixels", fill=(0, 0, 0), font=font)
    for i, (name, sec) in enumerate(sets.items()):
        m = sec["metrics"]["all"]
        X, Y = charts.axes(draw, (i * cw, 24, (i + 1) * cw, 24 + ch), f"{name}: reliability (ECE {fmt(m['ece_raw'])} -> {fmt(m['ece_calibrated'])})",
                           font, "predicted P(depth within 25 %)", (0.0, 1.0), (0.0, 1.0), QUARTERS)
        draw.line([X(0), Y(0), X(1), Y(1)], fill=ORA_C)
        for key, col in (("reliability_raw", RAW_C), ("reliability_calibrated", CAL_C)):
            charts.polyline(draw, X, Y, m[key]["mean_pred"], m[key]["observed"], col)
        sr, sc = m["sparsification_raw"]["pooled"], m["sparsification_calibrated"]["pooled"]
        vals = [v for v in sr["abs_rel"] + sc["abs_rel"] + sr["oracle"] if v == v]
        X, Y = charts.axes(draw, (i * cw, 24 + ch, (i + 1) * cw, 24 + 2 * ch), f"{name}: AbsRel of the most confident fraction", font,
                           "fraction of pixels kept", (0.0, 1.0), (0.0, 1.05 * max(vals, default=1.0)), QUARTERS)
        for curve, key, col in ((sr, "abs_rel", RAW_C), (sc, "abs_rel", CAL_C), (sr, "oracle", ORA_C)):
            charts.polyline(draw, X, Y, curve["fractions"], curve[key], col)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/mvgd_default.pt", help="checkpoint to calibrate (a matching model)")
    ap.add_argument("--write", required=True, help="calibrated checkpoint to write (may equal --model; atomic)")
    ap.add_argument("--out", default="runs/calib/default.json", help="JSON report")
    ap.add_argument("--figure", default="models/figures/confidence_calibration.png", help="PNG ('' = none)")
    ap.add_argument("--fit-num", type=int, default=384, help="cond targets per fitting set (procedural, HoloLens train part)")
    ap.add_argument("--eval-num", type=int, default=96, help="cond targets per held-out set")
    ap.add_argument("--fit-sets", default="procedural,hololens_train", help="comma list of procedural, hololens_train")
    ap.add_argument("--knots", type=int, default=64, help="at most this many knots (quantile bins of the raw score)")
    ap.add_argument("--bins", type=int, default=10, help="reliability / ECE bins")
    ap.add_argument("--no-edge-table", dest="edge_table", action="store_false",
                    help="one table for all pixels (default: a second table where the matching mode is the first / last hypothesis)")
    ap.add_argument("--no-refined-table", dest="refined_table", action="store_false",
                    help="no third table for the pixels the photometric refinement replaced (default: one, when it replaced any)")
    ap.add_argument("--no-stage-table", dest="stage_table", action="store_false",
                    help="no fourth table over the learned stage's own score (default: one, when the checkpoint's stage has an "
                         "uncertainty output); without it those pixels get the peak-mass tables, as before stop 37")
    ap.add_argument("--views", type=int, default=3, help="conditioning views per target (as evaluate_model)")
    ap.add_argument("--steps", type=int, default=1, help="DDIM steps (1 = the node's default)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--hololens", default="data/hololens_office|../shared/data/hololens_office", help="first existing wins")
    ap.add_argument("--tabletop", default="data/tabletop_box|../shared/data/tabletop_box", help="first existing wins")
    ap.add_argument("--no-refine", action="store_true", help="fit on the network's depth without the photometric refinement "
                    "(mvgd_core/refine.py); the node publishes refined depth by default (parameter refine_depth)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    return ap


def fit(args, pred: "RawPredictor", data: DataConfig, hw) -> tuple[ConfidenceCalibration, dict, list[str]]:
    """Predict the fitting sets and fit the table: (calibration, fit summary, notes)."""
    fits, notes = fit_sets(args, data, hw)
    recs, rates = [], {}
    for name, samples in fits.items():
        got = predict_pixels(pred, samples, args.steps, args.batch, f"fit {name}")
        rates[name] = float(pooled(got)[1].mean())
        recs += got
    if not recs:
        raise SystemExit(f"calibrate_confidence: nothing to fit on ({'; '.join(notes)})")
    raw, ok, edge, refined, stage = pooled(recs)
    source = (f"cond targets, {args.views} views, {args.steps} DDIM step(s): " + ", ".join(f"{k} {len(v)}" for k, v in fits.items())
              + f" (procedural seed {FIT_SEEDS[0]}, HoloLens train frames at seed {FIT_SEEDS[1]})")
    cal = ConfidenceCalibration.fit(raw, ok, edge if args.edge_table else None, bins=args.knots, source=source,
                                    refined=refined if args.refined_table else None, stage=stage if args.stage_table else None)
    summary = {"source": source, "pixels": int(raw.size), "delta1_rate": float(ok.mean()), "delta1_rate_per_set": rates,
               "out_of_range_share": float(edge.mean()),
               "delta1_rate_out_of_range": float(ok[edge].mean()) if edge.any() else float("nan"),
               "refined_share": float(refined.mean()), "delta1_rate_refined": float(ok[refined].mean()) if refined.any() else float("nan"),
               "stage_share": float(np.isfinite(stage).mean()),
               "knots": [len(cal.x), len(cal.edge_x), len(cal.refined_x), len(cal.stage_x)],
               "ece_raw": expected_calibration_error(raw, ok, args.bins),
               "ece_calibrated": expected_calibration_error(cal.apply(raw, edge, refined, stage), ok, args.bins)}
    log(f"fitted on {raw.size} pixels ({summary['delta1_rate']:.3f} inliers; {summary['out_of_range_share']:.3f} out of range, "
        f"{summary['delta1_rate_out_of_range']:.3f} inliers there; {summary['refined_share']:.3f} refined, "
        f"{summary['delta1_rate_refined']:.3f} inliers there; {summary['stage_share']:.3f} with the stage's score): "
        f"{len(cal.x)} + {len(cal.edge_x)} + {len(cal.refined_x)} + {len(cal.stage_x)} knots; "
        f"fit-set ECE {summary['ece_raw']:.3f} -> {summary['ece_calibrated']:.3f}")
    return cal, summary, notes


def write_checked(args, ckpt: dict, cal: ConfidenceCalibration, pred: "RawPredictor", probe) -> None:
    """Store the table in a copy of the checkpoint at --write (atomic: OUT may be IN), reload it
    as the node does and check it returns exactly the calibrated confidence on `probe` samples."""
    save_checkpoint(args.write, {**ckpt, CALIBRATION_KEY: cal.to_dict()})
    check = MVGDPredictor.from_checkpoint(args.write, device=args.device, steps=args.steps)
    b = collate_samples(probe)
    _, got = check.predict_batch(b, "depth", steps=args.steps, return_confidence=True)
    pred.predict_batch(b, "depth", steps=args.steps, return_confidence=True)
    if not (check.confidence_calibrated and torch.allclose(got, cal.apply(*pred.last), atol=1e-5)):
        raise SystemExit(f"calibrate_confidence: {args.write} does not reproduce the calibrated confidence")
    log(f"wrote {args.write} (reloaded: confidence_calibrated=True, same values)")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.fit_num < 1 or args.eval_num < 1:
        raise SystemExit("calibrate_confidence: --fit-num and --eval-num must be >= 1")
    torch.set_num_threads(args.threads)
    cmd = ("python training/calibrate_confidence.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))).strip()
    ckpt = load_checkpoint(args.model)
    # raw score even if IN is calibrated; depth as the node publishes it (photometric refinement on unless --no-refine)
    pred = RawPredictor.from_checkpoint(args.model, device=args.device, steps=args.steps, refine=RefineConfig(enabled=not args.no_refine))
    hw = pred.image_size
    data = from_dict(DataConfig, {**((ckpt["config"].get("train") or {}).get("data") or {}), "image_hw": list(hw)},
                     where="checkpoint.config.train.data")
    log(f"model {args.model} (step {ckpt.get('step')}, {hw[0]}x{hw[1]}), {args.views} views, {args.steps} DDIM step(s)")

    cal, fit_summary, notes = fit(args, pred, data, hw)
    sets, infos, more = eval_sets(args, data, hw)
    notes += more
    write_checked(args, ckpt, cal, pred, (next(iter(sets.values())) if sets else held_out_samples(data, 2, FIT_SEEDS[0], args.views, "cond"))[:2])
    report = {"model": args.model, "written": args.write, "step": ckpt.get("step"), "command": cmd, "image_size": list(hw),
              "views": args.views, "steps": args.steps, "refine": dataclasses.asdict(pred.refine), "fit_seeds": list(FIT_SEEDS), "calibration": cal.to_dict(),
              "fit": fit_summary, "eval": {}, "notes": notes}
    for name, samples in sets.items():
        recs = predict_pixels(pred, samples, args.steps, args.batch, f"eval {name}")
        for r in recs:
            r["cal"] = cal.apply(r["raw"], r["edge"], r["refined"], r["stage"])
        report["eval"][name] = {**infos[name], "metrics": set_metrics(recs, cal, args.bins)}

    print(f"\n## Confidence calibration\n\n`{cmd}`\n\nFit: {fit_summary['source']}; {fit_summary['pixels']} pixels, "
          f"{len(cal.x)} + {len(cal.edge_x)} + {len(cal.refined_x)} + {len(cal.stage_x)} knots (in range + out of range + refined + stage), "
          f"fit-set ECE {fmt(fit_summary['ece_raw'])} -> "
          f"{fmt(fit_summary['ece_calibrated'])}.\n")
    print(markdown(report))
    for n in notes:
        print(f"note: {n}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2, default=str))
    if args.figure:
        log(f"figure {figure(Path(args.figure), report)}")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

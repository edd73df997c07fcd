"""The node's depth path replayed offline over a frame sequence, scored as `mvgd-eval` scores it (no DDS).

Used by `tune_keyframes.py` (tuning sets) and `evaluate_sequences.py` (held-out sequences and the
shipped bags). The frames are sent in order with every `holdout_every`-th one withheld as a
target pose, as `mvgd-eval` does; the node's own keyframe policy and lag
(`mvgd_ros.eval_scoring.node_conditioning`) decide each answer's conditioning views, and the
node's prediction (`MVGDPredictor.predict`: 1 DDIM step, the photometric refinement with the
lag's refinement sources) gives its depth, in the camera the node publishes (the model's height
at the image's aspect). Scores are `mvgd_ros.eval_scoring`'s, where `mvgd-eval` computes them:
ground truth resampled into that camera, per frame AbsRel and δ<1.25, the regime from the same
conditioning views.
"""
from __future__ import annotations

import numpy as np

from mvgd_core.data.types import Frame


def replay(frames: list[Frame], kf_cfg, lookahead: int = 0, holdout_every: int = 4, warmup: int = 2,
           novel: bool = False, live_depth=None) -> list[tuple[int, list[int]]]:
    """[(frame index, indices of its conditioning views)] for every answer the node publishes with
    ground truth to score: the live frames (novel False) or the withheld target poses (True). The
    first frame's answer comes from itself alone (a monocular guess, in the *none* regime), as
    the node publishes it. live_depth: `node_conditioning`'s (for `reference_depth`)."""
    from mvgd_ros.eval_scoring import holdout_indices, node_conditioning

    held = holdout_indices(len(frames), holdout_every, warmup)
    return [(i, w) for i, w in sorted(node_conditioning(frames, held, kf_cfg, lookahead=lookahead, live_depth=live_depth).items())
            if (i in held) == novel and w and frames[i].depth is not None]


class Scorer:
    """Scores per (sequence, frame, conditioning set); a set seen before is not predicted again.
    keep_depth: keep each live depth map as the node keeps it for virtual views (`live_depth`)."""

    def __init__(self, predictor, model_hw, keep_depth: bool = False):
        self.pred, self.model_hw, self.cache, self.keep_depth = predictor, model_hw, {}, keep_depth
        self.live_depth: dict = {}  # `_live_key` -> (depth (h, w), K (3, 3)); read with `kept_depth`

    def score(self, seq_id: int, frames: list[Frame], i: int, window: list[int], task: str = "depth",
              refine_sources: int | None = None, view_depth: list | None = None, tag=None) -> dict | None:
        """Scores of frame i predicted from frames `window`; task "rgb" (a novel view) adds its PSNR.
        refine_sources: as the node passes it (mvgd_ros.lookahead.refine_sources); view_depth: the
        views' own live depth, as the node fuses it at a virtual view (`MVGDPredictor.predict`);
        tag: tells apart calls whose view_depth differs (part of the cache key)."""
        from mvgd_ros.eval_scoring import depth_scores, frame_observability, rgb_scores

        key = (seq_id, i, tuple(window), task, refine_sources, tag)
        if key not in self.cache:
            f, K, hw = self.output_camera(frames[i])
            out = self.pred.predict([frames[j] for j in window], K, f.T_wc, hw, task=task, steps=1, refine_sources=refine_sources,
                                    view_depth=view_depth)
            if self.keep_depth and task == "depth" and out.depth is not None:
                self.live_depth[self._live_key(seq_id, i, window, refine_sources)] = (out.depth, out.K)
            m = depth_scores(out.depth, f.depth) if out.depth is not None else {}
            obs, _ = frame_observability(f, [self.output_camera(frames[j], K)[0] for j in window], self.model_hw)
            psnr = {"psnr": rgb_scores(out.rgb, f.rgb)["psnr"]} if out.rgb is not None else {}
            self.cache[key] = None if not m else {"abs_rel": m["abs_rel"], "delta1": m["delta1"], "regime": obs.regime if obs else "", **psnr}
        return self.cache[key]

    @staticmethod
    def _live_key(seq_id: int, i: int, window: list[int], refine_sources: int | None) -> tuple:
        return seq_id, i, tuple(window), refine_sources

    def live_depth_fn(self, seq_id: int, frames: list[Frame], refine_sources: int | None):
        """(i, window) -> frame i's live depth from `window` (predicted now, cached for its score
        later; needs keep_depth): what the node's worker feeds back to its keyframe set."""
        def depth(i: int, window: list[int]):
            self.score(seq_id, frames, i, window, "depth", refine_sources)
            kept = self.kept_depth(seq_id, i, window, refine_sources)
            return None if kept is None else kept[0]
        return depth

    def kept_depth(self, seq_id: int, i: int, window: list[int], refine_sources: int | None):
        """(depth, K) frame i got as the live camera from `window` (keep_depth), or None."""
        return self.live_depth.get(self._live_key(seq_id, i, window, refine_sources))

    def output_camera(self, f: Frame, K_out=None) -> tuple[Frame, np.ndarray, tuple[int, int]]:
        """(f resampled into the camera the node publishes, its K, its (h, w)): the model's height at
        the image's aspect (`mvgd_ros.frames.output_size`, the node's default `resolution`), where
        `mvgd-eval` scores it (`in_camera`); K_out: another frame's output camera instead."""
        from mvgd_ros.eval_scoring import in_camera
        from mvgd_ros.frames import output_size, scale_intrinsics

        hw = output_size((0, 0), self.model_hw, f.rgb.shape[:2])
        K = scale_intrinsics(f.K, f.rgb.shape[:2], hw) if K_out is None else K_out
        return in_camera(f, K, hw), K, hw

    def mvs(self, seq_id: int, frames: list[Frame], i: int, window: list[int]) -> dict:
        """The classical multi-view stereo baseline (`mvgd_core.mvs`, holes filled, as mvgd-eval's
        `mvs` row) at frame i from the views `window` (i among them: the live camera; else a
        virtual view): {abs_rel, delta1, coverage}; NaN scores from a single view (no stereo)."""
        from mvgd_ros.eval_scoring import baseline_predictions, depth_scores

        key = (seq_id, i, tuple(window), "mvs")
        if key not in self.cache:
            f, K, hw = self.output_camera(frames[i])  # as mvgd-eval: the views resampled into the published camera
            cond = [self.output_camera(frames[j], K)[0] for j in window]
            r = baseline_predictions(cond, K, f.T_wc, hw, window.index(i) if i in window else None, {}, methods=("mvs",)).get("mvs")
            if r is None:  # stereo needs two views (the first frame's answer comes from itself alone)
                self.cache[key] = {"abs_rel": float("nan"), "delta1": float("nan"), "coverage": 0.0}
            else:
                m = depth_scores(r["depth"], f.depth)
                self.cache[key] = {"abs_rel": m["abs_rel"], "delta1": m["delta1"], "coverage": float(r["coverage"])}
        return self.cache[key]

"""MVGDPredictor: checkpoint -> depth or RGB of a target camera from posed conditioning frames.

    pred = MVGDPredictor.from_checkpoint("models/mvgd_small.pt", device="auto", steps=10)
    out = pred.predict(frames, tgt_K, tgt_T_wc, tgt_hw=(480, 640), task="depth", seed=0)
    out.depth  # (480, 640) float32 metres (pose units)

Frames are resized to the model's image_size (cv2.INTER_AREA, intrinsics rescaled), cameras
go through SSN, DDIM samples the target, and depth is mapped back to pose units with the SSN
scale. Output is resized to tgt_hw (depth: nearest, so no depth is invented across edges;
RGB: bilinear).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from mvgd_core.cameras import resize_intrinsics, validate_intrinsics, validate_pose
from mvgd_core.calibration import ConfidenceCalibration, match_confidence
from mvgd_core.checkpoint import (calibration_from_checkpoint, configs_from_checkpoint, load_checkpoint, model_from_checkpoint,
                                  refine_net_from_checkpoint)
from mvgd_core.cost_volume import relative_reference
from mvgd_core.data.types import Frame, MultiViewBatch
from mvgd_core.diffusion import TASKS, DiffusionConfig, GaussianDiffusion, prepare_inputs
from mvgd_core.model import MVGD
from mvgd_core.observability import observability
from mvgd_core.refine import RefineConfig, frame_rescale, refine_batch
from mvgd_core.refine_net import RefineNet, apply_refine_net
from mvgd_core.view_cache import CachedView, ViewCache
from mvgd_core.view_depth_fusion import FusionConfig, fuse_view_depths
from mvgd_core.view_synthesis import SynthesisConfig, synthesize_batch
from mvgd_core.sampler import DDIMSampler
from mvgd_core.ssn import param_to_depth


@dataclass
class Prediction:
    """depth (h, w) float32 pose units (metres for metric poses) or None; rgb (h, w, 3) uint8 or
    None; K (3, 3) intrinsics for (h, w); scale: the SSN scale s used (pose units); confidence:
    (h, w) float32 in [0, 1] from the matching distribution (ModelConfig.matching), else None.
    confidence_calibrated: True when confidence is the checkpoint's calibrated probability that
    the depth is within 25 % of the truth (mvgd_core.calibration); False: the raw peak mass.
    refined_share: the share of depth pixels the photometric refinement replaced (None: it did
    not run); what the node's diagnostics report as depth_refined_share. refine_rescale: how far
    the refinement moved the depth map as a whole (`refine.frame_rescale`, log; None: it did not
    run or replaced too few pixels). observable_share: the share of depth pixels whose depth the
    conditioning views can see (`mvgd_core.observability`, measured on the predicted depth: a 25 %
    change moves them >= 1 px at model resolution in some view); near 0 when the cameras have no
    parallax (one view, turning in place), where depth is a monocular guess (None: no depth).
    fused_share: the share of pixels where the conditioning views' own depth was fused in
    (`MVGDPredictor.fused`; task "rgb" with view synthesis: for the depth it used; None: nothing
    was passed or fusion is off)."""

    depth: np.ndarray | None
    rgb: np.ndarray | None
    K: np.ndarray
    scale: float
    confidence: np.ndarray | None = None
    confidence_calibrated: bool = False
    refined_share: float | None = None
    refine_rescale: float | None = None
    observable_share: float | None = None
    fused_share: float | None = None


def observable_share(depth: torch.Tensor, K: torch.Tensor, T_wc: torch.Tensor, cond_K: torch.Tensor, cond_T_wc: torch.Tensor) -> float:
    """`Prediction.observable_share` of a predicted depth (H, W) at model resolution with its K (3, 3),
    pose (4, 4) and the conditioning views (N, 3, 3) / (N, 4, 4) at that resolution. On every 2nd
    pixel: a share, not a map (~1 ms instead of ~4.5 at 8 views)."""
    hw = tuple(depth.shape[-2:])
    half = (hw[0] // 2, hw[1] // 2)
    return observability(depth[::2, ::2], resize_intrinsics(K, hw, half), T_wc, cond_K, cond_T_wc, model_hw=None, cond_hw=hw).frac


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' requested but CUDA is not available")
    return dev


def _task_tensor(task, B: int, device) -> torch.Tensor:
    if isinstance(task, str):
        if task not in TASKS:
            raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
        return torch.full((B,), TASKS[task], dtype=torch.long, device=device)
    task = torch.as_tensor(task, dtype=torch.long, device=device).expand(B)
    if ((task != 0) & (task != 1)).any():
        raise ValueError(f"task ids must be 0 (rgb) or 1 (depth), got {task.tolist()}")
    return task


class MVGDPredictor:
    """calibration: maps every returned confidence to P(depth within 25 %) (from the checkpoint's
    "confidence_calibration"); None returns the raw peak mass (checkpoints without a table).
    refine: the photometric refinement of depth (mvgd_core.refine) applied by predict and
    predict_batch unless they are told `refine=False`; RefineConfig(enabled=False) turns it off.
    synthesis: novel-view RGB from the conditioning views warped by the target's predicted depth
    (mvgd_core.view_synthesis; costs a depth pass per RGB target), the network's RGB where no view
    sees; `synthesize=False` or SynthesisConfig(enabled=False): the network's RGB alone.
    fusion: at a novel target, the depth the conditioning views already have (their own live
    predictions, passed as `view_depth`) reprojected and median-fused with the network's
    (mvgd_core.view_depth_fusion); nothing changes without `view_depth`.
    view_cache: `predict` keeps each conditioning frame's model-size image and matching features
    (mvgd_core.view_cache) for the next predictions from the same Frame objects; the model's
    weights and device must not change afterwards (call view_cache.clear() if they do)."""

    def __init__(self, model: MVGD, diffusion_cfg: DiffusionConfig = DiffusionConfig(), device="auto", steps: int = 10,
                 calibration: ConfidenceCalibration | None = None, refine: RefineConfig = RefineConfig(),
                 synthesis: SynthesisConfig = SynthesisConfig(), fusion: FusionConfig = FusionConfig(),
                 refine_net: RefineNet | None = None):
        self.calibration = calibration
        self.refine = refine
        self.synthesis = synthesis
        self.fusion = fusion
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.refine_net = None if refine_net is None else refine_net.to(self.device).eval()
        # On by default since stop 31 (when the checkpoint has a stage): retrained on the node's own
        # keyframe sets, it is level or better on every demo bag and the held-out tables
        # (MODEL_CARD "The learned stage on the node's own keyframe sets").
        self.use_refine_net = True
        # Called with the learned stage's inputs (rgb, net, refined, accepted, confidence, band; as
        # `apply_refine_net` takes them) each time it runs: how `train_refine_net.py gather --source
        # replay_*` records the node's own live inputs. None: nothing is recorded.
        self.stage_input_tap = None
        self.diffusion = GaussianDiffusion(diffusion_cfg)
        self.sampler = DDIMSampler(self.diffusion, eta=0.0)
        self.steps = steps
        self.view_cache = ViewCache()

    @classmethod
    def from_checkpoint(cls, path, device="auto", steps: int = 10, use_ema: bool = True, refine: RefineConfig = RefineConfig(),
                        synthesis: SynthesisConfig = SynthesisConfig(), fusion: FusionConfig = FusionConfig()) -> "MVGDPredictor":
        ckpt = load_checkpoint(path, map_location="cpu")
        _, dcfg = configs_from_checkpoint(ckpt)
        return cls(model_from_checkpoint(ckpt, use_ema=use_ema), dcfg, device=device, steps=steps,
                   calibration=calibration_from_checkpoint(ckpt), refine=refine, synthesis=synthesis, fusion=fusion,
                   refine_net=refine_net_from_checkpoint(ckpt))

    @property
    def image_size(self) -> tuple[int, int]:
        return self.model.cfg.image_size

    @property
    def confidence_calibrated(self) -> bool:
        """Whether returned confidences are calibrated probabilities (else raw peak mass)."""
        return self.calibration is not None

    # ------------------------------------------------------------------ batched core

    @torch.no_grad()
    def sample(self, cond_rgb, cond_K, cond_T_wc, tgt_K, tgt_T_wc, task, steps: int | None = None, seed: int = 0,
               return_match: bool = False, cond_feats: torch.Tensor | None = None):
        """Sample targets at the model's image_size. Inputs as in MultiViewBatch (rgb in [0, 1],
        images already at image_size, K for that size). task: "rgb" | "depth" | (B,) ids.
        cond_feats: the views' `MVGD.view_features`, when already known (None: computed here).

        Returns (x0 (B, 3, H, W) model space on CPU, scale (B,) SSN scale on CPU), plus, with
        return_match, the cost volume's MatchOutput or None (model without matching): the input
        of `confidence`, which also wants to know which pixels the refinement replaced.
        """
        dev = self.device
        B = cond_rgb.shape[0]
        task = _task_tensor(task, B, dev)
        # Poses stay float64 through SSN (a map frame 5e6 m from the origin keeps only ~0.5 m in
        # float32); only the normalised cameras go to float32 for the network.
        f32, f64 = torch.float32, torch.float64
        inp = prepare_inputs(cond_rgb.to(dev, f32), cond_K.to(dev, f32), cond_T_wc.to(dev, f64), tgt_K.to(dev, f32),
                             tgt_T_wc.to(dev, f64), min_scale=self.diffusion.cfg.ssn_min_scale)
        inp = dataclasses.replace(inp, cond_T=inp.cond_T.to(f32), tgt_T=inp.tgt_T.to(f32))
        gen = torch.Generator().manual_seed(int(seed))  # CPU generator: same noise on any device
        H, W = self.image_size
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            scene = self.model.encode_scene(inp.cond_rgb, inp.cond_K, inp.cond_T)  # (B, N*P, D), once for all steps
            context = self.model.encode_context(inp.cond_rgb, inp.cond_K, inp.cond_T, inp.tgt_K,  # None for raymap-only models
                                                None if cond_feats is None else cond_feats.to(dev))
            kw = {"scale_feats": inp.scale_feats} if self.model.cfg.scale_input else {}
            if context is not None:
                kw["context"] = context

            def model_fn(x_t, t, latents_sc):
                return self.model(x_t, t, task, inp.cond_rgb, inp.cond_K, inp.cond_T, inp.tgt_K, inp.tgt_T,
                                  latents_sc=latents_sc, scene_tokens=scene, **kw)

            x0 = self.sampler.sample(model_fn, (B, self.model.cfg.channels, H, W), generator=gen, device=dev,
                                     num_inference_steps=steps or self.steps)
        if not return_match:
            return x0.float().cpu(), inp.scale.float().cpu()
        return x0.float().cpu(), inp.scale.float().cpu(), None if context is None else context.match

    def confidence(self, match, hw: tuple[int, int], refined: torch.Tensor | None = None,
                   stage: torch.Tensor | None = None) -> torch.Tensor:
        """(B, H, W) float32 CPU at the model's resolution hw, where calibrate_confidence.py fits
        the table: P(depth within 25 %) with self.calibration, else the raw peak mass (bilinear).
        refined (B, H, W) bool: pixels the photometric refinement replaced (their own table);
        stage (B, H, W): the learned stage's own confidence, NaN where none (`refined_staged`; its
        own table, and where uncalibrated it replaces the peak mass)."""
        raw, out_of_range = match_confidence(match, hw)
        if self.calibration is not None:
            return self.calibration.apply(raw, out_of_range, refined, stage)
        return raw if stage is None else torch.where(torch.isfinite(stage), stage.float(), raw)

    def to_depth(self, x0: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Model-space x0 (B, C, H, W) -> depth (B, H, W) in pose units (channel mean, inverse log param, * s)."""
        cfg = self.diffusion.cfg
        return param_to_depth(x0.mean(dim=1), cfg.d_min, cfg.d_max) * scale[:, None, None]

    def refined(self, depth, cond_rgb, cond_K, cond_T_wc, tgt_K, tgt_T_wc, refine: bool | None = None, sources: int | None = None,
                match=None, learned: bool | None = None):
        """(depth (B, H, W), replaced (B, H, W) bool or None): depth at the model's resolution
        (inputs as for `sample`) after the photometric refinement when it is on (`refine`: None =
        self.refine.enabled), and where it replaced the network's depth (None: it did not run).
        sources: at most this many sources at a live camera (None: self.refine.max_sources).
        match: `sample`'s match output, required with a learned stage (`learned`: None =
        self.use_refine_net): live cameras' depth goes through that stage too (it reads the
        network's confidence)."""
        return self.refined_staged(depth, cond_rgb, cond_K, cond_T_wc, tgt_K, tgt_T_wc, refine, sources, match, learned)[:2]

    def refined_staged(self, depth, cond_rgb, cond_K, cond_T_wc, tgt_K, tgt_T_wc, refine: bool | None = None, sources: int | None = None,
                       match=None, learned: bool | None = None, stage_confidence: bool = False):
        """`refined`'s (depth, replaced) and, third, the learned stage's own confidence (B, H, W), the
        input of `confidence`: NaN where no stage with an uncertainty head ran, None when none ran or
        without `stage_confidence` (then the head is skipped: nobody pays for a confidence not asked for)."""
        if not (self.refine.enabled if refine is None else refine):
            return depth, None, None
        cfg = dataclasses.replace(self.refine, enabled=True, max_sources=sources or self.refine.max_sources)
        if not ((self.use_refine_net if learned is None else learned) and self.refine_net is not None):
            return (*refine_batch(cond_rgb, cond_K, cond_T_wc, tgt_K, tgt_T_wc, depth, cfg), None)
        if match is None:  # never skip the stage silently: the depth would not be what the node publishes
            raise ValueError("MVGDPredictor.refined: the learned stage needs `match` (sample(..., return_match=True)); "
                             "set use_refine_net = False for the refinement alone")
        if not math.isclose(cfg.span, self.refine_net.cfg.span):  # its channels would be other depths than it learned
            raise ValueError(f"MVGDPredictor.refined: the learned stage was trained on a band of span {self.refine_net.cfg.span}, "
                             f"the refinement's is {cfg.span}; set use_refine_net = False or use a stage trained on this band")
        out, replaced, band = refine_batch(cond_rgb, cond_K, cond_T_wc, tgt_K, tgt_T_wc, depth, cfg, bands=True)
        live = [b for b, x in enumerate(band) if x is not None]
        staged = torch.full(out.shape, float("nan")) if self.refine_net.cfg.uncertainty and stage_confidence else None
        if live:
            _, _, ref = relative_reference(cond_K, cond_T_wc, tgt_K, tgt_T_wc)
            rgb = torch.stack([cond_rgb[b, int(ref[b])] for b in live]).float()
            conf = match_confidence(match, tuple(depth.shape[-2:]))[0][live]  # raw: a refit calibration leaves the stage's input alone
            inputs = (rgb, depth[live].float(), out[live].float(), replaced[live], conf, [band[b] for b in live])
            if self.stage_input_tap is not None:  # sees exactly what the stage reads
                self.stage_input_tap(*inputs)
            d, c = apply_refine_net(self.refine_net, *inputs, with_confidence=staged is not None)
            out[live] = d.to(out.dtype)
            if c is not None:
                staged[live] = c
        return out, replaced, staged

    def fused(self, depth, cond_K, cond_T_wc, tgt_K, tgt_T_wc, view_depth: list | None):
        """(depth (B, H, W), fused (B, H, W) bool or None): `depth` at the model's resolution (other
        inputs as for `sample`) fused with the conditioning views' own depth at novel targets
        (`view_depth_fusion`), and where it was (None: nothing was fused). view_depth: per batch
        item a list over its conditioning views of (depth (h, w) tensor, K (3, 3) for it) or None;
        None: no view has depth. A target that is one of its conditioning views is left alone:
        its own prediction is what the others are fused from."""
        if view_depth is None or not self.fusion.enabled:
            return depth, None
        _, has_ref, _ = relative_reference(cond_K, cond_T_wc, tgt_K, tgt_T_wc)
        out, mask = depth.clone(), torch.zeros_like(depth, dtype=torch.bool)
        for b, views in enumerate(view_depth):
            have = [i for i, v in enumerate(views or []) if v is not None]
            if has_ref[b] or not have:
                continue
            d, votes = fuse_view_depths(depth[b], tgt_K[b], tgt_T_wc[b], [views[i][0] for i in have], [views[i][1] for i in have],
                                        [cond_T_wc[b, i] for i in have], self.fusion)
            out[b], mask[b] = d, votes >= self.fusion.min_views
        return out, mask

    def synthesized(self, rgb, cond_rgb, cond_K, cond_T_wc, tgt_K, tgt_T_wc, steps, seed, refine: bool | None = None,
                    synthesize: bool | None = None, view_depth: list | None = None, cond_feats: torch.Tensor | None = None):
        """(rgb, depth, replaced, fused, staged): the network's rgb (B, 3, H, W) in [0, 1] at the model's
        resolution (other inputs as for `sample`), with the conditioning views warped in by the
        target's predicted (refined) depth when view synthesis is on (`synthesize`: None =
        self.synthesis.enabled); that depth (B, H, W) and `refined`'s mask, exactly what task
        "depth" with the same seed gives (None, None when off): the view's depth at no extra cost.
        view_depth: as for `fused`; the warp uses the fused depth, and `fused`'s mask comes fourth,
        the stage's confidence (`refined_staged`) last. cond_feats: as for `sample`."""
        if not (self.synthesis.enabled if synthesize is None else synthesize):
            return rgb, None, None, None, None
        x0, scale, match = self.sample(cond_rgb, cond_K, cond_T_wc, tgt_K, tgt_T_wc, "depth", steps, seed, return_match=True,
                                       cond_feats=cond_feats)
        depth, replaced, staged = self.refined_staged(self.to_depth(x0, scale), cond_rgb, cond_K, cond_T_wc, tgt_K, tgt_T_wc, refine,
                                                      match=match, stage_confidence=True)
        depth, fused = self.fused(depth, cond_K, cond_T_wc, tgt_K, tgt_T_wc, view_depth)
        cfg = dataclasses.replace(self.synthesis, enabled=True)
        return synthesize_batch(cond_rgb, cond_K, cond_T_wc, tgt_K, tgt_T_wc, depth, rgb, cfg), depth, replaced, fused, staged

    def view_depths(self, batch: MultiViewBatch, steps: int | None = None, seed: int = 0) -> torch.Tensor:
        """(B, N, H, W): each conditioning view's own depth, predicted with that view as the target
        (what the node published for it when it was the live camera), for predict_batch's view_depth.
        N more depth passes."""
        N = batch.cond_rgb.shape[1]
        return torch.stack([self.predict_batch(dataclasses.replace(batch, tgt_K=batch.cond_K[:, i], tgt_T_wc=batch.cond_T_wc[:, i]),
                                               "depth", steps=steps, seed=seed) for i in range(N)], 1)

    def predict_batch(self, batch: MultiViewBatch, task="depth", steps: int | None = None, seed: int = 0,
                      return_confidence: bool = False, refine: bool | None = None, synthesize: bool | None = None,
                      view_depth: torch.Tensor | None = None):
        """Evaluation / validation entry: predictions for a MultiViewBatch at the batch's resolution.

        Images are area-resampled to the model's image_size when they differ (K rescaled), and
        outputs resized back. Returns depth (B, H, W) float32 pose units for task "depth", or
        rgb (B, 3, H, W) float32 in [0, 1] for "rgb" (CPU tensors). tgt_rgb/tgt_depth are unused.
        With return_confidence: (that, confidence (B, H, W) in [0, 1] or None). refine: the
        photometric refinement of depth (None: self.refine.enabled); synthesize: RGB from the
        warped conditioning views (None: self.synthesis.enabled). view_depth (B, N, H, W): the
        conditioning views' own depth (e.g. their live predictions; 0 = none) for `fused`.
        """
        if task not in TASKS:
            raise ValueError(f"predict_batch: task must be one of {sorted(TASKS)}, got {task!r}")
        B, N, _, H, W = batch.cond_rgb.shape
        if view_depth is not None and tuple(view_depth.shape) != (B, N, H, W):
            raise ValueError(f"predict_batch: view_depth must be {(B, N, H, W)}, got {tuple(view_depth.shape)}")
        views = None if view_depth is None else views_from_tensor(view_depth, batch.cond_K)
        h, w = self.image_size
        cond_rgb, cond_K, tgt_K = batch.cond_rgb, batch.cond_K, batch.tgt_K
        if (H, W) != (h, w):
            cond_rgb = F.interpolate(cond_rgb.flatten(0, 1).float(), size=(h, w), mode="area").view(B, N, 3, h, w)
            cond_K = resize_intrinsics(cond_K, (H, W), (h, w))
            tgt_K = resize_intrinsics(tgt_K, (H, W), (h, w))
        x0, scale, match = self.sample(cond_rgb, cond_K, batch.cond_T_wc, tgt_K, batch.tgt_T_wc, task, steps, seed, return_match=True)
        replaced = staged = None
        if task == "depth":
            out, replaced, staged = self.refined_staged(self.to_depth(x0, scale), cond_rgb, cond_K, batch.cond_T_wc, tgt_K, batch.tgt_T_wc,
                                                        refine, match=match, stage_confidence=return_confidence)
            out, _ = self.fused(out, cond_K, batch.cond_T_wc, tgt_K, batch.tgt_T_wc, views)
            out = out[:, None]  # (B, 1, h, w)
            mode = "nearest"
        else:
            out = self.synthesized(((x0 + 1) / 2).clamp(0, 1), cond_rgb, cond_K, batch.cond_T_wc, tgt_K, batch.tgt_T_wc,
                                   steps, seed, refine, synthesize, views)[0]
            mode = "bilinear"
        if (H, W) != (h, w):
            out = F.interpolate(out, size=(H, W), mode=mode, **({} if mode == "nearest" else {"align_corners": False}))
        out = out[:, 0] if task == "depth" else out
        if not return_confidence:
            return out
        conf = None if match is None else self.confidence(match, (h, w), replaced, staged)
        if conf is not None and (H, W) != (h, w):
            conf = F.interpolate(conf[:, None], size=(H, W), mode="bilinear", align_corners=False)[:, 0]
        return out, conf

    # ------------------------------------------------------------------ single target from Frames

    def predict(self, cond: list[Frame], tgt_K, tgt_T_wc, tgt_hw, task: str = "depth", steps: int | None = None, seed: int = 0,
                refine: bool | None = None, synthesize: bool | None = None, view_depth: list | None = None,
                refine_sources: int | None = None, refine_net: bool | None = None, with_confidence: bool = True) -> Prediction:
        """Depth or RGB for target camera (tgt_K (3, 3) for an image of tgt_hw = (h, w); tgt_T_wc
        (4, 4) camera-to-world in the frames' world) from conditioning frames (any sizes).
        refine: the photometric refinement of depth (None: self.refine.enabled); synthesize: RGB
        from the warped conditioning views (None: self.synthesis.enabled). Task "rgb" with view
        synthesis also returns the view's depth (and its confidence), identical to task "depth"
        with the same seed: it was predicted anyway. view_depth: one entry per conditioning frame,
        None or (depth (h, w) pose units, 0 / NaN = none; K (3, 3) for that depth map), e.g. the
        frame's own earlier live prediction: at a novel target it is fused in (`fused`).
        refine_sources: the refinement's source limit at a live camera (None: RefineConfig's).
        refine_net: the learned stage after the refinement at a live camera (None: use_refine_net).
        with_confidence: False leaves `confidence` None (2-3 ms at 8 views on 2 CPU cores that a
        caller nobody asks for a confidence need not pay)."""
        if task not in TASKS:
            raise ValueError(f"predict: task must be one of {sorted(TASKS)}, got {task!r}")
        tgt_K, tgt_T = _target_tensors(tgt_K, tgt_T_wc, tgt_hw)
        hw = self.image_size
        cond_rgb, cond_K, cond_T, feats = self._cond_inputs(cond)  # (1, N, ...) at the model's size
        tgt_K_model = resize_intrinsics(tgt_K, tuple(tgt_hw), hw)
        views = None if view_depth is None else [_view_depths(view_depth, len(cond))]
        x0, scale, match = self.sample(cond_rgb, cond_K, cond_T, tgt_K_model[None], tgt_T[None], task, steps, seed, return_match=True,
                                       cond_feats=feats)
        h, w = int(tgt_hw[0]), int(tgt_hw[1])
        depth = rgb = confidence = replaced = staged = rescale = observable = fused = None
        if task == "depth":
            net = self.to_depth(x0, scale)
            d, replaced, staged = self.refined_staged(net, cond_rgb, cond_K, cond_T, tgt_K_model[None], tgt_T[None], refine, refine_sources,
                                                      match, refine_net, stage_confidence=with_confidence)
            rescale = None if replaced is None else frame_rescale(net[0], d[0], replaced[0])
            d, fused = self.fused(d, cond_K, cond_T, tgt_K_model[None], tgt_T[None], views)
            observable = observable_share(d[0], tgt_K_model, tgt_T, cond_K[0], cond_T[0])
            depth = _resized(d[0].numpy().astype(np.float32), (h, w), cv2.INTER_NEAREST)
        else:
            im, d, replaced, fused, staged = self.synthesized(((x0 + 1) / 2).clamp(0, 1), cond_rgb, cond_K, cond_T, tgt_K_model[None],
                                                              tgt_T[None], steps, seed, refine, synthesize, views, feats)
            im = (im[0].permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)  # (H, W, 3)
            if d is not None:  # view synthesis predicted the view's depth: return it too (same as task "depth")
                depth = _resized(d[0].numpy().astype(np.float32), (h, w), cv2.INTER_NEAREST)
            rgb = _resized(im, (h, w), cv2.INTER_LINEAR)
        if match is not None and with_confidence:
            confidence = _resized(self.confidence(match, self.image_size, replaced, staged)[0].numpy().astype(np.float32), (h, w),
                                  cv2.INTER_LINEAR)
        return Prediction(depth=depth, rgb=rgb, K=tgt_K.numpy().astype(np.float64), scale=float(scale[0]), confidence=confidence,
                          confidence_calibrated=confidence is not None and self.confidence_calibrated,
                          refined_share=None if replaced is None else float(replaced.float().mean()), refine_rescale=rescale,
                          observable_share=observable, fused_share=None if fused is None else float(fused.float().mean()))

    def _cond_inputs(self, cond: list[Frame]):
        """`_cond_tensors` for predict, plus the views' matching features ((1, N, C, h, w) on the
        device, None for models without), each view's share taken from `view_cache` when it has it.
        More views than the cache holds (a fixed set of hundreds): no cache, the features are left
        to `sample` as before (copies per view would double the memory of 1024 views)."""
        if len(cond) > self.view_cache.capacity:
            return (*_cond_tensors(cond, self.image_size), None)
        _check_cond(cond)
        views = self.view_cache.views(cond, self._cached_views)
        rgb, K = torch.stack([v.rgb for v in views])[None], torch.stack([v.K for v in views])[None]
        T = torch.stack([torch.as_tensor(f.T_wc) for f in cond])[None]
        feats = None if views[0].feats is None else torch.stack([v.feats for v in views])[None]
        return rgb, K, T, feats

    @torch.no_grad()
    def _cached_views(self, frames: list[Frame]) -> list[CachedView]:
        """ViewCache's `make`: frames at the model's size and, with one encoder pass, their features."""
        rgb, K, _ = _cond_tensors(frames, self.image_size)  # (1, k, ...)
        feats = None
        if self.model.cfg.decoder:  # the same input as `sample` gives the model: [0, 1] -> [-1, 1] on the device
            feats = self.model.view_features(rgb.to(self.device, torch.float32) * 2 - 1)[0]
        return [CachedView(rgb[0, i], K[0, i], None if feats is None else feats[i]) for i in range(len(frames))]


def _target_tensors(tgt_K, tgt_T_wc, tgt_hw) -> tuple[torch.Tensor, torch.Tensor]:
    """predict's target camera as float64 tensors (K (3, 3), T_wc (4, 4)); ValueError when malformed."""
    K = torch.as_tensor(np.asarray(tgt_K, dtype=np.float64))
    T = torch.as_tensor(np.asarray(tgt_T_wc, dtype=np.float64))
    if K.shape != (3, 3) or T.shape != (4, 4):
        raise ValueError(f"predict: tgt_K must be (3, 3) and tgt_T_wc (4, 4), got {tuple(K.shape)}, {tuple(T.shape)}")
    validate_intrinsics(K, "tgt_K")
    validate_pose(T, "tgt_T_wc")
    if len(tgt_hw) != 2 or min(tgt_hw) <= 0:
        raise ValueError(f"predict: tgt_hw must be (h, w) > 0, got {tgt_hw}")
    return K, T


def _cond_tensors(cond: list[Frame], hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Conditioning frames (any sizes) -> (rgb (1, N, 3, h, w) in [0, 1], K (1, N, 3, 3) for hw,
    T_wc (1, N, 4, 4)) at the model's size hw (INTER_AREA); ValueError for an empty list or a bad frame."""
    _check_cond(cond)
    rgbs, Ks, Ts = [], [], []
    for f in cond:
        rgb = _resized(f.rgb, hw, cv2.INTER_AREA)
        rgbs.append(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 255.0)  # (3, h, w)
        Ks.append(resize_intrinsics(torch.as_tensor(f.K), f.rgb.shape[:2], hw))
        Ts.append(torch.as_tensor(f.T_wc))
    return torch.stack(rgbs)[None], torch.stack(Ks)[None], torch.stack(Ts)[None]


def _check_cond(cond: list[Frame]) -> None:
    """ValueError for an empty list, a non-Frame or a non-finite pose or intrinsics."""
    if not cond:
        raise ValueError("predict: need at least one conditioning frame, got an empty list")
    for i, f in enumerate(cond):
        if not isinstance(f, Frame):
            raise ValueError(f"predict: cond[{i}] is {type(f).__name__}, expected Frame")
        if not np.isfinite(f.T_wc).all() or not np.isfinite(f.K).all():
            raise ValueError(f"predict: cond[{i}] has a non-finite pose or intrinsics")


def _resized(a: np.ndarray, hw: tuple[int, int], interpolation: int) -> np.ndarray:
    """(h, w[, C]) array `a` at size hw (itself when it already is)."""
    return a if a.shape[:2] == tuple(hw) else cv2.resize(a, (hw[1], hw[0]), interpolation=interpolation)


def _view_depths(view_depth: list, n: int) -> list:
    """predict's view_depth (n entries: None or (depth (h, w), K (3, 3))) as float32 tensors; depth
    not finite or <= 0 becomes 0 (none). ValueError for a wrong count or shape."""
    if len(view_depth) != n:
        raise ValueError(f"predict: view_depth needs one entry per conditioning frame ({n}), got {len(view_depth)}")
    out = []
    for i, v in enumerate(view_depth):
        if v is None:
            out.append(None)
            continue
        d, K = np.asarray(v[0], dtype=np.float32), np.asarray(v[1], dtype=np.float64)
        if d.ndim != 2 or K.shape != (3, 3):
            raise ValueError(f"predict: view_depth[{i}] must be (depth (h, w), K (3, 3)), got {d.shape}, {K.shape}")
        d = np.where(np.isfinite(d) & (d > 0), d, 0.0).astype(np.float32)
        out.append((torch.from_numpy(d), torch.from_numpy(K)))
    return out


def views_from_tensor(view_depth: torch.Tensor, cond_K: torch.Tensor) -> list:
    """view_depth (B, N, H, W) with cond_K (B, N, 3, 3) for that size -> `MVGDPredictor.fused`'s
    per-item lists of (depth, K), None for a view without any depth (all <= 0)."""
    B, N = view_depth.shape[:2]
    return [[(view_depth[b, i], cond_K[b, i]) if bool((view_depth[b, i] > 0).any()) else None for i in range(N)] for b in range(B)]

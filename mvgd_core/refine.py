"""Photometric refinement: a narrow ZNCC sweep around the network's depth, at full model resolution.

Why (a departure from the paper, issue 11; switch: `RefineConfig.enabled`, node parameter
`refine_depth`): the network matches at 1/4 resolution with 32 hypotheses over a 300x range and
was trained for ~2.5 CPU-hours, so its depth is close but smooth and biased on real images. A
classical check in a band around it fixes much of that without training: the coarse-to-fine
narrowing of CasMVSNet (Gu et al., CVPR 2020: each stage sweeps a band around the previous
stage's depth), here with a fixed photometric cost instead of a learned second stage.

Per target pixel, `hypotheses` depths log-spaced in [d / span, d * span] around the network's
depth d; each source view is sampled there (`mvgd_core.mvs.warp_grid`, neighbouring pixels with
their own band, so the window follows the predicted surface instead of a fronto-parallel plane).
- Live camera (the target is a conditioning view): cost = 1 - ZNCC between the target's own
  image and each warped source over `window` x `window`; per pixel the mean of the best half of
  the sources that see it (Kang, Szeliski & Chai, CVPR 2001: occluded or out-of-view sources do
  not veto the right depth).
- Novel view (no target image): cost = mean over pairs of sources of 1 - ZNCC between the two
  warped sources (agreement, as the cost volume's novel mode).
At the live camera the band's cost is first aggregated (stop 16, `cost_filter`): semi-global
matching (Hirschmueller, PAMI 2008; the default) or a guided filter over each hypothesis (fast
cost-volume filtering, Hosni et al., CVPR 2011), both from `mvgd_core.mvs`, so that neighbours
prefer the same correction of the network's depth unless the image has an edge between them.
The winner gets a parabola fit in log depth (sub-hypothesis) on the raw cost. It replaces the
network's depth only where it is accepted: an interior minimum (not at the band's edge), ZNCC >= min_zncc and
texture in the window (grey-level std >= min_texture), and only sources that see the point with
parallax across the band vote; elsewhere the network's depth stays, moved by the corrections
of the matched pixels nearby of the same colour (`mvgd_core.propagation`, stop 15), so a
textureless wall keeps the network's shape at the depth its textured edges were matched at.

Values chosen on tuning data the evaluation never uses (HoloLens frames 0-278, procedural seeds
6,000,000+; MODEL_CARD "Photometric refinement"). Shapes: images (3, H, W) in [0, 1], K (3, 3),
poses camera-to-world (4, 4) in pose units, depth (H, W) in pose units, 0 = invalid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mvgd_core.cost_volume import relative_reference
from mvgd_core.mvs import MVSConfig, box_mean, guided_filter, luma, sgm_aggregate, warp_grid, warp_sources, zncc_cost
from mvgd_core.propagation import propagate_correction
from mvgd_core.refine_net import BandCost

_NOT_SEEN = 3.0  # above any 1 - ZNCC (<= 2): sorts last, never accepted
COST_FILTERS = ("none", "guided", "sgm")
_SGM_P2_EDGE = MVSConfig.p2_edge  # luma step (0-1) at which SGM's large-jump penalty halves: the baseline's


@dataclass(frozen=True)
class RefineConfig:
    """enabled: refine at all; hypotheses: depths per pixel at the live camera (odd: the network's
    depth is the centre); novel_hypotheses: the same at a novel view; span: band [d / span,
    d * span]; window: ZNCC window (odd); min_zncc: accept only matches at least this good;
    min_texture: grey-level std (0-1 images) a window needs to be trusted;
    min_parallax_px: a source votes for a pixel only if the band moves it this far there (a source
    without parallax matches every depth equally well and would decide ties by noise);
    max_sources: sources used at the live camera (`select_sources`): the cost grows with sources,
    and a few good ones decide; max_novel_sources: the same at a novel view, where the cost grows
    with pairs of sources; source_shift_px: the parallax across the band (px) the
    live camera's sources are chosen for; min_agree: sources (at most all) that must confirm a
    live-camera match on their own (`_sources_agree`); cost_filter: how the live camera's band cost
    is aggregated before each pixel's pick ("sgm": `sgm_p1` for a one-step change of the
    correction between neighbours, `sgm_p2` for a larger one, lowered across image edges;
    "guided": `filter_radius`, `filter_eps`; "none": each pixel's own window, as before stop 16);
    propagate_*: how the accepted corrections spread to the pixels the refinement could not
    check (`mvgd_core.propagation`; propagate_radius 0 turns it off): taps each side, pixels
    between taps, colour sigma (0-1 RGB; the live camera only), and the weight that keeps the
    network's depth where few matched pixels are near."""

    enabled: bool = True
    hypotheses: int = 7  # 11 measured better (SGM picks among them) but +9-13 ms on 2 CPU cores: node parameter refine_hypotheses
    novel_hypotheses: int = 7  # no SGM at novel views: more depths there measured worse
    span: float = 1.5
    window: int = 7
    min_zncc: float = 0.5
    min_texture: float = 0.01
    min_parallax_px: float = 1.0
    max_sources: int = 4
    max_novel_sources: int = 3
    source_shift_px: float = 8.0
    min_agree: int = 2
    cost_filter: str = "sgm"
    filter_radius: int = 9
    filter_eps: float = 0.01
    sgm_p1: float = 0.2
    sgm_p2: float = 0.5
    propagate_radius: int = 5
    propagate_dilation: int = 4
    propagate_sigma_colour: float = 0.1
    propagate_prior: float = 0.1

    def __post_init__(self):
        for name in ("hypotheses", "novel_hypotheses"):
            n = getattr(self, name)
            if n < 3 or n % 2 == 0:
                raise ValueError(f"RefineConfig.{name} must be odd and >= 3, got {n}")
        if not self.span > 1.0:
            raise ValueError(f"RefineConfig.span must be > 1, got {self.span}")
        if self.window < 1 or self.window % 2 == 0:
            raise ValueError(f"RefineConfig.window must be odd and >= 1, got {self.window}")
        if not -1.0 <= self.min_zncc <= 1.0:
            raise ValueError(f"RefineConfig.min_zncc must be in [-1, 1], got {self.min_zncc}")
        if self.min_texture < 0:
            raise ValueError(f"RefineConfig.min_texture must be >= 0, got {self.min_texture}")
        if self.min_agree < 1:
            raise ValueError(f"RefineConfig.min_agree must be >= 1, got {self.min_agree}")
        if not self.source_shift_px > 0:
            raise ValueError(f"RefineConfig.source_shift_px must be > 0, got {self.source_shift_px}")
        if self.max_sources < 1:
            raise ValueError(f"RefineConfig.max_sources must be >= 1, got {self.max_sources}")
        if self.max_novel_sources < 2:
            raise ValueError(f"RefineConfig.max_novel_sources must be >= 2 (a novel view's cost compares pairs), got {self.max_novel_sources}")
        if self.min_parallax_px < 0:
            raise ValueError(f"RefineConfig.min_parallax_px must be >= 0, got {self.min_parallax_px}")
        if self.cost_filter not in COST_FILTERS:
            raise ValueError(f"RefineConfig.cost_filter must be one of {COST_FILTERS}, got {self.cost_filter!r}")
        if self.filter_radius < 1 or not self.filter_eps > 0:
            raise ValueError(f"RefineConfig needs filter_radius >= 1 and filter_eps > 0, got {self.filter_radius}, {self.filter_eps}")
        if not 0 <= self.sgm_p1 <= self.sgm_p2:
            raise ValueError(f"RefineConfig needs 0 <= sgm_p1 <= sgm_p2, got {self.sgm_p1}, {self.sgm_p2}")
        if self.propagate_radius < 0 or self.propagate_dilation < 1:
            raise ValueError(f"RefineConfig.propagate_radius must be >= 0 and propagate_dilation >= 1, "
                             f"got {self.propagate_radius}, {self.propagate_dilation}")
        if not (self.propagate_sigma_colour > 0 and self.propagate_prior > 0):
            raise ValueError(f"RefineConfig.propagate_sigma_colour and propagate_prior must be > 0, "
                             f"got {self.propagate_sigma_colour}, {self.propagate_prior}")


@dataclass
class Refined:
    """depth (H, W) after refinement; accepted (H, W) bool: where the photometric match replaced it
    (elsewhere the depth is the network's, moved by the spread corrections when propagation is on);
    band: the live camera's band cost, what the learned stage reads (`mvgd_core.refine_net`)."""

    depth: torch.Tensor
    accepted: torch.Tensor
    band: BandCost | None = None


def _band(depth: torch.Tensor, span: float, n: int) -> tuple[torch.Tensor, float]:
    """(n hypotheses (n, H, W) log-spaced over [depth / span, depth * span], log step between them)."""
    half = math.log(span)
    f = torch.exp(torch.linspace(-half, half, n, dtype=depth.dtype, device=depth.device))
    return depth[None] * f[:, None, None], 2 * half / (n - 1)


def _warp(gray_src: torch.Tensor, ref_K, ref_T_wc, src_K, src_T_wc, hyp: torch.Tensor, cfg: RefineConfig):
    """Sources' luma (V, Hs, Ws) sampled at hyp (n, H, W) -> (warped (V, n, H, W), seen (V, n, H, W)
    bool (`mvs.warp_sources`), shift (V, H, W, 2): how far (px) the band moves the point there)."""
    n, H, W = hyp.shape
    warped, seen, grid = warp_sources(gray_src, H, W, ref_K, ref_T_wc, src_K, src_T_wc, hyp, cfg.window)
    return warped, seen, _band_shift(grid, n, tuple(gray_src.shape[-2:]))


def _band_shift(grid: torch.Tensor, n: int, src_hw) -> torch.Tensor:
    """Pixel offset (V, H, W, 2) in each source between the band's nearest and farthest hypothesis,
    from a `warp_grid` grid (V, n*H, W, 2) in [-1, 1] units (align_corners=True)."""
    V, nH, W, _ = grid.shape
    ends = grid.view(V, n, nH // n, W, 2)[:, [0, -1]]
    Hs, Ws = src_hw
    return (ends[:, 1] - ends[:, 0]) * torch.tensor([(Ws - 1) / 2, (Hs - 1) / 2], dtype=grid.dtype, device=grid.device)


def _pick(cost: torch.Tensor, depth: torch.Tensor, step: float, span: float, agg: torch.Tensor | None = None):
    """Best hypothesis per pixel with a parabola in log depth. cost (n, H, W); agg (n, H, W): an
    aggregated cost to choose the winner by (`_smoothed`), None: cost itself. The parabola and the best
    cost are the raw cost's at the winner (SGM's penalties skew the aggregated curve, as in
    `mvgd_core.mvs._winner`). -> (depth (H, W), best cost (H, W), interior (H, W) bool: the
    minimum is not at the band's edge)."""
    n = cost.shape[0]
    k = (cost if agg is None else agg).min(0).indices
    c0, c1, c2 = (cost.gather(0, i.clamp(0, n - 1)[None])[0] for i in (k - 1, k, k + 1))
    best = c1
    interior = (k > 0) & (k < n - 1) & (c0 < _NOT_SEEN) & (c1 < _NOT_SEEN) & (c2 < _NOT_SEEN)
    denom = c0 - 2 * c1 + c2
    off = torch.where(interior & (denom > 1e-9), 0.5 * (c0 - c2) / denom.clamp_min(1e-9), torch.zeros_like(best))
    log_f = -math.log(span) + (k.to(depth.dtype) + off.clamp(-0.5, 0.5)) * step
    return depth * torch.exp(log_f), best, interior


def _mean_of_lowest(c: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and largest of the k lowest values along dim 0 of c (V, ...): topk for the few sources
    here, ~2.5x faster than topk(dim=0) on CPU (k min-reductions)."""
    total = torch.zeros_like(c[0])
    for i in range(k):
        low, idx = c.min(0)
        total += low
        if i < k - 1:
            c = c.scatter(0, idx[None], float("inf"))
    return total / k, low


def select_sources(ref_K, ref_T_wc, src_K, src_T_wc, depth: torch.Tensor, src_hw, cfg: RefineConfig, shift_px: float | None,
                   max_sources: int | None = None) -> list[int]:
    """Indices of up to cfg.max_sources sources, best first, scored on every 8th target pixel by the
    share of the target they see, times, with shift_px, closeness of the median shift of the
    target's points across the band to shift_px (in log; DeepVideoMVS's idea of an optimal
    baseline: too little parallax cannot tell depths apart, too much brings occlusions)."""
    V = src_K.shape[0]
    max_sources = cfg.max_sources if max_sources is None else max_sources
    if V <= max_sources:
        return list(range(V))
    hyp, _ = _band(depth[::8, ::8], cfg.span, 2)  # the band's ends
    K = ref_K.clone()
    K[:2] = K[:2] / 8.0  # subgrid pixel i is full-resolution pixel 8 i
    h, w = hyp.shape[-2:]
    grid, seen = warp_grid(h, w, K, ref_T_wc, src_K, src_T_wc, hyp, src_hw)
    both = seen.all(1)  # (V, h, w): both ends of the band inside the source
    score = both.flatten(1).float().mean(1)
    if shift_px is not None:
        shift = _band_shift(grid, 2, src_hw).norm(dim=-1)  # (V, h, w)
        med = torch.stack([shift[v][both[v]].median() if both[v].any() else shift.new_zeros(()) for v in range(V)])
        score = score * torch.exp(-torch.log(med.clamp_min(1e-3) / shift_px) ** 2)
    return score.argsort(descending=True)[:max_sources].tolist()


def refine_live(ref_rgb, ref_K, ref_T_wc, src_rgb, src_K, src_T_wc, depth: torch.Tensor, cfg: RefineConfig = RefineConfig()) -> Refined:
    """Refine the depth of a camera whose image we have (ref_rgb (3, H, W)) from sources (V, 3, Hs, Ws), V >= 1."""
    use = select_sources(ref_K, ref_T_wc, src_K, src_T_wc, depth, tuple(src_rgb.shape[-2:]), cfg, cfg.source_shift_px)
    src_rgb, src_K, src_T_wc = src_rgb[use], src_K[use], src_T_wc[use]
    hyp, step = _band(depth, cfg.span, cfg.hypotheses)
    warped, seen, shift = _warp(luma(src_rgb), ref_K, ref_T_wc, src_K, src_T_wc, hyp, cfg)
    seen = seen & (shift.norm(dim=-1) >= cfg.min_parallax_px)[:, None]
    ref_g = luma(ref_rgb).to(hyp.dtype)
    c = torch.where(seen, zncc_cost(ref_g, warped, cfg.window), torch.full_like(warped, _NOT_SEEN))  # (V, n, H, W)
    mean, worst = _mean_of_lowest(c, max(1, c.shape[0] // 2))  # the best half of the sources (Kang et al.)
    cost = torch.where(worst < _NOT_SEEN, mean, torch.full_like(mean, _NOT_SEEN))  # (n, H, W)
    texture = textured(ref_g, cfg)
    agg = _smoothed(cost, ref_g, cfg)
    if cfg.min_agree > 1:
        texture = texture & _sources_agree(c, cost if agg is None else agg, cfg)
    res = _propagated(_accept(cost, depth, step, cfg, texture, agg), depth, ref_rgb, cfg)
    res.band = BandCost(cost, cost if agg is None else agg, texture)
    return res


def textured(gray: torch.Tensor, cfg: RefineConfig = RefineConfig()) -> torch.Tensor:
    """(H, W) bool: the windows of a grey image (H, W) with enough texture to be matched (grey-level
    std over cfg.window x cfg.window >= cfg.min_texture)."""
    mean = box_mean(gray, cfg.window)
    return (box_mean(gray * gray, cfg.window) - mean * mean).clamp_min(0).sqrt() >= cfg.min_texture


def _smoothed(cost: torch.Tensor, gray: torch.Tensor, cfg: RefineConfig) -> torch.Tensor | None:
    """The band's cost (n, H, W) aggregated over neighbours by cfg.cost_filter, or None ("none").
    Along the band a hypothesis is a correction factor of the network's depth, so aggregation
    favours neighbours that take the same correction: a pixel whose own window is ambiguous
    follows its neighbours unless the image has an edge there. Unseen entries count as ZNCC 0
    (no evidence either way). Tuning sets at 6 views, AbsRel / δ1 (MODEL_CARD, stop 16): HoloLens
    none 0.084 / 0.909, guided 0.080 / 0.929, sgm 0.080 / 0.921; procedural 0.163 / 0.726,
    0.165 / 0.749, 0.162 / 0.738. SGM is the default: on the held-out tables at 6 views it is
    worse nowhere, the guided filter lost 0.08 dB of HoloLens novel-view PSNR; their cost is
    within this CPU's noise (BENCHMARKS.md, stop 16)."""
    if cfg.cost_filter == "none":
        return None
    c = torch.where(cost < _NOT_SEEN, cost, torch.ones_like(cost))
    if cfg.cost_filter == "sgm":
        return sgm_aggregate(c, gray, cfg.sgm_p1, cfg.sgm_p2, _SGM_P2_EDGE)
    return guided_filter(c, gray, cfg.filter_radius, cfg.filter_eps)


def _sources_agree(c: torch.Tensor, cost: torch.Tensor, cfg: RefineConfig) -> torch.Tensor:
    """(H, W) bool: at least min(cfg.min_agree, V) sources confirm the winner on their own (their
    own best hypothesis within one step of it, with ZNCC >= min_zncc there). c (V, n, H, W) per
    source, cost (n, H, W) combined. A match that only one view supports is often a pose or
    timing error that the photometric cost turned into a confident wrong depth (MVSNet / COLMAP
    keep only depths consistent across views for the same reason)."""
    V, n = c.shape[:2]
    k = cost.min(0).indices[None, None].expand(V, 1, -1, -1)  # (V, 1, H, W); min(), not argmin(): ~10x faster on CPU here
    near = torch.cat([c.gather(1, (k + o).clamp(0, n - 1)) for o in (-1, 0, 1)], 1)  # (V, 3, H, W) around the winner
    own_best_near = near.min(1).values <= c.min(1).values  # (V, H, W): the source's own minimum is within one step
    ok = own_best_near & (1.0 - near[:, 1] >= cfg.min_zncc)
    return ok.sum(0) >= min(cfg.min_agree, V)


def refine_novel(src_rgb, src_K, src_T_wc, tgt_K, tgt_T_wc, depth: torch.Tensor, cfg: RefineConfig = RefineConfig()) -> Refined:
    """Refine the depth (H, W) of a camera without an image from V >= 2 sources' agreement."""
    use = select_sources(tgt_K, tgt_T_wc, src_K, src_T_wc, depth, tuple(src_rgb.shape[-2:]), cfg, None, cfg.max_novel_sources)  # pairs: overlap first
    src_rgb, src_K, src_T_wc = src_rgb[use], src_K[use], src_T_wc[use]
    hyp, step = _band(depth, cfg.span, cfg.novel_hypotheses)
    warped, seen, shift = _warp(luma(src_rgb), tgt_K, tgt_T_wc, src_K, src_T_wc, hyp, cfg)  # (V, n, H, W)
    mean = box_mean(warped, cfg.window)
    std = (box_mean(warped * warped, cfg.window) - mean * mean).clamp_min(0).sqrt()
    usable = seen & (std >= cfg.min_texture)
    total = torch.zeros_like(hyp)
    count = torch.zeros_like(hyp)
    for i in range(warped.shape[0]):
        for j in range(i + 1, warped.shape[0]):
            cov = box_mean(warped[i] * warped[j], cfg.window) - mean[i] * mean[j]
            # the pair tells depths apart only if the band moves the point differently in the two views
            both = usable[i] & usable[j] & ((shift[i] - shift[j]).norm(dim=-1) >= cfg.min_parallax_px)
            total += torch.where(both, 1.0 - cov / ((std[i] ** 2 + 1e-4) * (std[j] ** 2 + 1e-4)).sqrt(), torch.zeros_like(cov))
            count += both
    cost = torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, _NOT_SEEN))
    return _propagated(_accept(cost, depth, step, cfg, torch.ones_like(depth, dtype=torch.bool)), depth, None, cfg)


def _accept(cost, depth, step, cfg: RefineConfig, texture, agg: torch.Tensor | None = None) -> Refined:
    new, best, interior = _pick(cost, depth, step, cfg.span, agg)
    accepted = interior & (1.0 - best >= cfg.min_zncc) & texture & (depth > 0) & torch.isfinite(depth)
    return Refined(torch.where(accepted, new, depth), accepted)


def _propagated(res: Refined, net: torch.Tensor, guide: torch.Tensor | None, cfg: RefineConfig) -> Refined:
    """res with its corrections spread to the unchecked pixels (`mvgd_core.propagation`); guide:
    the target's image (live camera) or None (novel view: no image, no colour edges)."""
    d = propagate_correction(net, res.depth, res.accepted, guide, cfg.propagate_radius, cfg.propagate_dilation,
                             cfg.propagate_sigma_colour, cfg.propagate_prior)
    return Refined(d, res.accepted)


def frame_rescale(net: torch.Tensor, refined: torch.Tensor, accepted: torch.Tensor, min_pixels: int = 200) -> float | None:
    """Median of log(refined / net) over the replaced pixels of one depth map (H, W); None when
    fewer than min_pixels were replaced. The refinement is meant to fix local errors. When it moves
    a whole frame one way, the photometric depth has another scale than the network's: with good
    poses that is the network's error, but a translation error that is a sizable part of the
    baseline does the same (tuning targets at 6 views: median |value| 0.117 on TUM fr1/rpy, 0.032 on
    the HoloLens walk; MODEL_CARD "Why the refinement hurts on TUM fr1/rpy"). The node reports it
    (diagnostics `depth_refine_rescale`)."""
    ok = accepted & (net > 0) & (refined > 0)
    if int(ok.sum()) < min_pixels:
        return None
    return float(torch.log(refined[ok] / net[ok]).median())


def refine_batch(cond_rgb, cond_K, cond_T_wc, tgt_K, tgt_T_wc, depth: torch.Tensor, cfg: RefineConfig = RefineConfig(),
                 bands: bool = False):
    """Refine a batch of predicted depths. cond_rgb (B, N, 3, H, W) [0, 1] at depth's resolution,
    cond_K (B, N, 3, 3), cond_T_wc (B, N, 4, 4), tgt_K (B, 3, 3), tgt_T_wc (B, 4, 4), depth (B, H, W).

    A target that is one of its conditioning views (same pose and intrinsics) is refined against
    the other views (`refine_live`); otherwise from the views' agreement (`refine_novel`, needs
    >= 2 views). -> (depth (B, H, W), accepted (B, H, W) bool), and with `bands` a list of B
    BandCost or None (only a live camera's refinement has one)."""
    band: list[BandCost | None] = [None] * depth.shape[0]
    if not cfg.enabled:
        acc = torch.zeros_like(depth, dtype=torch.bool)
        return (depth, acc, band) if bands else (depth, acc)
    rel, has_ref, ref = relative_reference(cond_K, cond_T_wc, tgt_K, tgt_T_wc)  # float64, then float32 for the sweep
    out, acc = depth.clone(), torch.zeros_like(depth, dtype=torch.bool)
    N = cond_rgb.shape[1]
    eye = torch.eye(4)
    for b in range(depth.shape[0]):
        d = depth[b].to(torch.float32)
        rgb, K, T = cond_rgb[b].float(), cond_K[b].float(), rel[b].float()
        if has_ref[b]:
            r = int(ref[b])
            others = [v for v in range(N) if v != r]
            if not others:
                continue
            res = refine_live(rgb[r], K[r], eye, rgb[others], K[others], T[others], d, cfg)
        elif N >= 2:
            res = refine_novel(rgb, K, T, tgt_K[b].float(), eye, d, cfg)
        else:
            continue
        out[b], acc[b], band[b] = res.depth.to(depth.dtype), res.accepted, res.band
    return (out, acc, band) if bands else (out, acc)

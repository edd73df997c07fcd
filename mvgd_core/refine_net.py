"""Learned second stage at the live camera: a small U-Net that reads the photometric refinement's
band cost and corrects the refined depth.

Why (a departure from the paper, issue 11, stop 26; switch: the checkpoint's "refine_net" entry,
`MVGDPredictor.use_refine_net`, node parameter `refine_net`): the network's depth is blobby and
the refinement (`mvgd_core.refine`) picks each pixel's winner in its band by hand-made rules
(SGM, an interior minimum, ZNCC and texture thresholds), so it leaves most of the band's evidence
unused. CasMVSNet (Gu et al., CVPR 2020) makes each later stage a learned network over a narrow
band around the previous stage's depth; DeepVideoMVS and SimpleRecon regularise their cost with
a 2-D U-Net over the hypothesis channels next to image features. This stage does the same with
the band the refinement has already computed, so it costs one small U-Net (~230 k parameters)
and trains in CPU-minutes on frozen first-stage outputs (`training/train_refine_net.py`).

Inputs per pixel (`net_inputs`): the live image, the refined depth (log, minus the frame's
median: the stage sees shapes, not the scale), log(network / refined), where the refinement
accepted a match and where the window had texture and agreeing sources, the network's confidence,
and the band's raw and aggregated cost over `hypotheses` depths. Output: a log-depth correction of
the refined depth (the last layer starts at zero: an untrained stage changes nothing) and, with
`uncertainty` (stop 37), the log scale b of a Laplace distribution over the corrected log depth's
error, trained by its negative log-likelihood on the detached error, from a head over the U-Net's
detached features (so it never moves the depth): the stage's own confidence, which sees the band,
the image and the two stages' disagreement, where the network's peak mass
(`calibration.match_confidence`) sees only the network's volume.
Shapes: B targets of H x W at the model's resolution; depth in pose units.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from mvgd_core.config import from_dict, to_dict

CHECKPOINT_KEY = "refine_net"


@dataclass(frozen=True)
class RefineNetConfig:
    """channels: U-Net widths, finest first (each level halves the resolution); groups: GroupNorm
    groups; hypotheses: band depths the stage reads (a band of another size is resampled to it);
    span: the band it was trained on, [d / span, d * span] (`RefineConfig.span`): a band of another
    span means other depths per channel, so the predictor refuses to mix them; uncertainty: a
    second output, the log scale of the depth's error (module doc)."""

    channels: tuple[int, ...] = (16, 32, 48, 64)
    groups: int = 4
    hypotheses: int = 7
    span: float = 1.5
    uncertainty: bool = False

    def __post_init__(self):
        if len(self.channels) < 2 or any(c < 1 or c % self.groups for c in self.channels):
            raise ValueError(f"RefineNetConfig.channels needs >= 2 levels divisible by groups={self.groups}, got {self.channels}")
        if self.hypotheses < 3:
            raise ValueError(f"RefineNetConfig.hypotheses must be >= 3, got {self.hypotheses}")

    @property
    def in_channels(self) -> int:
        return 3 + 4 + 2 * self.hypotheses + 1


@dataclass
class BandCost:
    """The refinement's band at a live camera. cost (n, H, W): 1 - ZNCC per hypothesis, 3 where no
    source saw it; agg (n, H, W): the cost the winner was picked by (SGM's, or cost without a
    filter); checked (H, W) bool: textured window whose winner enough sources confirmed."""

    cost: torch.Tensor
    agg: torch.Tensor
    checked: torch.Tensor


def _block(cin: int, cout: int, groups: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(groups, cout), nn.GELU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(groups, cout), nn.GELU())


INITIAL_LOG_SCALE = math.log(0.1)  # an untrained uncertainty output: errors of ~10 % in log depth


class RefineNet(nn.Module):
    """U-Net: x (B, cfg.in_channels, H, W) -> log-depth correction (B, H, W) (`forward`), and with
    cfg.uncertainty the log scale of its error (B, H, W) too (`outputs`): a small head over the
    U-Net's last features (detached: it never changes the depth) and the inputs."""

    def __init__(self, cfg: RefineNetConfig = RefineNetConfig()):
        super().__init__()
        self.cfg = cfg
        ch, g = cfg.channels, cfg.groups
        self.enc = nn.ModuleList([_block(cfg.in_channels, ch[0], g)] + [_block(ch[i], ch[i + 1], g) for i in range(len(ch) - 1)])
        self.dec = nn.ModuleList([_block(ch[i + 1] + ch[i], ch[i], g) for i in reversed(range(len(ch) - 1))])
        self.out = nn.Conv2d(ch[0], 1, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # starts as the identity on the refined depth
        nn.init.zeros_(self.out.bias)
        self.unc = None
        if cfg.uncertainty:
            last = nn.Conv2d(ch[0], 1, 3, padding=1)
            nn.init.zeros_(last.weight)
            nn.init.constant_(last.bias, INITIAL_LOG_SCALE)
            self.unc = nn.Sequential(_block(ch[0] + cfg.in_channels, ch[0], g), last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outputs(x)[0]

    def outputs(self, x: torch.Tensor, uncertainty: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(log-depth correction (B, H, W), log scale of its error (B, H, W), or None without
        cfg.uncertainty or when not asked for: then the head does not run)."""
        feats = self._features(x)
        corr = self.out(feats)[:, 0]
        if self.unc is None or not uncertainty:
            return corr, None
        return corr, self.unc(torch.cat([feats.detach(), x], 1))[:, 0]

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.enc):
            x = block(x if i == 0 else F.avg_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.dec, reversed(skips[:-1])):
            x = block(torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False), skip], 1))
        return x


def with_uncertainty(model: RefineNet) -> RefineNet:
    """A copy of a trained stage with an (untrained) uncertainty head added and everything else
    frozen, so that training it leaves the depth bit-identical. A stage that has one comes back
    as a copy with its head trainable."""
    out = RefineNet(dataclasses.replace(model.cfg, uncertainty=True))
    missing, unexpected = out.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(not k.startswith("unc.") for k in missing):
        raise ValueError(f"with_uncertainty: the stage's weights do not fit (missing {missing}, unexpected {unexpected})")
    for name, p in out.named_parameters():
        p.requires_grad_(name.startswith("unc."))
    return out


def _resampled(c: torch.Tensor, n: int) -> torch.Tensor:
    """(B, m, H, W) -> (B, n, H, W) along the band (same span, so linear in log depth)."""
    if c.shape[1] == n:
        return c
    B, m, H, W = c.shape
    flat = c.permute(0, 2, 3, 1).reshape(B * H * W, 1, m)
    return F.interpolate(flat, size=n, mode="linear", align_corners=True).view(B, H, W, n).permute(0, 3, 1, 2)


def net_inputs(rgb, net, refined, accepted, confidence, band: list[BandCost], cfg: RefineNetConfig):
    """(x (B, cfg.in_channels, H, W), log refined depth (B, H, W)). rgb (B, 3, H, W) in [0, 1];
    net, refined (B, H, W) depth; accepted (B, H, W) bool; confidence (B, H, W) in [0, 1]; band:
    one BandCost per target. Costs go through float16 as in training (`train_refine_net.py`
    stores them so)."""
    log_ref = torch.log(refined.clamp_min(1e-3))
    med = log_ref.flatten(1).median(1).values[:, None, None]
    cost = torch.stack([b.cost for b in band]).clamp(max=2.0).half().float()
    agg = torch.stack([b.agg for b in band]).half().float()
    cost, agg = _resampled(cost, cfg.hypotheses), _resampled(agg, cfg.hypotheses)
    checked = torch.stack([b.checked for b in band])
    x = [rgb.half().float() - 0.5, (log_ref - med)[:, None], (torch.log(net.clamp_min(1e-3)) - log_ref)[:, None],
         accepted.float()[:, None], confidence.half().float()[:, None], cost - 1.0, agg - agg.min(1, keepdim=True).values,
         checked.float()[:, None]]
    return torch.cat(x, 1), log_ref


def stage_confidence(log_scale: torch.Tensor) -> torch.Tensor:
    """The stage's own probability that a pixel is a delta1 inlier, from the log scale b of its
    Laplace error model: P(|log error| < log 1.25) = 1 - exp(-log 1.25 / b). Same shape."""
    return 1.0 - torch.exp(-math.log(1.25) * torch.exp(-log_scale))


@torch.no_grad()
def apply_refine_net(model: RefineNet, rgb, net, refined, accepted, confidence, band: list[BandCost], with_confidence: bool = True):
    """(corrected depth (B, H, W), the stage's confidence (B, H, W), or None for a stage without
    cfg.uncertainty or without `with_confidence`: its head is skipped), inputs as for `net_inputs`;
    0 / invalid refined depth stays (confidence NaN there)."""
    x, log_ref = net_inputs(rgb, net, refined, accepted, confidence, band, model.cfg)
    p = next(model.parameters())
    corr, log_scale = model.outputs(x.to(p.device, p.dtype), uncertainty=with_confidence)
    ok = (refined > 0) & torch.isfinite(refined)
    depth = torch.where(ok, torch.exp(log_ref + corr.float().cpu()), refined)
    if log_scale is None:
        return depth, None
    return depth, torch.where(ok, stage_confidence(log_scale.float().cpu()), torch.full_like(depth, float("nan")))


def refine_net_to_dict(model: RefineNet, meta: dict | None = None) -> dict:
    """Checkpoint entry: config, weights (float16: the shipped file stays small) and provenance."""
    return {"config": to_dict(model.cfg), "state": {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()},
            "meta": dict(meta or {})}


def refine_net_from_dict(d: dict) -> RefineNet:
    """RefineNet (float32, eval mode) from `refine_net_to_dict`'s entry; ValueError when malformed."""
    try:
        model = RefineNet(from_dict(RefineNetConfig, d["config"]))
        model.load_state_dict(d["state"], strict=True)
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ValueError(f"malformed {CHECKPOINT_KEY!r} entry: {exc}") from exc
    return model.eval()

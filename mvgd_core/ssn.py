"""Scene Scale Normalization (SSN) and the log-depth parameterization (MVGD paper, Sec. SSN).

SSN makes the network see every scene in the same canonical frame and size:
1. every camera is expressed relative to the target camera, which lands at the origin with
   identity rotation. The paper writes T~_c = T_c T_t^-1 for world-to-camera extrinsics; for
   our camera-to-world poses the same relative pose is T~_c = T_t^-1 T_c (maps camera c's
   points into the target frame), and T~_t = I;
2. scale s = max over conditioning cameras of max(|x|, |y|, |z|) of their relative translations;
3. translations (and GT depth, in training) are divided by s; predicted depth is multiplied by
   s at inference, so output depth has the scale of the input poses (metric if they are).

Degenerate case (the paper is silent): when every conditioning camera sits at the target
position (one live view that is also the target, or a robot standing still), s -> 0. We clamp
s >= min_scale (default 0.1 pose units, i.e. 10 cm for metric poses). The clamp is continuous
in the poses (no jump at a threshold), never divides by zero, and with d_max = 200 keeps depths
up to 200 * 0.1 = 20 m representable in the degenerate case; the network then predicts depth
from appearance alone (monocular), in units of min_scale.

What the network is told about the scale (our addition, issue 11; `ModelConfig.scale_input`):
SSN throws the metric size of the scene away, and the clamp makes the unit jump between
"largest camera offset" and "min_scale" without telling anyone. `scale_features` gives the
network [log s, log(s / raw s)]: the size of one SSN unit in pose units, and how much the clamp
enlarged it (0 when it did not). With them the target d / s is a function of the inputs in
both regimes (parallax when the clamp is off; metric monocular depth in units of min_scale when
it is on), instead of one input meaning two things. Training may also drop the depth loss of
clamped samples (`DiffusionConfig.depth_loss_when_clamped`), whose depth is unobservable.
Everything up to the normalised quantities is float64.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mvgd_core.cameras import invert_pose

D_MIN = 0.1  # paper: depth range of the log parameterization, in SSN units
D_MAX = 200.0
MIN_SCALE = 0.1


@dataclass
class NormalizedCameras:
    """Cameras after SSN. cond_T: (B, N, 4, 4); tgt_T: (B, 4, 4) (identity); scale: (B,);
    raw_scale: (B,) the scale before the min_scale clamp (0 when every camera sits on the target)."""

    cond_T: torch.Tensor
    tgt_T: torch.Tensor
    scale: torch.Tensor
    raw_scale: torch.Tensor | None = None


def relative_poses(cond_T_wc: torch.Tensor, tgt_T_wc: torch.Tensor) -> torch.Tensor:
    """Conditioning poses in the target camera frame: T_t^-1 T_c. (B, N, 4, 4), (B, 4, 4) -> (B, N, 4, 4)."""
    return invert_pose(tgt_T_wc).unsqueeze(1) @ cond_T_wc


def scene_scale(cond_T_rel: torch.Tensor, min_scale: float = MIN_SCALE) -> torch.Tensor:
    """s = max_c max(|x|, |y|, |z|) of relative translations, clamped >= min_scale. (B, N, 4, 4) -> (B,)."""
    if min_scale <= 0:
        raise ValueError(f"min_scale must be positive, got {min_scale}")
    return raw_scene_scale(cond_T_rel).clamp_min(min_scale)


def raw_scene_scale(cond_T_rel: torch.Tensor) -> torch.Tensor:
    """s before the clamp: max_c max(|x|, |y|, |z|) of relative translations. (B, N, 4, 4) -> (B,)."""
    return cond_T_rel[..., :3, 3].abs().flatten(1).amax(dim=1)


def scale_features(scale: torch.Tensor, raw_scale: torch.Tensor, min_scale: float = MIN_SCALE) -> torch.Tensor:
    """(B, 2) float32 network input [log s, log(s / raw s)] (see module doc), computed in float64.

    raw s is floored at 1e-3 * min_scale so a camera set with no baseline at all stays finite.
    """
    s, raw = scale.double(), raw_scale.double().clamp_min(1e-3 * min_scale)
    return torch.stack([s.log(), (s / raw).log().clamp_min(0.0)], dim=-1).float()


def normalize_cameras(cond_T_wc: torch.Tensor, tgt_T_wc: torch.Tensor, min_scale: float = MIN_SCALE) -> NormalizedCameras:
    """Full SSN of one batch of camera sets. cond_T_wc (B, N, 4, 4), tgt_T_wc (B, 4, 4).

    Done in float64: world poses far from the origin (GPS-scale maps) lose centimetres in
    float32 when subtracted; the result is small and goes back to the input dtype.
    """
    dtype = cond_T_wc.dtype
    rel = relative_poses(cond_T_wc.double(), tgt_T_wc.double())  # (B, N, 4, 4)
    raw = raw_scene_scale(rel)  # (B,)
    s = scene_scale(rel, min_scale)  # (B,)
    rel[..., :3, 3] = rel[..., :3, 3] / s[:, None, None]
    tgt = torch.eye(4, dtype=torch.float64, device=rel.device).expand(rel.shape[0], 4, 4)
    return NormalizedCameras(rel.to(dtype), tgt.to(dtype).contiguous(), s.to(dtype), raw.to(dtype))


def depth_to_param(depth: torch.Tensor, d_min: float = D_MIN, d_max: float = D_MAX) -> torch.Tensor:
    """SSN-normalized depth (D / s) -> P_D = 2 log(D / d_min) / log(d_max / d_min) - 1, in [-1, 1].

    Why log space: depth spans three orders of magnitude (0.1 to 200); in log space a fixed
    error in P_D is a fixed *relative* depth error at every distance (what AbsRel measures and
    what stereo geometry can deliver), and the [-1, 1] range matches the unit-variance noise of
    the diffusion process. Depth outside [d_min, d_max] (including invalid 0) is clamped; losses
    mask invalid pixels separately.
    """
    d = depth.clamp(d_min, d_max)
    return 2.0 * torch.log(d / d_min) / math.log(d_max / d_min) - 1.0


def param_to_depth(param: torch.Tensor, d_min: float = D_MIN, d_max: float = D_MAX) -> torch.Tensor:
    """Inverse of `depth_to_param` (clamps P_D to [-1, 1] first): SSN-normalized depth."""
    p = param.clamp(-1.0, 1.0)
    return d_min * torch.exp((p + 1.0) * 0.5 * math.log(d_max / d_min))

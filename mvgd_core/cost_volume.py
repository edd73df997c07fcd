"""Matching path of MVGD: a plane-sweep cost volume along the target's rays, in SSN space.

Why: our model is four orders of magnitude smaller (data, compute) than the paper's, and a
3 M-parameter RIN trained on ~10^5 samples does not learn correspondence implicitly (issue 11
audit: mirroring or swapping the conditioning images barely changed its depth). The best
multi-view depth systems give the network the geometry explicitly; we do the same, beside the
raymap tokens (which stay: `ModelConfig.matching = False` is the paper's pure raymap design).

What we adopt, and from where (read for ideas, our own code):
- MVSNet (Yao et al., ECCV 2018): features at 1/4 resolution, warped from every view onto
  depth hypotheses of the reference frustum; a *variance* over views as the multi-view cost,
  so any number of views gives one volume and the cost is linear in N. We use the equivalent
  mean pairwise cosine agreement of L2-normalised features, 1 - var * n / (n - 1) up to a
  constant, computed from running sums (|sum f|^2 - sum |f|^2): one pass over the views,
  memory independent of N.
- SimpleRecon (Sayed et al., ECCV 2022, nianticlabs/simplerecon modules/cost_volume.py):
  log-spaced depth planes, dot product between the reference (live camera) features and each
  warped source feature, averaged over source views with a validity mask; the volume is
  aggregated by a *2-D* network that sees the D hypotheses as channels, with the reference
  image features concatenated (no 3-D convolutions: cheap on CPU).
- DeepVideoMVS (Duzceker et al., CVPR 2021): the same pairwise dot-product volume, averaged
  over the measurement frames, for a live camera on a posed video stream (our node's setting).
- DPSNet (Im et al., ICLR 2019) regresses depth from a soft-argmin over the plane sweep; so do
  we, in log depth, and keep the per-pixel distribution: its peak mass is the confidence.
- A fixed photometric cost beside the learned one (our choice, `ModelConfig.match_zncc`): ZNCC
  of 3x3 windows (in the target's pixel grid, on the warped images) on the same hypotheses. It is informative before any training and transfers
  to real images (the classical plane-sweep baseline in mvgd_core/baselines.py uses ZNCC too).

Hypotheses (our choice): `num_depths` z-depths log-spaced in [d_lo, d_hi] *SSN units*, i.e.
relative to the scene scale s (the largest conditioning-camera offset): the disparity of a
point at depth d is ~ f * |baseline| / d with |baseline| ~ 1 SSN unit, so one range fits every
scene scale (metres or millimetres) and the far end is where parallax falls below a pixel.

Two costs, both linear in the number of views N:
- "ref": when the target camera is one of the conditioning views (the live camera), the
  normalised correlation of that view's own features with every other view's warped features;
- "agree": agreement among all conditioning views' warped features (a novel target has no
  image of its own).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from mvgd_core.cameras import invert_pose, pixel_grid, resize_intrinsics


@dataclass
class MatchOutput:
    """Per target pixel at the matching resolution (h, w) = image_size / match_stride.

    depth: (B, 1, h, w) soft-argmin z-depth in SSN units; prob: (B, D, h, w) distribution over
    the hypotheses; confidence: (B, 1, h, w) probability mass within one bin of the mode;
    feats: (B, Ca, h, w) aggregated matching features; colour: (B, 3, h, w) conditioning-view
    colour expected under `prob` (in [-1, 1]); ref_feats: (B, C, h, w) the target's own image
    features when it is a conditioning view (zeros otherwise); has_ref: (B,) bool;
    hyp: (D,) hypothesis depths (SSN units).
    """

    depth: torch.Tensor
    prob: torch.Tensor
    confidence: torch.Tensor
    feats: torch.Tensor
    colour: torch.Tensor
    ref_feats: torch.Tensor
    has_ref: torch.Tensor
    hyp: torch.Tensor


def depth_hypotheses(num: int, d_lo: float, d_hi: float, device=None) -> torch.Tensor:
    """(num,) z-depths log-spaced in [d_lo, d_hi] (SimpleRecon's planes)."""
    return torch.exp(torch.linspace(math.log(d_lo), math.log(d_hi), num, device=device, dtype=torch.float32))


def find_reference_view(cond_T: torch.Tensor, cond_K: torch.Tensor, tgt_K: torch.Tensor, tol: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """Which conditioning view is the target camera itself (SSN frame: target = identity).

    cond_T (B, N, 4, 4) normalized, cond_K (B, N, 3, 3), tgt_K (B, 3, 3) (same image size).
    Returns (has_ref (B,) bool, index (B,) long: the first matching view, 0 when none).
    """
    eye = torch.eye(4, dtype=cond_T.dtype, device=cond_T.device)
    pose_err = (cond_T - eye).abs().flatten(2).amax(-1)  # (B, N)
    k_err = ((cond_K - tgt_K[:, None]).abs().flatten(2).amax(-1) / tgt_K[:, None, 0, 0].abs().clamp_min(1e-6))  # (B, N)
    match = (pose_err <= tol) & (k_err <= 1e-3)
    return match.any(1), match.float().argmax(1)


def relative_reference(cond_K: torch.Tensor, cond_T_wc: torch.Tensor, tgt_K: torch.Tensor, tgt_T_wc: torch.Tensor):
    """(rel (B, N, 4, 4) float64: conditioning camera -> target frame, has_ref (B,), index (B,)) for
    world poses cond_T_wc (B, N, 4, 4), tgt_T_wc (B, 4, 4): the poses relative to the target in
    float64 first (a map frame far from the origin keeps only ~0.5 m in float32), then which
    conditioning view is the target itself (`find_reference_view`)."""
    f64 = torch.float64
    rel = invert_pose(tgt_T_wc.to(f64))[:, None] @ cond_T_wc.to(f64)
    has_ref, ref = find_reference_view(rel, cond_K.to(f64), tgt_K.to(f64))
    return rel, has_ref, ref


def project_hypotheses(tgt_K: torch.Tensor, cond_K: torch.Tensor, cond_T: torch.Tensor, hyp: torch.Tensor,
                       h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the target's pixel rays at each hypothesis land in one conditioning view.

    tgt_K (B, 3, 3) and cond_K (B, 3, 3) for the (h, w) grid; cond_T (B, 4, 4) camera-to-target
    (SSN frame); hyp (D,) z-depths. Returns (grid (B, D*h, w, 2) for grid_sample with
    align_corners=True, valid (B, D, h, w) bool: in front of the view and inside its image).
    Invalid points get a grid far outside the image, so grid_sample's zeros padding already gives
    exactly 0 there (no mask multiply over the sampled channels).

    A point at depth d on pixel ray r projects to K (R d r + t) = d (K R r) + K t: K R r is
    computed once per pixel, so each hypothesis costs one multiply-add (no (D*h*w, 3) matmuls).
    u, v and z are kept as separate (B, D, h*w) planes: torch's CPU kernels broadcast a trailing
    dim of 3 (or 2) slowly, and this way took half the time (same values, bit for bit).
    """
    B, D = tgt_K.shape[0], hyp.shape[0]
    pix = pixel_grid(h, w, tgt_K.device, tgt_K.dtype).reshape(-1, 3)  # (h*w, 3)
    rays = pix @ torch.linalg.inv(tgt_K).transpose(-1, -2)  # (B, h*w, 3), z = 1
    T_cw = invert_pose(cond_T)  # (B, 4, 4)
    KRr = (rays @ (cond_K @ T_cw[:, :3, :3]).transpose(-1, -2)).transpose(1, 2).contiguous()  # (B, 3, h*w)
    Kt = cond_K @ T_cw[:, :3, 3:]  # (B, 3, 1)
    d = hyp.view(1, D, 1)
    z = torch.addcmul(Kt[:, 2:3], KRr[:, None, 2], d)  # (B, D, h*w); K's last row is (0, 0, 1): z = view depth
    zc = z.clamp_min(1e-6)
    u = torch.addcmul(Kt[:, 0:1], KRr[:, None, 0], d).div_(zc)
    v = torch.addcmul(Kt[:, 1:2], KRr[:, None, 1], d).div_(zc)
    valid = (z > 1e-4) & (u > -0.5) & (u < w - 0.5) & (v > -0.5) & (v < h - 0.5)
    invalid = ~valid  # -2: all four taps outside
    gx = u.mul_(2.0 / max(w - 1, 1)).sub_(1.0).masked_fill_(invalid, -2.0)
    gy = v.mul_(2.0 / max(h - 1, 1)).sub_(1.0).masked_fill_(invalid, -2.0)
    grid = torch.stack([gx, gy], -1)  # (B, D, h*w, 2)
    return grid.reshape(B, D * h, w, 2), valid.reshape(B, D, h, w)


def zncc_features(gray: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Zero-mean unit-norm 3x3 windows of grey images: (B, 1, h, w) -> (B, 9, h, w).

    The dot product of two such vectors is the ZNCC of the windows. Windows are taken in the
    *target's* pixel grid, on images already warped to a hypothesis (classical plane sweep),
    so every view's window covers the same fronto-parallel patch. Flat windows get ~zero vectors.
    """
    return _unit_windows(gray, eps)[:, :, 0]


def _unit_windows(gray: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """(B, D, h, w) grey images -> (B, 9, D, h, w) zero-mean unit-norm 3x3 windows (replicate
    padding; window taps in F.unfold's order). Nine shifted slices: ~2.5x faster than F.unfold on
    (B*D, 1, h, w), and already in the layout the cost sums want."""
    h, w = gray.shape[-2:]
    p = F.pad(gray, (1, 1, 1, 1), mode="replicate")
    win = torch.stack([p[:, :, i:i + h, j:j + w] for i in range(3) for j in range(3)], 1)
    win = win - win.mean(1, keepdim=True)
    return win / (_channel_norm(win, 1) + eps)


def _channel_norm(x: torch.Tensor, dim: int) -> torch.Tensor:
    """L2 norm over a non-last dim, keepdim. Same value as x.norm(dim=dim, keepdim=True), but
    torch's CPU norm kernel reduces over a strided dim ~50x slower than sum of squares (2.3 ms
    vs 0.04 ms for (32, 9, 24, 32)): it was a quarter of the node's prediction time."""
    return (x * x).sum(dim, keepdim=True).sqrt()


def warped_windows(gray: torch.Tensor) -> torch.Tensor:
    """ZNCC windows of grey images warped to every hypothesis: (B, 1, D, h, w) -> (B, 9, D, h, w)."""
    return _unit_windows(gray[:, 0])


class FeatureEncoder(nn.Module):
    """Matching features at 1/stride resolution: (B, 3, H, W) -> (B, C, H/s, W/s), stride 2 or 4."""

    def __init__(self, channels: int, stride: int):
        super().__init__()
        if stride not in (2, 4):
            raise ValueError(f"FeatureEncoder: stride must be 2 or 4, got {stride}")
        c = channels
        layers = [nn.Conv2d(3, c, 3, stride=2, padding=1), nn.GELU()]
        if stride == 4:
            layers += [nn.Conv2d(c, c, 3, stride=2, padding=1), nn.GELU()]
        layers += [nn.Conv2d(c, c, 3, padding=1), nn.GELU(), nn.Conv2d(c, c, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class CostAggregator(nn.Module):
    """SimpleRecon-style 2-D aggregation: hypotheses as channels, one down/up level with a skip.

    Input (B, Cin, h, w) -> (logits (B, D, h, w), features (B, Ca, h, w)).
    """

    def __init__(self, c_in: int, num_depths: int, width: int, c_out: int):
        super().__init__()
        self.inp = nn.Sequential(nn.Conv2d(c_in, width, 3, padding=1), nn.GELU(), nn.Conv2d(width, width, 3, padding=1), nn.GELU())
        self.down = nn.Sequential(nn.Conv2d(width, width, 3, stride=2, padding=1), nn.GELU(), nn.Conv2d(width, width, 3, padding=1), nn.GELU())
        self.fuse = nn.Sequential(nn.Conv2d(2 * width, width, 3, padding=1), nn.GELU())
        self.logits = nn.Conv2d(width, num_depths, 3, padding=1)
        self.feats = nn.Conv2d(width, c_out, 1)

    def forward(self, x):
        a = self.inp(x)
        b = F.interpolate(self.down(a), size=a.shape[-2:], mode="bilinear", align_corners=False)
        y = self.fuse(torch.cat([a, b], 1))
        return self.logits(y), self.feats(y)


class CostVolume(nn.Module):
    """Plane-sweep costs over views -> aggregation -> depth distribution (see module doc).

    The feature encoder lives in the model (its features also feed the decoder)."""

    def __init__(self, image_size: tuple[int, int], stride: int, channels: int, num_depths: int,
                 d_lo: float, d_hi: float, zncc: bool, agg_width: int, out_channels: int):
        super().__init__()
        H, W = image_size
        if H % stride or W % stride:
            raise ValueError(f"CostVolume: match stride {stride} must divide image_size {image_size}")
        if not 0 < d_lo < d_hi or num_depths < 2:
            raise ValueError(f"CostVolume: need 0 < d_lo < d_hi and >= 2 hypotheses, got {d_lo}, {d_hi}, {num_depths}")
        self.hw = (H // stride, W // stride)
        self.image_size, self.stride = tuple(image_size), stride
        self.num_depths, self.d_lo, self.d_hi, self.zncc = num_depths, d_lo, d_hi, zncc
        n_cost = 2 + (2 if zncc else 0)  # (ref, agree) learned [+ (ref, agree) ZNCC]
        c_in = n_cost * num_depths + num_depths + channels + 1  # costs, valid-view fraction, ref features, has_ref
        self.aggregate = CostAggregator(c_in, num_depths, agg_width, out_channels)

    def forward(self, feats, cond_rgb, cond_K, cond_T, tgt_K) -> MatchOutput:
        """feats (B, N, C, h, w) matching features (FeatureEncoder, any scale: normalised here);
        cond_rgb (B, N, 3, H, W) in [-1, 1]; cond_K (B, N, 3, 3) and tgt_K (B, 3, 3) for image_size;
        cond_T (B, N, 4, 4) SSN-normalized (target at the identity). Costs are accumulated a
        chunk of views at a time (`view_chunk`): time linear in N, memory independent of N."""
        B, N = cond_rgb.shape[:2]
        h, w = self.hw
        D = self.num_depths
        has_ref, ref_idx = find_reference_view(cond_T, cond_K, tgt_K)
        feats = feats / _channel_norm(feats, 2).clamp_min(1e-12)  # (B, N, C, h, w) unit norm (F.normalize): dot products are cosines
        small = F.avg_pool2d(cond_rgb.flatten(0, 1), self.stride).view(B, N, 3, h, w)  # colour at matching res
        parts = [feats, small]
        if self.zncc:
            parts.append(small.mean(2, keepdim=True))  # grey (B, N, 1, h, w): ZNCC windows after warping
        sizes = [p.shape[2] for p in parts]
        bank = torch.cat(parts, 2)  # (B, N, C+3[+9], h, w): everything sampled in one grid_sample per chunk
        ref = bank[torch.arange(B, device=bank.device), ref_idx] * has_ref.view(B, 1, 1, 1).to(bank.dtype)  # (B, Cb, h, w), zeros when no ref
        ref_f, _, *ref_z = torch.split(ref, sizes, 1)
        ref_z = zncc_features(ref_z[0]) if self.zncc else None  # (B, 9, h, w) windows of the target's own image

        hyp = depth_hypotheses(D, self.d_lo, self.d_hi, bank.device)
        Ks = resize_intrinsics(cond_K.float(), self.image_size, self.hw)
        Kt = resize_intrinsics(tgt_K.float(), self.image_size, self.hw)
        acc = _ViewSums.zeros(bank, B, sizes[0], D, h, w, self.zncc)
        chunk = view_chunk(bank.device)
        for v0 in range(0, N, chunk):  # linear in N; running sums updated in place
            v1 = min(N, v0 + chunk)
            c = v1 - v0
            grid, valid = project_hypotheses(Kt.repeat_interleave(c, 0), Ks[:, v0:v1].reshape(-1, 3, 3),
                                             cond_T[:, v0:v1].float().reshape(-1, 4, 4), hyp, h, w)
            s = F.grid_sample(bank[:, v0:v1].flatten(0, 1), grid, mode="bilinear", padding_mode="zeros", align_corners=True)  # (B*c, Cb, D*h, w), 0 where invalid
            f, col, *z = torch.split(s.view(B, c, -1, D, h, w), sizes, 2)
            m = valid.view(B, c, D, h, w).to(bank.dtype)
            z = warped_windows(z[0].flatten(0, 1)).view(B, c, 9, D, h, w).mul_(m[:, :, None]) if self.zncc else None  # windows spill over the valid edge
            is_ref = has_ref[:, None] & (ref_idx[:, None] == torch.arange(v0, v1, device=bank.device))  # (B, c): left out of the ref cost
            acc.add(f, col, z, m, is_ref)
        x = torch.cat([*acc.costs(ref_f, ref_z, has_ref), acc.n_valid / N, ref_f, has_ref.view(B, 1, 1, 1).to(bank.dtype).expand(B, 1, h, w)], 1)
        logits, agg = self.aggregate(x)
        prob = logits.softmax(1)  # (B, D, h, w)
        log_depth = (prob * hyp.log().view(1, D, 1, 1)).sum(1, keepdim=True)  # soft-argmin in log depth (DPSNet)
        mode = prob.argmax(1, keepdim=True)
        window = (torch.arange(D, device=prob.device).view(1, D, 1, 1) - mode).abs() <= 1
        confidence = (prob * window).sum(1, keepdim=True)  # mass within one bin of the mode
        exp_colour = (acc.colour / acc.n_valid.clamp_min(1)[:, None] * prob[:, None]).sum(2)  # (B, 3, h, w)
        return MatchOutput(depth=log_depth.exp(), prob=prob, confidence=confidence, feats=agg, colour=exp_colour,
                           ref_feats=ref_f, has_ref=has_ref, hyp=hyp)


def view_chunk(device: torch.device) -> int:
    """Views warped per grid_sample call. torch's CPU grid_sample parallelises over the batch
    only, so one view per call ran on one core: 8 calls of one view (36 channels, 32 hypotheses
    at 24x32) take 14.6 ms on 2 threads, 4 calls of two 8.5 ms. As many views as intra-op threads;
    more were no faster here (BENCHMARKS.md "Cost volume (stop 23)"). On a GPU, 8 per call. A fixed
    chunk keeps memory independent of the number of views."""
    return 8 if device.type == "cuda" else max(1, min(8, torch.get_num_threads()))


@dataclass
class _ViewSums:
    """Running sums over conditioning views, per target pixel and hypothesis (B, D, h, w) unless
    noted: valid views; feature sum (B, C, D, h, w) and sum of squared norms; colour sum
    (B, 3, D, h, w); the same two for the ZNCC windows (9 channels) when `zncc`; and the reference
    view's own warped features, mask [and windows], kept aside when the target is a view.

    The reference cost sums <f_v, f_ref> over the *other* views v. By linearity that is
    <sum_v f_v - f_ref warped, f_ref>: one dot product at the end instead of one per view (a
    multiply and a channel sum over (B, C, D, h, w) each: ~4 of the ~40 ms the volume took at 8
    views on 2 CPU cores). Same value up to float rounding."""

    n_valid: torch.Tensor
    sum_f: torch.Tensor
    sq_f: torch.Tensor
    colour: torch.Tensor
    sum_z: torch.Tensor | None
    sq_z: torch.Tensor | None
    own_m: torch.Tensor
    own_f: torch.Tensor
    own_z: torch.Tensor | None

    @classmethod
    def zeros(cls, like: torch.Tensor, B: int, C: int, D: int, h: int, w: int, zncc: bool) -> "_ViewSums":
        def z(*shape):
            return like.new_zeros(B, *shape, D, h, w)
        return cls(z(), z(C), z(), z(3), z(9) if zncc else None, z() if zncc else None, z(), z(C), z(9) if zncc else None)

    def add(self, f, col, zw, m, is_ref) -> None:
        """One chunk of c views: f (B, c, C, D, h, w) sampled features, col (B, c, 3, D, h, w), zw
        (B, c, 9, D, h, w) or None, m (B, c, D, h, w) valid, is_ref (B, c) bool: the view is the
        target itself. View by view, in place: summing over the chunk at once made larger
        temporaries and was slower."""
        for i in range(f.shape[1]):
            fi, mi = f[:, i], m[:, i]
            self.n_valid += mi
            self.sum_f += fi
            self.sq_f += (fi * fi).sum(1)
            self.colour += col[:, i]
            if zw is not None:
                self.sum_z += zw[:, i]
                self.sq_z += (zw[:, i] * zw[:, i]).sum(1)
            if bool(is_ref[:, i].any()):  # once per target that is a view
                r = is_ref[:, i].to(m.dtype).view(-1, 1, 1, 1)
                self.own_m += mi * r
                self.own_f += fi * r[:, None]
                if zw is not None:
                    self.own_z += zw[:, i] * r[:, None]

    def costs(self, ref_f: torch.Tensor, ref_z: torch.Tensor | None, has_ref: torch.Tensor) -> list[torch.Tensor]:
        """[ref, agree] learned costs [+ ref, agree ZNCC], each (B, D, h, w). ref_f (B, C, h, w) and
        ref_z (B, 9, h, w) the target's own features and windows (zeros without a reference);
        has_ref (B,) bool."""
        n_other = ((self.n_valid - self.own_m) * has_ref.to(self.n_valid.dtype).view(-1, 1, 1, 1)).clamp_min(1)

        def ref_cost(total, own, ref):
            return ((total - own) * ref[:, :, None]).sum(1) / n_other  # zero without a reference: ref is zero
        out = [ref_cost(self.sum_f, self.own_f, ref_f), _pairwise_agreement(self.sum_f, self.sq_f, self.n_valid)]
        if self.sum_z is not None:
            out += [ref_cost(self.sum_z, self.own_z, ref_z), _pairwise_agreement(self.sum_z, self.sq_z, self.n_valid)]
        return out


def _pairwise_agreement(sum_f: torch.Tensor, sq_f: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Mean pairwise dot product among the n valid views from running sums (linear in views).

    sum_{i != j} <f_i, f_j> = |sum_i f_i|^2 - sum_i |f_i|^2; divided by n (n - 1). With unit
    features this is 1 - n/(n-1) * variance (MVSNet's variance cost, rescaled). sum_f (B, C, D, h, w),
    sq_f and n (B, D, h, w). Pixels seen by fewer than two views get 0.
    """
    pairs = (sum_f * sum_f).sum(1) - sq_f
    return torch.where(n >= 2, pairs / (n * (n - 1)).clamp_min(1), torch.zeros_like(pairs))


def fixed_zncc_cost(cond_rgb, cond_K, cond_T, tgt_K, hyp: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """Training-free photometric cost (B, D, h, w): the ZNCC term the learned volume gets as input.

    Same geometry and hypotheses as CostVolume (cond_rgb (B, N, 3, H, W), cameras as there);
    "ref" ZNCC when the target is a conditioning view, else agreement among views. Higher = better.
    """
    B, N, _, H, W = cond_rgb.shape
    h, w = H // stride, W // stride
    small = F.avg_pool2d(cond_rgb.flatten(0, 1), stride) if stride > 1 else cond_rgb.flatten(0, 1)
    gray = small.mean(1, keepdim=True).view(B, N, 1, h, w)
    has_ref, ref_idx = find_reference_view(cond_T, cond_K, tgt_K)
    Ks = resize_intrinsics(cond_K.float(), (H, W), (h, w))
    Kt = resize_intrinsics(tgt_K.float(), (H, W), (h, w))
    ref = zncc_features(gray[torch.arange(B), ref_idx])  # (B, 9, h, w)
    D = hyp.shape[0]
    n = gray.new_zeros(B, D, h, w)
    n_ref, c_ref, sq = n.clone(), n.clone(), n.clone()
    s_sum = gray.new_zeros(B, 9, D, h, w)
    for v in range(N):
        grid, valid = project_hypotheses(Kt, Ks[:, v], cond_T[:, v].float(), hyp, h, w)
        warped = F.grid_sample(gray[:, v], grid, mode="bilinear", padding_mode="zeros", align_corners=True)  # (B, 1, D*h, w)
        m = valid.to(gray.dtype)
        s = warped_windows(warped.view(B, 1, D, h, w)) * m[:, None]  # (B, 9, D, h, w); as in CostVolume
        other = (has_ref & (ref_idx != v)).view(B, 1, 1, 1).to(gray.dtype)
        n, n_ref = n + m, n_ref + m * other
        c_ref = c_ref + (s * ref[:, :, None]).sum(1) * other
        s_sum, sq = s_sum + s, sq + (s * s).sum(1)
    agree = _pairwise_agreement(s_sum, sq, n)
    return torch.where(has_ref.view(B, 1, 1, 1), c_ref / n_ref.clamp_min(1), agree)

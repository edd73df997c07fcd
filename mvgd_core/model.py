"""MVGD network: a Recurrent Interface Network (RIN, Jabri et al. 2022) over multi-view tokens.

Data tokens:
- scene tokens, one per patch of each conditioning view: patch-encoder features (trained from
  scratch; the paper's pretrained EfficientViT is not available to us) + raymap encoding;
- prediction tokens, one per patch of the target: patch embedding of the noisy target x_t +
  target raymap encoding + learned task embedding (0 = rgb, 1 = depth).
L learned latents *read* all data tokens (cross-attention latents -> data), *process* among
themselves (self-attention), and prediction tokens *read back* (write step: cross-attention
prediction tokens -> latents), repeated over blocks. Data tokens never attend to data tokens,
so attention cost is O(L * (N + 1) * P + L^2): linear in the number of views N.

Additions for our compute (issue 11; each behind a ModelConfig switch whose default is the
paper's design, so old checkpoints rebuild and predict bit-identically):
- `matching`: a plane-sweep cost volume along the target's rays (mvgd_core/cost_volume.py);
  its depth distribution, features and expected colour enter the prediction tokens and the
  decoder, and (`match_skip`) its depth / colour estimate is the output's starting point;
- `decoder`: a small convolutional decoder at 1/match_stride resolution with learned
  (pixel-shuffle) upsampling after the token stage, so output detail is finer than a patch;
  when the target is a conditioning view, its own image features go straight into the
  prediction tokens and the decoder;
- `scale_input`: the SSN scale (log s, and how far the clamp raised it) joins the (time, task)
  conditioning, so the network knows the metric size of a normalized scene.

Channel layout (our choice): always C = 3. RGB uses the three channels; depth is the log-depth
parameter replicated over them (averaged on output). One layout means one patch embedding and
one output head shared by both tasks; the task embedding tells the network which one it makes.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from mvgd_core.cost_volume import CostVolume, FeatureEncoder, MatchOutput, find_reference_view
from mvgd_core.raymap import patch_raymap, raymap_channels
from mvgd_core.ssn import depth_to_param


@dataclass(frozen=True)
class ModelConfig:
    image_size: tuple[int, int] = (48, 64)  # (H, W) the model runs at
    patch_size: int = 8  # even: the patch encoder downsamples by p/2, then by 2
    channels: int = 3  # target channel layout (see module docstring)
    dim: int = 128  # data (patch) token width
    dim_latent: int = 128  # latent token width
    num_latents: int = 64
    num_blocks: int = 4  # read / process / write blocks
    process_layers: int = 2  # latent self-attention layers per block
    heads: int = 4
    mlp_ratio: float = 4.0
    encoder_channels: int = 32  # hidden width of the conditioning patch encoder
    ray_origin_bands: int = 6  # paper: 20 / 10; our 48x64 images have 48 patches, fewer bands suffice
    ray_dir_bands: int = 6
    ray_max_freq: float = 16.0
    # --- issue 11 switches; the defaults are the paper's pure raymap design (old checkpoints)
    scale_input: bool = False  # tell the network log s (SSN scale) and the clamp's share of it
    decoder: bool = False  # conv decoder + learned upsampling after the token stage (needs match_stride)
    matching: bool = False  # plane-sweep cost volume path (needs decoder)
    match_skip: bool = True  # with matching: output = cost-volume estimate + learned residual
    match_stride: int = 4  # matching / decoder resolution = image_size / match_stride (2 or 4)
    match_channels: int = 32  # matching feature width
    match_depths: int = 32  # hypotheses, log-spaced in [match_d_lo, match_d_hi] SSN units
    match_d_lo: float = 0.1  # procedural data: GT depth / s has median 1.2, 5-95 % range ~0.7-3.2, extremes 0.07-72
    match_d_hi: float = 30.0  # beyond ~30 SSN units parallax is below a pixel at 1/4 of 96x128
    match_zncc: bool = False  # also feed the fixed ZNCC (3x3) cost
    match_width: int = 64  # cost aggregator width
    match_out: int = 32  # aggregated matching feature width
    decoder_width: int = 48

    def __post_init__(self):
        H, W = self.image_size
        p = self.patch_size
        if p < 2 or p % 2 or H % p or W % p:
            raise ValueError(f"ModelConfig: patch_size {p} must be even and divide image_size {self.image_size}")
        for name in ("dim", "dim_latent"):
            if getattr(self, name) % self.heads:
                raise ValueError(f"ModelConfig: {name}={getattr(self, name)} must be divisible by heads={self.heads}")
        if self.num_latents < 1 or self.num_blocks < 1:
            raise ValueError("ModelConfig: num_latents and num_blocks must be >= 1")
        if self.matching and not self.decoder:
            raise ValueError("ModelConfig: matching needs decoder (the cost volume feeds the decoder)")
        if self.decoder:
            s = self.match_stride
            if s not in (2, 4) or p % s or H % s or W % s:
                raise ValueError(f"ModelConfig: match_stride {s} must be 2 or 4 and divide patch_size {p} and image_size {self.image_size}")

    @property
    def grid(self) -> tuple[int, int]:
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]


FEATURE_CHUNK = 32  # images per FeatureEncoder call (encode_context)

# Named presets (DiT style). "small" is the CPU-trained default; "base" is for a GPU.
PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(image_size=(16, 16), patch_size=4, dim=48, dim_latent=48, num_latents=16, num_blocks=2,
                        process_layers=1, heads=2, encoder_channels=16, ray_origin_bands=4, ray_dir_bands=4),
    "small": ModelConfig(),
    # issue 11: matching path, decoder, scale input; 96x128 output from 16x16 patches (48 tokens per view)
    "match": ModelConfig(image_size=(96, 128), patch_size=16, scale_input=True, decoder=True, matching=True),
    "base": ModelConfig(image_size=(96, 128), patch_size=8, dim=256, dim_latent=384, num_latents=256, num_blocks=6,
                        process_layers=3, heads=8, encoder_channels=64, ray_origin_bands=10, ray_dir_bands=8, ray_max_freq=32.0),
}


def model_config(name: str, **overrides) -> ModelConfig:
    """Preset by name with field overrides, e.g. model_config("small", num_latents=128)."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose from {sorted(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)


class Attention(nn.Module):
    """Pre-norm multi-head attention; cross-attention when a context is given."""

    def __init__(self, dim: int, heads: int, dim_context: int | None = None):
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.norm_ctx = nn.LayerNorm(dim_context) if dim_context is not None else None
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(dim_context or dim, 2 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        B, T, C = x.shape
        x = self.norm(x)
        ctx = x if self.norm_ctx is None else self.norm_ctx(context)  # (B, S, Cc)
        S, h = ctx.shape[1], self.heads
        q = self.to_q(x).view(B, T, h, C // h).transpose(1, 2)  # (B, h, T, hs)
        k, v = self.to_kv(ctx).view(B, S, 2, h, C // h).permute(2, 0, 3, 1, 4)  # 2 x (B, h, S, hs)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, h, T, hs): scores (B, h, T, S) never larger
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, dim: int, ratio: float):
        super().__init__()
        hidden = int(dim * ratio)
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x):
        return self.net(x)


class RINBlock(nn.Module):
    """Read (latents <- data), process (latents <- latents), write (prediction tokens <- latents)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        D, Dl = cfg.dim, cfg.dim_latent
        self.read = Attention(Dl, cfg.heads, dim_context=D)
        self.read_mlp = MLP(Dl, cfg.mlp_ratio)
        self.process = nn.ModuleList(
            nn.ModuleList([Attention(Dl, cfg.heads), MLP(Dl, cfg.mlp_ratio)]) for _ in range(cfg.process_layers))
        self.write = Attention(D, cfg.heads, dim_context=Dl)
        self.write_mlp = MLP(D, cfg.mlp_ratio)

    def forward(self, latents, scene, pred):
        # latents (B, L, Dl); scene (B, N*P, D); pred (B, P, D)
        data = torch.cat([scene, pred], dim=1)  # (B, N*P + P, D)
        latents = latents + self.read(latents, data)  # scores (B, h, L, N*P + P)
        latents = latents + self.read_mlp(latents)
        for attn, mlp in self.process:
            latents = latents + attn(latents)  # scores (B, h, L, L)
            latents = latents + mlp(latents)
        pred = pred + self.write(pred, latents)  # scores (B, h, P, L)
        pred = pred + self.write_mlp(pred)
        return latents, pred


class PatchEncoder(nn.Module):
    """Small conv patch encoder for conditioning images: (B, 3, H, W) -> (B, P, D).

    Downsamples by p/2 first (memory stays small for 1000+ views), mixes neighbours with a
    3x3 conv, then folds 2x2 into one token per patch.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c, p = cfg.encoder_channels, cfg.patch_size
        self.net = nn.Sequential(
            nn.Conv2d(3, c, p // 2, stride=p // 2), nn.GELU(),
            nn.Conv2d(c, c, 3, padding=1), nn.GELU(),
            nn.Conv2d(c, cfg.dim, 2, stride=2))
        self.norm = nn.LayerNorm(cfg.dim)

    def forward(self, x):
        return self.norm(self.net(x).flatten(2).transpose(1, 2))  # (B, P, D)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (B,) -> (B, dim) (DiT / ADM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([args.cos(), args.sin()], dim=-1)
    return F.pad(emb, (0, dim % 2))


class MVGD(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        D, Dl, C, p = cfg.dim, cfg.dim_latent, cfg.channels, cfg.patch_size
        ray_ch = raymap_channels(cfg.ray_origin_bands, cfg.ray_dir_bands)
        self.scene_encoder = PatchEncoder(cfg)
        self.ray_embed = nn.Sequential(nn.Linear(ray_ch, D), nn.GELU(), nn.Linear(D, D))
        self.type_embed = nn.Parameter(torch.zeros(2, D))  # 0 = scene token, 1 = prediction token
        self.pred_embed = nn.Conv2d(C, D, p, stride=p)
        self.task_embed = nn.Embedding(2, D)
        self.task_embed_latent = nn.Embedding(2, Dl)
        self.time_mlp = nn.Sequential(nn.Linear(Dl, Dl), nn.SiLU(), nn.Linear(Dl, Dl))
        self.pred_film = nn.Sequential(nn.SiLU(), nn.Linear(Dl, 2 * D))  # (t, task) -> scale, shift of x_t's embedding
        self.latents = nn.Parameter(torch.randn(cfg.num_latents, Dl) * 0.02)
        self.sc_mlp = nn.Sequential(nn.LayerNorm(Dl), nn.Linear(Dl, Dl))  # latent self-conditioning
        self.blocks = nn.ModuleList(RINBlock(cfg) for _ in range(cfg.num_blocks))
        self.out_norm = nn.LayerNorm(D)
        self.out = nn.Linear(D, p * p * C)
        if cfg.scale_input:
            self.scale_embed = nn.Linear(2, Dl)  # [log s, log(s / raw s)] -> latent conditioning
        if cfg.decoder:
            s, c = cfg.match_stride, cfg.match_channels
            self.features = FeatureEncoder(c, s)  # image features at 1/s: matching, own-view features
            ctx = c + 1 + (cfg.match_out + 2 + 3 if cfg.matching else 0)  # ref feats, has_ref [, match feats, P_D, conf, colour]
            self.ctx_to_token = nn.Linear(ctx * (p // s) ** 2, D)  # context cells of a patch -> its prediction token
            self.token_to_dec = nn.Linear(D, cfg.decoder_width * (p // s) ** 2)  # token -> decoder cells
            w = cfg.decoder_width
            self.decoder = nn.Sequential(nn.Conv2d(w + ctx, w, 3, padding=1), nn.GELU(), nn.Conv2d(w, w, 3, padding=1), nn.GELU(),
                                         nn.Conv2d(w, C * s * s, 3, padding=1), nn.PixelShuffle(s))  # learned upsampling
            if cfg.matching:
                self.cost_volume = CostVolume(cfg.image_size, s, c, cfg.match_depths, cfg.match_d_lo, cfg.match_d_hi,
                                              cfg.match_zncc, cfg.match_width, cfg.match_out)
        self.initialize_weights()

    def initialize_weights(self):
        """DiT style: xavier linears, zero-init output layers so training starts from identity blocks."""
        def _basic(m):
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.apply(_basic)
        nn.init.normal_(self.task_embed.weight, std=0.02)
        nn.init.normal_(self.task_embed_latent.weight, std=0.02)
        nn.init.normal_(self.type_embed, std=0.02)
        # Zero-init: the output head (prediction starts at 0), the self-conditioning input (a fresh
        # model ignores latents_sc), and every residual branch's last projection (blocks start as identity).
        for m in (self.out, self.sc_mlp[1], self.pred_film[1]):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
        for blk in self.blocks:
            for m in (blk.read.proj, blk.write.proj, blk.read_mlp.net[-1], blk.write_mlp.net[-1]):
                nn.init.zeros_(m.weight)
                nn.init.zeros_(m.bias)
        # New paths start switched off (zero last layers): a fresh model equals the raymap design
        # (plus the cost-volume estimate with match_skip), and training grows them.
        for name in ("scale_embed", "ctx_to_token"):
            if hasattr(self, name):
                nn.init.zeros_(getattr(self, name).weight)
                nn.init.zeros_(getattr(self, name).bias)
        if self.cfg.decoder:
            nn.init.zeros_(self.decoder[-2].weight)
            nn.init.zeros_(self.decoder[-2].bias)

    def encode_scene(self, cond_rgb, cond_K, cond_T) -> torch.Tensor:
        """Scene tokens (B, N*P, D) of the conditioning views; independent of t, so samplers cache it.

        cond_rgb (B, N, 3, H, W) in [-1, 1]; cond_K (B, N, 3, 3); cond_T (B, N, 4, 4) normalized.
        """
        cfg = self.cfg
        B, N, _, H, W = cond_rgb.shape
        if (H, W) != cfg.image_size:
            raise ValueError(f"MVGD: conditioning images are {H}x{W}, model runs at {cfg.image_size}")
        feats = self.scene_encoder(cond_rgb.flatten(0, 1))  # (B*N, P, D)
        rays = self._rays(cond_K, cond_T)  # (B, N, P, R)
        tokens = feats.view(B, N, -1, cfg.dim) + self.ray_embed(rays) + self.type_embed[0]  # (B, N, P, D)
        return tokens.flatten(1, 2)  # (B, N*P, D)

    def view_features(self, cond_rgb) -> torch.Tensor:
        """Matching features of each view on its own: (B, N, 3, H, W) in [-1, 1] -> (B, N, C, H/s, W/s)
        float32 (cfg.decoder only). A view's features depend on its image alone, so a caller that sees
        the same views again (the node's keyframes) may keep them and pass them to encode_context."""
        B, N, _, H, W = cond_rgb.shape
        s = self.cfg.match_stride
        with torch.autocast(cond_rgb.device.type, enabled=False):
            # views in chunks: the full-resolution first layer of 1024 views at once is ~0.4 GB and made
            # prediction time superlinear in N (memory traffic); same values as one call
            flat = cond_rgb.flatten(0, 1).float()
            return torch.cat([self.features(x) for x in flat.split(FEATURE_CHUNK)]).view(B, N, -1, H // s, W // s)

    def encode_context(self, cond_rgb, cond_K, cond_T, tgt_K, feats: torch.Tensor | None = None) -> "Context | None":
        """t-independent per-pixel context of the target (samplers cache it like scene tokens):
        own-view features when the target is a conditioning view, and the matching output.
        None when cfg.decoder is off. Shapes as in forward; feats: `view_features(cond_rgb)` when
        the caller already has them (None: computed here)."""
        cfg = self.cfg
        if not cfg.decoder:
            return None
        B, N, _, H, W = cond_rgb.shape
        s = cfg.match_stride
        if feats is None:
            feats = self.view_features(cond_rgb)  # (B, N, C, h, w)
        elif tuple(feats.shape) != (B, N, cfg.match_channels, H // s, W // s):
            raise ValueError(f"encode_context: feats must be {(B, N, cfg.match_channels, H // s, W // s)}, got {tuple(feats.shape)}")
        with torch.autocast(cond_rgb.device.type, enabled=False):  # geometry and costs in float32
            feats = feats.float()
            has_ref, ref_idx = find_reference_view(cond_T.float(), cond_K.float(), tgt_K.float())
            match = self.cost_volume(feats, cond_rgb.float(), cond_K, cond_T, tgt_K) if cfg.matching else None
        ref = feats[torch.arange(B, device=feats.device), ref_idx] * has_ref.view(B, 1, 1, 1).to(feats.dtype)  # (B, C, h, w)
        parts = [ref, has_ref.view(B, 1, 1, 1).to(feats.dtype).expand(B, 1, H // s, W // s)]
        if match is not None:
            parts += [match.feats, depth_to_param(match.depth), match.confidence, match.colour]
        return Context(maps=torch.cat(parts, 1), match=match)  # maps (B, ctx, h, w)

    def _rays(self, K, T):
        cfg = self.cfg
        dtype = self.latents.dtype
        with torch.autocast(K.device.type, enabled=False):  # geometry in float32 even under bf16 autocast
            r = patch_raymap(K.float(), T.float(), *cfg.image_size, cfg.patch_size, cfg.ray_origin_bands, cfg.ray_dir_bands, cfg.ray_max_freq)
        return r.to(dtype)  # (..., P, R)

    def forward(self, x_t, t, task, cond_rgb, cond_K, cond_T, tgt_K, tgt_T, latents_sc=None, scene_tokens=None,
                scale_feats=None, context=None, return_context: bool = False):
        """x_t (B, C, H, W) noisy target in model space; t (B,) int timesteps; task (B,) long
        (0 = rgb, 1 = depth); cond_rgb (B, N, 3, H, W) in [-1, 1]; cond_K (B, N, 3, 3);
        cond_T (B, N, 4, 4) and tgt_T (B, 4, 4) already scene-scale normalized;
        tgt_K (B, 3, 3); latents_sc (B, L, D) or None (self-conditioning); scene_tokens: optional
        cached `encode_scene(cond_rgb, cond_K, cond_T)`; scale_feats (B, 2) `ssn.scale_features`
        (needed with cfg.scale_input); context: optional cached `encode_context(...)`.
        Returns (pred (B, C, H, W), latents (B, L, D)), plus the Context used (or None) with
        return_context: the cost volume's own loss needs it, and under DDP only forward's
        outputs carry gradients correctly."""
        cfg = self.cfg
        B, C, H, W = x_t.shape
        if (H, W) != cfg.image_size or C != cfg.channels:
            raise ValueError(f"MVGD: x_t is {tuple(x_t.shape)}, model expects (B, {cfg.channels}, {cfg.image_size[0]}, {cfg.image_size[1]})")
        if scene_tokens is None:
            scene_tokens = self.encode_scene(cond_rgb, cond_K, cond_T)  # (B, N*P, D)

        # (time, task) conditioning vector, shared by latents and prediction tokens
        cond = self.time_mlp(timestep_embedding(t, cfg.dim_latent).to(self.latents.dtype)) + self.task_embed_latent(task)  # (B, Dl)
        if cfg.scale_input:
            if scale_feats is None:
                raise ValueError("MVGD: this model takes the SSN scale (cfg.scale_input); pass scale_feats=ssn.scale_features(...)")
            cond = cond + self.scale_embed(scale_feats.to(cond.dtype))
        if cfg.decoder and context is None:
            context = self.encode_context(cond_rgb, cond_K, cond_T, tgt_K)

        # prediction tokens: noisy target + target raymap + task. The x_t embedding is FiLM-ed by
        # (t, task) (our addition; RIN tells data tokens t only through the latents): it rides the
        # residual stream straight to the output head, so without a t-dependent gate the pure
        # noise of early sampling steps leaks into the prediction (measured: patch-wise noise in
        # sampled depth at t = T - 1). Zero-initialized: starts as the identity.
        scale, shift = self.pred_film(cond)[:, None].chunk(2, dim=-1)  # 2 x (B, 1, D)
        pred = self.pred_embed(x_t).flatten(2).transpose(1, 2) * (1 + scale) + shift  # (B, P, D)
        pred = pred + self.ray_embed(self._rays(tgt_K, tgt_T)) + self.task_embed(task)[:, None] + self.type_embed[1]
        if context is not None:  # own-view features and matching, the cells of each patch -> its token
            pred = pred + self.ctx_to_token(self._cells_to_tokens(context.maps.to(pred.dtype)))

        # latents: learned + self-conditioning + (time, task) conditioning. RIN concatenates a time
        # token instead; adding it to every latent keeps grow_latents function-preserving (a lone
        # extra token would get half the attention weight relative to duplicated latents).
        if latents_sc is None:
            latents_sc = torch.zeros(B, cfg.num_latents, cfg.dim_latent, device=x_t.device, dtype=self.latents.dtype)
        latents = self.latents.unsqueeze(0) + self.sc_mlp(latents_sc) + cond[:, None]  # (B, L, Dl)

        for blk in self.blocks:
            latents, pred = blk(latents, scene_tokens, pred)

        pred = self.out_norm(pred)
        out = self.unpatchify(self.out(pred))  # (B, C, H, W)
        if context is not None:
            out = out + self._decode(pred, context, task)
        return (out, latents, context) if return_context else (out, latents)

    def _cells_to_tokens(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, c, h, w) at 1/s -> (B, P, c * (p/s)^2): the cells under each patch, row-major patches."""
        k = self.cfg.patch_size // self.cfg.match_stride
        return F.pixel_unshuffle(maps, k).flatten(2).transpose(1, 2)

    def _decode(self, pred: torch.Tensor, context: "Context", task: torch.Tensor) -> torch.Tensor:
        """Decoder: token features + context at 1/s -> (B, C, H, W) learned upsampling; plus, with
        match_skip, the cost volume's own estimate (log-depth param for depth, expected colour for RGB)."""
        cfg = self.cfg
        gh, gw = cfg.grid
        k = cfg.patch_size // cfg.match_stride
        tok = self.token_to_dec(pred).transpose(1, 2).reshape(pred.shape[0], -1, gh, gw)  # (B, w*k*k, gh, gw)
        x = torch.cat([F.pixel_shuffle(tok, k), context.maps.to(pred.dtype)], 1)  # (B, w + ctx, h, w)
        out = self.decoder(x)  # (B, C, H, W)
        m = context.match
        if cfg.matching and cfg.match_skip and m is not None:
            H, W = cfg.image_size
            est_d = depth_to_param(m.depth).expand(-1, cfg.channels, -1, -1)  # (B, C, h, w) model space
            est_rgb = m.colour if cfg.channels == 3 else m.colour.mean(1, keepdim=True).expand(-1, cfg.channels, -1, -1)
            est = torch.where((task == 1).view(-1, 1, 1, 1), est_d, est_rgb)
            out = out + F.interpolate(est.to(out.dtype), size=(H, W), mode="bilinear", align_corners=False)
        return out

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, P, p*p*C) -> (B, C, H, W)."""
        cfg = self.cfg
        gh, gw = cfg.grid
        p, C = cfg.patch_size, cfg.channels
        x = x.view(x.shape[0], gh, gw, p, p, C)
        return torch.einsum("bhwpqc->bchpwq", x).reshape(x.shape[0], C, gh * p, gw * p)


@dataclass
class Context:
    """encode_context output. maps (B, c, h, w) at 1/match_stride; match: MatchOutput or None."""

    maps: torch.Tensor
    match: MatchOutput | None


def grow_latents(model: MVGD, num_latents: int, noise_std: float = 1e-3, generator: torch.Generator | None = None) -> MVGD:
    """A copy of `model` with `num_latents` latents (paper: 256 -> 512 -> 1024 -> 2048).

    Every other weight is kept; new latent i copies trained latent i mod L. For an exact
    multiple, the grown network computes the same function: duplicated keys/values in every
    softmax leave attention outputs unchanged. Exact duplicates would also receive identical
    gradients forever, so `noise_std` (relative to the latents' std) breaks the symmetry.
    """
    old = model.cfg.num_latents
    if num_latents < old:
        raise ValueError(f"grow_latents: cannot shrink {old} -> {num_latents} latents")
    new = MVGD(dataclasses.replace(model.cfg, num_latents=num_latents))
    state = {k: v for k, v in model.state_dict().items() if k != "latents"}
    missing, unexpected = new.load_state_dict(state, strict=False)
    assert missing == ["latents"] and not unexpected, (missing, unexpected)
    with torch.no_grad():
        src = model.latents.detach()  # (L, Dl)
        idx = torch.arange(num_latents, device=src.device) % old
        grown = src[idx].clone()  # (L', Dl)
        noise = torch.randn(grown.shape, generator=generator, dtype=grown.dtype).to(grown.device)
        grown[old:] += noise[old:] * noise_std * src.std()  # originals stay bit-exact
        new.latents.copy_(grown.cpu())
    return new.to(device=src.device, dtype=src.dtype).train(model.training)

"""The ``warp`` generator family: the shots' own pixels, moved by the landmarks, refined by AdaIN.

Per target frame::

    shots (B,K,3,S,S) --TPS (or piecewise affine, cfg.warp_motion) from the target's 68 points
                        to each shot's--> warped (B,K,3,S,S)
    blend weights  = softmax_k( -d_k / T  +  scorer(warped_k, y) )        d_k: landmark distance (prior)
    blended        = sum_k weights_k * warped_k
    U-Net(y, blended) at S / warp_downscale, AdaIN from psi = P e_hat  ->  flow, mask, delta
    corrected      = sum_k weights_k * warp(shot_k, grid_k + flow)
    rgb            = clamp(corrected + delta, -1, 1)            (the painted image, started from the warp)
    fake           = mask * corrected  +  (1 - mask) * rgb

At initialisation the flow and delta are 0, the scorer adds 0 and the prior picks the nearest shot, so
the untrained generator is a thin-plate-spline warp of the nearest shot whatever the mask: the warp
baseline. Training learns only what warping cannot do: the mouth interior (rgb where the mask opens),
eyelids, what a turn uncovers, the flow where 68 points miss (hair, ears, jaw line).

Why rgb starts from the warp, not from zero: with an absolute rgb the untrained output is the warp only
when the mask is saturated at 1, where neither the mask (sigmoid' ~ 0.007) nor the rgb (weight 1 - mask)
gets a gradient, and an opening mask first shows grey. The first model trained that way (1100 CPU
steps) never opened its mask (min 0.9935 on every held-out frame). Started from the warp, the mask
starts at 0.5 and both branches learn from the first step.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .cavity import mouth_cavity, uncover_share
from .embedder import check_image
from .eyelids import eyelids
from .generator import AdaINGenerator
from .layers import AdaIN, ResBlock, ResBlockDown, ResBlockUp, sn_conv
from .mouth import MouthRefiner
from .mouth_inside import MouthInside
from .piecewise import pa_grid
from .tps import border_points, identity_grid, landmark_distance, region_map, tps_grid, warp_images

__all__ = ["WarpGenerator"]

MASK_BIAS = 0.0  # the mask starts at 0.5: either branch is the warp at first, and both get gradients
# the prior's temperature in landmark-distance units (normalised by the face's spread): a shot 0.01
# farther than the nearest gets e^-5 of its weight, so the untrained blend is the nearest shot. At 0.01
# the near-identical first frames of a clip were averaged: held-out LPIPS 0.184 against 0.162 for the
# nearest shot alone (8 shots, 5 clips); the scorer learns where a blend pays
BLEND_TEMPERATURE = 0.002
FLOW_SCALE = 0.25  # the head's flow channels, in grid units (2 = the crop's width), times this
SCORER_CHANNELS = 16


class WarpGenerator(AdaINGenerator):
    """The ``warp`` family (``cfg.generator == "warp"``).

    ``generate(y (B,3,S,S), points (B,68,2), state) -> dict`` with ``state`` from
    :meth:`identity_state`: ``psi (B,n_psi)``, ``shots (B,K,3,S,S)`` in [-1, 1], ``shot_points
    (B,K,68,2)`` in their crops' pixels (a batch of 1 is shared by every target). Returns ``fake``,
    ``warped`` (the blend before the network's corrections), ``mask (B,1,S,S)``, ``flow (B,S,S,2)``,
    ``rgb``, ``corrected`` (the warp with the flow, before the mask), ``grid (B,K'+R,S,S,2)`` (the TPS
    or piecewise-affine grids of ``cfg.warp_motion``, without the flow; :mod:`talkinghead.fullres`
    samples the source at full resolution with them),
    ``weights (B,K'+R,1,S,S)`` and ``shot_index (B,K'+R)``: the ``K' = min(K, cfg.warp_shots)``
    nearest shots that were warped, then (with K > 1) one shot for each of the ``R`` regions of
    ``cfg.warp_regions``, blended in over the region's soft map (:func:`talkinghead.models.tps.region_map`).
    With a mouth refiner (``cfg.mouth_channels``, :mod:`talkinghead.models.mouth`) ``fake`` is refined in the
    box about the lips, and ``unrefined`` (the fake before it), ``mouth_delta (B,3,M,M)`` and
    ``mouth_theta (B,2,3)`` come with it.

    The U-Net: a 3x3 conv to ``warp_channels[0]``, residual down blocks without normalisation through
    ``warp_channels``, ``warp_blocks`` AdaIN residual blocks, AdaIN residual up blocks back to
    ``warp_channels[0]`` with additive skips from the encoder, AdaIN, ReLU and a plain 3x3 head (zero
    weights) for 2 flow + 1 mask + 3 rgb channels, upsampled to S. The per-shot scorer is three convs
    at S/4. psi order: bottleneck blocks, up blocks, output norm (as the paper's generator).
    """

    family = "warp"
    needs_shots = True

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        ch = cfg.warp_channels
        self.net_size = cfg.image_size // cfg.warp_downscale
        self.input = sn_conv(2 * cfg.image_channels, ch[0], 3)
        self.down = nn.ModuleList(ResBlockDown(a, b, norm=None) for a, b in zip(ch[:-1], ch[1:]))
        self.bottleneck = nn.ModuleList(ResBlock(ch[-1], ch[-1], norm="adain") for _ in range(cfg.warp_blocks))
        self.up = nn.ModuleList(ResBlockUp(b, a, norm="adain") for a, b in reversed(list(zip(ch[:-1], ch[1:]))))
        self.out_norm = AdaIN(ch[0])
        # plain convs with zero weights: spectral norm is undefined at 0, and the start must be the warp
        self.head = nn.Conv2d(ch[0], 6, 3, padding=1)
        self.scorer = nn.Sequential(
            sn_conv(2 * cfg.image_channels, SCORER_CHANNELS, 3), nn.ReLU(),
            sn_conv(SCORER_CHANNELS, SCORER_CHANNELS, 3), nn.ReLU(),
            nn.Conv2d(SCORER_CHANNELS, 1, 3, padding=1))
        self.reset_heads()
        self.register_buffer("border", border_points(cfg.image_size), persistent=False)
        named = [(f"bottleneck.{i}", b) for i, b in enumerate(self.bottleneck)]
        named += [(f"up.{i}", b) for i, b in enumerate(self.up)]
        self._init_psi(named, self.out_norm)
        # after psi's layout: the refiner reads psi through a map of its own
        self.mouth = MouthRefiner(cfg, self.n_psi) if cfg.mouth_channels else None
        self.inside = MouthInside(cfg.inside_channels, cfg.inside_size) if cfg.inside_channels else None

    @torch.no_grad()
    def reset_heads(self) -> None:
        """Zero the flow/mask/delta head, the scorer's last layer and the mouth refiner's head, and mark the
        learned mouth inside untrained: the generator becomes the warp (with its priors)."""
        if getattr(self, "mouth", None) is not None:
            self.mouth.reset_head()
        if getattr(self, "inside", None) is not None:
            self.inside.trained.zero_()
        self.head.weight.zero_()
        self.head.bias.zero_()
        self.head.bias[2] = MASK_BIAS
        self.scorer[-1].weight.zero_()
        self.scorer[-1].bias.zero_()

    def identity_state(self, e_hat: torch.Tensor, shots: torch.Tensor | None = None,
                       shot_points: torch.Tensor | None = None) -> dict:
        """``{"psi" (B,n_psi), "shots" (B,K,3,S,S), "shot_points" (B,K,68,2)}``."""
        if shots is None or shot_points is None:
            raise ValueError("the warp generator needs the shots (B, K, 3, S, S) and their landmarks (B, K, 68, 2)")
        s, c = self.config.image_size, self.config.image_channels
        if shots.dim() != 5 or tuple(shots.shape[2:]) != (c, s, s) or shots.shape[1] < 1:
            raise ValueError(f"shots must have shape (B, K >= 1, {c}, {s}, {s}), got {tuple(shots.shape)}")
        if tuple(shot_points.shape) != (*shots.shape[:2], 68, 2):
            raise ValueError(f"shot_points must have shape {(*shots.shape[:2], 68, 2)}, got {tuple(shot_points.shape)}")
        return {"psi": self.psi_from_embedding(e_hat), "shots": shots, "shot_points": shot_points.float()}

    def check_state(self, state: dict) -> None:
        super().check_state(state)
        shots, points = state.get("shots"), state.get("shot_points")
        s, c = self.config.image_size, self.config.image_channels
        if shots is None or shots.dim() != 4 or tuple(shots.shape[1:]) != (c, s, s) or len(shots) < 1:
            raise ValueError(f"shots must be (K, {c}, {s}, {s}), got {None if shots is None else tuple(shots.shape)}")
        if points is None or tuple(points.shape) != (len(shots), 68, 2):
            raise ValueError(f"shot_points must be ({len(shots)}, 68, 2), got "
                             f"{None if points is None else tuple(points.shape)}")

    def forward(self, y: torch.Tensor, points: torch.Tensor, state: dict) -> dict:
        return self.generate(y, points, state)

    def _select_shots(self, points, shots, shot_points):
        """The ``warp_shots`` nearest shots of each target, with their landmark distances, then one shot
        per ``warp_regions`` entry (when there is more than one shot): the one whose region is shaped
        most like the target's, with half the whole-face distance added so that it is not a far pose.
        Returns ``(shots (B,K'+R,...), shot_points, dist (B,K') of the nearest, index (B,K'+R))``."""
        b = points.shape[0]
        if shots.shape[0] == 1 and b > 1:
            shots, shot_points = shots.expand(b, *shots.shape[1:]), shot_points.expand(b, *shot_points.shape[1:])
        if shots.shape[0] != b:
            raise ValueError(f"the state holds shots for a batch of {shots.shape[0]}, the targets are {b}")
        dist = landmark_distance(points.float(), shot_points)  # (B, K)
        shots_all, points_all, dist_all = shots, shot_points, dist
        k = shots.shape[1]
        m = min(k, self.config.warp_shots)
        if m < k:
            dist, index = dist.topk(m, dim=1, largest=False)
            shots = shots.gather(1, index[:, :, None, None, None].expand(-1, -1, *shots.shape[2:]))
            shot_points = shot_points.gather(1, index[:, :, None, None].expand(-1, -1, 68, 2))
        else:
            index = torch.arange(k, device=dist.device).expand(b, k)
        if k > 1 and self.config.warp_regions:
            full_shots, full_points = shots_all, points_all
            picks = [(landmark_distance(points.float(), full_points, r) + 0.5 * dist_all).argmin(dim=1, keepdim=True)
                     for r in self.config.warp_regions]
            extra = torch.cat(picks, dim=1)  # (B, R)
            shots = torch.cat([shots, full_shots.gather(1, extra[:, :, None, None, None].expand(
                -1, -1, *full_shots.shape[2:]))], dim=1)
            shot_points = torch.cat([shot_points, full_points.gather(1, extra[:, :, None, None].expand(-1, -1, 68, 2))], dim=1)
            index = torch.cat([index, extra], dim=1)
        return shots, shot_points, dist, index

    def generate(self, y: torch.Tensor, points: torch.Tensor, state: dict) -> dict:
        cfg = self.config
        check_image("Warp generator input y", y, cfg)
        b, s = y.shape[0], cfg.image_size
        if points is None or tuple(points.shape) != (b, 68, 2):
            raise ValueError(f"target points must have shape ({b}, 68, 2), got "
                             f"{None if points is None else tuple(points.shape)}")
        psi = self._batch_psi(state["psi"], b)
        shots, shot_points, dist, index = self._select_shots(points, state["shots"], state["shot_points"])
        shots = shots.to(y.dtype)
        k = dist.shape[1]  # the nearest shots; the region shots follow them
        if cfg.warp_motion == "pa":  # ModelConfig.warp_motion; landmarks are data: no gradient either way
            with torch.no_grad():
                grid = pa_grid(points.float(), shot_points.float(), s, self.border)  # (B, K'+R, S, S, 2)
        else:
            grid = tps_grid(points, shot_points, s, self.border)  # (B, K'+R, S, S, 2), no gradient
        warped = warp_images(shots, grid)

        # blend weights: the landmark prior plus the scorer's per-pixel say, at S/4 (one shot: weight 1)
        if k == 1:
            weights = torch.ones_like(warped[:, :1, :1])
        else:
            small = s // 4
            pair = torch.cat([warped[:, :k], y[:, None].expand(-1, k, -1, -1, -1)], dim=2).flatten(0, 1)
            logit = self.scorer(F.interpolate(pair, size=(small, small), mode="area"))
            logit = F.interpolate(logit, size=(s, s), mode="bilinear", align_corners=False).reshape(b, k, 1, s, s)
            prior = (-(dist - dist.min(dim=1, keepdim=True).values) / BLEND_TEMPERATURE).to(logit.dtype)
            weights = torch.softmax(logit + prior[:, :, None, None, None], dim=1)
        if shots.shape[1] > k:  # each region's own shot over its soft map
            maps = torch.cat([region_map(points, s, r) for r in self.config.warp_regions], dim=1)[:, :, None]
            maps = maps.to(weights.dtype)
            # on a face the regions do not overlap; where odd points make them, they share the pixel
            total = maps.sum(dim=1, keepdim=True)
            maps = maps / total.clamp_min(1.0)
            weights = torch.cat([weights * (1.0 - total).clamp_min(0.0), maps], dim=1)
        blended = (weights * warped).sum(dim=1)

        # the network, at S / warp_downscale
        n = self.net_size
        x = torch.cat([y, blended], dim=1)
        if n != s:
            x = F.interpolate(x, size=(n, n), mode="area")
        h = self.input(x)
        skips = [h]
        for block in self.down:
            h = block(h)
            skips.append(h)
        h, offset = self._adain_blocks(h, self.bottleneck, psi, 0)
        skips.pop()
        h, offset = self._adain_blocks(h, self.up, psi, offset, after=lambda i, h: h + skips[-1 - i])
        out = self.head(F.relu(self._out_norm(h, psi, offset)))
        if n != s:
            out = F.interpolate(out, size=(s, s), mode="bilinear", align_corners=False)
        flow = out[:, :2].permute(0, 2, 3, 1) * FLOW_SCALE  # (B, S, S, 2)
        mask = torch.sigmoid(out[:, 2:3])
        corrected = (weights * warp_images(shots, grid + flow[:, None].to(grid.dtype))).sum(dim=1)
        rgb = (corrected + out[:, 3:6]).clamp(-1.0, 1.0)
        fake = mask * corrected + (1.0 - mask) * rgb
        extra = {}
        # the priors (models/cavity.py, models/eyelids.py) read the region's own shot, else the nearest
        def region_shot(region):
            return shot_points[:, k + cfg.warp_regions.index(region)] if (
                shots.shape[1] > k and region in cfg.warp_regions) else shot_points[:, 0]

        if self.inside is not None and self.inside.is_trained:  # the learned inside replaces the mean one,
            # over the same share: what the mouth's shot, less open, cannot show (models/mouth_inside.py)
            fake, extra["inside"] = self.inside(fake, points, uncover_share(points, region_shot("mouth")))
        elif cfg.mouth_cavity:
            fake, extra["cavity"] = mouth_cavity(fake, points, region_shot("mouth"), contrast=cfg.cavity_contrast)
        if cfg.eyelids:
            fake, extra["lids"] = eyelids(fake, points, region_shot("eyes"), lid_margin=cfg.lid_margin)
        if self.mouth is not None:  # the mouth at full resolution, on top (models/mouth.py)
            extra["unrefined"] = fake
            fake, extra["mouth_delta"], extra["mouth_theta"] = self.mouth(fake, y, points, psi)
        return {"fake": fake, **extra, "warped": blended, "mask": mask, "flow": flow, "rgb": rgb,
                "weights": weights, "shot_index": index, "corrected": corrected, "grid": grid}

"""The embedder E(x, y): a frame and its landmark image -> one D-dimensional vector per frame."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .layers import ResBlock, ResBlockDown, SelfAttention

__all__ = ["Embedder", "DownTrunk", "check_kshot", "check_image"]


def check_kshot(name: str, t: torch.Tensor, cfg: ModelConfig) -> None:
    """Raise ``ValueError`` unless ``t`` is ``(B, K, C, S, S)`` with ``C = cfg.image_channels``,
    ``S = cfg.image_size``."""
    c, s = cfg.image_channels, cfg.image_size
    if t.dim() != 5 or tuple(t.shape[2:]) != (c, s, s):
        raise ValueError(f"{name} must have shape (B, K, {c}, {s}, {s}), got {tuple(t.shape)}")


def check_image(name: str, t: torch.Tensor, cfg: ModelConfig) -> None:
    """Raise ``ValueError`` unless ``t`` is ``(B, C, S, S)``."""
    c, s = cfg.image_channels, cfg.image_size
    if t.dim() != 4 or tuple(t.shape[1:]) != (c, s, s):
        raise ValueError(f"{name} must have shape (B, {c}, {s}, {s}), got {tuple(t.shape)}")


class DownTrunk(nn.Module):
    """Residual down blocks (no normalisation) with self-attention after the block that reaches
    ``cfg.attention_down``, then ``extra_blocks`` plain residual blocks at the final resolution.

    ``forward(z (N, in_ch, S, S)) -> (h (N, C_last, S/2^n, S/2^n), features)``: ``features`` holds the
    output of every residual block (after attention where there is one), for feature matching.
    """

    def __init__(self, cfg: ModelConfig, in_ch: int, extra_blocks: int = 0):
        super().__init__()
        chans = cfg.embedder_channels
        self.blocks = nn.ModuleList()
        self.attention = nn.ModuleDict()
        prev = in_ch
        for i, (c, res) in enumerate(zip(chans, cfg.down_resolutions(chans))):
            self.blocks.append(ResBlockDown(prev, c, norm=None, preactivation=i > 0))
            if cfg.attention_down == res:
                self.attention[str(i)] = SelfAttention(c)
            prev = c
        for _ in range(extra_blocks):
            self.blocks.append(ResBlock(prev, prev, norm=None))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = []
        for i, block in enumerate(self.blocks):
            z = block(z)
            if str(i) in self.attention:
                z = self.attention[str(i)](z)
            features.append(z)
        return z, features


class Embedder(nn.Module):
    """E(x, y): ``forward(x (B,K,3,S,S), y (B,K,3,S,S)) -> (e (B,K,D), e_hat (B,D))``.

    Frame and landmark image are concatenated (6 channels), passed through residual down blocks
    (``cfg.embedder_channels``, the last equal to ``D = cfg.embed_dim``), summed over space and put
    through a ReLU; ``e_hat`` is the mean of the K per-frame vectors.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.trunk = DownTrunk(cfg, 2 * cfg.image_channels)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_kshot("Embedder input x", x, self.config)
        check_kshot("Embedder input y", y, self.config)
        if x.shape[:2] != y.shape[:2]:
            raise ValueError(f"Embedder inputs x {tuple(x.shape)} and y {tuple(y.shape)} differ in (B, K)")
        b, k = x.shape[:2]
        z = torch.cat([x, y], dim=2).flatten(0, 1)  # (B*K, 6, S, S)
        h, _ = self.trunk(z)
        e = F.relu(h.sum(dim=(2, 3))).reshape(b, k, -1)  # (B, K, D)
        return e, e.mean(dim=1)

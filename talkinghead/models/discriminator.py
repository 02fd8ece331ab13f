"""The projection discriminator D(x, y, i): realism score plus intermediate features."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .embedder import DownTrunk, check_image

__all__ = ["ProjectionDiscriminator"]


class ProjectionDiscriminator(nn.Module):
    """``forward(x (B,3,S,S), y (B,3,S,S), video_index (B,) long | None, w (B,D) | None)
    -> (score (B,), features: list[Tensor])``.

    The trunk is the embedder's (residual down blocks, self-attention, no normalisation) plus
    ``cfg.discriminator_extra_blocks`` residual blocks; sum pooling and ReLU give ``V (B, D)``.
    The score is ``r = V^T (W_i + w0) + b`` with ``W`` an ``nn.Embedding(num_videos, D)``; passing ``w``
    instead (fine-tuning: ``w' = w0 + e_hat_NEW``) gives ``r = V^T w + b``. Exactly one of
    ``video_index`` / ``w`` is given. ``features`` are the outputs of every trunk block, highest
    resolution first, for the feature-matching loss.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.trunk = DownTrunk(cfg, 2 * cfg.image_channels, extra_blocks=cfg.discriminator_extra_blocks)
        self.W = nn.Embedding(cfg.num_videos, cfg.embed_dim)
        # Small init: V is a sum over space (norm ~10 at start), so N(0, 1) rows would give scores of
        # +-15 and a runaway hinge loss. Meta-learning overwrites W and w0 from the embedder's output
        # before the first step (training.init_embedding_table): near-0 rows there collapse e_hat.
        nn.init.normal_(self.W.weight, std=0.02)
        self.w0 = nn.Parameter(torch.zeros(cfg.embed_dim))
        self.b = nn.Parameter(torch.zeros(()))

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        video_index: torch.Tensor | None = None,
        w: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        cfg = self.config
        check_image("Discriminator input x", x, cfg)
        check_image("Discriminator input y", y, cfg)
        b = x.shape[0]
        if y.shape[0] != b:
            raise ValueError(f"Discriminator inputs x {tuple(x.shape)} and y {tuple(y.shape)} differ in B")
        if (video_index is None) == (w is None):
            raise ValueError("Discriminator needs exactly one of video_index (B,) or w (B, D)")
        if w is None:
            if video_index.shape != (b,) or video_index.dtype not in (torch.int64, torch.int32):
                raise ValueError(
                    f"video_index must be an integer tensor of shape ({b},), got "
                    f"{video_index.dtype} {tuple(video_index.shape)}"
                )
            if b and not video_index.is_meta and (int(video_index.min()) < 0 or int(video_index.max()) >= cfg.num_videos):
                raise ValueError(f"video_index must lie in [0, {cfg.num_videos}) (config num_videos)")
            w = self.W(video_index) + self.w0  # (B, D)
        elif tuple(w.shape) != (b, cfg.embed_dim):
            raise ValueError(f"w must have shape ({b}, {cfg.embed_dim}), got {tuple(w.shape)}")
        h, features = self.trunk(torch.cat([x, y], dim=1))
        v = F.relu(h.sum(dim=(2, 3)))  # (B, D)
        score = (v * w).sum(dim=1) + self.b
        return score, features

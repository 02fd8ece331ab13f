"""The generator G(y, e_hat): a landmark image -> a frame, with AdaIN parameters psi = P e_hat."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .embedder import check_image
from .layers import AdaIN, ResBlock, ResBlockDown, ResBlockUp, SelfAttention, sn_conv

__all__ = ["Generator"]


class Generator(nn.Module):
    """``forward(y (B,3,S,S), e_hat (B,D) | None = None, psi (B,n_psi) | (n_psi,) | None = None)
    -> (B,3,S,S)`` in [-1, 1] (tanh).

    Layout: residual down blocks with instance norm (``cfg.generator_down_channels``), self-attention
    after the down block reaching ``cfg.attention_down``; ``cfg.bottleneck_blocks`` residual blocks;
    residual up blocks (``cfg.generator_up_channels``) with self-attention after the one reaching
    ``cfg.attention_up``; then AdaIN -> ReLU -> 3x3 conv -> tanh. Every norm after the down path is
    AdaIN.

    psi: give either ``e_hat`` (psi is then ``P e_hat``) or ``psi`` itself (fine-tuning trains it
    directly; a ``(n_psi,)`` or ``(1, n_psi)`` psi is shared by the whole batch). ``P`` is
    ``self.projection``, an ``nn.Linear(D, n_psi, bias=False)`` *without* spectral norm: psi has
    ~thousands of entries and a unit spectral norm would squeeze each of them towards zero; P is a
    plain learned matrix as in the paper's description.

    psi order (see :meth:`psi_layout`): the AdaIN layers in forward order -- bottleneck block 0
    (norm1, norm2), block 1, ..., up block 0 (norm1 on its input channels, norm2 on its output
    channels), ..., then the output norm. Each layer takes ``2*C`` consecutive entries:
    ``[scale (C), bias (C)]``; the scale applied is ``1 + scale`` so psi = 0 is a plain instance norm.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        c_img = cfg.image_channels
        down = cfg.generator_down_channels
        self.down = nn.ModuleList()
        self.down_attention = nn.ModuleDict()
        prev = c_img
        for i, (c, res) in enumerate(zip(down, cfg.down_resolutions(down))):
            self.down.append(ResBlockDown(prev, c, norm="instance", preactivation=i > 0))
            if cfg.attention_down == res:
                self.down_attention[str(i)] = SelfAttention(c)
            prev = c
        self.bottleneck = nn.ModuleList(ResBlock(prev, prev, norm="adain") for _ in range(cfg.bottleneck_blocks))
        self.up = nn.ModuleList()
        self.up_attention = nn.ModuleDict()
        for i, (c, res) in enumerate(zip(cfg.generator_up_channels, cfg.up_resolutions())):
            self.up.append(ResBlockUp(prev, c, norm="adain"))
            if cfg.attention_up == res:
                self.up_attention[str(i)] = SelfAttention(c)
            prev = c
        self.out_norm = AdaIN(prev)
        self.out_conv = sn_conv(prev, c_img, 3)

        self._layout = self._build_layout()
        self.n_psi = sum(2 * c for _, c, _ in self._layout)
        self.projection = nn.Linear(cfg.embed_dim, self.n_psi, bias=False)

    def _build_layout(self) -> list[tuple[str, int, int]]:
        layout, offset = [], 0
        named = [(f"bottleneck.{i}", b) for i, b in enumerate(self.bottleneck)]
        named += [(f"up.{i}", b) for i, b in enumerate(self.up)]
        for name, block in named:
            for j, c in enumerate(block.adain_channels):
                layout.append((f"{name}.norm{j + 1}", c, offset))
                offset += 2 * c
        layout.append(("out_norm", self.out_norm.channels, offset))
        return layout

    def psi_layout(self) -> list[tuple[str, int, int]]:
        """``(AdaIN layer name, channels C, offset)`` in psi order; its ``[scale, bias]`` are
        ``psi[:, offset : offset + C]`` and ``psi[:, offset + C : offset + 2C]``."""
        return list(self._layout)

    def psi_from_embedding(self, e_hat: torch.Tensor) -> torch.Tensor:
        """``P e_hat``: ``(B, D) -> (B, n_psi)``."""
        d = self.config.embed_dim
        if e_hat.dim() != 2 or e_hat.shape[1] != d:
            raise ValueError(f"e_hat must have shape (B, {d}), got {tuple(e_hat.shape)}")
        return self.projection(e_hat)

    def forward(
        self, y: torch.Tensor, e_hat: torch.Tensor | None = None, psi: torch.Tensor | None = None
    ) -> torch.Tensor:
        check_image("Generator input y", y, self.config)
        b = y.shape[0]
        if (e_hat is None) == (psi is None):
            raise ValueError("Generator needs exactly one of e_hat (B, D) or psi (B, n_psi)")
        if psi is None:
            psi = self.psi_from_embedding(e_hat)
        if psi.dim() == 1:
            psi = psi.unsqueeze(0)
        if psi.dim() != 2 or psi.shape[1] != self.n_psi or psi.shape[0] not in (1, b):
            raise ValueError(
                f"psi (or P e_hat) must have shape ({b}, {self.n_psi}) or ({self.n_psi},) to match y's batch, "
                f"got {tuple(psi.shape)}"
            )
        if psi.shape[0] != b:
            psi = psi.expand(b, -1)

        h = y
        for i, block in enumerate(self.down):
            h = block(h)
            if str(i) in self.down_attention:
                h = self.down_attention[str(i)](h)
        offset = 0
        for block in self.bottleneck:
            n = block.num_adain_params
            h = block(h, psi[:, offset : offset + n])
            offset += n
        for i, block in enumerate(self.up):
            n = block.num_adain_params
            h = block(h, psi[:, offset : offset + n])
            offset += n
            if str(i) in self.up_attention:
                h = self.up_attention[str(i)](h)
        c = self.out_norm.channels
        h = self.out_norm(h, 1.0 + psi[:, offset : offset + c], psi[:, offset + c : offset + 2 * c])
        return torch.tanh(self.out_conv(F.relu(h)))

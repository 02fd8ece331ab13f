"""The paper's generator G(y, e_hat): a landmark image -> a frame, with AdaIN parameters psi = P e_hat.

:class:`AdaINGenerator` is the part every generator family shares: the identity path psi = P e_hat
and its layout over the AdaIN layers, and the family interface (``identity_state`` / ``generate``)
that the trainer, fine-tuning and :class:`talkinghead.Avatar` use (see :mod:`talkinghead.models.families`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .embedder import check_image
from .layers import AdaIN, ResBlock, ResBlockDown, ResBlockUp, SelfAttention, run_adain_blocks, sn_conv

__all__ = ["AdaINGenerator", "Generator"]


class AdaINGenerator(nn.Module):
    """Base of the generator families: psi = P e_hat spread over AdaIN layers, and the family interface.

    Family interface (what the trainer, fine-tuning and the Avatar call):

    - ``identity_state(e_hat (B,D), shots (B,K,3,S,S) | None, shot_points (B,K,68,2) | None) -> dict``:
      what an Avatar keeps of a person. Always ``"psi"`` ``(B, n_psi)``; a family that reads the shots'
      pixels also keeps them (``"shots"``, ``"shot_points"``).
    - ``generate(y (B,3,S,S), points (B,68,2), state) -> dict``: ``"fake"`` ``(B,3,S,S)`` in [-1, 1] plus
      the family's auxiliaries (the loss hook reads them).
    - ``trainable_state``: the state entries fine-tuning trains (``psi'``); ``needs_shots``: whether
      ``identity_state`` needs the shots.

    Subclasses build their blocks, then call :meth:`_init_psi` with the AdaIN blocks in forward order.
    """

    family = ""
    needs_shots = False
    trainable_state = ("psi",)

    def _init_psi(self, named_blocks: list[tuple[str, nn.Module]], out_norm: AdaIN) -> None:
        layout, offset = [], 0
        for name, block in named_blocks:
            for j, c in enumerate(block.adain_channels):
                layout.append((f"{name}.norm{j + 1}", c, offset))
                offset += 2 * c
        layout.append(("out_norm", out_norm.channels, offset))
        self._layout = layout
        self.n_psi = sum(2 * c for _, c, _ in layout)
        self.projection = nn.Linear(self.config.embed_dim, self.n_psi, bias=False)

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

    def _batch_psi(self, psi: torch.Tensor, b: int) -> torch.Tensor:
        """``psi`` ``(B, n_psi)``, ``(1, n_psi)`` or ``(n_psi,)`` as ``(b, n_psi)``."""
        if psi.dim() == 1:
            psi = psi.unsqueeze(0)
        if psi.dim() != 2 or psi.shape[1] != self.n_psi or psi.shape[0] not in (1, b):
            raise ValueError(
                f"psi (or P e_hat) must have shape ({b}, {self.n_psi}) or ({self.n_psi},) to match y's batch, "
                f"got {tuple(psi.shape)}"
            )
        return psi.expand(b, -1) if psi.shape[0] != b else psi

    def _adain_blocks(self, h: torch.Tensor, blocks, psi: torch.Tensor, offset: int, after=None):
        """Run ``blocks`` in order, each on its slice of psi; returns ``(h, offset)``."""
        return run_adain_blocks(h, blocks, psi, offset, after)

    def _out_norm(self, h: torch.Tensor, psi: torch.Tensor, offset: int) -> torch.Tensor:
        c = self.out_norm.channels
        return self.out_norm(h, 1.0 + psi[:, offset : offset + c], psi[:, offset + c : offset + 2 * c])

    def identity_state(self, e_hat: torch.Tensor, shots: torch.Tensor | None = None,
                       shot_points: torch.Tensor | None = None) -> dict:
        return {"psi": self.psi_from_embedding(e_hat)}

    def check_state(self, state: dict) -> None:
        """``ValueError`` naming the entry when an unbatched state (an Avatar's) does not fit this
        generator: ``psi`` ``(n_psi,)`` (and, for a family that reads shots, see its override)."""
        psi = state.get("psi")
        if psi is None or psi.numel() != self.n_psi:
            raise ValueError(f"psi has {None if psi is None else psi.numel()} values, the generator takes {self.n_psi}")


class Generator(AdaINGenerator):
    """The ``paper`` family. ``forward(y (B,3,S,S), e_hat (B,D) | None = None, psi (B,n_psi) | (n_psi,) | None = None)
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

    family = "paper"

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

        named = [(f"bottleneck.{i}", b) for i, b in enumerate(self.bottleneck)]
        named += [(f"up.{i}", b) for i, b in enumerate(self.up)]
        self._init_psi(named, self.out_norm)

    def generate(self, y: torch.Tensor, points: torch.Tensor | None, state: dict) -> dict:
        """The family interface: ``{"fake"}`` (the paper's G needs no points)."""
        return {"fake": self(y, psi=state["psi"])}

    def forward(
        self, y: torch.Tensor, e_hat: torch.Tensor | None = None, psi: torch.Tensor | None = None
    ) -> torch.Tensor:
        check_image("Generator input y", y, self.config)
        b = y.shape[0]
        if (e_hat is None) == (psi is None):
            raise ValueError("Generator needs exactly one of e_hat (B, D) or psi (B, n_psi)")
        if psi is None:
            psi = self.psi_from_embedding(e_hat)
        psi = self._batch_psi(psi, b)

        h = y
        for i, block in enumerate(self.down):
            h = block(h)
            if str(i) in self.down_attention:
                h = self.down_attention[str(i)](h)
        h, offset = self._adain_blocks(h, self.bottleneck, psi, 0)
        h, offset = self._adain_blocks(
            h, self.up, psi, offset,
            after=lambda i, h: self.up_attention[str(i)](h) if str(i) in self.up_attention else h)
        return torch.tanh(self.out_conv(F.relu(self._out_norm(h, psi, offset))))

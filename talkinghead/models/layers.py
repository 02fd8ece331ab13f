"""Building blocks shared by the embedder, the generator and the discriminator.

Every convolution and linear layer is spectrally normalised (``torch.nn.utils.parametrizations``), as in
the paper. Residual blocks are BigGAN-style and pre-activated (norm -> ReLU -> conv). The blocks avoid
in-place operations so that autograd through spectral norm and DDP both stay safe, and they hold no
buffers whose shape can change.

Shapes: ``B`` batch, ``C`` channels, ``H x W`` spatial size.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

__all__ = [
    "sn_conv",
    "sn_linear",
    "AdaIN",
    "ResBlockDown",
    "ResBlockUp",
    "ResBlock",
    "SelfAttention",
]


_SPECTRAL_NORM = True


@contextlib.contextmanager
def without_spectral_norm() -> Iterator[None]:
    """Build layers as plain convs/linears (same parameter shapes, no power iteration).

    Only for shape-level work such as FLOP counting on the ``meta`` device, where spectral norm's
    start-up power iteration is slow; never for models that are trained or loaded.
    """
    global _SPECTRAL_NORM
    previous, _SPECTRAL_NORM = _SPECTRAL_NORM, False
    try:
        yield
    finally:
        _SPECTRAL_NORM = previous


def _sn(module: nn.Module) -> nn.Module:
    return spectral_norm(module) if _SPECTRAL_NORM else module


def sn_conv(in_ch: int, out_ch: int, kernel_size: int = 3, bias: bool = True) -> nn.Module:
    """A spectrally normalised 2D convolution with "same" padding (odd ``kernel_size``)."""
    return _sn(nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=bias))


def sn_linear(in_features: int, out_features: int, bias: bool = True) -> nn.Module:
    """A spectrally normalised linear layer."""
    return _sn(nn.Linear(in_features, out_features, bias=bias))


class AdaIN(nn.Module):
    """Instance norm whose per-channel scale and bias are given per sample.

    ``forward(x (B,C,H,W), scale (B,C), bias (B,C)) -> (B,C,H,W)``: each channel of each sample is
    normalised to zero mean and unit (biased) variance over space, then multiplied by ``scale`` and
    shifted by ``bias``. The layer has no parameters of its own.
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.channels = channels
        self.eps = eps

    def forward(self, x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"AdaIN expects x of shape (B, {self.channels}, H, W), got {tuple(x.shape)}")
        expected = (x.shape[0], self.channels)
        if tuple(scale.shape) != expected or tuple(bias.shape) != expected:
            raise ValueError(
                f"AdaIN expects scale and bias of shape {expected}, got {tuple(scale.shape)} and {tuple(bias.shape)}"
            )
        x = F.instance_norm(x, eps=self.eps)
        return x * scale[:, :, None, None] + bias[:, :, None, None]

    def extra_repr(self) -> str:
        return f"{self.channels}"


def _make_norm(kind: str | None, channels: int) -> nn.Module | None:
    if kind is None:
        return None
    if kind == "instance":
        # affine=True: learned per-channel scale/bias; no running statistics, hence no buffers.
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "adain":
        return AdaIN(channels)
    raise ValueError(f"unknown norm {kind!r}; expected None, 'instance' or 'adain'")


class _NormMixin(nn.Module):
    """Applies ``norm1``/``norm2`` whether they are plain norms, AdaIN or absent.

    AdaIN parameters come in as one tensor ``(B, 2*C1 + 2*C2)`` laid out as
    ``[scale1 (C1), bias1 (C1), scale2 (C2), bias2 (C2)]`` (see :attr:`adain_channels`). The scale
    actually applied is ``1 + scale`` so that an all-zero parameter vector is a plain instance norm.
    """

    norm1: nn.Module | None
    norm2: nn.Module | None

    @property
    def adain_channels(self) -> list[int]:
        """Channels of this block's AdaIN layers in the order their parameters are read."""
        return [n.channels for n in (self.norm1, self.norm2) if isinstance(n, AdaIN)]

    @property
    def num_adain_params(self) -> int:
        return 2 * sum(self.adain_channels)

    def _split_adain(self, params: torch.Tensor | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        n = self.num_adain_params
        if n == 0:
            return []
        if params is None or params.dim() != 2 or params.shape[1] != n:
            got = None if params is None else tuple(params.shape)
            raise ValueError(f"{type(self).__name__} expects AdaIN parameters of shape (B, {n}), got {got}")
        out, i = [], 0
        for c in self.adain_channels:
            out.append((1.0 + params[:, i : i + c], params[:, i + c : i + 2 * c]))
            i += 2 * c
        return out

    @staticmethod
    def _norm(norm: nn.Module | None, x: torch.Tensor, ada: list) -> torch.Tensor:
        if norm is None:
            return x
        if isinstance(norm, AdaIN):
            scale, bias = ada.pop(0)
            return norm(x, scale, bias)
        return norm(x)


class ResBlockDown(_NormMixin):
    """BigGAN down block: ``[norm, ReLU] -> conv3x3 -> [norm] -> ReLU -> conv3x3 -> avgpool2``, plus a
    skip ``avgpool2 -> conv1x1``. ``(B,in,H,W) -> (B,out,H/2,W/2)``.

    ``preactivation=False`` drops the first norm and ReLU (used by the first block, which sees the image).
    """

    def __init__(self, in_ch: int, out_ch: int, norm: str | None = None, preactivation: bool = True):
        super().__init__()
        self.preactivation = preactivation
        self.norm1 = _make_norm(norm, in_ch) if preactivation else None
        self.conv1 = sn_conv(in_ch, out_ch, 3)
        self.norm2 = _make_norm(norm, out_ch)
        self.conv2 = sn_conv(out_ch, out_ch, 3)
        # avg-pool and a 1x1 conv commute; pooling first costs 4x fewer FLOPs.
        self.skip = sn_conv(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor, adain_params: torch.Tensor | None = None) -> torch.Tensor:
        ada = self._split_adain(adain_params)
        h = x
        if self.preactivation:
            h = F.relu(self._norm(self.norm1, h, ada))
        h = self.conv1(h)
        h = self.conv2(F.relu(self._norm(self.norm2, h, ada)))
        h = F.avg_pool2d(h, 2)
        return h + self.skip(F.avg_pool2d(x, 2))


class ResBlockUp(_NormMixin):
    """BigGAN up block: ``norm -> ReLU -> upsample2 -> conv3x3 -> norm -> ReLU -> conv3x3``, plus a skip
    ``conv1x1 -> upsample2`` (nearest). ``(B,in,H,W) -> (B,out,2H,2W)``.
    """

    def __init__(self, in_ch: int, out_ch: int, norm: str | None = "adain"):
        super().__init__()
        self.norm1 = _make_norm(norm, in_ch)
        self.conv1 = sn_conv(in_ch, out_ch, 3)
        self.norm2 = _make_norm(norm, out_ch)
        self.conv2 = sn_conv(out_ch, out_ch, 3)
        # nearest upsampling and a 1x1 conv commute; convolving first costs 4x fewer FLOPs.
        self.skip = sn_conv(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor, adain_params: torch.Tensor | None = None) -> torch.Tensor:
        ada = self._split_adain(adain_params)
        h = F.relu(self._norm(self.norm1, x, ada))
        h = self.conv1(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.conv2(F.relu(self._norm(self.norm2, h, ada)))
        return h + F.interpolate(self.skip(x), scale_factor=2.0, mode="nearest")


class ResBlock(_NormMixin):
    """Plain residual block at constant resolution: ``norm -> ReLU -> conv3x3 -> norm -> ReLU -> conv3x3``
    plus the identity (or a 1x1 conv when the channel count changes). ``(B,in,H,W) -> (B,out,H,W)``.
    """

    def __init__(self, in_ch: int, out_ch: int | None = None, norm: str | None = None):
        super().__init__()
        out_ch = in_ch if out_ch is None else out_ch
        self.norm1 = _make_norm(norm, in_ch)
        self.conv1 = sn_conv(in_ch, out_ch, 3)
        self.norm2 = _make_norm(norm, out_ch)
        self.conv2 = sn_conv(out_ch, out_ch, 3)
        self.skip = sn_conv(in_ch, out_ch, 1) if in_ch != out_ch else None

    def forward(self, x: torch.Tensor, adain_params: torch.Tensor | None = None) -> torch.Tensor:
        ada = self._split_adain(adain_params)
        h = self.conv1(F.relu(self._norm(self.norm1, x, ada)))
        h = self.conv2(F.relu(self._norm(self.norm2, h, ada)))
        return h + (x if self.skip is None else self.skip(x))


def run_adain_blocks(h: torch.Tensor, blocks, params: torch.Tensor, offset: int = 0, after=None):
    """Run AdaIN ``blocks`` in order, each on its slice of ``params`` ``(B, P)`` from ``offset``
    (``block.num_adain_params`` entries each); ``after(i, h)`` runs after block ``i``. Returns
    ``(h, offset)``: the offset where the next layer's parameters start."""
    for i, block in enumerate(blocks):
        n = block.num_adain_params
        h = block(h, params[:, offset : offset + n])
        offset += n
        if after is not None:
            h = after(i, h)
    return h, offset


class SelfAttention(nn.Module):
    """SAGAN self-attention as in BigGAN: 1x1 projections to query/key (C/8) and value (C/2), keys and
    values max-pooled 2x2 (4x cheaper attention), output projected back to C and added with a learned
    gain ``gamma`` that starts at 0 (the block is the identity at initialisation).
    ``(B,C,H,W) -> (B,C,H,W)``, H and W even.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        ck, cv = max(1, channels // 8), max(1, channels // 2)
        self.query = sn_conv(channels, ck, 1, bias=False)
        self.key = sn_conv(channels, ck, 1, bias=False)
        self.value = sn_conv(channels, cv, 1, bias=False)
        self.out = sn_conv(cv, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2)  # (B, C/8, N)
        k = F.max_pool2d(self.key(x), 2).flatten(2)  # (B, C/8, N/4)
        v = F.max_pool2d(self.value(x), 2).flatten(2)  # (B, C/2, N/4)
        attn = torch.softmax(torch.bmm(q.transpose(1, 2), k), dim=-1)  # (B, N, N/4)
        o = torch.bmm(v, attn.transpose(1, 2)).reshape(b, -1, h, w)  # (B, C/2, H, W)
        return x + self.gamma * self.out(o)

    def extra_repr(self) -> str:
        return f"{self.channels}"

"""The warp family's mouth refiner: pixels for what no shot shows (teeth, the mouth's inside), at 256 px.

The warp family's U-Net runs at ``S / warp_downscale`` (128 px), and a residual painted there and
upsampled cannot hold teeth: the oracle warp put through 128 px lost 8% mouth LPIPS on held-out frames
(docs/results, scripts/diag_mouth_oracle.py). So the mouth gets its own small AdaIN U-Net on a square
box about the target's lips, resampled from the full-resolution frame::

    box       = lips (points 48-67) padded by MOUTH_PAD x the mouth width, as a square   (mouth_theta)
    crop      = frame in the box at M x M        y_crop = the landmark image in the box
    delta     = U-Net(crop, y_crop), AdaIN from the generator's psi (its own linear map)
    frame'    = frame + paste(window * delta)     window: 1 inside, a smooth fall to 0 at the box's edge

The head's weights start at 0, so an untrained refiner changes nothing (the warp baseline still holds),
and it is trained after the rest of the generator, on cached crops (talkinghead.mouth_training.MouthTask).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import AdaIN, ResBlock, ResBlockDown, ResBlockUp, run_adain_blocks, sn_conv

__all__ = ["MouthRefiner", "mouth_theta", "crop_box", "paste_box", "box_window"]

MOUTH_PAD = 0.5  # the refiner's box: lips + half a mouth width each side (the evaluation's box pads 0.25)
WINDOW_EDGE = 0.2  # the share of the box's half-width over which the pasted residual fades out


def mouth_theta(points: torch.Tensor, size: int | tuple[int, int], pad: float = MOUTH_PAD) -> torch.Tensor:
    """``(B, 2, 3)`` affine maps (``F.affine_grid``, ``align_corners=False``) from a square box's grid to an
    image of ``size`` (``S`` or ``(H, W)``): the box bounds the lips (48-67) of ``points`` ``(B, 68, 2)``
    (pixels), padded by ``pad`` times the mouth width (48-54) on each side, widened to a square about its
    centre. No gradient (landmarks are data)."""
    h, w = (size, size) if isinstance(size, int) else size
    with torch.no_grad():
        lips = points[:, 48:68].float()
        margin = pad * (points[:, 54] - points[:, 48]).float().norm(dim=-1)
        lo, hi = lips.amin(dim=1) - margin[:, None], lips.amax(dim=1) + margin[:, None]
        centre = (lo + hi) / 2  # (B, 2) pixels
        half = ((hi - lo).amax(dim=1) / 2).clamp_min(1.0)  # (B,)
        # pixel centres at p + 0.5 map to grid units by (2p + 1) / size - 1
        theta = torch.zeros(points.shape[0], 2, 3, device=points.device, dtype=torch.float32)
        theta[:, 0, 0], theta[:, 1, 1] = half * 2 / w, half * 2 / h
        theta[:, 0, 2] = (2 * centre[:, 0] + 1) / w - 1
        theta[:, 1, 2] = (2 * centre[:, 1] + 1) / h - 1
    return theta


def crop_box(images: torch.Tensor, theta: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C, size, size)``: the boxes of ``theta`` (:func:`mouth_theta`), resampled
    bilinearly (differentiable in ``images``); outside the image the border repeats."""
    grid = F.affine_grid(theta, (images.shape[0], images.shape[1], size, size), align_corners=False)
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="border", align_corners=False)


def paste_box(crops: torch.Tensor, theta: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """The inverse of :func:`crop_box`: ``(B, C, M, M)`` -> ``(B, C, H, W)``, 0 outside each box."""
    h, w = (size, size) if isinstance(size, int) else size
    a = theta[:, :, :2]
    inv = torch.linalg.inv(a)  # diagonal here, but any affine box inverts the same way
    back = torch.cat([inv, -(inv @ theta[:, :, 2:])], dim=2)
    grid = F.affine_grid(back, (crops.shape[0], crops.shape[1], h, w), align_corners=False)
    return F.grid_sample(crops, grid.to(crops.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)


def box_window(size: int, edge: float = WINDOW_EDGE, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(1, 1, size, size)``: 1 in the box's middle, falling smoothly (smoothstep) to 0 over the outer
    ``edge`` of its half-width on every side, so a pasted residual leaves no seam."""
    t = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size * 2 - 1  # pixel centres in [-1, 1]
    r = ((1 - t.abs()) / edge).clamp(0, 1)
    r = r * r * (3 - 2 * r)
    return (r[:, None] * r[None, :])[None, None].to(dtype)


class MouthRefiner(nn.Module):
    """``forward(image (B,3,S,S), y (B,3,S,S), points (B,68,2), psi (B,n_psi)) -> (image', delta (B,3,M,M),
    theta (B,2,3))``; :meth:`refine` is the same on crops already cut (``(B,3,M,M)`` twice), as training
    on cached crops calls it.

    ``M = cfg.mouth_size``. The U-Net: a 3x3 conv of crop and landmark crop to ``mouth_channels[0]``,
    residual down blocks without normalisation, ``mouth_blocks`` AdaIN residual blocks, AdaIN residual
    up blocks with additive skips, AdaIN, ReLU and a plain 3x3 head (zero weights) for 3 channels. Its
    AdaIN parameters are ``self.projection(psi)``: a map of its own from the generator's psi (which
    fine-tuning trains as psi'), so the rest of the generator's psi layout is unchanged.
    """

    def __init__(self, cfg, n_psi: int):
        super().__init__()
        ch = cfg.mouth_channels
        self.size = cfg.mouth_size
        self.input = sn_conv(2 * cfg.image_channels, ch[0], 3)
        self.down = nn.ModuleList(ResBlockDown(a, b, norm=None) for a, b in zip(ch[:-1], ch[1:]))
        self.middle = nn.ModuleList(ResBlock(ch[-1], ch[-1], norm="adain") for _ in range(cfg.mouth_blocks))
        self.up = nn.ModuleList(ResBlockUp(b, a, norm="adain") for a, b in reversed(list(zip(ch[:-1], ch[1:]))))
        self.out_norm = AdaIN(ch[0])
        self.head = nn.Conv2d(ch[0], cfg.image_channels, 3, padding=1)
        self.n_params = sum(b.num_adain_params for b in [*self.middle, *self.up]) + 2 * ch[0]
        self.projection = nn.Linear(n_psi, self.n_params)
        nn.init.normal_(self.projection.weight, std=0.01)  # psi is large (thousands): a small start
        nn.init.zeros_(self.projection.bias)
        self.register_buffer("window", box_window(self.size), persistent=False)
        self.reset_head()

    @torch.no_grad()
    def reset_head(self) -> None:
        """Zero the output head: the refiner then changes nothing."""
        self.head.weight.zero_()
        self.head.bias.zero_()

    def refine(self, crop: torch.Tensor, y_crop: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        """``delta (B,3,M,M)`` for crops ``(B,3,M,M)`` in [-1, 1], already multiplied by the window."""
        params = self.projection(psi.to(self.projection.weight.dtype)).to(crop.dtype)
        h = self.input(torch.cat([crop, y_crop], dim=1))
        skips = [h]
        for block in self.down:
            h = block(h)
            skips.append(h)
        skips.pop()
        h, offset = run_adain_blocks(h, self.middle, params)
        h, offset = run_adain_blocks(h, self.up, params, offset, after=lambda i, h: h + skips[-1 - i])
        c = self.out_norm.channels
        h = self.out_norm(h, 1.0 + params[:, offset:offset + c], params[:, offset + c:offset + 2 * c])
        return self.head(F.relu(h)) * self.window.to(crop.dtype)

    def forward(self, image: torch.Tensor, y: torch.Tensor, points: torch.Tensor, psi: torch.Tensor):
        theta = mouth_theta(points, tuple(image.shape[-2:]))
        delta = self.refine(crop_box(image, theta, self.size), crop_box(y, theta, self.size), psi)
        return (image + paste_box(delta, theta, tuple(image.shape[-2:]))).clamp(-1.0, 1.0), delta, theta

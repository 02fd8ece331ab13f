"""uint8 RGB images <-> the models' float tensors in [-1, 1], one pair of functions for the package.

>>> import numpy as np
>>> x = to_tensor(np.zeros((2, 4, 4, 3), np.uint8))       # (B, H, W, 3) -> (B, 3, H, W)
>>> tuple(x.shape), float(x.min())
((2, 3, 4, 4), -1.0)
>>> to_uint8(x[0]).shape                                   # (3, H, W) -> (H, W, 3)
(4, 4, 3)

Pixel ``p`` maps to ``p / 127.5 - 1``; back, values are clamped to [-1, 1], then
``round((x + 1) * 127.5)``, so a uint8 image survives the round trip exactly.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["to_tensor", "to_uint8"]


def to_tensor(images: np.ndarray, device: torch.device | str | None = None,
              dtype: torch.dtype | None = None) -> torch.Tensor:
    """uint8 RGB ``(..., H, W, 3)`` -> float ``(..., 3, H, W)`` in [-1, 1] (one image or a batch).

    Other dtypes holding 0..255 values are converted the same way. The pixels move to ``device``
    (default CPU) before they are converted to ``dtype`` (default float32) and scaled there. The result is a channels-first view of the pixels' own layout (as ``permute``
    gives); call ``.contiguous()`` where a packed tensor is needed.
    """
    t = torch.from_numpy(np.ascontiguousarray(images)).movedim(-1, -3)
    return t.to(device=device, dtype=dtype or torch.float32).div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float ``(..., 3, H, W)`` in [-1, 1] -> uint8 RGB ``(..., H, W, 3)`` on the CPU (one image or a
    batch); values outside [-1, 1] are clamped."""
    x = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return x.movedim(-3, -1).cpu().numpy()

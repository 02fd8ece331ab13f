"""Parameter and FLOP counts per network (used by ``talkinghead models``)."""
from __future__ import annotations

from typing import Any

import torch

from ..config import ModelConfig, get_config

__all__ = ["model_summary", "count_parameters"]


def count_parameters(module: torch.nn.Module) -> int:
    """Number of parameters (spectral norm's ``u``/``v`` vectors are buffers and not counted)."""
    return sum(p.numel() for p in module.parameters())


def model_summary(cfg: ModelConfig | str) -> list[dict[str, Any]]:
    """``[{"network", "params", "gflops"}]`` for the embedder, generator and discriminator.

    GFLOPs are forward FLOPs for one frame (batch 1, K = 1 shot for the warp family) as counted by
    ``torch.utils.flop_counter.FlopCounterMode``: convolutions and matrix products at 2 FLOPs per
    multiply-add; norms, activations and softmax are not counted. The networks are built on the
    ``meta`` device without spectral norm (same parameters; its per-forward weight rescaling is one
    matrix-vector product per layer, negligible next to the convolutions, and can be folded into the
    weights for inference), so nothing is allocated or computed and even paper-256 takes well under
    a second.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from .families import example_inputs, run_generator
    from .layers import without_spectral_norm
    from .talking_head import TalkingHeadModel

    cfg = get_config(cfg)
    with torch.device("meta"):
        with without_spectral_norm():
            model = TalkingHeadModel(cfg).eval()
        s, c = cfg.image_size, cfg.image_channels
        img = torch.zeros(1, c, s, s)
        kshot = torch.zeros(1, 1, c, s, s)
        calls = {
            "embedder": lambda: model.embedder(kshot, kshot),
            "generator": lambda: run_generator(model.generator, example_inputs(cfg)),
            "discriminator": lambda: model.discriminator(img, img, video_index=torch.zeros(1, dtype=torch.long)),
        }
        rows = []
        for name, call in calls.items():
            counter = FlopCounterMode(display=False)
            with torch.no_grad(), counter:
                call()
            rows.append({
                "network": name,
                "params": count_parameters(getattr(model, name)),
                "gflops": counter.get_total_flops() / 1e9,
            })
    return rows

"""The registry of generator families: ``ModelConfig.generator`` names the class that is built.

Every family subclasses :class:`talkinghead.models.generator.AdaINGenerator` and so shares one
interface (``identity_state``, ``generate``, ``trainable_state``, ``needs_shots``):

    paper   :class:`~talkinghead.models.generator.Generator`, the paper's G (every pixel from the
            landmark image and psi)
    warp    :class:`~talkinghead.models.warp_generator.WarpGenerator` (the shots' pixels, warped by
            the landmarks and refined)
"""
from __future__ import annotations

from torch import nn

from ..config import GENERATOR_FAMILIES, ModelConfig
from .generator import Generator
from .warp_generator import WarpGenerator

__all__ = ["FAMILIES", "build_generator", "family_of", "example_inputs", "run_generator"]

FAMILIES: dict[str, type[nn.Module]] = {"paper": Generator, "warp": WarpGenerator}
assert tuple(FAMILIES) == GENERATOR_FAMILIES, "config.GENERATOR_FAMILIES and FAMILIES must list the same names"


def build_generator(cfg: ModelConfig) -> nn.Module:
    """A freshly initialised generator of ``cfg.generator``'s family."""
    return FAMILIES[cfg.generator](cfg)


def family_of(generator: nn.Module) -> str:
    """The family name of a generator instance (``"paper"``, ``"warp"``)."""
    return getattr(generator, "family", "paper")


def example_inputs(cfg: ModelConfig, batch: int = 1, shots: int = 1, device=None) -> dict:
    """Inputs of the family interface for shape-level work (FLOP counts, benchmarks), not for faces:
    ``y (B,3,S,S)``, ``points (B,68,2)``, ``shots (B,K,3,S,S)``, ``shot_points (B,K,68,2)`` and
    ``e_hat (B,D)``; 68 distinct points on a circle about the centre (each shot's slightly turned)."""
    import math

    import torch

    s, c = cfg.image_size, cfg.image_channels
    angle = torch.arange(68, device=device, dtype=torch.float32) * (2 * math.pi / 68)

    def ring(turn: float) -> torch.Tensor:
        a = angle + turn
        return torch.stack([torch.cos(a), torch.sin(a)], dim=-1) * (s / 4) + (s - 1) / 2

    return {"y": torch.zeros(batch, c, s, s, device=device), "points": ring(0.0).expand(batch, 68, 2),
            "shots": torch.zeros(batch, shots, c, s, s, device=device),
            "shot_points": torch.stack([ring(0.02 * (i + 1)) for i in range(shots)]).expand(batch, shots, 68, 2),
            "e_hat": torch.zeros(batch, cfg.embed_dim, device=device)}


def run_generator(generator: nn.Module, inputs: dict) -> dict:
    """``generate`` on :func:`example_inputs` (identity state included)."""
    state = generator.identity_state(inputs["e_hat"], inputs["shots"], inputs["shot_points"])
    return generator.generate(inputs["y"], inputs["points"], state)

"""The container for the three networks and their config."""
from __future__ import annotations

import os

from torch import nn

from ..config import ModelConfig, get_config
from .discriminator import ProjectionDiscriminator
from .embedder import Embedder
from .families import build_generator

__all__ = ["TalkingHeadModel"]


class TalkingHeadModel(nn.Module):
    """Holds ``.embedder``, ``.generator``, ``.discriminator`` and ``.config`` (a :class:`ModelConfig`).

    It has no ``forward``: callers use the networks directly through the family interface, e.g.
    ``e, e_hat = m.embedder(x, y)``, ``state = m.generator.identity_state(e_hat, shots, shot_points)``,
    then ``m.generator.generate(y_t, points_t, state)["fake"]``.
    Weights travel as ``config.json`` + ``model.safetensors`` (:mod:`talkinghead.hub`).
    """

    def __init__(self, config: ModelConfig | str):
        super().__init__()
        self.config = get_config(config)
        self.embedder = Embedder(self.config)
        self.generator = build_generator(self.config)  # the config's family (models/families.py)
        self.discriminator = ProjectionDiscriminator(self.config)
        # how the weights were trained (loss weights, steps); saved in config.json's "training" and
        # used by fine-tuning to keep the meta-training loss balance
        self.training_info: dict = {}

    def save_pretrained(self, directory: str | os.PathLike, dtype=None, int8_prefixes: tuple[str, ...] = ()) -> None:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (``dtype``, e.g.
        ``torch.float16``, casts floating-point tensors for storage; ``int8_prefixes`` such as
        ``("discriminator.",)`` stores those weight matrices as per-channel int8)."""
        from ..hub import save_pretrained

        save_pretrained(self, directory, dtype=dtype, int8_prefixes=int8_prefixes)

    @classmethod
    def from_pretrained(cls, name_or_dir: str | os.PathLike, map_location="cpu") -> "TalkingHeadModel":
        """Load weights by folder or name (lookup order in :mod:`talkinghead.hub`); float32, eval mode."""
        from ..hub import load_pretrained

        return load_pretrained(name_or_dir, map_location=map_location)

    def extra_repr(self) -> str:
        return f"config={self.config.description or self.config.image_size}"

"""The three networks of the paper and their container.

``Embedder`` E(x, y) -> (e, e_hat); ``Generator`` G(y, e_hat | psi); ``ProjectionDiscriminator``
D(x, y, video_index | w) -> (score, features); ``TalkingHeadModel`` holds all three plus the config.
Shared blocks live in :mod:`talkinghead.models.layers`.
"""
from .discriminator import ProjectionDiscriminator
from .embedder import Embedder
from .generator import Generator
from .summary import count_parameters, model_summary
from .talking_head import TalkingHeadModel

__all__ = [
    "Embedder",
    "Generator",
    "ProjectionDiscriminator",
    "TalkingHeadModel",
    "model_summary",
    "count_parameters",
]

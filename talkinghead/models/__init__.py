"""The three networks of the paper and their container.

``Embedder`` E(x, y) -> (e, e_hat); a generator of one of the families in :mod:`.families`
(``Generator``, the paper's G(y, e_hat | psi), or ``WarpGenerator``, warped shots refined with AdaIN);
``ProjectionDiscriminator`` D(x, y, video_index | w) -> (score, features); ``TalkingHeadModel`` holds
all three plus the config; ``create_model(name_or_cfg)`` builds a fresh one and ``model_summary(cfg)``
counts each network's parameters and FLOPs.
Shared blocks live in :mod:`talkinghead.models.layers`.
"""
from .discriminator import ProjectionDiscriminator
from .embedder import Embedder
from .factory import create_model
from .families import FAMILIES, build_generator, family_of
from .generator import AdaINGenerator, Generator
from .warp_generator import WarpGenerator
from .summary import count_parameters, model_summary
from .talking_head import TalkingHeadModel

__all__ = [
    "Embedder",
    "Generator",
    "WarpGenerator",
    "AdaINGenerator",
    "FAMILIES",
    "build_generator",
    "family_of",
    "ProjectionDiscriminator",
    "TalkingHeadModel",
    "create_model",
    "model_summary",
    "count_parameters",
]

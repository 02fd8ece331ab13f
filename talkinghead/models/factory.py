"""``create_model``: a freshly initialised model for a registered config name or a :class:`ModelConfig`."""
from __future__ import annotations

from typing import Any

from ..config import ModelConfig, get_config
from .talking_head import TalkingHeadModel

__all__ = ["create_model"]


def create_model(name_or_cfg: str | ModelConfig, **overrides: Any) -> TalkingHeadModel:
    """A freshly initialised :class:`TalkingHeadModel` (float32, CPU) for a registered name or a
    :class:`ModelConfig`; ``overrides`` replace config fields, as in :func:`talkinghead.config.get_config`."""
    return TalkingHeadModel(get_config(name_or_cfg, **overrides))

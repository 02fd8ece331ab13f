"""Model configs: one frozen dataclass and a registry of named configs.

``ModelConfig`` is everything the networks' constructors need; it is saved as ``config.json`` next to
the weights so that a checkpoint rebuilds without code edits. Named configs::

    paper-256   the paper's channel plan at 256x256: down blocks 64 -> 512 channels, 5 residual blocks at
                the 16x16 bottleneck (PAPER.md allows 4 or 5 at 16x16 or 32x32; 16x16 keeps the 512-channel
                bottleneck affordable: the same 5 blocks at 32x32 would cost 4x their FLOPs),
                self-attention at 32x32 in the down paths and at 64x64 in the generator's up path.
    cpu-256     256x256 for 2-core CPUs: the generator keeps the paper's layout (16x16 bottleneck, 5 blocks,
                attention at 32/64) with 4x fewer channels at 256..64 px and a 256-channel bottleneck:
                11.6 GFLOPs per frame instead of 61 (embedder/discriminator: half the paper's channels
                above 16x16, 9.5 GFLOPs per frame).
    tiny        64x64 with a few channels, for tests (forward + backward in well under a second).
    warp-256    the warp family (``generator="warp"``): the shots' pixels moved by a thin-plate spline from
                the landmarks, refined by a 128x128 AdaIN U-Net (mouth interior, eyelids, what a turn
                uncovers), a mouth inside where the target opens wider than its shot (learned,
                ``inside_channels``, models/mouth_inside.py, once ``train --stage inside`` has trained it;
                until then the measured mean one, ``mouth_cavity``, models/cavity.py) and lids where its
                eyes are more closed (``eyelids``, models/eyelids.py); cpu-256's embedder and
                discriminator. 2.8 GFLOPs per frame (one shot; 2.4 without the inside).
    warp-mouth-256  warp-256 with a mouth refiner: a 96x96 AdaIN U-Net on a box about the lips at the
                frame's full resolution (teeth, the mouth's inside; models/mouth.py).
    warp-tiny, warp-mouth-tiny   64x64 warp-family test configs.

``get_config(name, **overrides)`` returns a copy with fields replaced, e.g.
``get_config("paper-256", num_videos=145_000)``. Importing this module does not import torch; models are
built from configs in :mod:`talkinghead.models` (``create_model``, ``model_summary``).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import InputError

__all__ = [
    "ModelConfig",
    "register_config",
    "get_config",
    "list_configs",
]


# names of the generator families; models/families.py maps each to its class
GENERATOR_FAMILIES = ("paper", "warp")
# the warp family's motion fields (ModelConfig.warp_motion)
WARP_MOTIONS = ("tps", "pa")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the embedder, generator and discriminator.

    Channel plans list the output channels of each block; every down block halves the resolution and
    every up block doubles it. ``attention_down`` / ``attention_up`` are the *resolutions* (in pixels)
    after which a self-attention layer sits (``None``: none); they must be resolutions that the path
    actually reaches.
    """

    image_size: int = 256
    embed_dim: int = 512
    image_channels: int = 3
    # embedder trunk (the discriminator's trunk uses the same plan); last entry must equal embed_dim
    embedder_channels: tuple[int, ...] = (64, 128, 256, 512, 512, 512)
    # generator: down path (instance norm), bottleneck residual blocks, up path (AdaIN everywhere)
    generator_down_channels: tuple[int, ...] = (64, 128, 256, 512)
    bottleneck_blocks: int = 5
    generator_up_channels: tuple[int, ...] = (256, 128, 64, 64)
    # residual blocks the discriminator adds after its embedder-like trunk (at the final resolution)
    discriminator_extra_blocks: int = 1
    attention_down: int | None = 32
    attention_up: int | None = 64
    # rows of the discriminator's projection table W: the number of training videos
    num_videos: int = 1
    # the generator family (GENERATOR_FAMILIES; models/families.py): "paper" paints every pixel from the
    # landmark image (the generator_* fields above); "warp" moves the shots' own pixels by a thin-plate
    # spline and refines them with an AdaIN encoder-decoder (the warp_* fields below)
    generator: str = "paper"
    # warp family: the U-Net's encoder channels (the decoder mirrors them), its AdaIN residual blocks at
    # the bottleneck, how many times smaller than image_size it runs, and how many of the nearest shots
    # each frame blends
    warp_channels: tuple[int, ...] = (16, 32, 64, 128)
    warp_blocks: int = 2
    warp_downscale: int = 2
    warp_shots: int = 4
    # warp family, with more than one shot: regions (models/tps.py REGIONS: "mouth", "eyes") that take
    # the shot whose region is shaped most like the target's, blended in over that region
    warp_regions: tuple[str, ...] = ()
    # warp family: the motion field that moves the shots onto the target's landmarks (WARP_MOTIONS):
    # "tps" a thin-plate spline (models/tps.py), "pa" piecewise affine over a fixed triangulation of the
    # 68 points and the crop's border (models/piecewise.py, the evaluation baseline's warp)
    warp_motion: str = "tps"
    # warp family: the mouth refiner (models/mouth.py), a small AdaIN U-Net on a box about the lips at full
    # resolution, trained after the rest (mouth_training.MouthTask); () = none. mouth_size: the box's side in px
    mouth_channels: tuple[int, ...] = ()
    mouth_size: int = 96
    mouth_blocks: int = 2
    # warp family: the mouth-cavity prior (models/cavity.py): a measured mean mouth inside (teeth bands, the
    # dark between them) over the part of the target's inner-lip polygon that the mouth's shot, less open,
    # cannot fill
    mouth_cavity: bool = False
    # warp family: the eyelid prior (models/eyelids.py): where the target's eye is more closed than its shot's,
    # the band its upper lid now covers gets the measured colour of closing lids, not the shot's stretched fold
    eyelids: bool = False
    # the priors' two measured settings (chosen on the training clips; the modules say how): how far the cavity's
    # brightness is pushed from the cheeks' (models/cavity.py contrast_cells; 1 = the templates as measured),
    # and how far above where the lid was the lid band runs on, a share of the eye's width (models/eyelids.py)
    cavity_contrast: float = 1.5
    lid_margin: float = 0.08
    # warp family: the learned mouth inside (models/mouth_inside.py), a small U-Net that inpaints the target's
    # inner-lip polygon from the rest of a box about the lips (teeth, the dark inside), trained on real frames
    # after the rest (``train --stage inside``); () = none, and the cavity prior above paints the inside.
    # inside_size: the box's side in px
    inside_channels: tuple[int, ...] = ()
    inside_size: int = 64
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        # JSON gives lists; keep tuples so the dataclass stays hashable and comparable.
        for name in ("embedder_channels", "generator_down_channels", "generator_up_channels", "warp_channels",
                     "warp_regions", "mouth_channels", "inside_channels"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        self.validate()

    # ---- checks -------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ``ValueError`` naming the field when the plan cannot build a working network."""
        def positive_ints(name: str, seq) -> None:
            if not seq or not all(isinstance(c, int) and c > 0 for c in seq):
                raise ValueError(f"ModelConfig.{name} must be a non-empty list of positive ints, got {seq!r}")

        for name in ("image_size", "embed_dim", "image_channels", "num_videos"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"ModelConfig.{name} must be a positive int, got {v!r}")
        for name in ("bottleneck_blocks", "discriminator_extra_blocks", "warp_blocks", "mouth_blocks"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"ModelConfig.{name} must be a non-negative int, got {v!r}")
        if self.generator not in GENERATOR_FAMILIES:
            raise ValueError(f"ModelConfig.generator must be one of {', '.join(GENERATOR_FAMILIES)}, "
                             f"got {self.generator!r}")
        for name in ("warp_downscale", "warp_shots"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"ModelConfig.{name} must be a positive int, got {v!r}")
        positive_ints("warp_channels", self.warp_channels)
        regions = ("mouth", "eyes")  # models/tps.py REGIONS (not imported: config stays free of torch)
        if any(r not in regions for r in self.warp_regions) or len(set(self.warp_regions)) != len(self.warp_regions):
            raise ValueError(f"ModelConfig.warp_regions must be distinct names from {', '.join(regions)}, "
                             f"got {self.warp_regions!r}")
        if self.warp_motion not in WARP_MOTIONS:
            raise ValueError(f"ModelConfig.warp_motion must be one of {', '.join(WARP_MOTIONS)}, "
                             f"got {self.warp_motion!r}")
        for name, what in (("mouth_cavity", "the mouth-cavity prior"), ("eyelids", "the eyelid prior")):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"ModelConfig.{name} must be true or false, got {getattr(self, name)!r}")
            if getattr(self, name) and self.generator != "warp":
                raise ValueError(f"ModelConfig.{name}: {what} belongs to the warp family "
                                 f"(generator='warp'), not {self.generator!r}")
        for name, positive in (("cavity_contrast", True), ("lid_margin", False)):
            v = getattr(self, name)
            number = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
            if not number or v < 0 or (positive and v == 0):
                raise ValueError(f"ModelConfig.{name} must be a {'positive' if positive else 'non-negative'} "
                                 f"number, got {v!r}")
        if self.mouth_channels:
            positive_ints("mouth_channels", self.mouth_channels)
            levels = len(self.mouth_channels) - 1
            if self.generator != "warp":
                raise ValueError("ModelConfig.mouth_channels: the mouth refiner belongs to the warp family "
                                 f"(generator='warp'), not {self.generator!r}")
            if not isinstance(self.mouth_size, int) or self.mouth_size <= 0 or self.mouth_size % (2 ** levels):
                raise ValueError(f"ModelConfig.mouth_size must be a positive int divisible by 2**{levels} "
                                 f"(mouth_channels), got {self.mouth_size!r}")
        if self.inside_channels:
            positive_ints("inside_channels", self.inside_channels)
            levels = len(self.inside_channels) - 1
            if self.generator != "warp":
                raise ValueError("ModelConfig.inside_channels: the learned mouth inside belongs to the warp family "
                                 f"(generator='warp'), not {self.generator!r}")
            if not all(c % 8 == 0 for c in self.inside_channels):
                raise ValueError(f"ModelConfig.inside_channels must be multiples of 8 (GroupNorm's 8 groups), "
                                 f"got {self.inside_channels!r}")
            if not isinstance(self.inside_size, int) or self.inside_size <= 0 or self.inside_size % (2 ** levels):
                raise ValueError(f"ModelConfig.inside_size must be a positive int divisible by 2**{levels} "
                                 f"(inside_channels), got {self.inside_size!r}")
        if self.generator == "warp":  # its U-Net's resolutions; the paper family ignores the warp_* fields
            net = self.image_size // self.warp_downscale
            levels = len(self.warp_channels) - 1
            if self.image_size % self.warp_downscale or net % (2 ** levels) or self.image_size % 4:
                raise ValueError(
                    f"ModelConfig.image_size={self.image_size} must be divisible by 4 and by warp_downscale="
                    f"{self.warp_downscale}, and image_size / warp_downscale by 2**{levels} (warp_channels)")
            if net >> levels < 2:
                raise ValueError(f"ModelConfig.warp_channels ({len(self.warp_channels)} levels) take the warp "
                                 f"U-Net below 2x2 pixels at image_size / warp_downscale = {net}")
        positive_ints("embedder_channels", self.embedder_channels)
        positive_ints("generator_down_channels", self.generator_down_channels)
        positive_ints("generator_up_channels", self.generator_up_channels)
        if self.embedder_channels[-1] != self.embed_dim:
            raise ValueError(
                f"ModelConfig.embedder_channels must end with embed_dim={self.embed_dim}, "
                f"got {self.embedder_channels[-1]}"
            )
        depth = max(len(self.embedder_channels), len(self.generator_down_channels))
        if self.image_size % (2**depth):
            raise ValueError(f"ModelConfig.image_size={self.image_size} must be divisible by 2**{depth}")
        if len(self.generator_up_channels) != len(self.generator_down_channels):
            raise ValueError(
                "ModelConfig.generator_up_channels must have as many blocks as generator_down_channels "
                "so that the generator's output has the input's size"
            )
        if self.attention_down is not None:
            for name in ("embedder_channels", "generator_down_channels"):
                if self.attention_down not in self.down_resolutions(getattr(self, name)):
                    raise ValueError(
                        f"ModelConfig.attention_down={self.attention_down} is not a resolution reached by "
                        f"{name} ({self.down_resolutions(getattr(self, name))})"
                    )
        if self.attention_up is not None and self.attention_up not in self.up_resolutions():
            raise ValueError(
                f"ModelConfig.attention_up={self.attention_up} is not a resolution reached by the "
                f"generator's up path ({self.up_resolutions()})"
            )
        for name in ("embedder_channels", "generator_down_channels"):
            if self.down_resolutions(getattr(self, name))[-1] < 2 and self.attention_down is not None:
                raise ValueError(f"ModelConfig.{name} goes below 2x2 pixels")

    def down_resolutions(self, channels: tuple[int, ...]) -> list[int]:
        """Output resolution of each block of a down path."""
        return [self.image_size >> (i + 1) for i in range(len(channels))]

    def up_resolutions(self) -> list[int]:
        """Output resolution of each block of the generator's up path."""
        start = self.image_size >> len(self.generator_down_channels)
        return [start << (i + 1) for i in range(len(self.generator_up_channels))]

    # ---- JSON ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return {f.name: (list(v) if isinstance(v, tuple) else v)
                for f in dataclasses.fields(self) for v in [getattr(self, f.name)]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError`` naming them."""
        if not isinstance(data, dict):
            raise ValueError(f"a model config must be a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {', '.join(unknown)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        return cls.from_dict(json.loads(text))

    def replace(self, **overrides: Any) -> "ModelConfig":
        """A copy with fields replaced (checked like a new config)."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(
                f"unknown ModelConfig fields: {', '.join(unknown)}; valid fields: {', '.join(sorted(names))}"
            )
        return dataclasses.replace(self, **overrides)


# ---- registry ---------------------------------------------------------------------------------------
_REGISTRY: dict[str, Callable[[], ModelConfig]] = {}


def register_config(name: str, config: ModelConfig | Callable[[], ModelConfig] | None = None):
    """Register a named config.

    Use as a decorator on a function returning a :class:`ModelConfig` (timm's ``@register_model``
    style), or call ``register_config(name, cfg)`` directly. Re-registering a name replaces it.
    """
    def add(obj):
        _REGISTRY[name] = obj if callable(obj) else (lambda: obj)
        return obj

    return add if config is None else add(config)


def list_configs() -> list[str]:
    """Names of the registered configs, in registration order."""
    return list(_REGISTRY)


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """The registered config ``name`` with ``overrides`` applied.

    Raises :class:`~talkinghead.errors.InputError` listing the known names when ``name`` is unknown.
    """
    if isinstance(name, ModelConfig):
        return name.replace(**overrides) if overrides else name
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise InputError(
            f"Unknown model config {name!r}: choose one of {', '.join(list_configs())}."
        ) from None
    cfg = factory()
    return cfg.replace(**overrides) if overrides else cfg


@register_config("paper-256")
def _paper_256() -> ModelConfig:
    return ModelConfig(description="the paper's channel plan at 256x256 (64..512 channels, 5 blocks at 16x16)")


@register_config("cpu-256")
def _cpu_256() -> ModelConfig:
    return ModelConfig(
        embed_dim=512,
        embedder_channels=(32, 64, 128, 256, 512, 512),
        generator_down_channels=(16, 32, 64, 256),
        bottleneck_blocks=5,
        generator_up_channels=(128, 64, 32, 32),
        description="256x256 for 2-core CPUs: fewer channels at high resolution, 256-channel 16x16 bottleneck",
    )


@register_config("tiny")
def _tiny() -> ModelConfig:
    return ModelConfig(
        image_size=64,
        embed_dim=32,
        embedder_channels=(16, 32, 32, 32),
        generator_down_channels=(16, 32, 32),
        bottleneck_blocks=2,
        generator_up_channels=(32, 16, 16),
        attention_down=8,
        attention_up=16,
        num_videos=4,
        description="64x64 test config with a few channels",
    )


@register_config("warp-256")
def _warp_256() -> ModelConfig:
    # the embedder and discriminator of cpu-256 (so the shipped E and D can start its training)
    return _cpu_256().replace(
        # the nearest shot whole, plus the shot whose mouth and the one whose eyes are shaped most like the
        # target's: measured better than blending the 4 nearest (docs/results/eval-warp-regions), and
        # trained as it is used
        generator="warp", warp_channels=(16, 32, 64, 128), warp_blocks=2, warp_downscale=2, warp_shots=1,
        warp_regions=("mouth", "eyes"), mouth_cavity=True, eyelids=True, inside_channels=(16, 32, 64, 128),
        inside_size=64,
        description="warp-guided generator at 256x256: TPS-warped shots refined by a 128x128 AdaIN U-Net, "
                    "a learned mouth inside where the target opens wider than its shot (the mean one until "
                    "it is trained), lids where it is more closed (cpu-256's embedder and discriminator)")


@register_config("warp-mouth-256")
def _warp_mouth_256() -> ModelConfig:
    return _warp_256().replace(
        mouth_channels=(16, 32, 64), mouth_size=96, mouth_blocks=2,
        description="warp-256 with a mouth refiner: a 96x96 AdaIN U-Net on the box about the lips, at the "
                    "frame's full resolution")


@register_config("warp-tiny")
def _warp_tiny() -> ModelConfig:
    return _tiny().replace(generator="warp", warp_channels=(8, 16, 16), warp_blocks=1, warp_downscale=2,
                           warp_shots=2, inside_channels=(8, 16), inside_size=32,
                           description="64x64 warp-family test config")


@register_config("warp-mouth-tiny")
def _warp_mouth_tiny() -> ModelConfig:
    return _warp_tiny().replace(mouth_channels=(8, 16), mouth_size=64, mouth_blocks=1,
                                description="64x64 warp-family test config with a mouth refiner")

"""talkinghead: few-shot neural talking heads (Zakharov et al., ICCV 2019).

Importing the package has no side effects and does not import torch until a name that needs it is
used: ``import talkinghead as th`` stays fast for the CLI. Every name in ``dir(talkinghead)`` resolves:
the public names of :data:`_LAZY` and the submodules (``th.io``, ``th.metrics``...) are imported on
first use.
"""
from __future__ import annotations

import importlib
import pkgutil

__version__ = "0.1.0"

# public name -> module that defines it (imported on first use)
_LAZY = {
    # the user-facing path
    "load": "pipeline",
    "TalkingHead": "pipeline",
    "Avatar": "pipeline",
    "Animation": "pipeline",
    "write_video": "pipeline",
    "write_image": "pipeline",
    # files in and out
    "read_image": "io",
    "VideoReader": "io",
    "VideoWriter": "io",
    "read_metadata": "io",
    "check_video_output": "io",
    # faces
    "detect_landmarks": "landmarks",
    "track_video": "landmarks",
    "LandmarkTrack": "landmarks",
    "get_detector": "landmarks",
    "draw_landmarks": "landmarks",
    "landmark_images": "landmarks",
    "crop_from_landmarks": "landmarks",
    "paste_back": "landmarks",
    # training
    "preprocess": "data",
    "EpisodeDataset": "data",
    "TrainOptions": "training",
    "Trainer": "training",
    "train": "training",
    "export_pretrained": "training",
    "LossWeights": "losses",
    "GeneratorLoss": "losses",
    # models and configs
    "TalkingHeadModel": "models",
    "Embedder": "models",
    "Generator": "models",
    "WarpGenerator": "models",
    "AdaINGenerator": "models",
    "ProjectionDiscriminator": "models",
    "ModelConfig": "config",
    "get_config": "config",
    "list_configs": "config",
    "register_config": "config",
    "create_model": "models",
    "model_summary": "models",
    # motion
    "transfer_motion": "motion",
    "preset_motion": "motion",
    # audio-driven motion
    "read_audio": "audio",
    "load_audio_model": "audio2motion",
    "Audio2Motion": "audio2motion",
    # evaluation
    "evaluate": "evaluation",
    "EvalOptions": "evaluation",
    "write_report": "evaluation",
    # provenance
    "verify_file": "watermark",
    # errors
    "TalkingHeadError": "errors",
    "InputError": "errors",
    "NoFaceError": "errors",
    "WeightsError": "errors",
    "OutputError": "errors",
    "DependencyError": "errors",
}


def _submodules() -> set[str]:
    """The package's public modules and subpackages, reachable as attributes (``th.io.to_uint8_rgb``,
    ``th.metrics.ssim``) and imported on first use; ``__main__`` and private modules are left out."""
    return {m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}


def __getattr__(name: str):
    if name in _submodules():
        return importlib.import_module(f".{name}", __name__)  # the import system sets the attribute
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'talkinghead' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | _submodules())

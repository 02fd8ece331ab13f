"""Audio to motion: a small temporal conv net from log-mel features to expression landmark offsets.

The model predicts what the ``talk`` preset draws at random: how the jaw, lips and brows
(:data:`EXPRESSION_POINTS`, 47 of the 68 iBUG points) move away from a resting face. Offsets live in
the *upright face frame*: landmarks normalised as :func:`talkinghead.motion.normalise` does (stable
points centred, unit spread) and turned so that the line between the eye centres is horizontal. The
resting face is the speaker's own closed mouth (see :func:`rest_shape`), so an offset of zero is a
closed mouth and silence maps there. :func:`apply_offsets` puts offsets on any source face, in its
own size, position and roll, like :func:`talkinghead.motion.transfer_motion` does for a driving clip;
the rest of the animation path is unchanged.

Network (:class:`Audio2Motion`): log-mel ``(B, n_mels, L)`` at 100 frames per second, normalised by the
training set's per-band mean and spread (buffers), a 5-tap input convolution, residual blocks of
dilated 3-tap convolutions (non-causal: the default sees +-0.33 s around each frame), and a 1x1
convolution to ``n_components`` coefficients of a PCA basis of the training offsets (buffers): the
offsets are ``offset_mean + gain * coefficients @ basis`` (``gain`` undoes the shrinkage of squared-error
training, see :class:`Audio2Motion`). Video frames at any fps read the 100 Hz output by linear
interpolation (:func:`predict_offsets`); in pauses (:func:`speech_activity`) the lips and lower jaw
return to the resting face.

Configs are frozen dataclasses in a registry (``default``, ``tiny`` for tests); ``save_pretrained``
writes ``config.json`` + ``model.safetensors`` (with its sha256), and :func:`load_audio_model` finds a
folder by name the way :func:`talkinghead.hub.resolve_pretrained` does (the shipped one is
``pretrained/audio2motion``).

Head motion and blinks do not come from the network: :func:`natural_motion` adds the ``talk``
preset's blinks and head sway, made speech-aware (the head moves more while speaking, nods with
loud syllables and rests in pauses), or nothing but blinks with ``head_motion="none"``.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError, WeightsError

__all__ = ["EXPRESSION_POINTS", "MOUTH_POINTS", "HEAD_MOTIONS", "DEFAULT_AUDIO_MODEL", "Audio2MotionConfig",
           "register_audio_config", "get_audio_config", "list_audio_configs", "Audio2Motion", "load_audio_model",
           "upright", "rest_shape", "expression_offsets", "apply_offsets", "offset_opening", "predict_offsets",
           "speech_activity", "pause_gate", "natural_motion", "audio_motion"]

EXPRESSION_POINTS = np.r_[0:27, 48:68]  # jaw 0-16, brows 17-26, lips 48-67
MOUTH_POINTS = np.arange(48, 68)
# in EXPRESSION_POINTS' order: where the inner lips 61-63 / 65-67 sit (the gap of metrics.mouth_opening)
_UPPER_INNER = np.searchsorted(EXPRESSION_POINTS, [61, 62, 63])
_LOWER_INNER = np.searchsorted(EXPRESSION_POINTS, [67, 66, 65])
_GATED = np.searchsorted(EXPRESSION_POINTS, np.r_[3:14, 48:68])  # what closes in a pause: lower jaw and lips
HEAD_MOTIONS = ("none", "natural")
DEFAULT_AUDIO_MODEL = "audio2motion"
CLASS_NAME = "Audio2Motion"
FORMAT_VERSION = 1
PAUSE_DBFS = -55.0  # loudness-normalised speech sits at about -20 dBFS; pauses are quieter than this
REST_QUANTILE = 0.1  # the rest face: the median of the frames whose mouth is in the lowest 10% of openings


# ------------------------------------------------------------------------------------------ configs
@dataclass(frozen=True)
class Audio2MotionConfig:
    """Everything :class:`Audio2Motion`'s constructor needs; saved as ``config.json``'s ``config``."""

    n_mels: int = 40
    channels: int = 96
    input_kernel: int = 5
    kernel: int = 3
    dilations: tuple[int, ...] = (1, 2, 4, 8, 2)
    n_components: int = 16  # PCA coefficients of the 47-point offsets (at most 94)
    dropout: float = 0.1

    def __post_init__(self):
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        ints = {"n_mels": self.n_mels, "channels": self.channels, "input_kernel": self.input_kernel,
                "kernel": self.kernel, "n_components": self.n_components}
        bad = [k for k, v in ints.items() if isinstance(v, bool) or not isinstance(v, int) or v < 1]
        if bad:
            raise ValueError(f"{', '.join(bad)} must be positive integers")
        if self.input_kernel % 2 == 0 or self.kernel % 2 == 0:
            raise ValueError("input_kernel and kernel must be odd (centred windows)")
        if not self.dilations or any(d < 1 for d in self.dilations):
            raise ValueError("dilations must be one or more positive integers")
        if self.n_components > 2 * len(EXPRESSION_POINTS):
            raise ValueError(f"n_components must be at most {2 * len(EXPRESSION_POINTS)}")
        if not 0 <= self.dropout < 1:
            raise ValueError("dropout must be in [0, 1)")

    @property
    def receptive_field(self) -> int:
        """Feature frames (10 ms each) one output frame sees, centred on it."""
        return self.input_kernel + sum((self.kernel - 1) * d for d in self.dilations)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["dilations"] = list(self.dilations)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Audio2MotionConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown audio-model config fields {', '.join(unknown)}")
        return cls(**d)


_CONFIGS: dict[str, Audio2MotionConfig] = {}


def register_audio_config(name: str, config: Audio2MotionConfig) -> Audio2MotionConfig:
    _CONFIGS[name] = config
    return config


def get_audio_config(name: str, **overrides) -> Audio2MotionConfig:
    """A registered config by name, with fields replaced (``get_audio_config("default", channels=64)``)."""
    if name not in _CONFIGS:
        raise InputError(f"Unknown audio-model config {name!r}: use one of {', '.join(sorted(_CONFIGS))}.")
    return dataclasses.replace(_CONFIGS[name], **overrides)


def list_audio_configs() -> list[str]:
    return sorted(_CONFIGS)


# the shipped model (pretrained/audio2motion): 28k parameters, +-0.33 s of context; wider nets (96 channels,
# 206k parameters) fitted the 4.5 minutes of training speech better and the held-out speakers worse
register_audio_config("default", Audio2MotionConfig(channels=32, dilations=(1, 2, 4, 8, 16), dropout=0.3))
register_audio_config("tiny", Audio2MotionConfig(n_mels=16, channels=8, dilations=(1, 2), n_components=4, dropout=0.0))


# ------------------------------------------------------------------------------------------ the network
class _ResBlock(nn.Module):
    """``x + W2 gelu(W1_dilated gelu(x))`` on ``(B, C, L)``, lengths kept (same padding)."""

    def __init__(self, channels: int, kernel: int, dilation: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation)
        self.mix = nn.Conv1d(channels, channels, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(self.drop(F.gelu(self.conv(F.gelu(x)))))


class Audio2Motion(nn.Module):
    """Log-mel ``(B, n_mels, L)`` -> PCA coefficients ``(B, n_components, L)`` (:meth:`forward`) ->
    offsets ``(B, L, 47, 2)`` in the upright face frame (:meth:`offsets`).

    Buffers (saved with the weights, set by the trainer from the training data): ``feature_mean`` and
    ``feature_std`` ``(n_mels,)``; ``offset_mean`` ``(94,)`` and ``basis`` ``(n_components, 94)``
    (orthonormal rows); ``gain`` (a scalar, 1 while training): squared-error training shrinks the
    predicted motion towards its mean where the audio leaves it uncertain, so the exported model scales
    it back until the predicted mouth opening varies as much as the real one on the training clips
    (:func:`talkinghead.audio_training.calibrate_gain`). Before training they hold 0, 1, 0, the first
    unit vectors and 1.
    """

    def __init__(self, config: Audio2MotionConfig):
        super().__init__()
        self.config = c = config
        self.training_info: dict[str, Any] = {}
        dims = 2 * len(EXPRESSION_POINTS)
        self.register_buffer("feature_mean", torch.zeros(c.n_mels))
        self.register_buffer("feature_std", torch.ones(c.n_mels))
        self.register_buffer("offset_mean", torch.zeros(dims))
        self.register_buffer("basis", torch.eye(dims)[:c.n_components].clone())
        self.register_buffer("gain", torch.ones(()))
        self.inp = nn.Conv1d(c.n_mels, c.channels, c.input_kernel, padding=c.input_kernel // 2)
        self.blocks = nn.ModuleList(_ResBlock(c.channels, c.kernel, d, c.dropout) for d in c.dilations)
        self.out = nn.Conv1d(c.channels, c.n_components, 1)
        nn.init.zeros_(self.out.weight)  # starts at the mean offsets
        nn.init.zeros_(self.out.bias)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.ndim != 3 or mel.shape[1] != self.config.n_mels:
            raise ValueError(f"mel must be (B, {self.config.n_mels}, L), got {tuple(mel.shape)}")
        x = (mel - self.feature_mean[None, :, None]) / self.feature_std[None, :, None]
        x = self.inp(x)
        for block in self.blocks:
            x = block(x)
        return self.out(F.gelu(x))

    def offsets(self, coefficients: torch.Tensor) -> torch.Tensor:
        """``(B, K, L)`` coefficients -> ``(B, L, 47, 2)`` offsets: ``offset_mean + gain * coefficients @ basis``."""
        flat = self.offset_mean + self.gain * torch.einsum("bkl,kd->bld", coefficients, self.basis)
        return flat.reshape(*flat.shape[:2], len(EXPRESSION_POINTS), 2)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """``config.json`` (config, training record, sha256) + ``model.safetensors``, atomically."""
        from .atomic import atomic_paths
        from .hub import CONFIG_NAME, WEIGHTS_NAME, serialize_safetensors
        from .io import check_output_folder

        directory = check_output_folder(directory, f"Cannot save the audio model to {directory}",
                                        "choose another folder")
        tensors = {k: v.detach().cpu().float().contiguous().clone() for k, v in self.state_dict().items()}
        data, digest = serialize_safetensors(tensors, {"format": "pt"})
        meta = {"format_version": FORMAT_VERSION, "class_name": CLASS_NAME, "dtype": "float32",
                "config": self.config.to_dict(), "sha256": {WEIGHTS_NAME: digest}}
        if self.training_info:
            meta["training"] = self.training_info
        with atomic_paths([directory / WEIGHTS_NAME, directory / CONFIG_NAME], name=directory) as (w, cfg):
            w.write_bytes(data)
            cfg.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return directory

    @classmethod
    def from_pretrained(cls, name_or_dir: str | os.PathLike = DEFAULT_AUDIO_MODEL) -> "Audio2Motion":
        return load_audio_model(name_or_dir)


def load_audio_model(name_or_dir: str | os.PathLike = DEFAULT_AUDIO_MODEL):
    """An :class:`Audio2Motion` in eval mode from a folder or a name (``audio2motion``: the shipped one),
    found as :func:`talkinghead.hub.resolve_pretrained` finds weights; an instance is returned as is.
    Bad, foreign or modified files raise :class:`WeightsError`."""
    from .hub import (CONFIG_NAME, WEIGHTS_NAME, check_sha256, check_tensors, read_safetensors, recorded_sha256,
                      resolve_pretrained)

    if isinstance(name_or_dir, Audio2Motion):
        return name_or_dir.eval()
    if not isinstance(name_or_dir, (str, os.PathLike)):
        raise InputError(f"The audio model must be a name or a folder (such as {DEFAULT_AUDIO_MODEL!r}), not "
                         f"{type(name_or_dir).__name__}.")
    folder = resolve_pretrained(name_or_dir)
    cfg_path, w_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not cfg_path.is_file():
        raise WeightsError(f"{cfg_path} is missing: pass the audio model's folder (such as "
                           f"pretrained/{DEFAULT_AUDIO_MODEL}), which holds {CONFIG_NAME} next to {WEIGHTS_NAME}.")
    try:
        meta = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{cfg_path} cannot be read as JSON ({type(exc).__name__}): save the audio model again.") from None
    if not isinstance(meta, dict) or meta.get("class_name") != CLASS_NAME:
        found = meta.get("class_name") if isinstance(meta, dict) else None
        raise WeightsError(f"{folder} holds a {found!r}, not an audio-to-motion model: pass the audio model's "
                           f"folder (such as pretrained/{DEFAULT_AUDIO_MODEL}).")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise WeightsError(f"{cfg_path} has format_version {version!r}, this talkinghead reads up to "
                           f"{FORMAT_VERSION}: upgrade talkinghead.")
    try:
        config = Audio2MotionConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"{cfg_path} holds an invalid audio-model config ({exc}): save the model again.") from None
    digest = recorded_sha256(meta, WEIGHTS_NAME, cfg_path)
    tensors = read_safetensors(w_path)
    model = Audio2Motion(config)
    check_tensors(w_path, tensors, model.state_dict())
    check_sha256(w_path, digest)
    model.load_state_dict(tensors)
    model.training_info = meta.get("training", {}) if isinstance(meta.get("training"), dict) else {}
    return model.eval()


# ------------------------------------------------------------------------------------------ the face frame
def _eye_roll(lm: np.ndarray) -> np.ndarray:
    """In-plane angle ``(...)`` (radians, image coordinates) of the line from the left to the right eye centre."""
    d = lm[..., 42:48, :].mean(-2) - lm[..., 36:42, :].mean(-2)
    return np.arctan2(d[..., 1], d[..., 0])


def _rotate(points: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """``(..., N, 2)`` points turned by ``angle`` ``(...)`` about the origin."""
    c, s = np.cos(angle)[..., None], np.sin(angle)[..., None]
    x, y = points[..., 0], points[..., 1]
    return np.stack([x * c - y * s, x * s + y * c], axis=-1)


def upright(landmarks: np.ndarray) -> np.ndarray:
    """Landmarks ``(..., 68, 2)`` in the upright face frame: normalised (stable points centred, unit
    spread) and turned so that the eye line is horizontal."""
    from .motion import normalise

    lm = np.asarray(landmarks, np.float64)
    return _rotate(normalise(lm), -_eye_roll(lm))


def rest_shape(upright_track: np.ndarray, quantile: float = REST_QUANTILE) -> np.ndarray:
    """A speaker's resting face ``(68, 2)`` from an upright track ``(T, 68, 2)``: the per-point median of
    the frames whose mouth opening is in the lowest ``quantile`` (at least one frame)."""
    from .metrics import mouth_opening

    tr = np.asarray(upright_track, np.float64)
    ok = np.isfinite(tr).all(axis=(1, 2))
    if not ok.any():
        raise InputError("The landmark track has no frame with a face: a resting face needs at least one.")
    tr = tr[ok]
    opening = mouth_opening(tr)
    n = max(1, int(np.ceil(quantile * len(tr))))
    return np.median(tr[np.argsort(opening)[:n]], axis=0)


def expression_offsets(upright_track: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """Training targets: ``(T, 47, 2)`` offsets of :data:`EXPRESSION_POINTS` from the resting face."""
    return (np.asarray(upright_track)[:, EXPRESSION_POINTS] - np.asarray(rest)[EXPRESSION_POINTS]).astype(np.float32)


def offset_opening(offsets):
    """The change of the inner-lip gap (upright frame, face-size units) that offsets ``(..., 47, 2)`` make:
    ``(...)``, numpy or torch (positive opens the mouth)."""
    return (offsets[..., _LOWER_INNER, 1] - offsets[..., _UPPER_INNER, 1]).mean(-1)


def apply_offsets(source: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The source face ``(68, 2)`` (pixels) moved by upright-frame offsets ``(T, 47, 2)``: ``(T, 68, 2)``
    float32 pixels, at the source's size, position and roll, with no lip or lid crossing its partner
    (:func:`talkinghead.motion.close_without_crossing`)."""
    from .motion import _check_track, close_without_crossing, face_frame

    src = _check_track(source, "source")[0].astype(np.float64)
    if not np.isfinite(src).all():
        raise InputError("The source landmarks contain NaN: the source image needs a detected face.")
    off = np.asarray(offsets, np.float64)
    if off.ndim != 3 or off.shape[1:] != (len(EXPRESSION_POINTS), 2):
        raise ValueError(f"offsets must be (T, {len(EXPRESSION_POINTS)}, 2), got {off.shape}")
    centre, size = face_frame(src)
    delta = np.zeros((len(off), 68, 2))
    delta[:, EXPRESSION_POINTS] = _rotate(off, np.full(len(off), _eye_roll(src)))  # into the source's roll
    out = src[None] + delta * size
    return close_without_crossing(out).astype(np.float32)


# ------------------------------------------------------------------------------------------ inference
def predict_offsets(model, mel, times: np.ndarray, gate: np.ndarray | None = None) -> np.ndarray:
    """Offsets ``(T, 47, 2)`` at ``times`` ``(T,)`` seconds from log-mel ``(n_mels, L)`` at 100 Hz.

    ``mel``: :func:`talkinghead.audio.speech_features` of the audio. ``gate`` ``(T,)`` in [0, 1]
    (:func:`speech_activity`) scales the offsets of the lower jaw and the lips (0: the resting face,
    a closed mouth in a pause)."""
    from .audio import FEATURE_RATE

    mel = torch.as_tensor(mel, dtype=torch.float32)
    if mel.ndim != 2:
        raise ValueError(f"mel must be (n_mels, L), got {tuple(mel.shape)}")
    model = model.eval()
    with torch.no_grad():
        p = next(model.parameters())
        out = model.offsets(model(mel[None].to(p.device, p.dtype)))[0].float().cpu().numpy()  # (L, 47, 2)
    pos = np.clip(np.asarray(times, np.float64) * FEATURE_RATE, 0, len(out) - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(out) - 1)
    w = (pos - lo)[:, None, None]
    res = out[lo] * (1 - w) + out[hi] * w
    if gate is not None:
        res[:, _GATED] *= np.clip(np.asarray(gate, np.float64), 0, 1)[:, None, None]
    return res.astype(np.float32)


def speech_activity(samples: np.ndarray, times: np.ndarray, floor_db: float = PAUSE_DBFS,
                    min_pause_s: float = 0.2, edge_s: float = 0.03) -> np.ndarray:
    """Whether there is speech at ``times``: ``(T,)`` in [0, 1], 0 inside pauses (:func:`pause_gate` of
    the loudness-normalised samples' :func:`~talkinghead.audio.frame_dbfs`)."""
    from .audio import frame_dbfs

    return pause_gate(frame_dbfs(samples), times, floor_db, min_pause_s, edge_s)


def pause_gate(db: np.ndarray, times: np.ndarray, floor_db: float = PAUSE_DBFS, min_pause_s: float = 0.2,
               edge_s: float = 0.03) -> np.ndarray:
    """``(T,)`` in [0, 1] at ``times`` from the loudness ``db`` ``(L,)`` of each 10 ms feature frame.

    A pause is a stretch of at least ``min_pause_s`` whose 25 ms windows are all below ``floor_db``
    (speech sits at about -20 dBFS once loudness-normalised, so the default, -55, is 35 dB below it);
    shorter dips (a stop consonant inside a word) count as speech. Inside a pause the gate ramps to 0
    over ``edge_s``, never into the speech around it."""
    from .audio import FEATURE_RATE

    quiet = np.asarray(db) < floor_db
    pause = np.zeros(len(quiet), bool)
    min_len = max(1, int(round(min_pause_s * FEATURE_RATE)))
    edges = np.flatnonzero(np.diff(np.r_[0, quiet.astype(np.int8), 0]))
    for a, b in zip(edges[::2], edges[1::2]):
        if b - a >= min_len:
            pause[a:b] = True
    gate = 1.0 - pause.astype(np.float64)
    k = max(1, int(round(edge_s * FEATURE_RATE)))
    gate = np.minimum(gate, np.convolve(np.pad(gate, (k, k), mode="edge"), np.ones(2 * k + 1) / (2 * k + 1),
                                        mode="same")[k:-k])
    pos = np.clip(np.asarray(times, np.float64) * FEATURE_RATE, 0, len(gate) - 1)
    return np.interp(pos, np.arange(len(gate)), gate)


def natural_motion(track: np.ndarray, fps: float, activity: np.ndarray, head_motion: str = "natural",
                   seed: int = 0) -> np.ndarray:
    """Blinks, and with ``head_motion="natural"`` head sway and nods, added to a track ``(T, 68, 2)``.

    The ``talk`` preset's motion made speech-aware: blinks (a 150 ms close and open) every 2-6 s and
    one as speech resumes after a pause of 1 s or more; the sway's amplitude follows ``activity``
    smoothed over 1 s (half as large in pauses) and the head nods slightly with loud stretches.
    ``none``: blinks only. Deterministic for a ``seed``.
    """
    from .checks import check_choice
    from .motion import LOWER_LID, UPPER_LID, face_frame

    check_choice("head_motion", head_motion, HEAD_MOTIONS)
    out = np.array(track, np.float64, copy=True)
    n = len(out)
    t = np.arange(n) / fps
    rng = np.random.default_rng(seed)
    blink = np.zeros(n)
    when = rng.uniform(0.5, 2.0)
    times = []
    while when < n / fps:
        times.append(when)
        when += rng.uniform(2.0, 6.0)
    quiet = np.r_[0, (np.asarray(activity) < 0.5).astype(np.int8), 0]
    edges = np.flatnonzero(np.diff(quiet))
    times += [b / fps - 0.1 for a, b in zip(edges[::2], edges[1::2]) if b - a >= fps and b < n]  # pauses of 1 s+
    for when in times:
        blink += np.exp(-0.5 * ((t - when) / 0.05) ** 2)
    blink = np.clip(blink, 0, 1)
    for side in ("left", "right"):
        up, lo = UPPER_LID[side], LOWER_LID[side]
        mid = (out[:, up, 1] + out[:, lo, 1]) / 2
        out[:, up, 1] += (mid - out[:, up, 1]) * blink[:, None]
        out[:, lo, 1] += (mid - out[:, lo, 1]) * blink[:, None]
    if head_motion == "none":
        return out.astype(np.float32)
    k = max(1, int(round(fps)))  # 1 s
    act = np.convolve(np.pad(np.asarray(activity, np.float64), (k, k), mode="edge"), np.ones(2 * k + 1) / (2 * k + 1),
                      mode="same")[k:-k]
    env = np.convolve(np.pad(np.asarray(activity, np.float64), (k // 4, k // 4), mode="edge"),
                      np.ones(2 * (k // 4) + 1) / (2 * (k // 4) + 1), mode="same")[k // 4: len(act) + k // 4]
    centre, size = face_frame(out[0])
    amp = 0.05 * (0.5 + 0.5 * act)
    phase = rng.uniform(0, 2 * np.pi, 3)
    angle = amp * 0.5 * np.sin(2 * np.pi * 0.35 * t + phase[0])
    dx = amp * size * np.sin(2 * np.pi * 0.25 * t + phase[1])
    dy = amp * size * 0.5 * np.sin(2 * np.pi * 0.2 * t + phase[2]) + 0.03 * size * (env - act)
    rel = out - centre
    rot = _rotate(rel, angle)
    out = rot + centre + np.stack([dx, dy], -1)[:, None, :]
    return out.astype(np.float32)


def audio_motion(source: np.ndarray, audio, fps: float = 25.0, head_motion: str = "natural",
                 model=DEFAULT_AUDIO_MODEL, seed: int = 0, gate: bool = True) -> tuple[np.ndarray, dict]:
    """Landmarks for the source face speaking a sound track: ``((T, 68, 2) float32 pixels, info)``.

    Args:
        source: ``(68, 2)`` landmarks of the source face, in source-image pixels (a closed or resting mouth).
        audio: a file path (any container ffmpeg reads, checked by :func:`talkinghead.audio.check_audio`),
            or ``float32`` samples ``(N,)`` at 16 kHz.
        fps: frames per second; ``T = round(seconds * fps)``, so the video is as long as the audio.
        head_motion: ``natural`` (speech-aware sway, nods and blinks) or ``none`` (a still head, blinks only).
        model: an :class:`Audio2Motion` or its name or folder (see :func:`load_audio_model`).
        gate: close the mouth in pauses (:func:`speech_activity`), whatever the network says.
    """
    from .audio import SAMPLE_RATE, check_audio, frame_count, normalise_loudness, speech_features
    from .checks import MAX_FRAMES, check_choice, check_fps

    fps = check_fps(fps)
    check_choice("head_motion", head_motion, HEAD_MOTIONS)
    net = load_audio_model(model)
    if isinstance(audio, (str, os.PathLike)):
        samples = check_audio(audio)
    else:
        samples = np.asarray(audio, np.float32).reshape(-1)
        if len(samples) == 0 or not np.isfinite(samples).all():
            raise InputError("audio samples must be a non-empty, finite float array (16 kHz mono).")
    n = frame_count(len(samples), fps)
    if n > MAX_FRAMES:
        raise InputError(f"{len(samples) / SAMPLE_RATE:.1f} s at {fps:g} fps is {n} frames, more than the {MAX_FRAMES} "
                         "an animation can have: lower the fps or cut the audio.")
    mel = speech_features(samples, net.config.n_mels)
    samples = normalise_loudness(samples)
    times = np.arange(n) / fps
    activity = speech_activity(samples, times)
    offsets = predict_offsets(net, mel, times, gate=activity if gate else None)
    track = natural_motion(apply_offsets(source, offsets), fps, activity, head_motion, seed)
    info = {"audio": str(audio) if isinstance(audio, (str, os.PathLike)) else None, "audio_seconds": len(samples) / SAMPLE_RATE,
            "head_motion": head_motion, "audio_model": str(model) if isinstance(model, (str, os.PathLike)) else "custom",
            "speech_frames": int((activity > 0.5).sum())}
    return track, info

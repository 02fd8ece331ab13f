"""Audio in: decoding any container to 16 kHz mono, and the log-mel features of the audio-to-motion model.

Audio is decoded by the ffmpeg binary of ``imageio-ffmpeg`` (``-f s16le -ac 1 -ar 16000 -``), so a
wav, mp3, m4a, flac or ogg file and the audio track of an mp4, mov or mkv all read the same way.
Features are computed in torch (``torch.stft`` and a triangular mel filterbank; no torchaudio).

Samples are ``float32`` ``(N,)`` in [-1, 1] at :data:`SAMPLE_RATE`. Features are ``(n_mels, L)``
log-mel frames at :data:`FEATURE_RATE` per second (hop 10 ms, window 25 ms, ``center=True``: frame
``i`` is centred on ``i / FEATURE_RATE`` seconds, so ``L = N // HOP + 1``).

Bad input is an :class:`~talkinghead.errors.InputError` of one sentence, raised before any model runs
(:func:`check_audio`):

- a file without an audio track;
- silence only: no 25 ms window louder than :data:`SILENCE_DBFS` (-50 dBFS);
- longer than :data:`talkinghead.checks.MAX_AUDIO_SECONDS` (10 minutes: 15,000 frames at 25 fps,
  which takes a CPU hours to render; cut a longer recording into parts).
"""
from __future__ import annotations

import functools
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checks import check_number
from .errors import InputError

__all__ = ["SAMPLE_RATE", "HOP", "WINDOW", "N_FFT", "FEATURE_RATE", "SILENCE_DBFS", "AudioInfo", "probe_audio",
           "read_audio", "check_audio", "frame_dbfs", "normalise_loudness", "mel_filterbank", "log_mel",
           "speech_features", "read_features", "frame_count"]

SAMPLE_RATE = 16_000
HOP = 160  # 10 ms
WINDOW = 400  # 25 ms
N_FFT = 512
FEATURE_RATE = SAMPLE_RATE / HOP  # 100 feature frames per second
SILENCE_DBFS = -50.0  # a recording whose loudest 25 ms window is quieter than this holds no speech
TARGET_DBFS = -20.0  # :func:`normalise_loudness` brings the loud (speech) windows to this level
MAX_GAIN_DB = 40.0
LOG_FLOOR = 1e-6  # added to the mel power before the log: digital silence stays finite


@dataclass(frozen=True)
class AudioInfo:
    """What ffmpeg's header says of a file: whether it has an audio stream, and its duration in
    seconds (``None`` where the container does not say)."""

    has_audio: bool
    duration: float | None


def _ffmpeg() -> str:
    from .io import _ffmpeg_exe

    exe = _ffmpeg_exe()
    if exe is None:
        raise InputError("Reading audio needs the ffmpeg binary of imageio-ffmpeg: run `pip install imageio-ffmpeg`.")
    return exe


def _run_ffmpeg(cmd: list[str], path, timeout: float) -> subprocess.CompletedProcess:
    """ffmpeg on ``path``; one that has not ended in ``timeout`` s (a pipe or device that never ends, a
    broken file ffmpeg loops on) is an :class:`InputError` naming the file, not a traceback."""
    try:
        return subprocess.run(cmd, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise InputError(f"Reading the audio of {path} did not finish in {timeout:g} s: give an ordinary audio "
                         "or video file.") from None


def probe_audio(path: str | os.PathLike) -> AudioInfo:
    """Whether ``path`` has an audio stream, and its duration (a readable, non-empty file, else an
    :class:`InputError` naming it)."""
    from .io import _check_file

    path = _check_file(path, "Audio file")
    res = _run_ffmpeg([_ffmpeg(), "-hide_banner", "-nostdin", "-i", str(path)], path, timeout=60)
    text = res.stderr.decode("utf-8", "replace")
    streams = [line for line in text.splitlines() if line.lstrip().startswith("Stream #")]
    if not streams:
        raise InputError(f"{path} is not a readable audio or video file: give a wav, mp3, m4a or a video "
                         "with an audio track.")
    dur = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", text)
    seconds = int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3)) if dur else None
    return AudioInfo(any(" Audio: " in line for line in streams), seconds)


def read_audio(path: str | os.PathLike, max_seconds: float | None = None) -> np.ndarray:
    """The first audio track of ``path`` as ``float32`` ``(N,)`` samples in [-1, 1], mono, 16 kHz.

    Refuses (:class:`InputError`) a file without audio and one longer than ``max_seconds`` (default:
    :data:`talkinghead.checks.MAX_AUDIO_SECONDS`; by its header, or by what decodes where the header
    does not say); it does not judge silence (see :func:`check_audio`).
    """
    from . import checks

    max_seconds = check_number("max_seconds", checks.MAX_AUDIO_SECONDS if max_seconds is None else max_seconds, 0)
    info = probe_audio(path)
    if not info.has_audio:
        raise InputError(f"{path} has no audio track: give a recording with sound (wav, mp3, m4a, or a video "
                         "with an audio track).")
    if info.duration is not None and info.duration > max_seconds + 0.05:
        raise _too_long(path, info.duration, max_seconds)
    # -t stops a file whose header lied (or said nothing) a little past the limit
    cmd = [_ffmpeg(), "-hide_banner", "-nostdin", "-v", "error", "-i", str(path), "-vn", "-sn", "-dn",
           "-map", "0:a:0", "-t", f"{max_seconds + 1:.3f}", "-f", "s16le", "-acodec", "pcm_s16le", "-ac", "1",
           "-ar", str(SAMPLE_RATE), "-"]
    res = _run_ffmpeg(cmd, path, timeout=600)
    if res.returncode != 0:
        last = (res.stderr.decode("utf-8", "replace").strip().splitlines() or ["ffmpeg failed"])[-1]
        raise InputError(f"The audio of {path} cannot be decoded ({last.strip()[:120]}): use a valid audio file.")
    raw = res.stdout[: len(res.stdout) // 2 * 2]
    samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    if len(samples) == 0:
        raise InputError(f"{path} has an audio track without samples: give a recording with sound.")
    if len(samples) > (max_seconds + 0.05) * SAMPLE_RATE:
        raise _too_long(path, len(samples) / SAMPLE_RATE, max_seconds, at_least=True)
    return samples


def _too_long(path, seconds: float, limit: float, at_least: bool = False) -> InputError:
    more = "more than " if at_least else ""
    return InputError(f"{path} is {more}{seconds:.1f} s long, longer than the {limit:g} s an audio-driven "
                      "animation can have: cut it into parts (e.g. ffmpeg -ss START -t SECONDS).")


def frame_dbfs(samples: np.ndarray) -> np.ndarray:
    """Loudness of each 25 ms window, one per 10 ms hop (the feature frames' grid): ``(N,)`` -> ``(L,)``
    dBFS (0 = a full-scale square wave; digital silence is -120)."""
    x = np.asarray(samples, np.float64).reshape(-1)
    pad = np.pad(x, (WINDOW // 2, WINDOW // 2))
    csum = np.concatenate([[0.0], np.cumsum(pad ** 2)])
    n = len(x) // HOP + 1
    starts = np.arange(n) * HOP
    ends = np.minimum(starts + WINDOW, len(pad))
    power = (csum[ends] - csum[starts]) / np.maximum(ends - starts, 1)
    return (10 * np.log10(np.maximum(power, 1e-12))).astype(np.float32)


def check_audio(path: str | os.PathLike, max_seconds: float | None = None) -> np.ndarray:
    """:func:`read_audio`, refusing silence too: the samples of a file fit to animate."""
    samples = read_audio(path, max_seconds)
    loudest = float(frame_dbfs(samples).max())
    if loudest < SILENCE_DBFS:
        raise InputError(f"{path} holds only silence (its loudest moment is {loudest:.0f} dBFS, below "
                         f"{SILENCE_DBFS:g}): give a recording with speech.")
    return samples


def normalise_loudness(samples: np.ndarray) -> np.ndarray:
    """Samples scaled so that their loud windows (the 95th percentile of :func:`frame_dbfs`) sit at
    -20 dBFS, by at most +40 dB: quiet and loud recordings give the model the same features, and
    pauses stay as much quieter than the speech as they were."""
    db = frame_dbfs(samples)
    gain_db = min(TARGET_DBFS - float(np.percentile(db, 95)), MAX_GAIN_DB)
    return (np.asarray(samples, np.float32) * np.float32(10 ** (gain_db / 20))).astype(np.float32)


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=8)
def _filterbank(n_mels: int, n_fft: int, sample_rate: int, fmin: float, fmax: float) -> np.ndarray:
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    fb = np.maximum(0.0, np.minimum(up, down))
    fb *= (2.0 / (hi - lo))  # equal area per band (Slaney): wide high bands do not dominate
    return fb.astype(np.float32)


def mel_filterbank(n_mels: int = 40, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE, fmin: float = 60.0,
                   fmax: float = 7600.0):
    """Triangular mel filters (HTK mel scale, Slaney area normalisation): a torch ``(n_mels, n_fft // 2 + 1)``."""
    import torch

    if not (0 <= fmin < fmax <= sample_rate / 2):
        raise ValueError(f"need 0 <= fmin < fmax <= {sample_rate / 2:g}, got fmin={fmin}, fmax={fmax}")
    return torch.from_numpy(_filterbank(int(n_mels), int(n_fft), int(sample_rate), float(fmin), float(fmax)).copy())


def log_mel(samples, n_mels: int = 40):
    """Log-mel features: ``(N,)`` or ``(B, N)`` samples (numpy or torch) -> torch ``(n_mels, L)`` or
    ``(B, n_mels, L)``, ``L = N // HOP + 1``, natural log of the mel power plus :data:`LOG_FLOOR`."""
    import torch

    x = torch.as_tensor(np.asarray(samples, np.float32) if not torch.is_tensor(samples) else samples,
                        dtype=torch.float32)
    single = x.ndim == 1
    if single:
        x = x[None]
    if x.ndim != 2 or x.shape[-1] == 0:
        raise ValueError(f"samples must be (N,) or (B, N) with N >= 1, got {tuple(x.shape)}")
    n = x.shape[-1] // HOP + 1
    if x.shape[-1] <= N_FFT // 2:  # reflect padding needs more samples than half a window
        x = torch.nn.functional.pad(x, (0, N_FFT // 2 + 1 - x.shape[-1]))
    spec = torch.stft(x, n_fft=N_FFT, hop_length=HOP, win_length=WINDOW, window=torch.hann_window(WINDOW),
                      center=True, return_complex=True)
    power = spec.real ** 2 + spec.imag ** 2  # (B, F, L)
    mel = torch.einsum("mf,bfl->bml", mel_filterbank(n_mels), power)
    out = torch.log(mel + LOG_FLOOR)
    out = out[..., :n]
    return out[0] if single else out


def speech_features(samples: np.ndarray, n_mels: int = 40):
    """The audio-to-motion model's input: torch ``(n_mels, L)`` log-mel frames of the loudness-normalised
    samples, each band minus its mean over the speech (the windows within 20 dB of the loud ones), so a
    microphone's or a room's colour, which differs from one recording to the next, is taken out
    (cepstral mean normalisation). Pauses stay as much below the speech as they were."""
    x = normalise_loudness(samples)
    mel = log_mel(x, n_mels)
    db = frame_dbfs(x)[: mel.shape[-1]]
    loud = db >= np.percentile(db, 95) - 20.0
    return mel - mel[:, loud].mean(-1, keepdim=True)


def frame_count(num_samples: int, fps: float) -> int:
    """Frames of an animation of ``num_samples`` at 16 kHz and ``fps``: the audio's length, rounded."""
    return max(1, int(round(num_samples / SAMPLE_RATE * fps)))


def read_features(path: str | os.PathLike | Path, n_mels: int = 40, max_seconds: float | None = None):
    """``(samples, features)`` of a file fit to animate (:func:`check_audio`, :func:`speech_features`)."""
    samples = check_audio(path, max_seconds)
    return samples, speech_features(samples, n_mels)

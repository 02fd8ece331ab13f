"""Training the audio-to-motion model (:mod:`talkinghead.audio2motion`) on clips with sound.

Two steps, both resumable and each writing into its own folder:

1. :func:`build_features` reads the preprocessing cache (``talkinghead preprocess``: one ``.npz`` per
   clip with its landmark track), keeps the clips whose video has an audio track, decodes that audio
   (16 kHz, loudness normalised), and writes one ``.npz`` (no pickles) with each clip's log-mel
   frames, its landmark times and its expression offsets from the speaker's resting face
   (:func:`talkinghead.audio2motion.rest_shape`: per-speaker normalisation). Cached clips may sample a
   long video sparsely; the targets keep each sampled frame's own time.
2. :func:`train_audio` fits the network on random windows of the training speakers' clips and scores
   the held-out speakers (``val_identities``) every ``val_every`` steps::

       RUN_DIR/training_options.json   resolved options, model config, split, and every start/resume
       RUN_DIR/checkpoint.pt           latest state (atomic; ``torch.load(..., weights_only=True)``)
       RUN_DIR/log.csv                 loss terms every ``log_every`` steps, validation every ``val_every``
       RUN_DIR/model/                  the best validation step: config.json + model.safetensors

   Resume is exact: each step's windows and dropout come from ``(seed, step)`` alone.

Losses are named and weighted (:class:`AudioLossWeights`) and summed in :func:`audio_loss`, which
returns the terms for the log: ``offsets`` (squared error of the 47 points, lips weighted up),
``opening`` (squared error of the inner-lip gap) and ``correlation`` (1 - Pearson correlation of the
predicted and real gap over each window: the number the evaluation reports).
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import functools
import io as _io
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_path, atomic_write_text
from .audio2motion import (EXPRESSION_POINTS, MOUTH_POINTS, Audio2Motion, expression_offsets, get_audio_config,
                           offset_opening, rest_shape, upright)
from .errors import InputError

__all__ = ["build_features", "AudioClips", "AudioLossWeights", "AudioTrainOptions", "audio_loss", "train_audio",
           "validate", "calibrate_gain", "VAL_IDENTITIES"]

CHECKPOINT = "checkpoint.pt"
OPTIONS = "training_options.json"
FEATURES_VERSION = 1
# speakers kept out of training (MANIFEST.csv's identity column): a VoxCeleb interview (2 clips), a
# GRID sentence, a news-style clip and a phone-video monologue
VAL_IDENTITIES = ("vox_lily", "grid_lipnet_sbwe5n", "videoretalking_1", "pcavs_Audio_Source_00086",
                  "liveportrait_driving_d20")


# ------------------------------------------------------------------------------------------ features
def build_features(cache_dir: str | os.PathLike, out: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                   n_mels: int = 40, progress: bool = True) -> Path:
    """One ``.npz`` of log-mel frames and expression offsets for every cached clip with audio.

    ``data_dir``: where the clips are, if not at the path the cache recorded (files are matched by
    name). Clips without an audio track, or with silence only, are left out (listed in ``skipped``).
    """
    from .audio import FEATURE_RATE, check_audio, frame_dbfs, log_mel, normalise_loudness, speech_features
    from .metrics import mouth_opening

    files = sorted(Path(cache_dir).glob("*.npz"))
    if not files:
        raise InputError(f"{cache_dir} holds no preprocessed clips (.npz): run `talkinghead preprocess` first.")
    names, idents, fps_list, rests, skipped = [], [], [], [], []
    mels, dbs, times, targets, openings, cmns = [], [], [], [], [], []
    for f in files:
        with np.load(f, allow_pickle=False) as d:
            meta = json.loads(str(d["meta"]))
            lm = d["landmarks"].astype(np.float64)
            idx = d["frame_index"].astype(np.float64)
        video = Path(meta["source"])
        if data_dir is not None:
            video = Path(data_dir) / video.name
        try:
            samples = check_audio(video)
        except InputError as exc:
            skipped.append(f"{f.name}: {exc}")
            continue
        mel = speech_features(samples, n_mels).numpy().T  # (L, n_mels)
        samples = normalise_loudness(samples)
        cmns.append((log_mel(samples, n_mels).numpy().T[:len(mel)] - mel).mean(0))  # what the features took off
        t = idx / float(meta["fps"])
        keep = np.isfinite(lm).all(axis=(1, 2)) & (t * FEATURE_RATE <= len(mel) - 1)
        up = upright(lm[keep])
        rest = rest_shape(up)
        names.append(meta.get("video", f.stem))
        idents.append(str(meta.get("identity", f.stem)))
        fps_list.append(float(meta["fps"]))
        rests.append(rest)
        mels.append(mel.astype(np.float32))
        dbs.append(frame_dbfs(samples))
        times.append(t[keep])
        targets.append(expression_offsets(up, rest))
        openings.append(mouth_opening(up))
        if progress:
            print(f"{names[-1]}: {len(samples) / 16000:.1f} s, {int(keep.sum())} frames", file=sys.stderr)
    if not names:
        raise InputError(f"No clip in {cache_dir} has usable audio: nothing to train on.")
    mel_off = np.cumsum([0] + [len(m) for m in mels])
    frame_off = np.cumsum([0] + [len(t) for t in times])
    out = Path(out)
    buf = _io.BytesIO()
    np.savez(buf, version=np.int64(FEATURES_VERSION), names=np.array(names), identities=np.array(idents),
             fps=np.array(fps_list), n_mels=np.int64(n_mels), mel=np.concatenate(mels), db=np.concatenate(dbs),
             mel_offsets=mel_off, frame_offsets=frame_off, times=np.concatenate(times),
             targets=np.concatenate(targets), opening=np.concatenate(openings), rest=np.stack(rests).astype(np.float32),
             cmn=np.stack(cmns).astype(np.float32),
             skipped=np.array(skipped or [""]))
    with atomic_path(out) as tmp:
        tmp.write_bytes(buf.getvalue())
    return out


@dataclass
class Clip:
    name: str
    identity: str
    mel: np.ndarray  # (L, n_mels)
    db: np.ndarray  # (L,) loudness per feature frame
    times: np.ndarray  # (F,) seconds
    targets: np.ndarray  # (F, 47, 2)
    opening: np.ndarray  # (F,) real mouth opening (upright frame)
    rest: np.ndarray  # (68, 2)
    cmn: np.ndarray  # (n_mels,) the band means the features had taken off (to make pauses alike)

    @property
    def index(self) -> np.ndarray:
        """Feature frame of each landmark frame: ``(F,)`` ints."""
        from .audio import FEATURE_RATE

        return np.clip(np.round(self.times * FEATURE_RATE).astype(int), 0, len(self.mel) - 1)


class AudioClips:
    """The clips of a :func:`build_features` file, split by speaker into ``train`` and ``val``."""

    def __init__(self, path: str | os.PathLike, val_identities=VAL_IDENTITIES):
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path} does not exist: write it with build_features (scripts/train_audio2motion.py).")
        with np.load(path, allow_pickle=False) as d:
            if int(d["version"]) != FEATURES_VERSION:
                raise InputError(f"{path} has features version {int(d['version'])}, not {FEATURES_VERSION}: build it again.")
            self.n_mels = int(d["n_mels"])
            mo, fo = d["mel_offsets"], d["frame_offsets"]
            self.clips = [Clip(str(n), str(i), d["mel"][mo[k]:mo[k + 1]], d["db"][mo[k]:mo[k + 1]],
                               d["times"][fo[k]:fo[k + 1]], d["targets"][fo[k]:fo[k + 1]],
                               d["opening"][fo[k]:fo[k + 1]], d["rest"][k], d["cmn"][k])
                          for k, (n, i) in enumerate(zip(d["names"], d["identities"]))]
        val = set(val_identities)
        self.train = [c for c in self.clips if c.identity not in val]
        self.val = [c for c in self.clips if c.identity in val]
        if not self.train:
            raise InputError("Every clip is a validation speaker's: keep some speakers for training.")

    def stats(self) -> dict[str, np.ndarray]:
        """The training split's feature mean and spread per band, and the PCA of its offsets."""
        mel = np.concatenate([c.mel for c in self.train])
        off = np.concatenate([c.targets for c in self.train]).reshape(-1, 2 * len(EXPRESSION_POINTS)).astype(np.float64)
        mean = off.mean(0)
        _, _, vt = np.linalg.svd(off - mean, full_matrices=False)
        return {"feature_mean": mel.mean(0), "feature_std": np.maximum(mel.std(0), 1e-3), "offset_mean": mean,
                "basis": vt}


# ------------------------------------------------------------------------------------------ loss
@dataclass
class AudioLossWeights:
    offsets: float = 1.0
    opening: float = 4.0
    correlation: float = 0.5
    lip_weight: float = 3.0  # the lips' share of the offsets term, against 1 for the jaw and brows

    @classmethod
    def from_dict(cls, d: dict) -> "AudioLossWeights":
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown audio loss weights {', '.join(unknown)}")
        w = cls(**d)
        if any(not math.isfinite(v) or v < 0 for v in dataclasses.asdict(w).values()):
            raise ValueError("audio loss weights must be finite and >= 0")
        return w


def _point_weights(lip_weight: float) -> torch.Tensor:
    w = torch.ones(len(EXPRESSION_POINTS))
    w[torch.from_numpy(np.isin(EXPRESSION_POINTS, MOUTH_POINTS))] = lip_weight
    return w / w.mean()


def audio_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
               weights: AudioLossWeights) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the named terms over the positions where ``mask`` ``(B, L)`` is set.

    ``pred`` and ``target``: offsets ``(B, L, 47, 2)``. Returns ``(total, {term: value})``.
    """
    m = mask.float()
    n = m.sum().clamp_min(1.0)
    pw = _point_weights(weights.lip_weight).to(pred)
    err = ((pred - target) ** 2).sum(-1)  # (B, L, 47)
    terms = {"offsets": ((err * pw).mean(-1) * m).sum() / n}
    po, to = offset_opening(pred), offset_opening(target)  # (B, L)
    terms["opening"] = (((po - to) ** 2) * m).sum() / n
    # Pearson correlation per window over its masked positions; windows whose mouth hardly moves are left out
    cnt = m.sum(1).clamp_min(1.0)
    pc = po - (po * m).sum(1, keepdim=True) / cnt[:, None]
    tc = to - (to * m).sum(1, keepdim=True) / cnt[:, None]
    cov = (pc * tc * m).sum(1)
    pv, tv = (pc ** 2 * m).sum(1), (tc ** 2 * m).sum(1)
    corr = cov / torch.sqrt(pv * tv + 1e-8)
    moving = (tv / cnt > 1e-4) & (m.sum(1) >= 8)
    terms["correlation"] = (1 - corr[moving]).mean() if moving.any() else pred.sum() * 0
    total = weights.offsets * terms["offsets"] + weights.opening * terms["opening"] + \
        weights.correlation * terms["correlation"]
    return total, {k: float(v.detach()) for k, v in terms.items()}


# ------------------------------------------------------------------------------------------ options
@dataclass
class AudioTrainOptions:
    """Everything a run depends on; saved as ``training_options.json``."""

    run_dir: str
    features: str
    config: str = "default"
    config_overrides: dict = field(default_factory=dict)
    steps: int = 3000
    batch_size: int = 16
    window: int = 300  # feature frames (3 s)
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 100
    seed: int = 0
    val_identities: tuple[str, ...] = VAL_IDENTITIES
    val_every: int = 100
    log_every: int = 25
    loss_weights: dict = field(default_factory=dict)
    silence_prob: float = 0.3  # windows with a stretch of silence inserted (target: the resting face)
    gain_db: float = 6.0  # random gain, +-
    band_mask: float = 0.5  # windows with up to 6 adjacent mel bands blanked (SpecAugment)
    stretch: float = 0.15  # speaking rate changed by up to +-15% (features and targets together)
    band_shift: float = 1.5  # the spectrum moved by up to +-1.5 mel bands
    ema: float = 0.98  # exponential moving average of the weights: validated and exported
    threads: int = 1

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["val_identities"] = list(self.val_identities)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "AudioTrainOptions":
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if "val_identities" in d:
            d["val_identities"] = tuple(d["val_identities"])
        return cls(**d)


# ------------------------------------------------------------------------------------------ batches
@functools.lru_cache(maxsize=4)
def _noise_features(n_mels: int) -> np.ndarray:
    """Log-mel ``(2000, n_mels)`` of 20 s of faint white noise (-70 dBFS), computed once."""
    from .audio import HOP, log_mel

    noise = np.random.default_rng(0).normal(0, 10 ** (-70 / 20), 2000 * HOP).astype(np.float32)
    return log_mel(noise, n_mels).numpy().T[:2000]


def _silence_mel(clip: Clip, frames: int, rng: np.random.Generator) -> np.ndarray:
    """Features ``(frames, n_mels)`` of faint noise in ``clip``'s recording (its band means taken off): a pause."""
    bank = _noise_features(len(clip.cmn))
    start = int(rng.integers(0, len(bank) - frames + 1))
    return bank[start:start + frames] - clip.cmn


def make_batch(clips: list[Clip], opts: AudioTrainOptions, step: int, n_mels: int) -> dict[str, torch.Tensor]:
    """The windows of one step: ``mel`` ``(B, n_mels, W)``, ``target`` ``(B, W, 47, 2)``, ``mask`` ``(B, W)``.

    Depends only on ``(seed, step)``: clips are drawn in proportion to their length, windows start
    anywhere, shorter clips are padded with faint noise (masked out), the speaking rate changes by up to
    ``stretch``, the spectrum moves by up to ``band_shift`` mel bands, the gain by ``gain_db``, up to 6
    bands are blanked with ``band_mask``, and with ``silence_prob`` a stretch of 0.3-0.8 s becomes faint
    noise whose targets are the resting face at 25 fps."""
    rng = np.random.default_rng([opts.seed, step])
    w = opts.window
    lengths = np.array([len(c.mel) for c in clips], np.float64)
    mel = np.empty((opts.batch_size, w, n_mels), np.float32)
    target = np.zeros((opts.batch_size, w, len(EXPRESSION_POINTS), 2), np.float32)
    mask = np.zeros((opts.batch_size, w), bool)
    for b in range(opts.batch_size):
        c = clips[rng.choice(len(clips), p=lengths / lengths.sum())]
        stretch = float(rng.uniform(1 - opts.stretch, 1 + opts.stretch))  # speaking rate
        span = int(round(w * stretch))
        start = int(rng.integers(0, max(1, len(c.mel) - span + 1)))
        seg = c.mel[start:start + span]
        n = max(1, int(round(len(seg) / stretch)))  # feature frames of the window the segment fills
        pos = np.minimum(np.arange(n) * stretch, len(seg) - 1)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, len(seg) - 1)
        frac = (pos - lo)[:, None].astype(np.float32)
        mel[b] = _silence_mel(c, w, rng)
        mel[b, :n] = (seg[lo] * (1 - frac) + seg[hi] * frac)[:w]
        idx = np.round((c.index - start) / stretch).astype(int)
        ok = (c.index >= start) & (c.index < start + len(seg)) & (idx < min(n, w))
        target[b, idx[ok]] = c.targets[ok]
        mask[b, idx[ok]] = True
        if rng.random() < opts.silence_prob:
            k = min(int(rng.integers(30, 81)), w)
            s0 = int(rng.integers(0, max(1, w - k)))
            mel[b, s0:s0 + k] = _silence_mel(c, k, rng)
            target[b, s0:s0 + k] = 0.0
            mask[b, s0:s0 + k] = False
            mask[b, s0 + 8:s0 + k:4] = True  # 25 fps, after 80 ms for the mouth to close
        mel[b] += np.float32(rng.uniform(-opts.gain_db, opts.gain_db) / 10 * math.log(10))
        if opts.band_shift > 0:  # a longer or shorter vocal tract: the spectrum moves along the mel bands
            shift = rng.uniform(-opts.band_shift, opts.band_shift)
            src = np.clip(np.arange(n_mels) + shift, 0, n_mels - 1)
            l0 = np.floor(src).astype(int)
            l1 = np.minimum(l0 + 1, n_mels - 1)
            f = (src - l0).astype(np.float32)
            mel[b] = mel[b][:, l0] * (1 - f) + mel[b][:, l1] * f
        if rng.random() < opts.band_mask:
            width = int(rng.integers(1, 7))
            lo_band = int(rng.integers(0, n_mels - width + 1))
            mel[b, :, lo_band:lo_band + width] = 0.0  # the speech's mean there (the features are mean-normalised)
    return {"mel": torch.from_numpy(mel).transpose(1, 2).contiguous(), "target": torch.from_numpy(target),
            "mask": torch.from_numpy(mask)}


# ------------------------------------------------------------------------------------------ validation
@torch.no_grad()
def validate(model: Audio2Motion, clips: list[Clip], max_lag: int = 10) -> dict:
    """Per held-out clip: the correlation of predicted and real mouth opening at the landmark frames
    (mouth closed in pauses, :func:`~talkinghead.audio2motion.pause_gate`),
    the lag of the best cross-correlation (frames; > 0: the prediction is late), and their means."""
    from .audio2motion import pause_gate, predict_offsets
    from .evaluation.audio import lagged_correlation

    per = {}
    for c in clips:  # as animate --audio runs it: mouth closed in pauses
        off = predict_offsets(model, torch.from_numpy(c.mel.T.copy()), c.times, gate=pause_gate(c.db, c.times))
        pred = offset_opening(off)
        real = offset_opening(c.targets)
        r = lagged_correlation(pred, real, max_lag)
        per[c.name] = {"correlation": r["correlation"], "lag": r["lag"], "frames": len(c.times)}
    vals = [v["correlation"] for v in per.values() if v["correlation"] is not None]
    return {"clips": per, "mean_correlation": float(np.mean(vals)) if vals else None}


MAX_GAIN = 3.0  # the uncertain frames are not exaggerated beyond this


@torch.no_grad()
def calibrate_gain(model: Audio2Motion, clips: list[Clip], max_gain: float = MAX_GAIN) -> float:
    """The ``gain`` that makes the predicted mouth opening vary as much as the real one on ``clips``
    (the ratio of their standard deviations, with the model's gain at 1), at most ``max_gain``:
    correlations do not change, the motion's size does (the shipped model's ratio was 5.2, so 3)."""
    from .audio2motion import predict_offsets

    old = model.gain.clone()
    model.gain.fill_(1.0)
    pred = np.concatenate([offset_opening(predict_offsets(model, torch.from_numpy(c.mel.T.copy()), c.times))
                           for c in clips])
    real = np.concatenate([offset_opening(c.targets) for c in clips])
    model.gain.copy_(old)
    return float(min(max_gain, real.std() / max(pred.std(), 1e-6)))


# ------------------------------------------------------------------------------------------ the trainer
class _Stop:
    """SIGINT/SIGTERM: finish the step, checkpoint, stop."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        import threading

        self._old = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def _handler(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _lr(opts: AudioTrainOptions, step: int) -> float:
    if step < opts.warmup:
        return opts.lr * (step + 1) / opts.warmup
    p = (step - opts.warmup) / max(1, opts.steps - opts.warmup)
    return opts.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))


def _write_log(run_dir: Path, rows: list[dict]) -> None:
    keys = ["step", "time"] + sorted({k for r in rows for k in r} - {"step", "time"})
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, restval="")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(run_dir / "log.csv", buf.getvalue())


def train_audio(opts: AudioTrainOptions, resume: bool = False, progress: bool = True) -> Audio2Motion:
    """Train (or resume) a run; returns the network of the best validation step (also in ``RUN_DIR/model``).
    Runs on ``opts.threads`` CPU threads (the caller's setting is restored after)."""
    from .devices import torch_threads

    with torch_threads(opts.threads):
        return _train(opts, resume, progress)


def _train(opts: AudioTrainOptions, resume: bool, progress: bool) -> Audio2Motion:
    from .io import check_output_folder

    run_dir = check_output_folder(opts.run_dir, f"Cannot write the run to {opts.run_dir}", "choose another folder")
    data = AudioClips(opts.features, opts.val_identities)
    config = get_audio_config(opts.config, **{**opts.config_overrides, "n_mels": data.n_mels})
    weights = AudioLossWeights.from_dict(opts.loss_weights)
    torch.manual_seed(opts.seed)
    model = Audio2Motion(config)
    stats = data.stats()
    with torch.no_grad():
        model.feature_mean.copy_(torch.from_numpy(stats["feature_mean"]).float())
        model.feature_std.copy_(torch.from_numpy(stats["feature_std"]).float())
        model.offset_mean.copy_(torch.from_numpy(stats["offset_mean"]).float())
        model.basis.copy_(torch.from_numpy(stats["basis"][:config.n_components]).float())
    opt = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    ema = copy.deepcopy(model).eval()  # what is validated and exported
    step, best, rows, elapsed = 0, {"mean_correlation": -math.inf, "step": None}, [], 0.0
    record_path = run_dir / OPTIONS
    segments = []
    if resume and (run_dir / CHECKPOINT).is_file():
        state = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        step, elapsed = int(state["step"]), float(state["elapsed"])
        best = {"mean_correlation": float(state["best_correlation"]), "step": int(state["best_step"])}
        best["step"] = None if best["step"] < 0 else best["step"]
        if (run_dir / "log.csv").is_file():
            with open(run_dir / "log.csv", newline="", encoding="utf-8") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= step]
        if record_path.is_file():
            segments = json.loads(record_path.read_text(encoding="utf-8")).get("segments", [])
    elif (run_dir / CHECKPOINT).is_file():
        raise InputError(f"{run_dir} already holds a run: resume it, or choose a new folder.")
    segments.append({"start_step": step, "time": time.strftime("%Y-%m-%d %H:%M:%S")})
    record = {"options": opts.to_dict(), "model_config": config.to_dict(), "parameters": model.num_parameters(),
              "train_clips": [c.name for c in data.train], "val_clips": [c.name for c in data.val],
              "train_seconds": round(sum(len(c.mel) for c in data.train) / 100, 1),
              "val_seconds": round(sum(len(c.mel) for c in data.val) / 100, 1), "segments": segments}
    atomic_write_text(record_path, json.dumps(record, indent=1))

    def save() -> None:
        state = {"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(), "step": step,
                 "elapsed": elapsed, "best_correlation": best["mean_correlation"],
                 "best_step": -1 if best["step"] is None else best["step"]}
        with atomic_path(run_dir / CHECKPOINT) as tmp, open(tmp, "wb") as fh:
            torch.save(state, fh)
        if rows:
            _write_log(run_dir, rows)

    t0 = time.time() - elapsed
    with _Stop() as stop:
        while step < opts.steps and not stop.requested:
            model.train()
            for g in opt.param_groups:
                g["lr"] = _lr(opts, step)
            torch.manual_seed(opts.seed * 1_000_003 + step)  # dropout: a function of (seed, step)
            batch = make_batch(data.train, opts, step, data.n_mels)
            pred = model.offsets(model(batch["mel"]))
            loss, terms = audio_loss(pred, batch["target"], batch["mask"], weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            with torch.no_grad():
                for e, p in zip(ema.parameters(), model.parameters()):
                    e.lerp_(p, 1 - opts.ema)
            step += 1
            elapsed = time.time() - t0
            row = None
            if step % opts.log_every == 0 or step == opts.steps:
                row = {"step": step, "time": round(elapsed, 1), "lr": _lr(opts, step - 1), "loss": float(loss.detach()), **terms}
            if data.val and (step % opts.val_every == 0 or step == opts.steps):
                v = validate(ema, data.val)
                row = {**(row or {"step": step, "time": round(elapsed, 1)}), "val_correlation": v["mean_correlation"]}
                if v["mean_correlation"] is not None and v["mean_correlation"] > best["mean_correlation"]:
                    best = {"mean_correlation": v["mean_correlation"], "step": step}
                    ema.training_info = {"step": step, "seconds": round(elapsed, 1), "validation": v,
                                         "train_clips": record["train_clips"], "val_clips": record["val_clips"],
                                         "train_seconds": record["train_seconds"], "val_seconds": record["val_seconds"],
                                         "val_identities": list(opts.val_identities), "options": opts.to_dict()}
                    ema.gain.fill_(calibrate_gain(ema, data.train))
                    ema.training_info["gain"] = float(ema.gain)
                    ema.save_pretrained(run_dir / "model")
                save()
            if row is not None:
                rows.append(row)
                if progress:
                    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                          file=sys.stderr, flush=True)
        save()
    if not data.val:  # nothing to choose by: the last step is the model
        ema.gain.fill_(calibrate_gain(ema, data.train))
        ema.training_info = {"step": step, "seconds": round(elapsed, 1), "options": opts.to_dict(),
                             "gain": float(ema.gain)}
        ema.save_pretrained(run_dir / "model")
    from .audio2motion import load_audio_model

    return load_audio_model(run_dir / "model")

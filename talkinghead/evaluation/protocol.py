"""The paper's self-reenactment protocol on held-out clips, plus a cross-identity variant.

Self-reenactment (same person, as in the paper's tables): the first T frames of a clip are the few
shots; N evenly spaced frames after the first ``max(shots)`` frames (or ``test_from``) are the test
frames. Each test frame is cropped with its own crop from its own landmarks (``crop_from_landmarks``,
as the training data is), the personalised model generates it from its landmarks in that crop, and the
result is compared with the real crop. The baselines get the same few-shot crops and test landmarks.
The mouth region (a padded square around the lips of the real test frame's crop landmarks) is also
scored on its own, over the test frames whose mouth is open (``metrics.mouth_region_metrics``): where a
warp of a closed-mouth shot fails.

Cross-identity (puppeteering): a portrait is personalised and driven by the test frames' landmarks
(relative motion transfer); identity kept = CSIM to the portrait, motion followed = landmarks detected
on the output against the driver's.

Resuming: with ``work_dir``, the frames each (clip, T, mode) generated are kept there as soon as they
exist, under a fingerprint of the model's weights, the options and the clip; a rerun with the same
fingerprint reuses them instead of personalising again (fine-tuning is most of an evaluation's time).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import InputError, NoFaceError

MODES = ("ff", "ft")
MAX_SEED = 2**32 - 1
BASELINES = ("nearest-frame", "warp")
METHOD_LABELS = {"ff": "ours, FF", "ft": "ours, FT", "nearest-frame": "nearest few-shot frame",
                 "warp": "piecewise affine warp"}


@dataclass
class EvalOptions:
    """What to evaluate. ``frames``: test frames per clip; ``ft_steps``: fine-tuning steps (FT mode), all
    of them run (no early stop) so that results do not depend on when a noisy loss stalled;
    ``content``: the fine-tuning content loss (see ``TalkingHead.personalize``); ``test_from``: the first
    frame a test frame may be (at least ``max(shots)``, the default), so that runs with different
    ``shots`` (an FT run at 8 shots beside an FF run at 1, 8 and 32) score the same test frames."""

    shots: tuple[int, ...] = (1, 8, 32)
    modes: tuple[str, ...] = MODES
    frames: int = 32
    ft_steps: int = 40
    content: str = "auto"
    backend: str = "auto"
    baselines: bool = True
    lpips_net: str = "auto"
    samples: int = 4
    batch_size: int = 8
    seed: int = 0
    test_from: int | None = None

    def __post_init__(self) -> None:
        self.shots = tuple(sorted({int(t) for t in self.shots}))
        self.modes = tuple(dict.fromkeys(self.modes))
        if not self.shots or min(self.shots) < 1:
            raise InputError("shots (--shots) needs positive numbers of few-shot frames, such as 1 8 32.")
        bad = [m for m in self.modes if m not in MODES]
        if bad:
            raise InputError(f"Unknown mode {bad[0]!r} in modes (--modes): use ff (feed-forward) and/or ft (fine-tuned).")
        if self.frames < 1:
            raise InputError("frames (--frames) must be at least 1 test frame per clip.")
        if not 0 <= self.seed <= MAX_SEED:  # numpy's and torch's generators refuse negative seeds
            raise InputError(f"seed (--seed) must be an integer from 0 to {MAX_SEED}.")
        if self.test_from is not None and self.test_from < max(self.shots):
            raise InputError(f"test_from (--test-from) is {self.test_from}, before the last few-shot frame: use at "
                             f"least {max(self.shots)} (the largest --shots), so no shot is a test frame.")


@dataclass
class FrameSplit:
    """Which frames of a clip play which part: ``shots[T]`` (the first T frames) and ``test``."""

    num_frames: int
    shots: dict[int, list[int]]
    test: list[int]


def first_test_frame(shots: Sequence[int], test_from: int | None = None) -> int:
    """Where test frames start: ``test_from``, or ``max(shots)`` when it is None (or smaller)."""
    return max(max(shots), test_from or 0)


def split_frames(num_frames: int, shots: Sequence[int], num_test: int, what: str = "the clip",
                 test_from: int | None = None) -> FrameSplit:
    """Few-shot frames ``0..T-1`` for each T, and ``num_test`` evenly spaced test frames after them.

    Test frames lie in ``[test_from, num_frames)`` (``test_from`` defaults to, and may not be below,
    ``max(shots)``), so no few-shot frame is ever a test frame. Fewer test frames are returned when the
    clip is short (each frame at most once).
    """
    tmax = first_test_frame(shots, test_from)
    if num_frames <= tmax:
        raise InputError(f"{what} has {num_frames} frames, but {tmax} frames before the test frames plus at least "
                         f"one test frame are needed: use a longer clip, smaller --shots or a smaller --test-from.")
    num_test = min(num_test, num_frames - tmax)  # more than the free frames would only repeat them
    test = np.unique(np.round(np.linspace(tmax, num_frames - 1, num_test)).astype(int)) if num_test > 1 \
        else np.array([(tmax + num_frames - 1) // 2])
    return FrameSplit(int(num_frames), {int(t): list(range(int(t))) for t in shots}, [int(i) for i in test])


@dataclass
class Clip:
    """The frames of a clip the protocol needs, with their landmarks (None where no face was found)."""

    path: Path
    fps: float
    split: FrameSplit
    frames: dict[int, np.ndarray]
    landmarks: dict[int, np.ndarray | None]
    label: str = ""  # unique among the evaluated clips (see clip_labels); the file name by default

    @property
    def name(self) -> str:
        return self.label or self.path.name

    @property
    def key(self) -> str:
        """``name`` as one file name: for sample strips and kept frames."""
        return _file_key(self.name)

    def shot_indices(self, t: int) -> list[int]:
        """The few-shot frames of the T-shot set that have a face."""
        return [i for i in self.split.shots[t] if self.landmarks.get(i) is not None]

    @property
    def test_indices(self) -> list[int]:
        return [i for i in self.split.test if self.landmarks.get(i) is not None]


def _wanted(split: FrameSplit) -> Callable[[int], bool]:
    """Whether frame ``i`` is a few-shot or a test frame (a test, not a set: --shots may be huge)."""
    tmax, test = max(split.shots), set(split.test)
    return lambda i: i < tmax or i in test


def _decode(path: Path, wanted: Callable[[int], bool]) -> tuple[dict[int, np.ndarray], int, float]:
    from ..io import VideoReader

    frames, n = {}, 0
    with VideoReader(path) as reader:
        fps = reader.fps
        for n, frame in enumerate(reader, start=1):
            if wanted(n - 1):
                frames[n - 1] = frame
    return frames, n, fps


def check_clip_length(path: str | os.PathLike, shots: Sequence[int], test_from: int | None = None) -> int:
    """Open a clip and refuse it when its length (estimated from the container) is clearly below
    ``max(shots, test_from) + 1``, before anything is decoded; returns the estimate (0 when unknown)."""
    from ..io import VideoReader

    with VideoReader(path) as reader:
        estimate = reader.num_frames
    # the estimate from the duration can be a little off: refuse only when far too short
    if estimate and first_test_frame(shots, test_from) >= 1.5 * estimate + 10:
        split_frames(estimate, shots, 1, str(path), test_from)
    return estimate


def load_clip(path: str | os.PathLike, shots: Sequence[int], num_test: int, detector,
              test_from: int | None = None) -> Clip:
    """Decode only the frames the split needs (one pass; a second when the container's frame count was
    wrong) and detect the largest face in each. ``test_from``: as :func:`split_frames`."""
    path = Path(path)
    estimate = check_clip_length(path, shots, test_from)
    split = split_frames(max(estimate, first_test_frame(shots, test_from) + 1), shots, num_test, str(path), test_from)
    frames, n, fps = _decode(path, _wanted(split))
    if n != split.num_frames:  # the estimate from the duration was off: split again on the true count
        split = split_frames(n, shots, num_test, str(path), test_from)
        wanted = _wanted(split)
        if any(wanted(i) and i not in frames for i in range(n)):  # a needed frame was not kept
            frames, n, fps = _decode(path, wanted)
        frames = {i: f for i, f in frames.items() if wanted(i)}
    landmarks = {}
    for i in sorted(frames):
        faces = detector.detect(frames[i])
        landmarks[i] = faces[0].landmarks.astype(np.float32) if faces else None
    clip = Clip(path, fps, split, frames, landmarks)
    if not clip.shot_indices(min(shots)):
        raise NoFaceError(f"No face was found in the first {min(shots)} frame(s) of {path}: use a clip that "
                          "starts with a visible face.")
    if not clip.test_indices:
        raise NoFaceError(f"No face was found in any test frame of {path}: use a clip showing a face throughout.")
    return clip


def _crop(frame: np.ndarray, lm: np.ndarray, size: int):
    """``(crop uint8 (S,S,3), landmarks in crop pixels (68,2))`` with the frame's own crop."""
    from ..landmarks import crop_from_landmarks, crop_image, transform_landmarks

    c = crop_from_landmarks(lm, size)
    return crop_image(frame, c), transform_landmarks(lm, c)


def _detect_all(detector, images: Sequence[np.ndarray]) -> np.ndarray:
    """``(N, 68, 2)`` landmarks of the largest face in each image, NaN rows where none was found."""
    out = np.full((len(images), 68, 2), np.nan, np.float32)
    for i, img in enumerate(images):
        faces = detector.detect(img)
        if faces:
            out[i] = faces[0].landmarks
    return out


def _render(avatar, crop_lm: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([avatar.render(crop_lm[i:i + batch]) for i in range(0, len(crop_lm), batch)])


def _frame_metrics(gen, real, lm_gen, lm_real, detector_name: str, lpips_net: str,
                   mouth_lm: np.ndarray | None = None) -> dict[str, Any]:
    """``mouth_lm``: the real crops' landmarks that place the mouth region (``crop_lms``)."""
    from .. import metrics as M

    res = M.evaluate_frames(gen, real, lm_gen, lm_real, detector=detector_name, lpips_net=lpips_net,
                            mouth_landmarks=mouth_lm)
    out = {k: v.to_dict() for k, v in res.items()}
    out["akd"]["missing_share"] = out["akd"]["missing"] / max(1, out["akd"]["frames"])
    return out


@dataclass
class EvalResult:
    """Everything the report needs: JSON-able ``report`` and the sample strips' images."""

    report: dict[str, Any]
    samples: dict[str, list[tuple[np.ndarray, ...]]] = field(default_factory=dict)
    fid_sets: dict[str, tuple[list, list]] = field(default_factory=dict)


def _model_fingerprint(model) -> str:
    """SHA-1 of the config, the weights (names and bytes) and the fine-tuning settings the model brings:
    the same weights under another config (a "pa" instead of a "tps" warp_motion) are another model."""
    from ..pipeline import FINE_TUNE_LR

    h = hashlib.sha1()
    config = {k: v for k, v in model.model.config.to_dict().items() if k != "description"}
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, t in model.model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps([model.loss_weights, FINE_TUNE_LR], sort_keys=True).encode())
    return h.hexdigest()


def _unit_fingerprint(model_fp: str, opts: "EvalOptions", clip: "Clip", t: int, mode: str) -> str:
    st = clip.path.stat()
    ft = [opts.ft_steps, opts.seed, opts.content] if mode == "ft" else []  # FF depends on none of them
    key = [model_fp, mode, t, ft, opts.backend,
           str(clip.path.resolve()), st.st_size, st.st_mtime_ns, clip.shot_indices(t), clip.test_indices]
    return hashlib.sha1(json.dumps(key).encode()).hexdigest()


def _file_key(label: str) -> str:
    """A label (``id123/00001.mp4``) without its extension, as one file name (``id123__00001``)."""
    return str(Path(label).with_suffix("")).replace("/", "__")


def clip_labels(videos: Sequence[str | os.PathLike], what: str = "--videos") -> list[str]:
    """A unique label per clip: its file name, with as many parent folders as tell equal names apart
    (VoxCeleb-style ``id123/00001.mp4`` trees). Raises :class:`InputError` for a clip given twice."""
    paths = [Path(os.path.abspath(v)) for v in videos]
    seen: dict[Path, str] = {}
    for v, p in zip(videos, paths):
        if p in seen:
            raise InputError(f"{v} is given twice in {what} (also as {seen[p]}): give each file once.")
        seen[p] = str(v)
    labels = [p.name for p in paths]
    for depth in range(2, max((len(p.parts) for p in paths), default=0) + 1):
        dup = {x for x in labels if labels.count(x) > 1}
        if not dup:
            break
        labels = ["/".join(p.parts[-depth:]).lstrip("/") if x in dup else x for p, x in zip(paths, labels)]
    return labels


def check_sources(model, sources: Sequence[str | os.PathLike], backend: str) -> None:
    """Read each cross-identity portrait and find its face as personalisation will (NoFaceError otherwise)."""
    if sources:
        from ..pipeline import prepare_sources

        prepare_sources(list(sources), model.image_size, backend, device=str(model.device))


def _cached_frames(work_dir: Path | None, name: str, fingerprint: str) -> np.ndarray | None:
    path = work_dir / f"{name}.npz" if work_dir is not None else None
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return z["frames"] if str(z["fingerprint"]) == fingerprint else None
    except (OSError, KeyError, ValueError):  # a damaged file: compute again
        return None


def _keep_frames(work_dir: Path | None, name: str, fingerprint: str, frames: np.ndarray) -> None:
    from ..atomic import atomic_path

    if work_dir is None:
        return
    work_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(work_dir / f"{name}.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, frames=frames, fingerprint=np.array(fingerprint))


def evaluate(model, videos: Sequence[str | os.PathLike], options: EvalOptions | None = None,
             sources: Sequence[str | os.PathLike] = (), log: Callable[[str], None] | None = print,
             work_dir: str | os.PathLike | None = None) -> EvalResult:
    """Run the protocol with a loaded :class:`talkinghead.pipeline.TalkingHead` on held-out ``videos``.

    ``work_dir``: where generated frames are kept as they are made, so that an interrupted evaluation
    resumes where it stopped (``talkinghead eval`` uses ``REPORT_DIR/.partial``).
    Returns an :class:`EvalResult`; :func:`talkinghead.evaluation.write_report` writes it out.
    Raises :class:`InputError` / :class:`NoFaceError` naming a clip that cannot be used.
    """
    from .. import metrics as M
    from ..deps import require
    from ..landmarks import draw_landmarks, get_detector
    from ..pipeline import FINE_TUNE_LR
    from .baselines import nearest_shot, piecewise_affine_warp

    opts = options or EvalOptions()
    require("matplotlib.figure", "An evaluation's report (its plots)", import_it=True)  # now, not after the work
    show = log is not None  # progress bars too: a silent caller gets no output at all
    log = log or (lambda msg: None)
    size = model.image_size
    labels = clip_labels(videos)
    check_sources(model, sources, opts.backend)  # a portrait without a face fails now, not after every clip
    detector = get_detector(opts.backend).load()
    t_start = time.time()
    clips = []
    for v, label in zip(videos, labels):
        clips.append(load_clip(v, opts.shots, opts.frames, detector, opts.test_from))
        clips[-1].label = label
        log(f"{label}: {clips[-1].split.num_frames} frames, {len(clips[-1].test_indices)} test frames")
    work = Path(work_dir) if work_dir is not None else None
    model_fp = _model_fingerprint(model) if work is not None else ""
    methods = list(opts.modes) + (list(BASELINES) if opts.baselines else [])
    result = EvalResult(report={})
    rows: dict[tuple[str, int], list[dict]] = {(m, t): [] for m in methods for t in opts.shots}
    pooled: dict[tuple[str, int], dict[str, list]] = {}
    for clip in clips:
        test = clip.test_indices
        reals, crop_lms = zip(*(_crop(clip.frames[i], clip.landmarks[i], size) for i in test))
        reals, crop_lms = np.stack(reals), np.stack(crop_lms)
        lm_real = _detect_all(detector, reals)
        marks = [draw_landmarks(lm, size) for lm in crop_lms[:opts.samples]]
        for t in opts.shots:
            shot_idx = clip.shot_indices(t)
            shot_frames = [clip.frames[i] for i in shot_idx]
            outputs: dict[str, np.ndarray] = {}
            for mode in opts.modes:
                unit = f"{clip.key}_{mode}_T{t}"
                fp = _unit_fingerprint(model_fp, opts, clip, t, mode) if work is not None else ""
                kept = _cached_frames(work, unit, fp)
                if kept is not None:
                    outputs[mode] = kept
                    log(f"{clip.name}: {mode.upper()} T={t}: frames from the interrupted run ({work})")
                    continue
                t0 = time.time()
                if mode == "ft":  # minutes on a CPU: say what runs (the bar follows)
                    log(f"{clip.name}: FT T={t}: fine-tuning {opts.ft_steps} steps ...")
                avatar = model.personalize(shot_frames, fine_tune_steps=opts.ft_steps if mode == "ft" else 0,
                                           backend=opts.backend, progress=show and mode == "ft", seed=opts.seed,
                                           patience=0, content=opts.content)
                outputs[mode] = _render(avatar, crop_lms, opts.batch_size)
                _keep_frames(work, unit, fp, outputs[mode])
                log(f"{clip.name}: {mode.upper()} T={t}: personalised and rendered in {time.time() - t0:.1f} s")
            if opts.baselines:
                shots_c = [_crop(clip.frames[i], clip.landmarks[i], size) for i in shot_idx]
                shot_lm = np.stack([lm for _, lm in shots_c])
                near = [nearest_shot(shot_lm, lm) for lm in crop_lms]
                outputs["nearest-frame"] = np.stack([shots_c[k][0] for k in near])
                outputs["warp"] = np.stack([piecewise_affine_warp(shots_c[k][0], shots_c[k][1], lm)
                                            for k, lm in zip(near, crop_lms)])
            for method, gen in outputs.items():
                lm_gen = _detect_all(detector, gen)
                m = _frame_metrics(gen, reals, lm_gen, lm_real, detector.name, opts.lpips_net, crop_lms)
                rows[(method, t)].append({"video": clip.name, "shots_used": len(shot_idx), **m})
                acc = pooled.setdefault((method, t), {"real": [], "gen": []})
                acc["real"].extend(reals)
                acc["gen"].extend(gen)
                result.samples[f"{clip.key}_{method}_T{t}"] = [
                    (reals[j], gen[j], marks[j]) for j in range(min(opts.samples, len(gen)))]
    fid_ok, fid_reason = M.fid_available()
    table = []
    backbones: dict[str, str] = {}
    for (method, t), per_clip in rows.items():
        entry: dict[str, Any] = {"method": method, "label": METHOD_LABELS[method], "shots": t}
        for key in ("ssim", "lpips", "csim", "akd", "mouth_lpips", "mouth_ssim"):
            # pooled over frames: a closed-mouth frame's mouth values are NaN and do not count
            vals = [v for r in per_clip for v in r[key]["per_item"]]
            arr = np.asarray(vals, np.float64)
            entry[key] = float(arr[np.isfinite(arr)].mean()) if np.isfinite(arr).any() else None
            if not key.startswith("mouth_"):
                backbones[key] = per_clip[0][key]["backbone"]
        entry["mouth_open_frames"] = sum(r["mouth_lpips"]["mouth_open_frames"] for r in per_clip)
        frames_total = sum(r["akd"]["frames"] for r in per_clip)
        entry["akd_no_face_share"] = sum(r["akd"]["missing"] for r in per_clip) / max(1, frames_total)
        entry["csim_no_face_share"] = sum(sum(r["csim"]["no_face"]) for r in per_clip) / max(1, frames_total)
        entry["test_frames"] = frames_total
        entry["fid"] = None
        if fid_ok and frames_total >= 2:
            entry["fid"] = M.fid(pooled[(method, t)]["real"], pooled[(method, t)]["gen"]).value
        entry["per_clip"] = [_clip_row(r) for r in per_clip]
        table.append(entry)
    backbones["fid"] = "inception-v3-pool3-2048" if fid_ok else f"not available: {fid_reason}"
    report: dict[str, Any] = {
        "protocol": "self-reenactment",
        "protocol_text": ("Self-reenactment of held-out clips (same person): the first T frames are the few shots; "
                          f"up to {opts.frames} evenly spaced frames after the first "
                          f"{first_test_frame(opts.shots, opts.test_from)} frames are "
                          "driven by their own landmarks, each cropped with its own per-frame crop, and compared "
                          "with the real crops. Means are over all test frames of all clips."),
        "model": model.name, "config": model.config.to_dict(), "image_size": size,
        "options": {"shots": list(opts.shots), "modes": list(opts.modes), "frames": opts.frames,
                    "ft_steps": opts.ft_steps, "ft_early_stop": False, "ft_lr": FINE_TUNE_LR,
                    "ft_loss_weights": model.loss_weights or "the paper's", "content": opts.content,
                    "backend": detector.name, "baselines": opts.baselines, "seed": opts.seed,
                    "test_from": first_test_frame(opts.shots, opts.test_from)},
        "backbones": backbones,
        "clips": [{"video": str(c.path), "name": c.name, "fps": c.fps, "num_frames": c.split.num_frames,
                   "shot_frames": {str(t): c.shot_indices(t) for t in opts.shots},
                   "shot_frames_without_face": {str(t): len(c.split.shots[t]) - len(c.shot_indices(t)) for t in opts.shots},
                   "test_frames": c.test_indices,
                   "test_frames_without_face": len(c.split.test) - len(c.test_indices)} for c in clips],
        "mouth_region": {
            "text": (f"Mouth region: a square around the lips (iBUG 48-67) of the real test frame's crop landmarks, "
                     f"padded by {M.MOUTH_REGION_PAD:.0%} of the mouth width on each side, clipped to the crop, cut "
                     f"from both frames and resized to {M.MOUTH_REGION_SIZE} px; mouth LPIPS (backbone "
                     f"{backbones.get('lpips', 'n/a')}) and SSIM are over the test frames whose mouth is open "
                     f"(inner-lip gap / mouth width > {M.MOUTH_OPEN_THRESHOLD:g}), counted in 'mouth-open frames': "
                     "there teeth and the inside of the mouth must be made, which a closed-mouth shot does not show."),
            "threshold": M.MOUTH_OPEN_THRESHOLD, "pad": M.MOUTH_REGION_PAD, "size": M.MOUTH_REGION_SIZE,
            "lpips_backbone": backbones.get("lpips"), "ssim_backbone": backbones.get("ssim"),
            "landmarks": "the real test frame's crop landmarks (those that drive the generation)"},
        "results": table,
    }
    if sources:
        report["cross_identity"] = _cross_identity(model, clips, sources, opts, detector, result, log, show)
    report["seconds"] = round(time.time() - t_start, 1)
    result.report = report
    return result


def _clip_row(r: dict) -> dict:
    """One clip's means; its mouth values are None when none of its test frames has an open mouth."""
    return {"video": r["video"], "shots_used": r["shots_used"], "ssim": _num(r["ssim"]["value"]),
            "lpips": _num(r["lpips"]["value"]), "csim": _num(r["csim"]["value"]), "akd": _num(r["akd"]["value"]),
            "mouth_lpips": _num(r["mouth_lpips"]["value"]), "mouth_ssim": _num(r["mouth_ssim"]["value"]),
            "mouth_open_frames": r["mouth_lpips"]["mouth_open_frames"],
            "akd_no_face_share": r["akd"]["missing_share"], "frames": r["akd"]["frames"]}


def _num(x) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _cross_identity(model, clips: list[Clip], sources, opts: EvalOptions, detector, result: EvalResult, log,
                    show: bool = False) -> dict:
    """Each portrait driven by each clip's test frames; identity to the portrait, motion to the driver."""
    from .. import metrics as M
    from ..landmarks import transform_landmarks
    from ..motion import transfer_motion

    rows = []
    # unique like the clips' labels: two portraits called mona.jpg in different folders keep their strips
    labels = clip_labels(sources, "--sources") if sources else []
    for src, label in zip(sources, labels):
        src_key = _file_key(label)
        for mode in opts.modes:
            if mode == "ft":
                log(f"cross-identity {label}: fine-tuning {opts.ft_steps} steps ...")
            avatar = model.personalize([src], fine_tune_steps=opts.ft_steps if mode == "ft" else 0, patience=0,
                                       backend=opts.backend, progress=show and mode == "ft", seed=opts.seed,
                                       content=opts.content)
            src_crop = avatar.source.crop_and_landmark_image(model.image_size)[0]
            for clip in clips:
                drv = np.stack([clip.landmarks[i] for i in clip.test_indices])
                lm = transfer_motion(avatar.source.landmarks, drv, mode="relative", reference="first")
                gen = _render(avatar, transform_landmarks(lm, avatar.source.crop), opts.batch_size)
                lm_gen = _detect_all(detector, gen)
                ident = M.csim(gen, np.repeat(src_crop[None], len(gen), 0))
                motion = M.relative_motion_distance(lm_gen, drv, detector=detector.name)
                mouth = M.opening_correlation(lm_gen, drv, "mouth", detector.name)
                eye = M.opening_correlation(lm_gen, drv, "eye", detector.name)
                rows.append({"source": str(src), "video": clip.name, "mode": mode, "frames": len(gen),
                             "csim_to_source": _num(ident.value),
                             "relative_motion_distance": _num(motion.value),
                             "mouth_opening_correlation": _num(mouth.value),
                             "eye_opening_correlation": _num(eye.value),
                             "no_face_share": float(np.mean(~np.isfinite(lm_gen).all(axis=(1, 2))))})
                result.samples[f"cross_{src_key}_{clip.key}_{mode}"] = [
                    (clip.frames[i], gen[j], src_crop) for j, i in enumerate(clip.test_indices[:opts.samples])]
                log(f"cross-identity {label} <- {clip.name} ({mode.upper()}): CSIM {rows[-1]['csim_to_source']}")
    return {"protocol": "cross-identity (puppeteering): a portrait driven by the clip's test frames, relative motion",
            "backbones": {"csim_to_source": M.CSIM_BACKBONE + "-5pt", "motion": detector.name},
            "rows": rows}

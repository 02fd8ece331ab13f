"""Audio-driven sync: each held-out clip's own audio predicts its mouth, compared with its real track.

For every clip with an audio track, the real landmarks are tracked (dlib by default) and put in the
upright face frame (:func:`talkinghead.audio2motion.upright`); the clip's resting face
(:func:`~talkinghead.audio2motion.rest_shape`) is what every method moves, so only the motion differs:

- ``audio2motion``: the model on the clip's audio, as ``animate --audio`` runs it (mouth closed in pauses);
- ``audio2motion (no pause gate)``: the network alone;
- ``talk preset``: the ``talk`` motion preset (random syllables at ~4 Hz), same length and fps;
- ``mean motion``: a model that ignores the audio: the training set's mean offsets, every frame;
- ``loudness``: no learning, but the audio: the mean offsets scaled by each frame's loudness (between its
  10th and 95th percentile over the speech, 0 in pauses). How far a clip's mouth follows its sound at all.

Per method and clip: the Pearson correlation of the predicted and the real mouth opening
(:func:`talkinghead.metrics.mouth_opening`, frame by frame), the lag of the best cross-correlation
within +-``max_lag`` frames (> 0: the prediction is late) and the correlation there, and the mouth's
landmark distance (mean over frames and the 20 lip points, in face sizes). A constant prediction (mean
motion) has no correlation (``None``, counted as 0 when methods are compared).

Silence: the clip's audio with ``silence_seconds`` of digital silence put in its middle drives the
resting face through the whole audio path; the share of the silent second's frames whose mouth opening
is at or below the resting face's (within :data:`SILENCE_TOLERANCE` face sizes) is reported.
A clip whose audio track is silence only is listed with the reason, and its silent audio is used for
that check alone.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path, atomic_paths
from ..errors import InputError

__all__ = ["AudioEvalOptions", "lagged_correlation", "loudness_level", "evaluate_audio", "write_audio_report",
           "audio_markdown", "METHODS", "SILENCE_TOLERANCE"]

METHODS = ("audio2motion", "audio2motion (no pause gate)", "talk preset", "mean motion", "loudness")
SILENCE_TOLERANCE = 1e-3  # face sizes: "at or below the resting opening"
BARS = {"clip_correlation": 0.5, "mean_correlation": 0.6, "max_lag": 2, "silence_closed": 0.95}


@dataclass
class AudioEvalOptions:
    backend: str = "dlib"
    max_lag: int = 10
    seed: int = 0
    silence_seconds: float = 1.0


def lagged_correlation(pred: np.ndarray, real: np.ndarray, max_lag: int = 10) -> dict[str, Any]:
    """Correlation of two series at lag 0 and at the lag (``|lag| <= max_lag``) where it is highest.

    ``lag > 0`` means ``pred`` is late (``pred[t + lag]`` matches ``real[t]``). Values are ``None`` where a
    series is constant or too short."""
    a, b = np.asarray(pred, np.float64), np.asarray(real, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = np.where(ok, a, np.nan), np.where(ok, b, np.nan)

    def corr(x, y):
        m = np.isfinite(x) & np.isfinite(y)
        if m.sum() < 3 or np.nanstd(x[m]) < 1e-9 or np.nanstd(y[m]) < 1e-9:
            return None
        return float(np.corrcoef(x[m], y[m])[0, 1])

    out: dict[str, Any] = {"correlation": corr(a, b), "lag": None, "best_correlation": None}
    n = len(a)
    best = None
    for lag in range(-max_lag, max_lag + 1):
        if abs(lag) >= n - 2:
            continue
        c = corr(a[lag:], b[:n - lag]) if lag >= 0 else corr(a[:n + lag], b[-lag:])
        if c is not None and (best is None or c > best[0] or (c == best[0] and abs(lag) < abs(best[1]))):
            best = (c, lag)
    if best is not None:
        out["best_correlation"], out["lag"] = best
    return out


def _scores(pred_up: np.ndarray, real_up: np.ndarray, max_lag: int) -> dict[str, Any]:
    from ..audio2motion import MOUTH_POINTS
    from ..metrics import mouth_opening

    po, ro = mouth_opening(pred_up), mouth_opening(real_up)
    r = lagged_correlation(po, ro, max_lag)
    per_frame = np.linalg.norm(pred_up[:, MOUTH_POINTS] - real_up[:, MOUTH_POINTS], axis=-1).mean(-1)
    ok = np.isfinite(per_frame)  # frames where the clip's face was not found have no real mouth
    dist = float(per_frame[ok].mean()) if ok.any() else None
    return {**r, "mouth_distance": dist, "opening": [round(float(x), 4) for x in po]}


def loudness_level(samples: np.ndarray, times: np.ndarray, activity: np.ndarray) -> np.ndarray:
    """``(T,)`` in [0, 1]: the loudness (dBFS, :func:`~talkinghead.audio.frame_dbfs`) of ``samples`` at ``times``,
    from its 10th to its 95th percentile over the frames where ``activity (T,)`` says there is speech, times
    ``activity`` (0 in pauses)."""
    from ..audio import FEATURE_RATE, frame_dbfs

    db = frame_dbfs(samples).astype(np.float64)
    at = np.interp(np.asarray(times, np.float64) * FEATURE_RATE, np.arange(len(db)), db)
    speech = at[activity > 0.5] if (activity > 0.5).any() else at
    lo, hi = np.percentile(speech, [10, 95])
    return np.clip((at - lo) / max(hi - lo, 1e-6), 0.0, 1.0) * activity


def _track(video: Path, label: str, opts: AudioEvalOptions, work_dir: Path | None):
    """``(landmarks (T, 68, 2), fps)`` of the clip, kept in ``work_dir`` between runs."""
    from ..landmarks import track_video

    cached = work_dir / (label.replace("/", "__").rsplit(".", 1)[0] + ".npz") if work_dir is not None else None
    if cached is not None and cached.is_file():
        with np.load(cached, allow_pickle=False) as d:
            return d["landmarks"], float(d["fps"])
    tr = track_video(video, backend=opts.backend, smooth=True, allow_gaps=True)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cached) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, landmarks=tr.landmarks, fps=np.float64(tr.fps))
    return tr.landmarks, float(tr.fps)


def _silence_check(net, rest_px: np.ndarray, samples: np.ndarray, fps: float, seconds: float) -> dict[str, Any]:
    """The share of a silent stretch's frames whose opening is at or below the resting face's."""
    from ..audio import SAMPLE_RATE
    from ..audio2motion import audio_motion
    from ..metrics import mouth_opening

    mid = len(samples) // 2
    n = int(round(seconds * SAMPLE_RATE))
    audio = np.concatenate([samples[:mid], np.zeros(n, np.float32), samples[mid:]])
    track, _ = audio_motion(rest_px, audio, fps, head_motion="natural", model=net)
    a, b = int(math.ceil(mid / SAMPLE_RATE * fps)), int((mid + n) / SAMPLE_RATE * fps)
    opening = mouth_opening(track[a:b])
    rest = float(mouth_opening(rest_px)[0])
    return {"frames": int(b - a), "closed_fraction": float(np.mean(opening <= rest + SILENCE_TOLERANCE)),
            "max_opening": float(opening.max()), "rest_opening": rest}


def evaluate_audio(videos, model="audio2motion", opts: AudioEvalOptions | None = None,
                   work_dir: str | os.PathLike | None = None, progress: bool = True) -> dict[str, Any]:
    """The sync protocol (module docstring) on ``videos``; returns the report as a dict."""
    from ..audio import (SAMPLE_RATE, check_audio, frame_count, normalise_loudness, probe_audio, read_audio,
                         speech_features)
    from ..audio2motion import (EXPRESSION_POINTS, load_audio_model, predict_offsets, rest_shape, speech_activity,
                                upright)
    from ..metrics import mouth_opening
    from ..motion import preset_motion
    from .protocol import clip_labels

    opts = opts or AudioEvalOptions()
    net = load_audio_model(model)
    work = Path(work_dir) if work_dir is not None else None
    clips = []
    for video, label in zip(map(Path, videos), clip_labels(videos)):
        entry: dict[str, Any] = {"label": label.rsplit(".", 1)[0], "video": str(video)}
        if not probe_audio(video).has_audio:
            clips.append({**entry, "status": f"{video} has no audio track"})
            continue
        silent = None
        try:
            samples = check_audio(video)
        except InputError as exc:  # silence only: no sync to measure, but a silence check to make
            silent, samples = str(exc), read_audio(video)
        lm, fps = _track(video, label, opts, work)
        real_up = upright(lm)
        rest = rest_shape(real_up)
        rest_px = (rest * 100 + 300).astype(np.float32)  # the resting face as a 100 px-sized source
        entry.update(fps=fps, frames=len(lm), seconds=round(len(samples) / SAMPLE_RATE, 3))
        entry["silence"] = _silence_check(net, rest_px, samples, fps, opts.silence_seconds)
        if silent is not None:
            clips.append({**entry, "status": silent})
            if progress:
                print(f"{entry['label']}: {silent}")
            continue
        n = len(lm)
        times = np.arange(n) / fps
        mel = speech_features(samples, net.config.n_mels)
        levelled = normalise_loudness(samples)
        activity = speech_activity(levelled, times)
        loud = loudness_level(levelled, times, activity)

        def place(offsets):
            out = np.repeat(rest[None], len(offsets), axis=0)
            out[:, EXPRESSION_POINTS] += offsets
            return out

        talk = preset_motion(rest_px, "talk", seconds=n / fps, fps=fps, seed=opts.seed)
        talk = np.concatenate([talk, np.repeat(talk[-1:], max(0, n - len(talk)), axis=0)])[:n]
        mean = net.offset_mean.detach().cpu().numpy().reshape(1, len(EXPRESSION_POINTS), 2)
        preds = {
            "audio2motion": place(predict_offsets(net, mel, times, gate=activity)),
            "audio2motion (no pause gate)": place(predict_offsets(net, mel, times)),
            "talk preset": upright(talk),
            "mean motion": place(np.repeat(mean, n, axis=0)),
            "loudness": place(mean * (loud / max(float(loud.mean()), 1e-6))[:, None, None]),
        }
        entry["status"] = "ok"
        entry["frame_count_check"] = {"audio_frames": frame_count(len(samples), fps), "video_frames": n}
        entry["real_opening"] = [round(float(x), 4) for x in mouth_opening(real_up)]
        entry["methods"] = {k: _scores(v, real_up, opts.max_lag) for k, v in preds.items()}
        clips.append(entry)
        if progress:
            s = entry["methods"]
            print(f"{entry['label']}: " + ", ".join(f"{k} r={_fmt(v['correlation'])} lag={v['lag']}" for k, v in s.items()))
    return _summarise(clips, opts, net)


def _fmt(x, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def _summarise(clips: list[dict], opts: AudioEvalOptions, net) -> dict[str, Any]:
    scored = [c for c in clips if c.get("status") == "ok"]
    summary = {}
    for m in METHODS:
        rs = [c["methods"][m]["correlation"] for c in scored]
        summary[m] = {
            "mean_correlation": float(np.mean([r or 0.0 for r in rs])) if rs else None,
            "min_correlation": float(min(r or 0.0 for r in rs)) if rs else None,
            "max_abs_lag": max((abs(c["methods"][m]["lag"]) for c in scored if c["methods"][m]["lag"] is not None),
                               default=None),
            "mean_mouth_distance": float(np.mean(ds)) if (ds := [d for c in scored if (
                d := c["methods"][m]["mouth_distance"]) is not None]) else None,
        }
    silence = [c["silence"]["closed_fraction"] for c in clips if "silence" in c]
    main = summary[METHODS[0]]
    bars = {
        "clip_correlation": bool(scored) and main["min_correlation"] >= BARS["clip_correlation"],
        "mean_correlation": bool(scored) and main["mean_correlation"] >= BARS["mean_correlation"],
        "lag": main["max_abs_lag"] is not None and main["max_abs_lag"] <= BARS["max_lag"],
        "baselines_below": bool(scored) and all(summary[m]["mean_correlation"] < main["mean_correlation"] - 0.1
                                                for m in ("talk preset", "mean motion")),
        "silence": bool(silence) and min(silence) >= BARS["silence_closed"],
    }
    return {"protocol": "audio-driven sync: each clip's own audio predicts its mouth (upright face frame, the "
                        "clip's resting face moved by each method), compared with its tracked landmarks",
            "options": asdict(opts), "model": {"parameters": net.num_parameters(), "config": net.config.to_dict(),
                                               "training": {k: net.training_info.get(k) for k in ("step", "seconds")}},
            "bars": BARS, "passed": bars, "summary": summary, "clips": clips}


def audio_markdown(report: dict[str, Any]) -> str:
    lines = ["# Audio-driven sync", "", report["protocol"] + ".", "",
             f"Landmarks: {report['options']['backend']}; lag searched within +-{report['options']['max_lag']} frames "
             "(> 0: the prediction is late); mouth distance in face sizes (stable-point spread). A constant "
             "prediction has no correlation (n/a, counted as 0 in the means).", "",
             "| clip | method | correlation ↑ | best lag | r at best lag | mouth distance ↓ |",
             "|---|---|---|---|---|---|"]
    for c in report["clips"]:
        if c.get("status") != "ok":
            lines.append(f"| {c['label']} | (not scored: {c['status']}) | | | | |")
            continue
        for m, s in c["methods"].items():
            lines.append(f"| {c['label']} | {m} | {_fmt(s['correlation'])} | {s['lag'] if s['lag'] is not None else 'n/a'} "
                         f"| {_fmt(s['best_correlation'])} | {_fmt(s['mouth_distance'])} |")
    lines += ["", "| method | mean correlation | lowest clip | largest abs. lag | mean mouth distance |", "|---|---|---|---|---|"]
    for m, s in report["summary"].items():
        lines.append(f"| {m} | {_fmt(s['mean_correlation'])} | {_fmt(s['min_correlation'])} | "
                     f"{'n/a' if s['max_abs_lag'] is None else s['max_abs_lag']} | {_fmt(s['mean_mouth_distance'])} |")
    lines += ["", "Silence (the clip's audio with a silent second in its middle, through the whole audio path):", "",
              "| clip | frames | at or below the resting opening | largest opening | resting opening |", "|---|---|---|---|---|"]
    for c in report["clips"]:
        if "silence" in c:
            s = c["silence"]
            lines.append(f"| {c['label']} | {s['frames']} | {s['closed_fraction']:.0%} | {s['max_opening']:.3f} | "
                         f"{s['rest_opening']:.3f} |")
    b = report["bars"]
    lines += ["", f"Bars: correlation >= {b['clip_correlation']} per clip and >= {b['mean_correlation']} in the mean, "
              f"|lag| <= {b['max_lag']} frames, baselines clearly below (0.1 lower mean), silence closed in >= "
              f"{b['silence_closed']:.0%} of frames.", "",
              "| bar | met |", "|---|---|"] + [f"| {k} | {'yes' if v else 'no'} |" for k, v in report["passed"].items()]
    return "\n".join(lines) + "\n"


def _plot(report: dict[str, Any]) -> bytes:
    import io

    from matplotlib.figure import Figure

    scored = [c for c in report["clips"] if c.get("status") == "ok"]
    fig = Figure(figsize=(10, 2.4 * max(1, len(scored))))
    for i, c in enumerate(scored):
        ax = fig.add_subplot(max(1, len(scored)), 1, i + 1)
        t = np.arange(len(c["real_opening"])) / c["fps"]
        ax.plot(t, c["real_opening"], color="black", lw=1.2, label="real")
        ax.plot(t, c["methods"]["audio2motion"]["opening"], color="tab:red", lw=1.0, label="audio2motion")
        ax.plot(t, c["methods"]["talk preset"]["opening"], color="tab:gray", lw=0.8, alpha=0.7, label="talk preset")
        r = c["methods"]["audio2motion"]["correlation"]
        ax.set_title(f"{c['label']}: r = {_fmt(r)}", fontsize=9)
        ax.set_ylabel("mouth opening")
        if i == 0:
            ax.legend(loc="upper right", fontsize=8)
    if scored:
        fig.axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def write_audio_report(report: dict[str, Any], out_dir: str | os.PathLike) -> dict[str, Any]:
    """``report.json``, ``report.md`` and ``opening.png`` (real vs predicted mouth opening) in ``out_dir``."""
    from ..io import check_output_folder

    out = check_output_folder(out_dir, f"-o {out_dir}", "choose a folder for the report")
    report = {**report, "files": {"json": "report.json", "markdown": "report.md", "plot": "opening.png"}}
    with atomic_paths([out / "report.json", out / "report.md", out / "opening.png"], name=out) as (j, m, p):
        j.write_text(json.dumps(report, indent=1), encoding="utf-8")
        m.write_text(audio_markdown(report), encoding="utf-8")
        p.write_bytes(_plot(report))
    return report

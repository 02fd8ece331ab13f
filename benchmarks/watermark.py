"""Watermark benchmark: robustness table, false positives on real clips, the null distribution, PSNR and speed.

Marks real frames from ``<data>/eval/driving`` (native size), applies each transformation of issue 8
and counts detections frame by frame, and per clip where the detector folds the frames of a video
together: H.264 at CRF 28, H.264 at CRF 28 after a half-scale resize (issue 17: the usual re-upload),
and a crop with a half-scale resize.

False positives, unmarked, at two levels:

- per frame: ``fp-frames`` frames sampled from every clip in ``<data>`` (train and eval) and the portraits,
  each detected alone;
- per clip, as ``talkinghead verify`` decides: ``verify_file`` on every real clip (up to 64 frames
  folded together) and every portrait.

The null distribution: every (scale, sync offset) test of the per-frame false-positive run gives a score
``D``; its empirical mean, spread and tail are compared with the theoretical null that the detection
threshold is computed from (``watermark.null_survival``).

Speed: best of several calls at three frame sizes, with a reference operation (a Gaussian blur of a
1080p float plane) timed in the same run, so that runs on busier or faster machines compare by ratio.

Writes ``benchmarks/results/watermark.json``.

    python benchmarks/watermark.py [--data ../shared/data] [--frames 16] [-o benchmarks/results/watermark.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BOTH = "H.264 CRF 28 + downscale 1/2"


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / mse))


def _transforms():
    import cv2

    def crop10(x):
        h, w = x.shape[:2]
        return x[h // 10:h - h // 10, w // 10:w - w // 10]

    def half(x):
        return cv2.resize(x, (x.shape[1] // 2, x.shape[0] // 2), interpolation=cv2.INTER_AREA)

    def gain(f):
        return lambda x: np.clip(x.astype(np.float32) * f + 0.5, 0, 255).astype(np.uint8)

    return {"none": lambda x: x, "crop 10% border": crop10, "downscale 1/2": half,
            "brightness +10%": gain(1.1), "brightness -10%": gain(0.9),
            "crop 10% + downscale 1/2": lambda x: half(crop10(x))}


def _sample(path, k, limit=250):
    from talkinghead import io

    with io.VideoReader(path, max_frames=limit) as r:
        frames = list(r)
    idx = np.linspace(0, len(frames) - 1, min(k, len(frames))).round().astype(int)
    return [frames[i] for i in idx]


def _h264(frames, crf, tmp):
    from talkinghead import io

    out = Path(tmp) / "crf.mp4"
    io.write_video(out, frames, fps=25, crf=crf)
    with io.VideoReader(out) as r:
        return list(r)


def _test_scores(W, rgb):
    """Every (scale, sync offset) test that detection makes on one frame: (score D = sum of the symbols'
    best correlations, whether one of the words tried has a matching check character)."""
    planes = W._Planes(W._luma(rgb))
    tests = []
    for s in W.DEFAULT_SCALES:
        fold = W._fold(planes.prepared(s))
        for dy, dx, _ in W._sync_peaks(fold):
            x = W._elements(fold, dy, dx)
            corr, _ = W._read_symbols(x)
            tests.append((float(corr.max(axis=1).sum()), W._decide(x)[0] is not None))
    return tests


def _null_report(W, tests):
    """The tests' scores against the theoretical null that the threshold is computed from."""
    grid, survival = W._null_survival()
    density = -np.diff(survival, append=0.0)
    mean = float((grid * density).sum())
    std = float(np.sqrt(((grid - mean) ** 2 * density).sum()))
    scores = np.asarray([t[0] for t in tests])
    matched = np.asarray([t[1] for t in tests])
    tail = {}
    for p in (1e-2, 1e-3, 1e-4):
        q = float(grid[int(np.argmax(survival <= p))])
        tail[f"above the null's 1-{p:g} quantile ({q:.2f})"] = {
            "observed": int((scores >= q).sum()), "expected": round(p * len(scores), 1)}
    worst = float(scores.max())
    return {"tests": int(len(scores)), "mean": round(float(scores.mean()), 3), "std": round(float(scores.std()), 3),
            "null_mean": round(mean, 3), "null_std": round(std, 3), "max": round(worst, 2),
            "max_null_probability": float(f"{W.null_survival(worst):.3g}"), **tail,
            "check_matched": {"observed": round(float(matched.mean()), 4),
                              "expected": round(W._CANDIDATE_WORDS / W.SYMBOL_SIZE, 4)},
            "threshold": round(W.detection_threshold(), 2)}


def _timeit(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--frames", type=int, default=16, help="marked frames per eval clip")
    ap.add_argument("--fp-frames", type=int, default=8, help="unmarked frames per clip for false positives")
    ap.add_argument("--fp-video-frames", type=int, default=64,
                    help="frames per clip folded together by verify_file for the clip-level false positives")
    ap.add_argument("-o", "--out", type=Path, default=REPO / "benchmarks" / "results" / "watermark.json")
    args = ap.parse_args(argv)

    import cv2
    from talkinghead import io
    from talkinghead import watermark as W
    from talkinghead.atomic import atomic_write_text

    t_start = time.time()
    wm = W.Watermarker.for_model("cpu-256")
    clips = sorted((args.data / "eval" / "driving").glob("*.mp4"))
    if not clips:
        print(f"no clips in {args.data}/eval/driving: pass --data", file=sys.stderr)
        return 2
    tf = _transforms()
    counts = {k: [0, 0] for k in list(tf) + ["H.264 CRF 28 (per frame)", f"{BOTH} (per frame)"]}
    video_level = {"H.264 CRF 28 (per clip)": [0, 0], f"{BOTH} (per clip)": [0, 0],
                   "crop 10% + downscale 1/2 (per clip)": [0, 0]}
    per_clip, psnrs = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for clip in clips:
            frames = _sample(clip, args.frames)
            marked = [wm.embed_frame(f) for f in frames]
            psnrs += [_psnr(m, f) for m, f in zip(marked, frames)]
            row = {}
            for name, fn in tf.items():
                hits = sum(W.detect_frame(fn(m)).found for m in marked)
                counts[name][0] += hits
                counts[name][1] += len(marked)
                row[name] = hits / len(marked)
            enc = _h264(marked, 28, tmp)
            enc_half = _h264([tf["downscale 1/2"](m) for m in marked], 28, tmp)
            for name, fr in (("H.264 CRF 28", enc), (BOTH, enc_half)):
                hits = sum(W.detect_frame(f).found for f in fr)
                counts[f"{name} (per frame)"][0] += hits
                counts[f"{name} (per frame)"][1] += len(fr)
                row[f"{name} (per frame)"] = hits / len(fr)
                det = W.detect_frames(fr)
                ok = det.found and det.payload == wm.payload
                video_level[f"{name} (per clip)"][0] += ok
                video_level[f"{name} (per clip)"][1] += 1
                row[f"{name} (per clip)"] = {"found": bool(ok), "score": round(det.score, 2), "sync_z": round(det.sync_z, 2)}
            det = W.detect_frames([tf["crop 10% + downscale 1/2"](m) for m in marked])
            video_level["crop 10% + downscale 1/2 (per clip)"][0] += det.found and det.payload == wm.payload
            video_level["crop 10% + downscale 1/2 (per clip)"][1] += 1
            per_clip[clip.name] = {"size": list(frames[0].shape[1::-1]),
                                   **{k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}}
            print(clip.name, per_clip[clip.name], flush=True)

    # False positives: every real clip (train + eval) and the portraits, unmarked.
    fp_items = sorted(args.data.glob("train/*")) + sorted((args.data / "eval" / "driving").glob("*"))
    portraits = sorted((args.data / "eval" / "source").glob("*"))
    fp_frames = fp_hits = 0
    fp_files, tests = [], []
    for path in fp_items:
        for f in _sample(path, args.fp_frames):
            fp_frames += 1
            tests += _test_scores(W, f)
            if W.detect_frame(f).found:
                fp_hits += 1
                fp_files.append(path.name)
    for path in portraits:
        fp_frames += 1
        img = io.read_image(path)
        tests += _test_scores(W, img)
        if W.detect_frame(img).found:
            fp_hits += 1
            fp_files.append(path.name)
    print(f"false positives per frame: {fp_hits}/{fp_frames} frames from {len(fp_items)} clips + portraits", flush=True)
    null = _null_report(W, tests)
    print("null distribution:", null, flush=True)

    # Clip level, as `talkinghead verify` decides.
    clip_hits, clip_files, clip_scores = 0, [], []
    for path in fp_items + portraits:
        res = W.verify_file(path, max_frames=args.fp_video_frames)
        clip_scores.append(res.watermark.score)
        if res.marked:
            clip_hits += 1
            clip_files.append(path.name)
    print(f"false positives per clip (verify_file): {clip_hits}/{len(fp_items) + len(portraits)}", flush=True)

    # Speed at three frame sizes: the fastest of 5 rounds, each round timing the reference operation too,
    # so that the ratio compares runs on machines of other speeds or loads.
    base = _sample(clips[0], 1)[0]
    plane = np.random.default_rng(0).random((1080, 1920), dtype=np.float32) * 255
    reference = lambda: cv2.GaussianBlur(plane, (0, 0), 1.5)  # noqa: E731
    speed = {"reference": "cv2.GaussianBlur of a 1920x1080 float32 plane, sigma 1.5"}
    for name, (w, h) in {"256x256": (256, 256), "512x512": (512, 512), "1920x1080": (1920, 1080)}.items():
        img = cv2.resize(base, (w, h), interpolation=cv2.INTER_LINEAR)
        m = wm.embed_frame(img)
        W.detect_frame(m)
        times = {"reference_s": [], "embed_s": [], "detect_marked_s": [], "detect_unmarked_s": []}
        for _ in range(5):
            times["reference_s"].append(_timeit(reference))
            times["embed_s"].append(_timeit(lambda: wm.embed_frame(img)))
            times["detect_marked_s"].append(_timeit(lambda: W.detect_frame(m)))
            times["detect_unmarked_s"].append(_timeit(lambda: W.detect_frame(img)))
        best = {k: min(v) for k, v in times.items()}
        speed[name] = {k: round(v, 5 if k == "reference_s" else 4) for k, v in best.items()}
        speed[name]["detect_unmarked_over_reference"] = round(best["detect_unmarked_s"] / best["reference_s"], 1)

    result = {
        "scheme": W.SCHEME, "strength": W.DEFAULT_STRENGTH,
        "code": f"{W.CODE_SYMBOLS} symbols x {W.SYMBOL_SIZE}-ary Walsh ({W.CODE_ELEMENTS} elements), "
                f"{W.CHIP}-px chips, {W.TILE}-px tile",
        "detection_threshold": round(W.detection_threshold(), 2),
        "false_alarm_per_file": W.FALSE_ALARM,
        "clips": [c.name for c in clips], "frames_per_clip": args.frames,
        "detection_rate_per_frame": {k: round(h / n, 3) for k, (h, n) in counts.items()},
        "detection_rate_per_clip": {k: f"{h}/{n}" for k, (h, n) in video_level.items()},
        "per_clip": per_clip,
        "psnr_db": {"mean": round(float(np.mean(psnrs)), 2), "min": round(float(np.min(psnrs)), 2)},
        "false_positives": {"frames": fp_frames, "hits": fp_hits, "clips": len(fp_items), "files": fp_files},
        "false_positives_per_clip": {"files": len(fp_items) + len(portraits), "frames_folded": args.fp_video_frames,
                                     "hits": clip_hits, "marked_files": clip_files,
                                     "max_score": round(float(max(clip_scores)), 2)},
        "null_distribution": null,
        "seconds_per_frame": speed,
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
        "wall_s": round(time.time() - t_start, 1),
    }
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("detection_rate_per_frame", "detection_rate_per_clip", "psnr_db",
                                             "false_positives", "false_positives_per_clip", "seconds_per_frame")},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Watermark benchmark: robustness table, false positives on real clips, PSNR and speed.

Marks real frames from ``<data>/eval/driving`` (native size), applies each transformation of issue 8
and counts detections frame by frame (and per clip for H.264, where the detector folds the frames of a
video together). False positives: unmarked frames sampled from every clip in ``<data>`` plus the
portraits. Writes ``benchmarks/results/watermark.json``.

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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--frames", type=int, default=16, help="marked frames per eval clip")
    ap.add_argument("--fp-frames", type=int, default=8, help="unmarked frames per clip for false positives")
    ap.add_argument("-o", "--out", type=Path, default=REPO / "benchmarks" / "results" / "watermark.json")
    args = ap.parse_args(argv)

    import cv2
    from talkinghead import watermark as W
    from talkinghead.atomic import atomic_write_text

    wm = W.Watermarker.for_model("cpu-256")
    clips = sorted((args.data / "eval" / "driving").glob("*.mp4"))
    if not clips:
        print(f"no clips in {args.data}/eval/driving: pass --data", file=sys.stderr)
        return 2
    tf = _transforms()
    counts = {k: [0, 0] for k in list(tf) + ["H.264 CRF 28 (per frame)", "H.264 CRF 28 + downscale 1/2 (per frame)"]}
    video_level = {"H.264 CRF 28 (per clip)": [0, 0], "H.264 CRF 28 + downscale 1/2 (per clip)": [0, 0],
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
            for name, fr in (("H.264 CRF 28", enc), ("H.264 CRF 28 + downscale 1/2", enc_half)):
                hits = sum(W.detect_frame(f).found for f in fr)
                counts[f"{name} (per frame)"][0] += hits
                counts[f"{name} (per frame)"][1] += len(fr)
                row[f"{name} (per frame)"] = hits / len(fr)
                ok = W.detect_frames(fr).found
                video_level[f"{name} (per clip)"][0] += ok
                video_level[f"{name} (per clip)"][1] += 1
            video_level["crop 10% + downscale 1/2 (per clip)"][0] += W.detect_frames(
                [tf["crop 10% + downscale 1/2"](m) for m in marked]).found
            video_level["crop 10% + downscale 1/2 (per clip)"][1] += 1
            per_clip[clip.name] = {"size": list(frames[0].shape[1::-1]), **{k: round(v, 3) for k, v in row.items()}}
            print(clip.name, per_clip[clip.name], flush=True)

    # False positives: every real clip (train + eval) and the portraits, unmarked.
    fp_items = sorted(args.data.glob("train/*")) + sorted((args.data / "eval" / "driving").glob("*")) 
    fp_frames = fp_hits = 0
    fp_files = []
    for path in fp_items:
        for f in _sample(path, args.fp_frames):
            fp_frames += 1
            if W.detect_frame(f).found:
                fp_hits += 1
                fp_files.append(path.name)
    from talkinghead import io

    for path in sorted((args.data / "eval" / "source").glob("*")):
        fp_frames += 1
        if W.detect_frame(io.read_image(path)).found:
            fp_hits += 1
            fp_files.append(path.name)
    print(f"false positives: {fp_hits}/{fp_frames} frames from {len(fp_items)} clips + portraits", flush=True)

    # Speed (one core of the machine, best of 5) at three frame sizes.
    base = _sample(clips[0], 1)[0]
    speed = {}
    for name, (w, h) in {"256x256": (256, 256), "512x512": (512, 512), "1920x1080": (1920, 1080)}.items():
        img = cv2.resize(base, (w, h), interpolation=cv2.INTER_LINEAR)
        wm.embed_frame(img)
        te = min(_timeit(lambda: wm.embed_frame(img)) for _ in range(5))
        m = wm.embed_frame(img)
        td = min(_timeit(lambda: W.detect_frame(m)) for _ in range(3))
        tu = min(_timeit(lambda: W.detect_frame(img)) for _ in range(3))
        speed[name] = {"embed_s": round(te, 4), "detect_marked_s": round(td, 4), "detect_unmarked_s": round(tu, 4)}

    result = {
        "scheme": W.SCHEME, "strength": W.DEFAULT_STRENGTH, "code_bits": W.CODE_BITS,
        "clips": [c.name for c in clips], "frames_per_clip": args.frames,
        "detection_rate_per_frame": {k: round(h / n, 3) for k, (h, n) in counts.items()},
        "detection_rate_per_clip": {k: f"{h}/{n}" for k, (h, n) in video_level.items()},
        "per_clip": per_clip,
        "psnr_db": {"mean": round(float(np.mean(psnrs)), 2), "min": round(float(np.min(psnrs)), 2)},
        "false_positives": {"frames": fp_frames, "hits": fp_hits, "clips": len(fp_items), "files": fp_files},
        "seconds_per_frame": speed,
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
    }
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("detection_rate_per_frame", "detection_rate_per_clip", "psnr_db",
                                             "false_positives", "seconds_per_frame")}, indent=2))
    return 0


def _timeit(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    sys.exit(main())

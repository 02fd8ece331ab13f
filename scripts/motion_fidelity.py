"""Where cross-identity motion is lost: in the motion transfer, or in the rendering?

For each (portrait, clip) three mouth- and eye-opening series are compared, frame by frame:
- ``driver``: dlib's landmarks of the driving frames (what the judge reads from the driver);
- ``target``: the landmarks the generator is asked to draw (``transfer_motion`` of the driver's track);
- ``output``: dlib's landmarks of the rendered face crop (what the judge reads from the output).

corr(driver, target) is what the motion transfer keeps, corr(target, output) what the rendering keeps;
the gain is the least-squares slope of output on target (1: the face opens as far as asked). Writes
``fidelity.json`` and prints one line per pair.

    python scripts/motion_fidelity.py --sources ../shared/data/eval/source/liveportrait__source__s9.jpg \
        --driving ../shared/data/eval/driving/*.mp4 --max-frames 100 -o runs/fidelity
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or a[ok].std() < 1e-9 or b[ok].std() < 1e-9:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def _gain(target: np.ndarray, output: np.ndarray) -> float:
    ok = np.isfinite(target) & np.isfinite(output)
    t, o = target[ok] - target[ok].mean(), output[ok] - output[ok].mean()
    return float((t * o).sum() / max((t * t).sum(), 1e-12))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sources", nargs="+", required=True)
    p.add_argument("--driving", nargs="+", required=True)
    p.add_argument("--model", default="default")
    p.add_argument("--max-frames", type=int, default=100)
    p.add_argument("--series", action="store_true", help="also store the per-frame series in the JSON")
    p.add_argument("-o", "--output", required=True)
    args = p.parse_args()

    import talkinghead as th
    from talkinghead import metrics as M
    from talkinghead.landmarks import get_detector, track_video, transform_landmarks
    from talkinghead.motion import transfer_motion

    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = th.load(args.model)
    det = get_detector("dlib")
    tracks = {clip: track_video(clip, backend=det, max_frames=args.max_frames, progress=False)
              for clip in args.driving}
    rows = []
    for src in args.sources:
        avatar = model.personalize([src], progress=False)
        for clip, track in tracks.items():
            target = transfer_motion(avatar.source.landmarks, track.landmarks)
            frames = np.stack(list(avatar.animate_landmarks(target, track.fps, crop_only=True, progress=False)))
            found = [det.detect(f) for f in frames]
            out_lm = np.stack([f[0].landmarks if f else np.full((68, 2), np.nan, np.float32) for f in found])
            crop_target = transform_landmarks(target, avatar.source.crop)
            row = {"source": Path(src).stem, "driving": Path(clip).stem, "frames": len(frames),
                   "face_found": float(np.isfinite(out_lm).all(axis=(1, 2)).mean())}
            for part, fn in (("mouth", M.mouth_opening), ("eye", M.eye_opening)):
                d, t, o = fn(track.landmarks), fn(crop_target), fn(out_lm)
                row[part] = {"driver_target": _corr(d, t), "target_output": _corr(t, o),
                             "driver_output": _corr(d, o), "gain": _gain(t, o),
                             "target_median": float(np.nanmedian(t)), "output_median": float(np.nanmedian(o))}
                if args.series:
                    row[part]["series"] = {"driver": d.tolist(), "target": t.tolist(), "output": o.tolist()}
            rows.append(row)
            m, e = row["mouth"], row["eye"]
            print(f"{row['source']:>28} {row['driving']:>40}  mouth d-t {m['driver_target']:.2f} "
                  f"t-o {m['target_output']:.2f} d-o {m['driver_output']:.2f} gain {m['gain']:.2f} | "
                  f"eye d-t {e['driver_target']:.2f} t-o {e['target_output']:.2f} d-o {e['driver_output']:.2f} "
                  f"gain {e['gain']:.2f}", flush=True)
    (out_dir / "fidelity.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
